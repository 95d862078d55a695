"""scMODAL: the original (gefeiwang/scMODAL, ``run_scmodal.py``) beside scx, same inputs/budget.

Inputs (both sides get the same file): two modalities of preprocessed (log-normalised) values,
RNA ("A") and protein ("B"), cells not matched, whose first ``n_linked`` columns are linked
features in matching order (the original's convention; scx gets the same pairs as explicit
links). For the CITE case the matrices are exactly what ``scx.tl.scmodal(preprocess=True)``
builds from the counts (its ``fit_log_blocks``, the reference's tutorial recipe): RNA =
[10 linked genes | 3,000 seurat_v3 HVGs], protein = the 10 ADT, the linked blocks of both
normalised to one library size (median linked RNA total, at least 20) and log1p, the HVG block to
its median library size and log1p. Both sides then standardise every feature, clipped at ±10:
the original's runner with ``sc.pp.scale(max_value=10)`` as the tutorial, scx inside the model
(``standardize=True``, the same ddof-1 statistics), so both train on the same matrices.
Imputed protein comes back on the log-normalised scale on both sides, from the generator (the
original's ``get_imputed_df(scale="log")``, scx's ``impute(strategy="generator")``); the kNN
average of scx's default imputation is scored for both sides' latents as ``pearson_knn30``.

Settings: the reference's defaults on both sides (latent 20, batch 500 per modality drawn with
replacement, Adam lr 1e-3 weight decay 1e-3, 5 discriminator steps per generator step,
gradient-norm clip 5, λ_AE = λ_LA = λ_Geo = 10, λ_MNN = λ_GAN = 1, 30-NN mutual neighbours
recomputed every step).

Budget: ``--train-steps`` training steps on both sides (default 2,000, as
``benchmarks/scmodal_cite.py``; the reference's default is 10,000), the original via its
``training_steps``, scx via ``max_steps``; same batch size, seed and threads. One training step
is 5 discriminator + 1 generator Adam steps on both sides (6 optimiser steps).

Scores (``score``, the same code for both sides: ``benchmarks/scmodal_cite.scores``): FOSCTTM of
the hidden pairing, RNA → protein label transfer (k = 20 and 1-NN, "unknown" excluded), Pearson
r of the imputed vs the measured (log-normalised) protein, per marker and mean.

Speed: 2k generated RNA cells × 2,000 genes and 2k protein cells × 30 proteins, 30 links, batch
500.
"""

from __future__ import annotations

import math

import harness
import numpy as np

PEER = "scmodal"
#: 5 discriminator + 1 generator optimiser steps per training step (the original: the same)
SCX_OPTIMIZERS_PER_STEP = 6

SPEED_DESCRIPTION = "2k cells × 2,000 genes + 2k cells × 30 proteins (30 links), batch 500"
SPEED_STEPS = 30
SPEED_OPTIONS = {"original": {}, "scx": {}}
QUALITY_OPTIONS = {"original": {"train_steps": 2000}, "scx": {"train_steps": 2000}}


# ---------------------------------------------------------------------------- inputs
def _write(path, rna, prot, genes, proteins, n_linked: int, description: str) -> None:
    harness.write_inputs(
        path,
        {"description": description, "n_linked": int(n_linked)},
        rna=np.asarray(rna, dtype=np.float32),
        prot=np.asarray(prot, dtype=np.float32),
        genes=np.asarray(genes, dtype=str),
        proteins=np.asarray(proteins, dtype=str),
    )


def generated(n_cells: int, n_genes: int, n_proteins: int, seed: int = 0):
    """Log-normalised RNA and protein of the same cells (five types), protein i ~ gene i.

    Returns ``(rna, prot, types)``.
    """
    rng = np.random.default_rng(seed)
    types = rng.integers(5, size=n_cells)
    expression = rng.lognormal(0.0, 1.0, (5, n_genes)) * 0.3
    rna = rng.poisson(expression[types]).astype(np.float64)
    abundance = 20 * expression[:, :n_proteins] / expression[:, :n_proteins].mean()
    prot = rng.poisson(abundance[types] + 2.0).astype(np.float64)

    def lognorm(x):
        return np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1) * np.median(x.sum(1)))

    return lognorm(rna), lognorm(prot), types


def speed_inputs(path) -> None:
    """2,000 RNA cells × 2,000 genes and 2,000 protein cells × 30 proteins (fixed seed)."""
    rna, _, _ = generated(2000, 2000, 30, seed=0)
    _, prot, _ = generated(2000, 2000, 30, seed=1)
    genes = [f"gene{i}" for i in range(2000)]
    proteins = [f"prot{i}" for i in range(30)]
    _write(path, rna, prot, genes, proteins, 30, SPEED_DESCRIPTION)


def smoke_case(path, seed: int = 0, n_cells: int = 600) -> dict:
    """A small generated case (paired cells, 300 genes, 10 linked proteins) to check the harness.

    At least 500 cells: scx refuses a batch (500) larger than a modality.
    """
    import pandas as pd

    rna, prot, types = generated(n_cells, 300, 10, seed=seed)
    proteins = [f"prot{i}" for i in range(10)]
    _write(path, rna, prot, [f"gene{i}" for i in range(300)], proteins, 10, "smoke")
    return {
        "labels": np.array([f"t{t}" for t in types]),
        "proteins": proteins,
        "measured": pd.DataFrame(prot, columns=proteins),
    }


def cite(path, seed: int) -> dict:
    """CITE in-house RNA + 10 ADT, pairing hidden: the inputs of ``benchmarks/scmodal_cite.py``.

    The counts go through scx's fit of the reference's recipe (what ``scx.tl.scmodal`` does
    with ``preprocess=True``); the seed only seeds the models (as in that benchmark, the cells
    are not reordered: neither method can use the order, both draw mini-batches at random).
    """
    import pandas as pd

    from _common import find_data_dir
    from scmodal_cite import LINKS, load
    from scx.pp import apply_transform
    from scx.scmodal import MIN_LINKS, resolve_links
    from scx.scmodal._preprocess import fit_log_blocks

    mdata, labels, measured, _ = load(find_data_dir())
    names = ["rna", "prot"]
    adatas = {m: mdata[m] for m in names}
    resolved = resolve_links(LINKS, {m: adatas[m].var_names for m in names}, min_links=MIN_LINKS)
    linked = {m: pd.Index(pd.unique(resolved.pairs[m])) for m in names}
    transforms = fit_log_blocks(adatas, dict.fromkeys(names), linked, 3000)
    matrices = {}
    for m in names:
        X = apply_transform(transforms[m], adatas[m], where=m)
        matrices[m] = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    _write(
        path,
        matrices["rna"],
        matrices["prot"],
        transforms["rna"]["features"],
        transforms["prot"]["features"],
        len(resolved.pairs),
        "cite_pbmc_inhouse: RNA ([10 linked | 3,000 HVG]) and 10 ADT, log-normalised",
    )
    return {
        "labels": labels,
        "proteins": list(measured.columns),
        "measured": measured.reset_index(drop=True),
    }


CASES = {"cite": cite}


# ---------------------------------------------------------------------------- scores
def score(outputs: dict, truth: dict) -> dict[str, float]:
    """FOSCTTM, label transfer (k = 20, 1-NN) and protein Pearson (``scmodal_cite.scores``)."""
    import pandas as pd

    from scmodal_cite import scores

    prediction = pd.DataFrame(outputs["prediction"], columns=truth["proteins"])
    return scores(
        outputs["z_rna"], outputs["z_prot"], truth["labels"], prediction, truth["measured"]
    )


# ---------------------------------------------------------------------------- scx side
def scx_options(parser) -> None:
    """The budget option both runners share (same name as ``run_scmodal.py``)."""
    parser.add_argument(
        "--train-steps", type=int, default=2000, help="training steps (reference: 10,000)"
    )


def run_scx(inputs: dict, args) -> tuple[dict, dict]:
    """``scx.tl.scmodal`` on the registered values (``preprocess=False``), then ``impute``."""
    import logging
    import warnings

    import anndata as ad
    import mudata
    import pandas as pd

    import scx

    warnings.simplefilter("ignore")
    for name in ("lightning", "lightning.pytorch", "scvi", "scx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    mudata.set_options(pull_on_update=False)
    genes, proteins = inputs["genes"].astype(str), inputs["proteins"].astype(str)
    n_linked = int(inputs["meta"]["n_linked"])
    rna = ad.AnnData(
        X=inputs["rna"],
        obs=pd.DataFrame(index=[f"rna_{i}" for i in range(inputs["rna"].shape[0])]),
        var=pd.DataFrame(index=genes),
    )
    prot = ad.AnnData(
        X=inputs["prot"],
        obs=pd.DataFrame(index=[f"prot_{i}" for i in range(inputs["prot"].shape[0])]),
        var=pd.DataFrame(index=proteins),
    )
    mdata = mudata.MuData({"rna": rna, "prot": prot})
    links = list(zip(genes[:n_linked], proteins[:n_linked], strict=True))
    steps = args.steps or args.train_steps
    model = scx.tl.scmodal(
        mdata,
        modalities=("rna", "prot"),
        links=links,
        preprocess=False,
        max_steps=steps,
        steps_per_epoch=math.gcd(steps, 100),
        batch_size=500,
        seed=args.seed,
        trainer_kwargs={"enable_progress_bar": False, "enable_model_summary": False},
    )
    # the generator, as the original's get_imputed_df (like for like); ``scores`` adds the kNN
    # average (scx's default imputation) for both sides' latents as ``pearson_knn30``
    scx.tl.impute(mdata, model, source="rna", target="prot", strategy="generator", to="obsm")
    prediction = mdata["rna"].obsm["scmodal_prot"][list(proteins)].to_numpy()
    arrays = {
        "z_rna": mdata["rna"].obsm["X_scmodal"],
        "z_prot": mdata["prot"].obsm["X_scmodal"],
        "prediction": prediction.astype(np.float32),
    }
    meta = {"steps": steps, "batch_size": 500, "n_linked": n_linked, "seed": args.seed}
    return arrays, meta
