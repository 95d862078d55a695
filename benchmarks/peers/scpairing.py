"""scPairing beside the original (Ding-Group/scPairing): bridge training and re-pairing.

Quality case (real data, ``SCX_DATA_DIR``)
------------------------------------------
``mop_bridge``
    MOp SNARE-seq2 split at random (``benchmarks/scpairing_mop.load(seed)``) into a paired
    bridge half and a held-out half whose RNA and ATAC profiles are treated as two unpaired
    datasets. The low-dimensional inputs are computed once, here, exactly as scx's
    ``scx.tl.scpairing`` computes them in ``benchmarks/scpairing_mop.py``: PCA of the
    log-normalised RNA (10 components, up to 2,000 highly variable genes) and TF-IDF + LSI of
    the ATAC counts (10 components), fitted on the bridge (``scx.pp.fit_pca`` / ``fit_lsi``) and
    applied to both halves (``scx.pp.apply_transform``). Both sides get these 10-d arrays: the
    original as ``obsm["X_pca"]`` / ``obsm["X_lsi"]`` (its tutorial's keys), scx as ``use_rep``.

Scores (the same code for both sides, as the existing benchmark): FOSCTTM of the held-out
cells' RNA and ATAC embeddings (``scx.metrics.foscttm``; the true pairs are known), and the
one-to-one matching of the held-out embeddings at cosine cutoff 0.8
(``scx.scpairing.match_embeddings``, exact): the number of pairs, the true-partner rate over all
held-out cells, the true fraction among the pairs and the cell-type agreement of the pairs.

Speed
-----
5k paired cells with 10-d inputs (PCA / LSI of ``scx.datasets.synthetic_multiome(paired=True)``,
seed 0), batch 2,000. One training step of both is two Adam steps (main networks, then the
modality discriminator): ``StepTimer(2)`` and ``SCX_OPTIMIZERS_PER_STEP = 2``.

Budgets
-------
Both train ``epochs`` passes over the bridge (300, the tutorial's), batch 2,000, Adam lr 5e-3
decayed by exp(−6e-5) per step, discriminator Adam lr 1e-3, KL weight 1e-3, seed = the harness's.
The original counts fractional epochs of n / 2,000 steps (wrapping the last batch around), so it
takes ⌈epochs · n / 2,000⌉ steps (774 on the 5,154-cell MOp bridge); scx, whose epochs are
⌈n / 2,000⌉ full batches, gets ``max_steps`` = that number, which it rounds up to whole epochs
(at most ⌈n / 2,000⌉ − 1 steps more; none on MOp: 258 epochs × 3). For speed runs
(``--steps N``) the original stops after N steps (``StopTraining``) and scx gets ``max_steps=N``
(rounded up the same way; the median per-step time is unaffected). Both run on the CPU unless
the options say otherwise (original ``device``, scx ``accelerator``).
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import harness
import mudata
import numpy as np
import pandas as pd

import scx

PEER = "scpairing"
SCX_OPTIMIZERS_PER_STEP = 2

SPEED_DESCRIPTION = "5k paired cells, 10-d PCA/LSI inputs, batch 2,000"
SPEED_STEPS = 60
SPEED_OPTIONS = {"original": {}, "scx": {}}
QUALITY_OPTIONS = {"original": {}, "scx": {}}

#: Components and highly variable genes of the inputs (scx.tl.scpairing's defaults).
N_COMPS, N_TOP_GENES = 10, 2000
#: Cosine cutoff of the matching (the reference's README).
CUTOFF = 0.8


# ---------------------------------------------------------------------------- inputs
def _low_dim(rna_fit, atac_fit, others: dict, seed: int) -> dict[str, np.ndarray]:
    """PCA / LSI fitted on the bridge and applied to every part, as scx.tl.scpairing does."""
    from scx.pp import apply_transform, fit_lsi, fit_pca

    _, pca = fit_pca(
        rna_fit.X,
        rna_fit.var_names,
        n_comps=N_COMPS,
        target_sum=1e4,
        n_top_genes=N_TOP_GENES,
        seed=seed,
    )
    _, lsi = fit_lsi(atac_fit.X, atac_fit.var_names, n_comps=N_COMPS, seed=seed)
    transforms = {"rna": pca, "atac": lsi}
    out = {}
    for name, adata in others.items():
        X = apply_transform(transforms[name.split("_")[-1]], adata)
        X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
        out[name] = np.asarray(X, dtype=np.float32)
    return out


def speed_inputs(path: Path) -> Path:
    """5k generated paired cells: the 10-d PCA of RNA and LSI of ATAC."""

    mdata = scx.datasets.synthetic_multiome(
        5_000, 5_000, 1_000, n_types=8, atac_features="peaks", paired=True, seed=0
    )
    rna, atac = mdata["rna"], mdata["atac"]
    arrays = _low_dim(rna, atac, {"bridge_rna": rna, "bridge_atac": atac}, seed=0)
    return harness.write_inputs(path, {"case": "speed"}, **arrays)


def _mop_bridge(path: Path, seed: int) -> dict:
    """Bridge / held-out split of MOp with the bridge's PCA / LSI, as scpairing_mop.py."""
    from scpairing_mop import load

    mdata, bridge_idx, held_idx = load(seed)
    rna_b, atac_b = mdata["rna"][bridge_idx].copy(), mdata["atac"][bridge_idx].copy()
    rna_h, atac_h = mdata["rna"][held_idx].copy(), mdata["atac"][held_idx].copy()
    arrays = _low_dim(
        rna_b,
        atac_b,
        {"bridge_rna": rna_b, "bridge_atac": atac_b, "held_rna": rna_h, "held_atac": atac_h},
        seed=seed,
    )
    harness.write_inputs(path, {"case": "mop_bridge", "seed": seed}, **arrays)
    return {"cell_types": np.asarray(mdata["rna"].obs["cell_type"], dtype=str)[held_idx]}


CASES = {"mop_bridge": _mop_bridge}


# ---------------------------------------------------------------------------- scores
def score(outputs: dict, truth: dict) -> dict[str, float]:
    """FOSCTTM of the held-out pairs and the matching at cutoff 0.8 (scpairing_mop.py's)."""
    from scx.scpairing import match_embeddings

    z1, z2 = outputs["held_rna_embedding"], outputs["held_atac_embedding"]
    n = z1.shape[0]
    types = truth["cell_types"]
    matching = match_embeddings(z1, z2, cutoff=CUTOFF, method="exact")
    rows, cols = matching.rows, matching.cols
    true_pairs = int((rows == cols).sum())
    return {
        "foscttm": scx.metrics.foscttm(z1, z2),
        "pairs": float(rows.size),
        "true_partner_rate": true_pairs / n,
        "true_among_pairs": true_pairs / rows.size if rows.size else float("nan"),
        "cell_type_agreement": float((types[rows] == types[cols]).mean())
        if rows.size
        else float("nan"),
    }


# ---------------------------------------------------------------------------- scx side
def scx_options(parser) -> None:
    """Options of the scx side (``run_scx.py --method scpairing``)."""
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--accelerator", default="cpu")


def reference_steps(epochs: int, n_cells: int, batch_size: int) -> int:
    """Steps the original takes for ``epochs``: it counts fractional epochs of n / batch steps."""
    if n_cells <= batch_size:
        return int(epochs)
    return int(np.ceil(epochs * n_cells / batch_size - 1e-9))


def _rep_adata(X: np.ndarray, key: str, prefix: str):

    obs = pd.DataFrame(index=[f"{prefix}{i}" for i in range(X.shape[0])])
    return ad.AnnData(obs=obs, obsm={key: np.asarray(X, dtype=np.float32)}, shape=(len(obs), 0))


def run_scx(inputs: dict, args) -> tuple[dict, dict]:
    """``scx.tl.scpairing`` on the bridge's 10-d inputs; embeds the held-out halves."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    for name in ("lightning", "lightning.pytorch", "scvi", "scx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    mudata.set_options(pull_on_update=False)

    keys = {"rna": "X_pca", "atac": "X_lsi"}
    bridge = mudata.MuData(
        {m: _rep_adata(inputs[f"bridge_{m}"], keys[m], "cell") for m in ("rna", "atac")}
    )
    n_bridge = int(inputs["bridge_rna"].shape[0])
    steps = reference_steps(args.epochs, n_bridge, args.batch_size)
    budget = {"max_steps": steps if args.steps is None else args.steps}
    model = scx.tl.scpairing(
        bridge,
        modalities=("rna", "atac"),
        use_rep=keys,
        batch_size=args.batch_size,
        seed=args.seed,
        accelerator=args.accelerator,
        trainer_kwargs={"enable_progress_bar": False, "enable_model_summary": False},
        **budget,
    )
    arrays = {}
    for m in ("rna", "atac"):
        arrays[f"bridge_{m}_embedding"] = model.get_latent_representation(modality=m)
        if f"held_{m}" in inputs:
            held = _rep_adata(inputs[f"held_{m}"], keys[m], f"held_{m}")
            arrays[f"held_{m}_embedding"] = model.get_latent_representation(held, modality=m)
    meta = {
        "budget": budget,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "temperature": model.get_temperature(),
        "n_bridge": n_bridge,
        "reference_steps": steps,
    }
    return arrays, meta
