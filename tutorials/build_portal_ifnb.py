"""Build (and with --execute, run) the Portal tutorial notebook on Kang 2018 IFN-β PBMC.

    python tutorials/build_portal_ifnb.py --execute

needs ``pip install nbformat nbclient ipykernel`` and the bench extra (harmonypy, scib-metrics)
in the scx environment, and the real data (``SCX_DATA_DIR`` or ``../shared/data``).
"""

from _notebook import main

CELLS = [
    (
        "md",
        """# Portal: integrate control and IFN-β-stimulated PBMC

This tutorial integrates two batches of the same tissue with `scx.tl.portal`, scx's
implementation of Portal (Zhao et al., *Nat Comput Sci* 2022): adversarial domain translation
between datasets, with discriminators that stop pushing cells they are sure belong to one
dataset only.

The data are 2,000 PBMC from Kang et al. 2018 (1,000 control, 1,000 stimulated with IFN-β for
6 h; the subset used in Seurat's integration vignette). Stimulation changes the expression of
hundreds of interferon-response genes in every cell type, so without integration the two
batches separate. We run Portal, look at UMAPs before and after, score mixing and cell-type
conservation next to Harmony, check that a population present in one batch only is not forced
onto the other, and translate stimulated cells into the control expression space.""",
    ),
    (
        "code",
        """import warnings

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc

import scx

# deprecation notices of scanpy, anndata and mudata; scx's own warnings stay visible
warnings.filterwarnings("ignore", category=FutureWarning, module="scanpy|anndata|mudata")
sc.set_figure_params(dpi=80, frameon=False)

DATA = scx.datasets.data_dir(default="../../shared/data")
assert DATA is not None, "set SCX_DATA_DIR to the folder with ifnb_kang2018_sub/"
adata = ad.read_h5ad(DATA / "ifnb_kang2018_sub" / "ifnb_sub.h5ad")
adata.obs["batch"] = adata.obs["batch"].astype("category")
adata""",
    ),
    (
        "md",
        """`X` holds raw counts and `obs["batch"]` the condition. The cell-type labels
(`obs["cell_type"]`) are only used to score the result; Portal never sees them.

## Before integration

Portal's preprocessing is available on its own as `scx.pp.joint_pca`: highly variable genes
selected in each batch and intersected, per-batch library-size normalisation, log1p and
standardisation, and one 30-component PCA fitted on all cells. This is the space Portal starts
from, and the fair "unintegrated" baseline.""",
    ),
    (
        "code",
        """names = list(adata.obs["batch"].cat.categories)
batches = adata.obs["batch"].to_numpy()
pca = scx.pp.joint_pca({b: adata[batches == b] for b in names})
adata.obsm["X_joint_pca"] = np.zeros((adata.n_obs, 30), dtype=np.float32)
for b in names:
    adata.obsm["X_joint_pca"][batches == b] = pca.embeddings[b]
print(f"{len(pca.genes)} shared highly variable genes")

sc.pp.neighbors(adata, use_rep="X_joint_pca", key_added="unintegrated")
sc.tl.umap(adata, neighbors_key="unintegrated")
adata.obsm["X_umap_unintegrated"] = adata.obsm["X_umap"].copy()
sc.pl.embedding(adata, "X_umap_unintegrated", color=["batch", "cell_type"], wspace=0.4)""",
    ),
    (
        "md",
        """## Run Portal

One call preprocesses the counts as above, trains the encoders, generators and
discriminators (1,000 steps, the reference's rule for fewer than 20,000 cells; about a minute on
2 CPU cores) and writes the results. `CTRL`, the first batch, is the reference space the other
batch is translated into. Every input is checked before training, and nothing is written
unless training succeeds.""",
    ),
    (
        "code",
        """model = scx.tl.portal(
    adata, batch_key="batch", seed=0, trainer_kwargs={"enable_progress_bar": False}
)
model""",
    ),
    (
        "md",
        """The losses per 100 steps: discriminator, adversarial (generator side), autoencoder
reconstruction, latent-cycle alignment and cosine similarity between a cell and its
translation.""",
    ),
    ("code", "scx.pl.history(model);"),
    (
        "md",
        """## Results in the AnnData

* `obsm["X_portal"]`: the 20-dimensional harmonised latent of every cell;
* `obs["portal_boundary_score"]`: for every stimulated cell, the control discriminator's
  clamped score of its translation (−5 = "surely unlike any control cell"; NaN for the
  reference batch);
* `uns["portal"]["params"]`: every setting.

They chain into scanpy.""",
    ),
    (
        "code",
        """# scanpy's `key_added` names an `.uns` entry too: not "portal", which holds scx's record
sc.pp.neighbors(adata, use_rep="X_portal", key_added="portal_neighbors")
sc.tl.umap(adata, neighbors_key="portal_neighbors")
adata.obsm["X_umap_portal"] = adata.obsm["X_umap"].copy()
fig, axes = plt.subplots(2, 2, figsize=(11, 9))
for row, basis in enumerate(["X_umap_unintegrated", "X_umap_portal"]):
    for col, key in enumerate(["batch", "cell_type"]):
        sc.pl.embedding(
            adata, basis, color=key, ax=axes[row, col], show=False, title=f"{basis[7:]}: {key}"
        )
plt.tight_layout()""",
    ),
    ("code", 'adata.uns["portal"]["params"]'),
    (
        "md",
        """## Scores

Batch mixing (iLISI, kBET) and cell-type conservation (silhouette of the labels, and kNN label
transfer from the control cells to the stimulated cells with k = 20) of the unintegrated joint
PCA, Harmony on the same PCA, and Portal. These use scib-metrics through `scx.metrics` (the
`bench` extra).""",
    ),
    (
        "code",
        """import harmonypy

harmony = harmonypy.run_harmony(
    adata.obsm["X_joint_pca"], adata.obs, ["batch"], random_state=0, verbose=False
)
Z = np.asarray(harmony.Z_corr)
adata.obsm["X_harmony"] = Z.T if Z.shape[0] != adata.n_obs else Z

labels = adata.obs["cell_type"].astype(str).to_numpy()
rows = {}
embeddings = [("unintegrated", "X_joint_pca"), ("Harmony", "X_harmony"), ("Portal", "X_portal")]
for name, key in embeddings:
    z = adata.obsm[key]
    scx.tl.transfer_labels(
        adata,
        labels_key="cell_type",
        use_rep=key,
        reference=("batch", "CTRL"),
        n_neighbors=20,
        key_added="transfer",
    )
    stim = batches == "STIM"
    predicted = adata.obs["transfer_label"].astype(str).to_numpy()
    rows[name] = {
        "iLISI": scx.metrics.ilisi(z, batches),
        "kBET": scx.metrics.kbet(z, batches),
        "cell-type ASW": scx.metrics.silhouette_label(z, labels),
        "kNN transfer accuracy": np.mean(predicted[stim] == labels[stim]),
    }
scores = pd.DataFrame(rows).T
scores["batch"] = scores[["iLISI", "kBET"]].mean(axis=1)
scores["bio"] = scores[["cell-type ASW", "kNN transfer accuracy"]].mean(axis=1)
scores["overall"] = scores[["batch", "bio"]].mean(axis=1)
scx.pl.metrics_table(scores)
scores.round(3)""",
    ),
    (
        "md",
        """Portal removes most of the stimulation effect while keeping the cell types apart.
`benchmarks/portal_integration.py` compares it with Harmony, scVI and the original Portal over
several seeds (see `docs/benchmarks.md`): on this dataset scx Portal and Harmony score about
the same. Portal is a GAN whose weights circle around a balance point during training; scx
returns their average over the last ~100 steps (`ema_decay=0.99`), which mixes the batches
better and varies far less from seed to seed than the last step's weights the original keeps
(`ema_decay=None`).

## A population present in one batch only

Portal's discriminators are clamped at ±5: once a discriminator is sure that a translated cell is
unlike every cell of the other batch, that cell stops receiving an adversarial push. This is
how Portal avoids forcing batch-specific cell types onto something else. We remove the B cells
(B and activated B) from the control batch and integrate again: the stimulated B cells now
exist in one batch only.""",
    ),
    (
        "code",
        """b_lineage = adata.obs["cell_type"].isin(["B", "B Activated"]).to_numpy()
partial = adata[~(b_lineage & (batches == "CTRL"))].copy()
scx.tl.portal(partial, batch_key="batch", seed=0, trainer_kwargs={"enable_progress_bar": False})

only = partial.obs["cell_type"].isin(["B", "B Activated"]).to_numpy()
from scx._neighbors import knn

index, _ = knn(partial.obsm["X_portal"], partial.obsm["X_portal"][only], 21)
ctrl_neighbours = (partial.obs["batch"].to_numpy()[index[:, 1:]] == "CTRL").mean()
print(f"control cells among the 20 neighbours of stimulated B cells: {ctrl_neighbours:.3f}")
score = partial.obs["portal_boundary_score"]
groups = np.where(only, "B lineage (STIM only)", "other STIM cells")
print(score.groupby(groups).describe().round(2))

sc.pp.neighbors(partial, use_rep="X_portal")
sc.tl.umap(partial)
sc.pl.umap(partial, color=["batch", "cell_type", "portal_boundary_score"], wspace=0.45)""",
    ),
    (
        "md",
        """The stimulated B cells keep a neighbourhood of their own instead of being pulled onto
control cells of another type.

## Translate stimulated cells into the control expression space

Portal's generators map cells of one dataset into another dataset's space. Because scx keeps
the joint PCA (loadings, per-batch means and scales) with the model,
`model.get_translated_expression` returns translated cells as log-normalised expression of
the highly variable genes. A stimulated cell translated into the control space should lose its
interferon response: here for the classic interferon-stimulated genes *ISG15*, *IFI6* and *IFIT3*,
those of them among the highly variable genes.""",
    ),
    (
        "code",
        """translated = model.get_translated_expression("STIM", "CTRL")
norm = scx.pp.log_normalize(adata.X)
genes = [g for g in ["ISG15", "IFI6", "IFIT3"] if g in translated.columns]
observed = pd.DataFrame(norm[:, adata.var_names.get_indexer(genes)].toarray(), columns=genes)
table = pd.DataFrame(
    {
        "CTRL (observed)": observed[batches == "CTRL"].mean(),
        "STIM (observed)": observed[batches == "STIM"].mean(),
        "STIM → CTRL (translated)": translated[genes].mean(),
    }
)
table.round(2)""",
    ),
    (
        "md",
        """## Save and load

The model (encoders, generators, discriminators and the joint-PCA transform of each batch)
saves and loads like any scvi-tools model. Loading onto the AnnData you hold rebuilds the
model's inputs from its counts with the stored transform (the AnnData is left unchanged), and
new cells given as counts are embedded the same way.""",
    ),
    (
        "code",
        """import tempfile

with tempfile.TemporaryDirectory() as tmp:
    model.save(tmp, overwrite=True)
    loaded = scx.model.PORTAL.load(tmp, adata=adata)
z, z_loaded = model.get_latent_representation(), loaded.get_latent_representation()
print(max(np.abs(z[b] - z_loaded[b]).max() for b in z))
new_cells = adata[batches == "STIM"][:100]
loaded.get_latent_representation(new_cells, modality="STIM").shape""",
    ),
]


if __name__ == "__main__":
    main(CELLS, "portal_ifnb.ipynb", __doc__)
