"""Build (and with --execute, run) the scMODAL tutorial notebook on in-house CITE-seq PBMC.

    python tutorials/build_scmodal_cite.py --execute

needs ``pip install nbformat nbclient ipykernel`` in the scx environment and the real data
(``SCX_DATA_DIR`` or ``../shared/data``).
"""

from _notebook import main

CELLS = [
    (
        "md",
        """# scMODAL: align RNA and surface protein through ten linked features

This tutorial aligns single-cell RNA with surface-protein (ADT) measurements with
`scx.tl.scmodal`, scx's implementation of scMODAL (Wang et al., *Nat Commun* 2025): encoders
and generators per modality, a discriminator in the shared latent space, and anchors — mutual
nearest neighbours found in every mini-batch on a few **linked features** (protein → gene
pairs such as CD19 ↔ *CD19*).

The data are 1,372 PBMC measured by CITE-seq (RNA and 10 antibodies in the same cells). We
**hide the pairing**: the two modalities get different cell names and scMODAL treats them as two
unpaired datasets. The pairing and the cell-type labels only score the result: how close each
cell's RNA and protein land in the shared space (FOSCTTM), how well RNA labels transfer to the
protein cells, and how well scMODAL's **imputed protein** of each RNA cell matches the
protein actually measured in that cell.""",
    ),
    (
        "code",
        """import logging
import warnings

import matplotlib.pyplot as plt
import mudata as md
import numpy as np
import pandas as pd
import scanpy as sc
import torch

import scx
from scx._neighbors import knn, knn_transfer

# deprecation notices of scanpy, anndata and mudata; scx's own warnings stay visible
warnings.filterwarnings("ignore", category=FutureWarning, module="scanpy|anndata|mudata")
# CD4, CD14 and CD19 name a protein and a gene: mudata says so at every update of the MuData
warnings.filterwarnings("ignore", message="Cannot join columns with the same name")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
sc.set_figure_params(dpi=80, frameon=False)
torch.set_num_threads(1)  # small networks on a shared 2-core machine

DATA = scx.datasets.data_dir(default="../../shared/data")
assert DATA is not None, "set SCX_DATA_DIR to the folder with cite_pbmc_inhouse/"
paired = md.read_h5mu(DATA / "cite_pbmc_inhouse" / "cite_pbmc_inhouse.h5mu")
rna, prot = paired["rna"].copy(), paired["prot"].copy()
labels = rna.obs["cell_type"].astype(str).to_numpy()  # scoring only
# hide the pairing: distinct cell names per modality
rna.obs_names = [f"rna_{c}" for c in rna.obs_names]
prot.obs_names = [f"prot_{c}" for c in prot.obs_names]
mdata = md.MuData({"rna": rna, "prot": prot})
mdata""",
    ),
    (
        "md",
        """Both modalities hold raw counts. The links are the ten protein → gene pairs of the
antibody panel; a dict in the protein → gene direction is fine (scx finds the orientation and
checks every name against both modalities).""",
    ),
    (
        "code",
        """links = {
    "CD3": "CD3E",
    "CD56": "NCAM1",
    "CD11c": "ITGAX",
    "CD8a": "CD8A",
    "CD16": "FCGR3A",
    "CD127": "IL7R",
    "CD154": "CD40LG",
    "CD4": "CD4",
    "CD19": "CD19",
    "CD14": "CD14",
}
# a misspelt name is an error that lists it, before any training:
try:
    scx.tl.scmodal(mdata, modalities=("rna", "prot"), links={**links, "CD20": "MS4A1x"})
except ValueError as err:
    print(err)""",
    ),
    (
        "md",
        """## Train

`scx.tl.scmodal` preprocesses the counts as the reference does (linked features of both
modalities normalised to one library size and log1p; 3,000 highly variable genes beyond the
links), then trains. The reference trains 10,000 steps; on this shared 2-core CPU the tutorial
uses 1,000 (the benchmark in `benchmarks/scmodal_cite.py` uses 2,000).""",
    ),
    (
        "code",
        """STEPS = 1000
model = scx.tl.scmodal(
    mdata,
    modalities=("rna", "prot"),
    links=links,
    max_steps=STEPS,
    seed=0,
    trainer_kwargs={"enable_progress_bar": False, "enable_model_summary": False},
)
record = mdata.uns["scmodal"]
{
    **{k: record[k] for k in ["n_links_given", "n_links_used", "n_features"]},
    "max_steps": record["params"]["max_steps"],
}""",
    ),
    (
        "code",
        """scx.pl.history(model, keys=["mnn", "geo", "ae", "gan"]);""",
    ),
    (
        "md",
        """## The shared space

One UMAP of the RNA and protein cells together, coloured by modality and by the (hidden)
cell type.""",
    ),
    (
        "code",
        """joint = sc.AnnData(
    np.vstack([mdata["rna"].obsm["X_scmodal"], mdata["prot"].obsm["X_scmodal"]]),
    obs=pd.DataFrame(
        {
            "modality": np.repeat(["RNA", "protein"], [rna.n_obs, prot.n_obs]),
            "cell_type": np.concatenate([labels, labels]),
        },
        index=[*mdata["rna"].obs_names, *mdata["prot"].obs_names],
    ),
)
sc.pp.neighbors(joint, use_rep="X", random_state=0)
sc.tl.umap(joint, random_state=0)
sc.pl.umap(joint, color=["modality", "cell_type"], wspace=0.4)""",
    ),
    (
        "md",
        """## Scores, next to the linked features alone

The baseline uses only the linked features: the ten linked genes (log-normalised, z-scored)
against the ten proteins (same) as the shared space, and each linked gene's expression as
the prediction of its protein — raw, and averaged over each cell's 15 nearest RNA neighbours.
Label transfer is kNN (k = 20) from RNA to protein cells, cells labelled "unknown" excluded.""",
    ),
    (
        "code",
        """from scipy import sparse

from scx.scmodal import MIN_LINKED_TARGET


def _normalize_log(X, target_sum):
    return scx.pp.log_normalize(sparse.csr_matrix(X, dtype=np.float32), target_sum)


proteins = list(links)
genes_linked = rna[:, [links[p] for p in proteins]].X
target = max(float(np.median(np.asarray(genes_linked.sum(axis=1)).ravel())), MIN_LINKED_TARGET)
rna_linked = _normalize_log(genes_linked, target).toarray()
measured = pd.DataFrame(
    _normalize_log(prot[:, proteins].X, target).toarray(), columns=proteins
)  # model-input scale

rna_log = rna.copy()
sc.pp.normalize_total(rna_log)
sc.pp.log1p(rna_log)
sc.pp.highly_variable_genes(rna_log, n_top_genes=2000)
sc.pp.pca(rna_log, n_comps=30, mask_var="highly_variable", random_state=0)
neighbours, _ = knn(rna_log.obsm["X_pca"], rna_log.obsm["X_pca"], 15)
smoothed = rna_linked[neighbours].mean(axis=1)


def zscore(x):
    return (x - x.mean(0)) / np.maximum(x.std(0), 1e-8)


scx.tl.impute(mdata, model, source="rna", target="prot")
imputed = mdata["prot_from_rna"].to_df()[proteins].reset_index(drop=True)
decoded = model.get_imputed("rna", "prot", strategy="generator")[proteins].reset_index(drop=True)
keep = labels != "unknown"


def score(z_rna, z_prot, prediction):
    pred, _, _ = knn_transfer(z_rna[keep], labels[keep], z_prot, n_neighbors=20)
    acc = scx.metrics.label_transfer_accuracy(labels, pred, exclude=["unknown"])
    r = [np.corrcoef(prediction[:, j], measured.iloc[:, j])[0, 1] for j in range(len(proteins))]
    return {
        "FOSCTTM": scx.metrics.foscttm(z_rna, z_prot),
        "label transfer (k=20)": acc["accuracy"],
        "macro-F1": acc["macro_f1"],
        "protein Pearson (mean)": float(np.mean(r)),
    }


table = pd.DataFrame(
    {
        "linked features": score(zscore(rna_linked), zscore(measured.to_numpy()), rna_linked),
        "linked, 15-NN smoothed": score(zscore(smoothed), zscore(measured.to_numpy()), smoothed),
        f"scMODAL ({STEPS} steps)": score(
            mdata["rna"].obsm["X_scmodal"], mdata["prot"].obsm["X_scmodal"], imputed.to_numpy()
        ),
        f"scMODAL ({STEPS} steps), generator imputation": score(
            mdata["rna"].obsm["X_scmodal"], mdata["prot"].obsm["X_scmodal"], decoded.to_numpy()
        ),
    }
).T
table.round(3)""",
    ),
    (
        "md",
        """## Imputed vs measured protein

`scx.tl.impute` gives every RNA cell the mean measured protein of its 30 nearest protein cells
in the shared latent (`strategy="generator"` decodes the cell with the protein generator instead,
the reference's imputation: the last row of the table above). It wrote the prediction as a new
modality `prot_from_rna` (RNA cells × proteins, on the log-normalised scale of the model
input). Each panel compares, for one marker, the prediction for each RNA cell with the protein
measured in the same cell (hidden from the model).""",
    ),
    (
        "code",
        """print(mdata["prot_from_rna"])
fig, axes = plt.subplots(2, 5, figsize=(16, 6.5))
for ax, p in zip(axes.ravel(), proteins):
    r = np.corrcoef(imputed[p], measured[p])[0, 1]
    ax.scatter(measured[p], imputed[p], s=3, alpha=0.4, c="tab:blue")
    ax.set_title(f"{p}  r = {r:.2f}")
    ax.set_xlabel("measured")
    ax.set_ylabel("imputed from RNA")
fig.tight_layout()""",
    ),
    (
        "code",
        """markers = ["CD19", "CD14", "CD8a", "CD16"]
view = sc.AnnData(
    np.hstack([imputed[markers].to_numpy(), measured[markers].to_numpy()]),
    obs=pd.DataFrame({"cell_type": labels}, index=mdata["rna"].obs_names),
)
view.var_names = [f"{p} imputed" for p in markers] + [f"{p} measured" for p in markers]
view.obsm["X_umap"] = joint[: rna.n_obs].obsm["X_umap"]
sc.pl.umap(view, color=list(view.var_names), ncols=4, cmap="viridis")""",
    ),
    (
        "md",
        """The RNA cells on the joint UMAP, coloured by imputed (top) and measured (bottom)
protein: the imputed markers light up the same populations as the measurements.

## Save and load

The discriminator, the links and the fitted preprocessing are saved with the model; `load`
rebuilds the model's inputs from the counts in `mdata`.""",
    ),
    (
        "code",
        """import tempfile

with tempfile.TemporaryDirectory() as tmp:
    model.save(tmp, overwrite=True)
    loaded = scx.model.SCMODAL.load(tmp, adata=mdata)
print(loaded.get_linked_features().head(3))
z_loaded = loaded.get_latent_representation(modality="prot")
np.abs(z_loaded - model.get_latent_representation(modality="prot")).max()""",
    ),
]


if __name__ == "__main__":
    main(CELLS, "scmodal_cite.ipynb", __doc__, timeout=3600)
