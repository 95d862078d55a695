"""scJoint beside the original (SydneyBioX/scJoint): RNA → ATAC label transfer.

Quality cases (real data, ``SCX_DATA_DIR``)
-------------------------------------------
``mop``
    MOp SNARE-seq2 split at random (``numpy.random.default_rng(seed)``, as
    ``benchmarks/mop_scjoint.py`` with seed 0) into an RNA half with labels and an ATAC half
    whose labels are hidden. Both sides get the same matrices over the same genes: RNA counts of
    the RNA half, and gene activity of the ATAC half's peaks (``scx.pp.peak_gene_prior`` with the
    mm10 MAESTRO table: gene body + 2 kb upstream; the genes with at least one linked peak, as
    ``scx.tl.scjoint`` keeps when it is given ``annotation=``). scx runs with
    ``**scx.scjoint.REFERENCE_SETTINGS`` (the like-for-like row).
The same inputs also go to scx with its own defaults (shared PCA input, per-modality latent
normalisation, learned centres, filtered pseudo-labels): the extra scx side ``scx defaults``
(``QUALITY_OPTIONS``, ``--settings defaults``), run beside the like-for-like row.

Scores (the same ``scx.metrics`` code for both sides): accuracy, macro-F1 and balanced accuracy
of the ATAC half's transferred labels (``label_transfer_accuracy``, types absent from the RNA
half not scored), and FOSCTTM between the ATAC half's ATAC embedding and the embedding of the
same nuclei's RNA profiles. The split hides the pairing from training, but SNARE-seq2 is paired,
so after training each side embeds the ATAC half's RNA counts (``atac_rna_X``, never seen in
training) with its RNA-side encoder and the true pairs are known.

Speed
-----
10k RNA + 10k ATAC cells × 2,000 genes (``scx.datasets.synthetic_multiome``, seed 0), batch 256,
stage 1 only. One training step of the original is two SGD steps (encoder, classifier:
``StepTimer(2)``); scx's is one SGD step over both (``SCX_OPTIMIZERS_PER_STEP = 1``). The scx
side runs ``REFERENCE_SETTINGS`` here, so both compute the same network on the same binarised
genes.

Budgets
-------
The original trains stage 1 and stage 3 for ``epochs`` epochs each (20, the reference default)
of ⌊ATAC cells / 256⌋ steps, with lr 0.01 (both stages), momentum 0.9, lr decay ×0.1 every 20
epochs, p 0.8, center weight 1, kNN k = 30 on L2-normalised embeddings. scx gets
``max_epochs=epochs`` (stage 3 as long as stage 1), ``batch_size=256``, lr 0.01, and its default
``steps_per_epoch`` = ⌊query cells / 256⌋, i.e. the same number of SGD updates of the same
size. For speed runs (``--steps N``) the original stops after N stage-1 steps (``StopTraining``)
and scx trains one stage-1 epoch of N steps (``steps_per_epoch=N``, ``stage3_epochs=0``).
Both use the seed given by the harness; both run on the CPU unless the options say otherwise
(original ``device``, scx ``accelerator``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import anndata as ad
import harness
import mudata
import numpy as np
import pandas as pd

import scx

PEER = "scjoint"
SCX_OPTIMIZERS_PER_STEP = 1

SPEED_DESCRIPTION = "10k + 10k cells × 2,000 genes, batch 256 (stage 1, reference settings)"
SPEED_STEPS = 60
SPEED_OPTIONS = {"original": {}, "scx": {"settings": "reference"}}
QUALITY_OPTIONS = {
    "original": {},
    "scx": {"settings": "reference"},
    "scx defaults": {"settings": "defaults"},
}

#: Gene table of the MOp case (the one ``benchmarks/mop_scjoint.py`` uses).
ANNOTATION = "annotations/genes_mm10_GRCm38_ensembl_MAESTRO.tsv.gz"


# ---------------------------------------------------------------------------- inputs
def speed_inputs(path: Path) -> Path:
    """Generated RNA counts and ATAC gene activity: 10k + 10k cells × 2,000 genes."""

    mdata = scx.datasets.synthetic_multiome(
        10_000, 10_000, 2_000, n_types=10, atac_features="gene_activity", seed=0
    )
    rna, atac = mdata["rna"], mdata["atac"]
    return harness.write_inputs(
        path,
        {"case": "speed", "scx_settings": "reference"},
        rna_X=rna.X,
        rna_labels=np.asarray(rna.obs["cell_type"], dtype=str),
        atac_X=atac.X,
        genes=np.asarray(rna.var_names, dtype=str),
    )


def _mop_case(path: Path, seed: int, scx_settings: str) -> dict:
    """MOp split into a labelled RNA half and an ATAC half (gene activity), as mop_scjoint.py."""
    from scipy import sparse

    from _common import find_data_dir

    mudata.set_options(pull_on_update=False)
    data = find_data_dir()
    mdata = mudata.read_h5mu(data / "mop_snareseq2" / "mop_snareseq2.h5mu")
    perm = np.random.default_rng(seed).permutation(mdata.n_obs)
    half = mdata.n_obs // 2
    rna_idx, atac_idx = np.sort(perm[:half]), np.sort(perm[half:])
    rna = mdata["rna"][rna_idx]
    atac = mdata["atac"][atac_idx]
    # the genes and gene activity scx.tl.scjoint computes from peaks with `annotation=`
    links = scx.pp.peak_gene_prior(atac, rna.var_names, data / ANNOTATION)
    has_peaks = np.diff(links.indptr) > 0
    genes = rna.var_names[has_peaks]
    activity = sparse.csr_matrix(atac.X, dtype=np.float32) @ links[has_peaks].T.tocsc()
    rna_labels = np.asarray(rna.obs["cell_type"], dtype=str)
    truth = mdata["rna"].obs["cell_type"].astype(str).to_numpy()[atac_idx]
    harness.write_inputs(
        path,
        {"case": "mop", "seed": seed, "scx_settings": scx_settings},
        rna_X=rna[:, genes].X,
        rna_labels=rna_labels,
        atac_X=activity,
        # the ATAC half's own RNA profiles: embedded after training, only for FOSCTTM
        atac_rna_X=mdata["rna"][atac_idx][:, genes].X,
        genes=np.asarray(genes, dtype=str),
    )
    return {"atac_labels": truth, "reference_labels": sorted(set(rna_labels))}


CASES = {"mop": partial(_mop_case, scx_settings="reference")}


# ---------------------------------------------------------------------------- scores
def score(outputs: dict, truth: dict) -> dict[str, float]:
    """Label transfer (accuracy, macro-F1, balanced accuracy) and FOSCTTM of the true pairs."""

    scores = scx.metrics.label_transfer_accuracy(
        truth["atac_labels"], outputs["atac_label"], reference_labels=truth["reference_labels"]
    )
    result = {
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "balanced_accuracy": scores["balanced_accuracy"],
    }
    if "atac_rna_embedding" in outputs:
        result["foscttm"] = scx.metrics.foscttm(
            outputs["atac_rna_embedding"], outputs["atac_embedding"]
        )
    return result


# ---------------------------------------------------------------------------- scx side
def scx_options(parser) -> None:
    """Options of the scx side (``run_scx.py --method scjoint``)."""
    parser.add_argument(
        "--settings",
        choices=["reference", "defaults"],
        default=None,
        help="scx variant: REFERENCE_SETTINGS or scx's defaults (default: the inputs' case)",
    )
    parser.add_argument("--epochs", type=int, default=20, help="epochs of stage 1 and of stage 3")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--accelerator", default="cpu")


def _adata(X, genes, prefix: str, labels=None):

    obs = pd.DataFrame(index=[f"{prefix}{i}" for i in range(X.shape[0])])
    if labels is not None:
        obs["cell_type"] = pd.Categorical(labels)
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes))


def run_scx(inputs: dict, args) -> tuple[dict, dict]:
    """``scx.tl.scjoint`` on the harness inputs (gene-level RNA and ATAC over the same genes)."""
    import logging
    import warnings

    import _runner_common as common

    warnings.simplefilter("ignore")
    for name in ("lightning", "lightning.pytorch", "scvi", "scx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    mudata.set_options(pull_on_update=False)

    variant = args.settings or inputs["meta"].get("scx_settings", "reference")
    settings = dict(scx.scjoint.REFERENCE_SETTINGS) if variant == "reference" else {}
    genes = [str(g) for g in inputs["genes"]]
    rna = _adata(common.csr(inputs, "rna_X"), genes, "rna", inputs["rna_labels"])
    atac = _adata(common.csr(inputs, "atac_X"), genes, "atac")
    mdata = mudata.MuData({"rna": rna, "atac": atac})
    if args.steps is None:
        budget = {"max_epochs": args.epochs}
    else:  # speed: exactly `steps` stage-1 steps, no stage 3
        budget = {"max_steps": args.steps, "steps_per_epoch": args.steps, "stage3_epochs": 0}
    model = scx.tl.scjoint(
        mdata,
        modalities=("rna", "atac"),
        labels_key="cell_type",
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        accelerator=args.accelerator,
        trainer_kwargs={"enable_progress_bar": False, "enable_model_summary": False},
        **settings,
        **budget,
    )
    arrays = {
        "atac_label": mdata["atac"].obs["scjoint_label"].astype(str).to_numpy().astype(str),
        "rna_embedding": model.get_latent_representation(modality="rna"),
        "atac_embedding": model.get_latent_representation(modality="atac"),
    }
    if "atac_rna_X_data" in inputs:
        held = _adata(common.csr(inputs, "atac_rna_X"), genes, "held")
        arrays["atac_rna_embedding"] = model.get_latent_representation(held, modality="rna")
    meta = {
        "variant": variant,
        "settings": settings,
        "budget": budget,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "n_genes": len(genes),
        "params": {k: _plain(v) for k, v in dict(mdata.uns["scjoint"]["params"]).items()},
    }
    return arrays, meta


def _plain(value):
    """A JSON-friendly copy of a recorded parameter."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)
