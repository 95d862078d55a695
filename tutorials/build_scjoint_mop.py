"""Build (and with --execute, run) the scJoint tutorial notebook on MOp SNARE-seq2.

    python tutorials/build_scjoint_mop.py --execute

needs ``pip install nbformat nbclient ipykernel`` in the scx environment and the real data
(``SCX_DATA_DIR`` or ``../shared/data``).
"""

from _notebook import main

CELLS = [
    (
        "md",
        """# scJoint: transfer cell types from scRNA-seq to scATAC-seq

This tutorial integrates **unpaired** single-nucleus RNA-seq and ATAC-seq of the mouse primary
motor cortex (SNARE-seq2, BICCN) with `scx.tl.scjoint` and transfers the RNA cell-type labels to
the ATAC cells.

SNARE-seq2 measures both modalities in the same nuclei, so we can *hide* the pairing and check
the result: we split the nuclei at random into two halves, keep the RNA of one half (with its
labels) and the ATAC peaks of the other half (labels hidden), and score the transferred labels
against the hidden ones. At the end we run scJoint on all nuclei with the pairing hidden and
measure how close each nucleus's RNA and ATAC land in the joint embedding (FOSCTTM).

The data are very sparse (median 82 peaks per nucleus), so expect modest accuracies; the point is
the workflow and the comparison with the reference settings.""",
    ),
    (
        "code",
        """import warnings

import matplotlib.pyplot as plt
import mudata as md
import numpy as np
import pandas as pd
import scanpy as sc

import scx

# deprecation notices of scanpy, anndata and mudata; scx's own warnings stay visible
warnings.filterwarnings("ignore", category=FutureWarning, module="scanpy|anndata|mudata")
md.set_options(pull_on_update=False)
sc.set_figure_params(dpi=80, frameon=False)

DATA = scx.datasets.data_dir(default="../../shared/data")
assert DATA is not None, "set SCX_DATA_DIR to the folder with mop_snareseq2/"
mop = md.read_h5mu(DATA / "mop_snareseq2" / "mop_snareseq2.h5mu")
annotation = DATA / "annotations" / "genes_mm10_GRCm38_ensembl_MAESTRO.tsv.gz"
mop""",
    ),
    ("md", "## Unpaired halves\n\nRNA of one random half of the nuclei, ATAC peaks of the other."),
    (
        "code",
        """rng = np.random.default_rng(0)
perm = rng.permutation(mop.n_obs)
rna_cells, atac_cells = np.sort(perm[: mop.n_obs // 2]), np.sort(perm[mop.n_obs // 2 :])

rna = mop["rna"][rna_cells].copy()
rna.obs = rna.obs[["cell_type"]]
del rna.varm["gene_region"]
atac = mop["atac"][atac_cells].copy()
hidden_labels = atac.obs["cell_type"].astype(str)
atac.obs = pd.DataFrame(index=atac.obs_names)  # the model never sees these labels

mdata = md.MuData({"rna": rna, "atac": atac})
mdata""",
    ),
    (
        "md",
        """## Train scJoint

The ATAC modality holds peaks with coordinates (`var` columns `chrom`, `start`, `end`), so we
pass a gene annotation of the same genome build (mm10): `scx.tl.scjoint` turns peaks into gene
activity (gene body + 2 kb upstream, `scx.pp.gene_activity`), keeps the genes both modalities
share and trains the three scJoint stages. Every input is checked before training starts.""",
    ),
    (
        "code",
        """model = scx.tl.scjoint(
    mdata,
    modalities=("rna", "atac"),
    labels_key="cell_type",
    annotation=annotation,
    seed=0,
    trainer_kwargs={"enable_progress_bar": False},
)
model""",
    ),
    (
        "md",
        "The losses of both training stages; the dotted line marks the start of stage 3, which "
        "adds the ATAC pseudo-label cross-entropy and the center loss.",
    ),
    ("code", "scx.pl.history(model);"),
    (
        "md",
        """## Results in the MuData

`obsm["X_scjoint"]` holds the joint embedding of every cell, `obs["scjoint_label"]` and
`obs["scjoint_confidence"]` the transferred label of each ATAC cell and the fraction of its 30
nearest RNA cells that carry it. They chain straight into scanpy.""",
    ),
    (
        "code",
        """in_rna = np.ravel(mdata.obsm["rna"])
mdata.obs["modality"] = pd.Categorical(np.where(in_rna, "RNA", "ATAC"))
rna_labels = mdata["rna"].obs["cell_type"].astype(str)
mdata.obs["cell_type"] = pd.Categorical(rna_labels.reindex(mdata.obs_names))  # NaN for ATAC
sc.pp.neighbors(mdata, use_rep="X_scjoint")
sc.tl.umap(mdata)
sc.pl.umap(
    mdata,
    color=["modality", "cell_type", "scjoint_label", "scjoint_confidence"],
    ncols=2,
    wspace=0.5,
)""",
    ),
    ("md", "## How good are the transferred labels?\n\nWe score against the hidden ATAC labels."),
    (
        "code",
        """predicted = mdata["atac"].obs["scjoint_label"]
scores = scx.metrics.label_transfer_accuracy(hidden_labels, predicted)
scores""",
    ),
    (
        "code",
        """confusion = pd.crosstab(
    hidden_labels.rename("true"), predicted.astype(str).rename("predicted"), normalize="index"
)
fig, ax = plt.subplots(figsize=(7, 6))
im = ax.imshow(confusion.to_numpy(), cmap="Blues", vmin=0, vmax=1)
ax.set_xticks(range(confusion.shape[1]), confusion.columns, rotation=90)
ax.set_yticks(range(confusion.shape[0]), confusion.index)
ax.set_xlabel("predicted"), ax.set_ylabel("true (hidden)")
fig.colorbar(im, label="fraction of true class")
plt.show()""",
    ),
    (
        "md",
        """Confidence is informative: labels that most neighbours agree on are right more often.
`min_confidence=` in `scx.tl.scjoint` (or `model.predict`) labels the uncertain cells
`"unassigned"` instead.""",
    ),
    (
        "code",
        """confidence = mdata["atac"].obs["scjoint_confidence"]
correct = predicted.astype(str).to_numpy() == hidden_labels.to_numpy()
bins = pd.cut(confidence, [0, 0.4, 0.6, 0.8, 1.0])
pd.DataFrame(
    {
        "cells": bins.value_counts().sort_index(),
        "accuracy": pd.Series(correct).groupby(bins.to_numpy(), observed=True).mean(),
    }
)""",
    ),
    (
        "md",
        """## scx defaults vs the reference implementation

scx differs from the reference scJoint in four documented defaults (shared 30-component PCA of the
per-modality standardised input, per-modality latent normalisation, learned centres, filtered
pseudo-labels). `scx.scjoint.REFERENCE_SETTINGS` switches them back. A baseline CCA (Seurat-style,
30 components, same kNN transfer) is shown for scale; `benchmarks/mop_scjoint.py` runs the full
comparison with several seeds, scANVI, wall time and memory.""",
    ),
    (
        "code",
        """from scx.scjoint import REFERENCE_SETTINGS

reference_run = md.MuData({"rna": rna.copy(), "atac": atac.copy()})
scx.tl.scjoint(
    reference_run,
    labels_key="cell_type",
    annotation=annotation,
    seed=0,
    trainer_kwargs={"enable_progress_bar": False},
    **REFERENCE_SETTINGS,
)
reference_scores = scx.metrics.label_transfer_accuracy(
    hidden_labels, reference_run["atac"].obs["scjoint_label"]
)

# CCA baseline on the same gene activity
from sklearn.preprocessing import scale

activity = scx.pp.gene_activity(atac, annotation, genes=rna.var_names)
shared = activity.var_names[activity.var["n_peaks"] > 0]


def lognorm(X):
    X = X.toarray().astype(float)
    return scale(np.log1p(X / np.maximum(X.sum(1, keepdims=True), 1) * 1e4))


z_rna, z_atac = lognorm(rna[:, shared].X), lognorm(activity[:, shared].X)
q1, r1 = np.linalg.qr(z_rna)
q2, r2 = np.linalg.qr(z_atac)
a, _, bt = np.linalg.svd(r1 @ r2.T)
u, v = q1 @ a[:, :30], q2 @ bt.T[:, :30]
cca_rna = u / np.linalg.norm(u, axis=1, keepdims=True)
cca_atac = v / np.linalg.norm(v, axis=1, keepdims=True)
cca = md.MuData({"rna": rna.copy(), "atac": atac.copy()})
cca.obsm["X_cca"] = np.vstack([cca_rna, cca_atac])
scx.tl.transfer_labels(cca, labels_key="cell_type", use_rep="X_cca", reference="rna", query="atac")
cca_scores = scx.metrics.label_transfer_accuracy(hidden_labels, cca["atac"].obs["transfer_label"])

table = pd.DataFrame(
    {
        "scJoint (scx defaults)": scores,
        "scJoint (reference settings)": reference_scores,
        "CCA + kNN": cca_scores,
    }
).T.drop(columns="n_scored")
scx.pl.metrics_table(table, title="RNA → ATAC label transfer, MOp")
table""",
    ),
    (
        "md",
        """## How well are the same nuclei aligned?

Now scJoint gets *all* nuclei in both modalities, still without the pairing (the model only ever
sees two unpaired sets of cells). Since RNA and ATAC of a nucleus share its name, the embedding is
written per modality (`mdata["rna"].obsm`, `mdata["atac"].obsm`) with a warning. FOSCTTM is the
fraction of cells of the other modality that are closer than a nucleus's true partner: 0 is
perfect, 0.5 is random.""",
    ),
    (
        "code",
        """full = md.MuData({"rna": mop["rna"].copy(), "atac": mop["atac"].copy()})
full["atac"].obs = pd.DataFrame(index=full["atac"].obs_names)
full_model = scx.tl.scjoint(
    full,
    labels_key="cell_type",
    annotation=annotation,
    seed=0,
    trainer_kwargs={"enable_progress_bar": False},
)
fx, fy = scx.metrics.foscttm(
    full["rna"].obsm["X_scjoint"], full["atac"].obsm["X_scjoint"], per_cell=True
)
print(f"FOSCTTM: RNA → ATAC {fx.mean():.3f}, ATAC → RNA {fy.mean():.3f}")
per_type = pd.Series((fx + fy) / 2, index=mop.obs["cell_type"].astype(str)).groupby(level=0)
per_type.mean().sort_values()""",
    ),
    (
        "md",
        """## Save, reload, and label new ATAC cells

The model is an scvi-tools model: `save`/`load` keep the weights, the fitted input projection,
the label vocabulary and the training history. New ATAC cells (as gene activity over the model's
genes) are embedded and labelled with `predict`.""",
    ),
    (
        "code",
        """import tempfile

with tempfile.TemporaryDirectory() as tmp:
    model.save(f"{tmp}/scjoint_mop", save_anndata=True)
    reloaded = scx.model.SCJOINT.load(f"{tmp}/scjoint_mop")

new_cells = activity[:200, reloaded.adata["atac"].var_names].copy()
reloaded.predict(new_cells, modality="atac", min_confidence=0.5).head()""",
    ),
]


if __name__ == "__main__":
    main(CELLS, "scjoint_mop.ipynb", __doc__)
