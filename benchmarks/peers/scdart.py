"""scDART: the original (PeterZZQ/scDART, ``run_scdart.py``) beside scx, same inputs and budget.

Inputs (both sides get the same file): RNA counts and ATAC peak counts (CSR) of two modalities
whose cells are not matched, and the genes × peaks prior (non-zero = link). Each side applies
the reference scripts' preprocessing to them, the same maps on both sides: RNA library-normalised
to 100 then log1p, ATAC binarised (the original's runner does it in numpy before calling the
class, as the reference's scripts do; scx does it inside the model, ``rna_transform=
"log_normalize"``, ``atac_transform="binary"``), so both train on the same matrices.

Settings: the reference class's defaults (latent 8, the ``fit()`` layer sizes, λ_d = λ_g =
λ_mmd = 1, lr 3e-4, ``ts = [30, 50, 70]``, no potential) with the paper scripts' 500 epochs and
k = 10 post-alignment; scx runs with ``scx.scdart.REFERENCE_SETTINGS`` (no candidate-pair
loss, the absolute L1 prior penalty, random initialisation) and ``n_latent=8``,
``lambda_mmd=1``, ``post_align_neighbors=10``; scx has no PHATE-potential variant, so the
scripts' ``use_potential=True`` would not compare like with like. The extra side ``scx
defaults`` (``QUALITY_OPTIONS``, ``--settings defaults``) runs scx's own losses.
``--latent-dim 4 --reg-mmd 10`` give the SNARE-seq script's model settings on both sides.

Budget: the original's ``fit()`` uses batch B = ⌊min(N_rna, N_atac) / 4⌋ (it ignores
``batch_size``) and runs ``epochs + 1`` epochs of ``zip(atac_loader, rna_loader)`` with non-full
batches skipped, i.e. ``min(⌊N_rna / B⌋, ⌊N_atac / B⌋)`` (= 4) steps per epoch: 500 epochs are
501 × 4 = 2,004 steps. scx gets the same batch size (``batch_size=B``, not its default
min(B, 1,024)) and the same number of steps (``max_steps``, ``steps_per_epoch`` = the original's),
and the same seed and threads. One training step is one backward: the original then steps two
Adam optimisers (gene activity, encoder), scx one.

Scores (``score``, the same code for both sides, as ``benchmarks/scdart_mop.py``): FOSCTTM of
the hidden pairing (post-aligned and raw latent), RNA → ATAC label transfer (kNN, k = 30, in the
post-aligned latent), per-gene Pearson r of the predicted RNA of each ATAC cell (gene-activity
network) with the measured, log-normalised RNA of the same nucleus (median over all genes, over
genes detected in ≥ 5 % of nuclei, and mean).

Cases: ``mop`` (all nuclei, 500 epochs) and ``mop_2k`` (2,000 random nuclei, 100 epochs on
every side, ``CASE_OPTIONS``), both with the pairing hidden.

Speed: 2k + 2k generated cells, 2,000 genes, 10,000 peaks (one linked gene per peak); B = 500.
"""

from __future__ import annotations

import math
from functools import partial

import harness
import numpy as np
from scipy import sparse

PEER = "scdart"
#: scx: one Adam on the whole module per step (the original: two, gene activity + encoder).
SCX_OPTIMIZERS_PER_STEP = 1

SPEED_DESCRIPTION = "2k + 2k cells, 2,000 genes, 10,000 peaks, batch 500"
SPEED_STEPS = 32
SPEED_OPTIONS = {"original": {}, "scx": {}}
#: 500 epochs of the original = 501 × 4 steps (see the module docstring); "scx defaults": scx's
#: candidate-pair loss and scale-free prior penalty instead of REFERENCE_SETTINGS
QUALITY_OPTIONS = {
    "original": {"epochs": 500},
    "scx": {"epochs": 500},
    "scx defaults": {"epochs": 500, "settings": "defaults"},
}

#: label-transfer neighbours and the detection threshold of the per-gene scores
#: (``benchmarks/scdart_mop.py``)
TRANSFER_NEIGHBORS = 30
DETECTED_FRACTION = 0.05


# ---------------------------------------------------------------------------- budget
def reference_batch_size(n_rna: int, n_atac: int) -> int:
    """The original ``fit()``'s mini-batch: a quarter of the smaller modality."""
    return min(n_rna, n_atac) // 4


def reference_steps_per_epoch(n_rna: int, n_atac: int) -> int:
    """Full mini-batch pairs per epoch of the original's zipped loaders (non-full skipped)."""
    batch = reference_batch_size(n_rna, n_atac)
    return min(n_rna // batch, n_atac // batch)


def reference_steps(n_rna: int, n_atac: int, epochs: int) -> int:
    """Training steps of the original's ``fit()`` with ``n_epochs=epochs`` (it runs one more)."""
    return (epochs + 1) * reference_steps_per_epoch(n_rna, n_atac)


# ---------------------------------------------------------------------------- inputs
def generated(
    n_rna: int, n_atac: int, n_genes: int, n_peaks: int, seed: int = 0, paired: bool = False
):
    """Counts of two modalities from six cell types, and a one-gene-per-peak prior.

    Returns ``(rna, atac, prior, rna_types, atac_types)``: CSR RNA counts, CSR ATAC counts
    (0/1), the genes × peaks prior (CSR) and the cell types. With ``paired`` (``n_rna ==
    n_atac``) ATAC cell i has the type of RNA cell i.
    """
    rng = np.random.default_rng(seed)
    n_types = 6
    peak_gene = rng.integers(n_genes, size=n_peaks)
    prior = sparse.csr_matrix(
        (np.ones(n_peaks, np.float32), (peak_gene, np.arange(n_peaks))), shape=(n_genes, n_peaks)
    )
    expression = rng.lognormal(0.0, 1.0, (n_types, n_genes)) * 0.2
    rna_types = rng.integers(n_types, size=n_rna)
    atac_types = rna_types.copy() if paired else rng.integers(n_types, size=n_atac)
    rna = sparse.csr_matrix(rng.poisson(expression[rna_types]).astype(np.float32))
    open_p = np.clip(0.02 * expression[:, peak_gene] / expression.mean(), 0.0, 0.5)
    atac = sparse.csr_matrix(rng.random((n_atac, n_peaks)) < open_p[atac_types], dtype=np.float32)
    return rna, atac, prior, rna_types, atac_types


def _write(path, rna, atac, prior, genes, peaks, description: str) -> None:
    harness.write_inputs(
        path,
        {"description": description},
        rna=rna,
        atac=atac,
        prior=prior,
        genes=np.asarray(genes, dtype=str),
        peaks=np.asarray(peaks, dtype=str),
    )


def speed_inputs(path) -> None:
    """2,000 + 2,000 generated cells, 2,000 genes, 10,000 peaks (fixed seed)."""
    rna, atac, prior, _, _ = generated(2000, 2000, 2000, 10_000, seed=0)
    genes = [f"gene{i}" for i in range(rna.shape[1])]
    peaks = [f"chr1_{1000 * i}_{1000 * i + 500}" for i in range(atac.shape[1])]
    _write(path, rna, atac, prior, genes, peaks, SPEED_DESCRIPTION)


def smoke_case(path, seed: int = 0, n_cells: int = 300) -> dict:
    """A tiny generated case to check the harness: paired cells, the ATAC side shuffled.

    200 genes, 1,000 peaks; the labels are the generating types.
    """
    rna, atac, prior, types, _ = generated(n_cells, n_cells, 200, 1000, seed=seed, paired=True)
    perm = np.random.default_rng(seed).permutation(n_cells)
    _write(
        path,
        rna,
        atac[perm],
        prior,
        [f"gene{i}" for i in range(rna.shape[1])],
        [f"chr1_{1000 * i}_{1000 * i + 500}" for i in range(atac.shape[1])],
        "smoke",
    )
    labels = np.array([f"t{t}" for t in types])
    return _truth(perm, labels, labels[perm], _log_normalised(rna)[perm])


def mop(path, seed: int, n_nuclei: int | None = None) -> dict:
    """MOp SNARE-seq2, pairing hidden: the inputs of ``benchmarks/scdart_mop.py`` for ``seed``.

    All nuclei as two unmatched modalities: the RNA in file order, the ATAC permuted by
    ``default_rng(seed).permutation``; the prior is ``rna.varm["gene_region"]``. With
    ``n_nuclei``: a random subset of that many nuclei (the same for every seed, drawn by
    ``scdart_mop.random_nuclei``), the peaks open in none of them left out.
    """
    import mudata

    from _common import find_data_dir
    from scdart_mop import nuclei_subset, random_nuclei

    mudata.set_options(pull_on_update=False)
    mdata = mudata.read_h5mu(find_data_dir() / "mop_snareseq2" / "mop_snareseq2.h5mu")
    rna, atac_all = mdata["rna"], mdata["atac"]
    description = "MOp SNARE-seq2"
    if n_nuclei is not None:
        rna, atac_all, prior = nuclei_subset(rna, atac_all, random_nuclei(mdata.n_obs, n_nuclei))
        description += f", {n_nuclei:,} random nuclei, {prior.shape[1]:,} open peaks"
    else:
        prior = sparse.csr_matrix(rna.varm["gene_region"], dtype=np.float32)
    perm = np.random.default_rng(seed).permutation(rna.n_obs)
    atac = atac_all[perm]
    _write(
        path,
        sparse.csr_matrix(rna.X, dtype=np.float32),
        sparse.csr_matrix(atac.X, dtype=np.float32),
        prior,
        rna.var_names,
        atac.var_names,
        f"{description}, pairing hidden (ATAC permuted with seed {seed})",
    )
    return _truth(
        perm,
        rna.obs["cell_type"].astype(str).to_numpy(),
        atac.obs["cell_type"].astype(str).to_numpy(),
        _log_normalised(rna.X)[perm],
    )


#: nuclei and epochs of ``mop_2k``: the original's dense diffusion step and full-width prior
#: penalty make full MOp at 500 epochs take hours per seed on a CPU
MOP_SUBSET_NUCLEI, MOP_SUBSET_EPOCHS = 2000, 100

CASES = {"mop": mop, "mop_2k": partial(mop, n_nuclei=MOP_SUBSET_NUCLEI)}
#: per-case settings of every side (on top of ``QUALITY_OPTIONS``): the same reduced budget
CASE_OPTIONS = {"mop_2k": {"epochs": MOP_SUBSET_EPOCHS}}


def _log_normalised(X) -> np.ndarray:
    from scdart_mop import log_normalised

    return log_normalised(X)


def _truth(perm, rna_labels, atac_labels, measured) -> dict:
    """What scoring needs: ATAC cell j's partner is RNA cell ``perm[j]``."""
    return {
        "perm": perm,
        "rna_labels": rna_labels,
        "atac_labels": atac_labels,
        "measured": measured,
        "detected": (measured > 0).mean(0) >= DETECTED_FRACTION,
    }


# ---------------------------------------------------------------------------- scores
def score(outputs: dict, truth: dict) -> dict[str, float]:
    """FOSCTTM (post-aligned, raw), RNA → ATAC label transfer, per-gene r of the gene activity."""
    import scx
    from scdart_mop import per_gene_pearson
    from scx._neighbors import knn_transfer

    perm = truth["perm"]
    z_rna, z_atac = outputs["z_rna"], outputs["z_atac"]
    predicted = knn_transfer(z_rna, truth["rna_labels"], z_atac, n_neighbors=TRANSFER_NEIGHBORS)[0]
    transfer = scx.metrics.label_transfer_accuracy(
        truth["atac_labels"], predicted, reference_labels=set(truth["rna_labels"])
    )
    r = per_gene_pearson(outputs["gene_activity"].astype(np.float64), truth["measured"])
    return {
        "FOSCTTM": scx.metrics.foscttm(z_rna[perm], z_atac),
        "FOSCTTM_raw": scx.metrics.foscttm(outputs["z_rna_raw"][perm], outputs["z_atac_raw"]),
        "label_acc": transfer["accuracy"],
        "macro_f1": transfer["macro_f1"],
        "gene_r_median": float(np.nanmedian(r)),
        "gene_r_median_detected": float(np.nanmedian(r[truth["detected"]])),
        "gene_r_mean": float(np.nanmean(r)),
    }


# ---------------------------------------------------------------------------- scx side
def scx_options(parser) -> None:
    """The settings both runners share (same names as ``run_scdart.py``)."""
    parser.add_argument("--epochs", type=int, default=500, help="the original's n_epochs")
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--reg-mmd", type=float, default=1.0)
    parser.add_argument("--k", type=int, default=10, help="post-alignment neighbours")
    parser.add_argument(
        "--prior-penalty-peaks",
        type=int,
        default=2048,
        help="scx's sampled prior penalty (its default); 0: all peaks every step, as the original",
    )
    parser.add_argument(
        "--settings",
        choices=["reference", "defaults"],
        default="reference",
        help="scx's losses: REFERENCE_SETTINGS (like for like, default) or scx's defaults",
    )


def run_scx(inputs: dict, args) -> tuple[dict, dict]:
    """``scx.tl.scdart`` at the original's batch size and number of steps (``--epochs``)."""
    import logging
    import warnings

    import anndata as ad
    import mudata
    import pandas as pd
    from _runner_common import csr

    import scx

    warnings.simplefilter("ignore")
    for name in ("lightning", "lightning.pytorch", "scvi", "scx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    mudata.set_options(pull_on_update=False)
    rna_X, atac_X = csr(inputs, "rna"), csr(inputs, "atac")
    n_rna, n_atac = rna_X.shape[0], atac_X.shape[0]
    rna = ad.AnnData(
        X=rna_X,
        obs=pd.DataFrame(index=[f"rna_{i}" for i in range(n_rna)]),
        var=pd.DataFrame(index=inputs["genes"].astype(str)),
    )
    rna.varm["gene_region"] = csr(inputs, "prior")
    atac = ad.AnnData(
        X=atac_X,
        obs=pd.DataFrame(index=[f"atac_{i}" for i in range(n_atac)]),
        var=pd.DataFrame(index=inputs["peaks"].astype(str)),
    )
    mdata = mudata.MuData({"rna": rna, "atac": atac})
    batch = reference_batch_size(n_rna, n_atac)
    per_epoch = reference_steps_per_epoch(n_rna, n_atac)
    steps = args.steps or reference_steps(n_rna, n_atac, args.epochs)
    settings = scx.scdart.REFERENCE_SETTINGS if args.settings == "reference" else {}
    model = scx.tl.scdart(
        mdata,
        prior="gene_region",
        **settings,
        n_latent=args.latent_dim,
        lambda_mmd=args.reg_mmd,
        batch_size=batch,
        max_steps=steps,
        # whole epochs of `steps` (scx rounds max_steps up to whole epochs)
        steps_per_epoch=math.gcd(per_epoch, steps),
        post_align_neighbors=args.k,
        prior_penalty_peaks=args.prior_penalty_peaks or None,
        seed=args.seed,
        trainer_kwargs={"enable_progress_bar": False, "enable_model_summary": False},
    )
    arrays = {
        "z_rna": mdata["rna"].obsm["X_scdart"],
        "z_atac": mdata["atac"].obsm["X_scdart"],
        "z_rna_raw": mdata["rna"].obsm["X_scdart_raw"],
        "z_atac_raw": mdata["atac"].obsm["X_scdart_raw"],
        "gene_activity": model.get_gene_activity().to_numpy().astype(np.float32),
    }
    meta = {
        "batch_size": batch,
        "steps": steps,
        "steps_per_epoch": math.gcd(per_epoch, steps),
        "epochs": args.epochs,
        "latent_dim": args.latent_dim,
        "reg_mmd": args.reg_mmd,
        "post_align_k": args.k,
        "prior_penalty_peaks": args.prior_penalty_peaks or None,
        "seed": args.seed,
        "settings": args.settings,
        "params": {k: str(v) for k, v in mdata.uns["scdart"]["params"].items()},
    }
    return arrays, meta
