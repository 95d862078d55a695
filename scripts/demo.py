"""scx demo: integrate unpaired scRNA-seq and scATAC-seq with scJoint and plot the result.

Uses the mouse motor cortex SNARE-seq2 data (``mop_snareseq2/mop_snareseq2.h5mu`` under
``$SCX_DATA_DIR``, by default ``../shared/data`` next to the repository) when it is there: a
random half of the cells (seed 0) is the labelled RNA side, the other half the ATAC side (peaks,
labels hidden and kept aside for scoring), so no cell is seen in both modalities. Without the
data, or with ``--synthetic``, generated RNA + ATAC-peak data are used instead.

Writes to ``--out`` (default ``results/demo``):

* ``scjoint_demo.h5mu``: the MuData with ``obsm['X_scjoint']``, ``obs['scjoint_label']``,
  ``obs['scjoint_confidence']``, ``obs['modality']`` (written by the tool) and the UMAP;
* ``scjoint_umap.png``: UMAP of the joint embedding, coloured by modality and predicted label;
* ``scjoint_history.png``: the training losses of both scJoint stages.

Run ``python scripts/demo.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import mudata
import numpy as np
import pandas as pd
import scanpy as sc
from mudata import MuData

import scx

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"
MOP_FILE = Path("mop_snareseq2") / "mop_snareseq2.h5mu"
MOP_ANNOTATION = Path("annotations") / "genes_mm10_GRCm38_ensembl_MAESTRO.tsv.gz"
LABEL_COLUMNS = ("cell_type", "cell_type_fine")

logger = logging.getLogger("scx.demo")


def load_mop(data: Path, seed: int = 0) -> tuple[MuData, pd.Series, Path]:
    """MOp split into unpaired halves: RNA (labelled) and ATAC peaks (labels hidden)."""
    paired = mudata.read_h5mu(data / MOP_FILE)
    n = paired.mod["rna"].n_obs
    perm = np.random.default_rng(seed).permutation(n)
    rna_rows, atac_rows = np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])
    rna = paired.mod["rna"][rna_rows].copy()
    atac = paired.mod["atac"][atac_rows].copy()
    truth = atac.obs["cell_type"].astype(str)
    atac.obs = atac.obs.drop(columns=[c for c in LABEL_COLUMNS if c in atac.obs])
    return MuData({"rna": rna, "atac": atac}), truth, data / MOP_ANNOTATION


def load_synthetic(seed: int = 0) -> tuple[MuData, pd.Series, pd.DataFrame]:
    """Generated unpaired RNA + ATAC peaks with planted cell types (ATAC labels hidden)."""
    generated = scx.datasets.synthetic_multiome(
        n_rna=800, n_atac=800, n_genes=300, n_types=5, atac_features="peaks", seed=seed
    )
    rna, atac = generated.mod["rna"].copy(), generated.mod["atac"].copy()
    truth = atac.obs["cell_type"].astype(str)
    atac.obs = atac.obs.drop(columns=["cell_type"])
    annotation = atac.uns["gene_annotation"]
    return MuData({"rna": rna, "atac": atac}), truth, annotation


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--synthetic", action="store_true", help="use generated data even if real data exist"
    )
    parser.add_argument(
        "--epochs", type=int, default=20, help="epochs of each scJoint stage (default: 20)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "results" / "demo", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for training (default: 1, the fastest for this small model and "
        "safe on a shared machine)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    mudata.set_options(pull_on_update=False)
    scx.settings.num_threads = args.threads
    scx.settings.verbosity = "info"
    logger.info("Training with %d torch thread(s) (scx.settings.num_threads).", args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    data = None if args.synthetic else scx.datasets.data_dir(default=DEFAULT_DATA_DIR)
    if data is not None and (data / MOP_FILE).is_file():
        mdata, truth, annotation = load_mop(data, seed=args.seed)
        source = f"MOp SNARE-seq2 from {data / MOP_FILE} (unpaired halves)"
    else:
        if not args.synthetic:
            logger.info("No real data found (set SCX_DATA_DIR); using generated data.")
        mdata, truth, annotation = load_synthetic(seed=args.seed)
        source = "generated data (scx.datasets.synthetic_multiome, ATAC as peaks)"
    logger.info(
        "Data: %s: %d RNA cells × %d genes, %d ATAC cells × %d peaks.",
        source,
        mdata["rna"].n_obs,
        mdata["rna"].n_vars,
        mdata["atac"].n_obs,
        mdata["atac"].n_vars,
    )

    start = time.perf_counter()
    model = scx.tl.scjoint(
        mdata,
        modalities=("rna", "atac"),
        labels_key="cell_type",
        annotation=annotation,
        max_epochs=args.epochs,
        seed=args.seed,
    )
    logger.info("scJoint trained in %.1f s.", time.perf_counter() - start)

    predicted = mdata["atac"].obs["scjoint_label"]
    scores = scx.metrics.label_transfer_accuracy(
        truth.loc[predicted.index],
        predicted,
        reference_labels=mdata["rna"].obs["cell_type"].astype(str).unique(),
    )
    logger.info(
        "ATAC label transfer: accuracy %.3f, macro-F1 %.3f (%d cells scored).",
        scores["accuracy"],
        scores["macro_f1"],
        scores["n_scored"],
    )

    sc.pp.neighbors(mdata, use_rep="X_scjoint", random_state=args.seed)
    sc.tl.umap(mdata, random_state=args.seed)
    umap_png = out / "scjoint_umap.png"
    axes = sc.pl.umap(mdata, color=["modality", "scjoint_label"], show=False)
    axes[0].figure.savefig(umap_png, dpi=120, bbox_inches="tight")
    plt.close("all")

    history_png = out / "scjoint_history.png"
    axes = scx.pl.history(model)
    axes.ravel()[0].figure.savefig(history_png, dpi=120, bbox_inches="tight")
    plt.close("all")

    h5mu = out / "scjoint_demo.h5mu"
    mdata.write(h5mu)
    for path in (h5mu, umap_png, history_png):
        logger.info("Wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
