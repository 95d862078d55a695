"""Build (and with --execute, run) the scPairing tutorial notebook on SNARE-seq2 motor cortex.

    PYTHONPATH=src python tutorials/build_scpairing_mop.py --execute

needs ``pip install nbformat nbclient ipykernel`` in the scx environment and the real data
(``SCX_DATA_DIR`` or ``../shared/data``).
"""

from _notebook import main

CELLS = [
    (
        "md",
        """# scPairing: a paired bridge, unpaired cells, artificial pairs

This tutorial runs `scx.tl.scpairing`, scx's implementation of scPairing (Niu et al., *Cell
Reports Methods* 2025), and `scx.tl.pair_cells`. scPairing learns a shared embedding on the unit
hypersphere from a **paired** bridge (cells measured in RNA and ATAC at once); because every
modality has its own encoder, cells measured in one modality only can then be embedded and
**paired** with cells of the other modality into artificial multiomics data.

The data are 10,309 nuclei of mouse primary motor cortex profiled by SNARE-seq2 (RNA and ATAC of
the same nucleus). We use a random half as the bridge and pretend the other half was measured as
two separate, unpaired experiments: an RNA-only and an ATAC-only dataset. Their true pairing is
hidden from the method and only used to score the result.""",
    ),
    (
        "code",
        """import warnings

import matplotlib.pyplot as plt
import mudata as md
import numpy as np
import pandas as pd
import scanpy as sc
import torch
from scipy import sparse

import scx

warnings.filterwarnings("ignore")
md.set_options(pull_on_update=False)
sc.set_figure_params(dpi=80, frameon=False)
# scPairing's networks are tiny: on a small shared CPU one thread is the fastest setting
torch.set_num_threads(1)

DATA = scx.datasets.data_dir(default="../../shared/data")
assert DATA is not None, "set SCX_DATA_DIR to the folder with mop_snareseq2/"
mdata = md.read_h5mu(DATA / "mop_snareseq2" / "mop_snareseq2.h5mu")
mdata""",
    ),
    (
        "md",
        """Both modalities hold raw counts of the same nuclei in the same order. Split them into a
bridge half and a held-out half (seed 0).""",
    ),
    (
        "code",
        """n = mdata["rna"].n_obs
perm = np.random.default_rng(0).permutation(n)
bridge_idx, held_idx = np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])
bridge = md.MuData({m: mdata[m][bridge_idx].copy() for m in ("rna", "atac")})
rna_only = mdata["rna"][held_idx].copy()  # "an RNA-only experiment"
atac_only = mdata["atac"][held_idx].copy()  # "an ATAC-only experiment"
print(
    bridge.n_obs,
    "bridge cells;",
    rna_only.n_obs,
    "RNA-only and",
    atac_only.n_obs,
    "ATAC-only cells",
)""",
    ),
    (
        "md",
        """## Train on the bridge

Without `use_rep`, scx computes the reference tutorial's inputs on the bridge: 10 principal
components of log-normalised RNA (scanpy) and 10 LSI components of TF-IDF-transformed ATAC
(muon's formulas). The fitted projections are stored on the model, so unpaired cells are later
projected with exactly the bridge's loadings. Training uses the reference's defaults: 10-d
embedding, CLIP loss with a learned temperature, modality discriminator, cosine alignment, Power
Spherical posterior, 300 epochs of 2,000 pairs.""",
    ),
    (
        "code",
        """model = scx.tl.scpairing(
    bridge, modalities=("rna", "atac"), seed=0, trainer_kwargs={"enable_progress_bar": False}
)
print("learned inverse temperature:", round(model.get_temperature(), 1))
bridge.uns["scpairing"]["params"]""",
    ),
    (
        "code",
        """hist = model.history_
fig, axes = plt.subplots(1, 4, figsize=(15, 3))
for ax, key in zip(
    axes, ["contrastive_train", "cosine_train", "temperature_train", "discriminator_accuracy_train"]
):
    ax.plot(hist[key].to_numpy(dtype=float))
    ax.set_title(key)
    ax.set_xlabel("epoch")
plt.tight_layout()""",
    ),
    (
        "md",
        """The contrastive loss falls, the cosine similarity of a cell's RNA and ATAC embeddings
rises, and the modality discriminator ends near chance (accuracy ≈ 0.5): the two modalities
overlap on the sphere. The joint embedding of the bridge (`obsm["X_scpairing"]`) separates the
cell types:""",
    ),
    (
        "code",
        """bridge.obs["cell_type"] = bridge["rna"].obs["cell_type"].to_numpy()
sc.pp.neighbors(bridge, use_rep="X_scpairing")
sc.tl.umap(bridge, random_state=0)
sc.pl.umap(bridge, color="cell_type")""",
    ),
    (
        "md",
        """## Embed the unpaired cells

Each held-out dataset goes through its own modality's encoder; its counts are projected with the
bridge's PCA / LSI. FOSCTTM (fraction of cells closer than the true partner; 0 is perfect, 0.5
random) uses the hidden true pairing.""",
    ),
    (
        "code",
        """z_rna = model.get_latent_representation(rna_only, modality="rna")
z_atac = model.get_latent_representation(atac_only, modality="atac")
print("FOSCTTM on the held-out half:", round(scx.metrics.foscttm(z_rna, z_atac), 4))""",
    ),
    (
        "code",
        """both = sc.AnnData(np.concatenate([z_rna, z_atac]))
both.obs["modality"] = np.repeat(["RNA-only", "ATAC-only"], len(held_idx))
both.obs["cell_type"] = np.concatenate([rna_only.obs["cell_type"], atac_only.obs["cell_type"]])
sc.pp.neighbors(both, use_rep="X")
sc.tl.umap(both, random_state=0)
sc.pl.umap(both, color=["modality", "cell_type"], wspace=0.4)""",
    ),
    (
        "md",
        """## Pair them

`pair_cells` matches the two sets one-to-one, maximising the summed cosine similarity of the
pairs, and never forms a pair below `cutoff` (0.8, the reference's value). With 5,155 × 5,155
cells (26.6 million possible pairs, above the 25 million threshold) `method="auto"` picks the
sparse solver: candidate partners are each cell's 10 most similar cells of the other modality,
in both directions, and the dense matrix is never built. The exact dense solver of the
reference (`method="exact"`) is compared below.""",
    ),
    (
        "code",
        """unpaired = md.MuData({"rna": rna_only, "atac": atac_only})
paired = scx.tl.pair_cells(unpaired, model, cutoff=0.8)
table = paired.uns["scpairing_pairs"]
types_rna = rna_only.obs["cell_type"].astype(str)
types_atac = atac_only.obs["cell_type"].astype(str)
print(paired)
print(f"{len(table)} pairs for {rna_only.n_obs} cells per side")
print(
    "true partner (over all held-out cells):",
    round((table.rna == table.atac).sum() / rna_only.n_obs, 4),
    "— chance:",
    round(1 / rna_only.n_obs, 5),
)
print(
    "cell-type agreement of the pairs:",
    round((types_rna[table.rna].to_numpy() == types_atac[table.atac].to_numpy()).mean(), 4),
)
paired.obs["scpairing_similarity"].plot.hist(bins=40, title="similarity of the pairs");""",
    ),
    (
        "code",
        """exact = scx.tl.pair_cells(unpaired, model, cutoff=0.8, method="exact")
summary = {}
for name, result in {"sparse (auto)": paired, "exact": exact}.items():
    t = result.uns["scpairing_pairs"]
    summary[name] = {
        "pairs": len(t),
        "summed similarity": t.similarity.sum(),
        "true partner": (t.rna == t.atac).sum() / rna_only.n_obs,
        "cell-type agreement": (
            types_rna[t.rna].to_numpy() == types_atac[t.atac].to_numpy()
        ).mean(),
    }
pd.DataFrame(summary).T""",
    ),
    (
        "md",
        """Few pairs are the exact true partner — that would require telling apart thousands of
nuclei of the same type from sparse single-nucleus profiles. About 60 % of the pairs join cells
of the same coarse type, against 22 % for random pairs of these cells (the sum of the squared
type frequencies). What matters for artificial multiomics is whether the pairs carry the
regulatory relationships of real pairs.

## Gene–peak correlations: artificial vs true pairs

`rna.varm["gene_region"]` links each gene to the ATAC peaks in its body and 2 kb upstream. For
every gene we correlate its log-normalised expression with the summed (binarised) accessibility
of its linked peaks across pairs: in the artificial pairs, in the true pairs of the held-out
cells, and in random pairs (no information).""",
    ),
    (
        "code",
        """X = sparse.csr_matrix(rna_only.X, dtype=np.float64, copy=True)
X = sparse.diags(1e4 / np.maximum(np.asarray(X.sum(1)).ravel(), 1)) @ X
X.data = np.log1p(X.data)
A = (atac_only.X > 0).astype(np.float32)  # binarised copy; atac_only itself stays as is
activity = (A @ sparse.csr_matrix(mdata["rna"].varm["gene_region"]).T).tocsc()
ok = (np.asarray((X > 0).mean(0)).ravel() >= 0.01) & (
    np.asarray((activity > 0).mean(0)).ravel() >= 0.01
)
G = X[:, ok].toarray()
P = activity[:, ok].toarray()


def gene_peak_corr(rows, cols):
    g, p = G[rows], P[cols]
    g = (g - g.mean(0)) / (g.std(0) + 1e-12)
    p = (p - p.mean(0)) / (p.std(0) + 1e-12)
    return (g * p).mean(0)


pos_rna = rna_only.obs_names.get_indexer(table.rna)
pos_atac = atac_only.obs_names.get_indexer(table.atac)
everyone = np.arange(rna_only.n_obs)
corr = pd.DataFrame(
    {
        "true pairs": gene_peak_corr(everyone, everyone),
        "artificial pairs": gene_peak_corr(pos_rna, pos_atac),
        "random pairs": gene_peak_corr(everyone, np.random.default_rng(0).permutation(everyone)),
    },
    index=rna_only.var_names[ok],
)
print(ok.sum(), "genes")
corr.describe().loc[["mean", "25%", "50%", "75%"]]""",
    ),
    (
        "code",
        """fig, axes = plt.subplots(1, 2, figsize=(10, 4))
bins = np.linspace(-0.1, 0.5, 50)
for name in corr:
    axes[0].hist(corr[name], bins=bins, histtype="step", label=name)
axes[0].set_xlabel("expression–accessibility correlation per gene")
axes[0].legend()
axes[1].scatter(corr["true pairs"], corr["artificial pairs"], s=4)
axes[1].plot([-0.1, 0.5], [-0.1, 0.5], color="grey", lw=0.8)
axes[1].set_xlabel("true pairs")
axes[1].set_ylabel("artificial pairs")
r = np.corrcoef(corr["true pairs"], corr["artificial pairs"])[0, 1]
axes[1].set_title(f"per-gene correlation, r = {r:.2f}")
plt.tight_layout()""",
    ),
    (
        "md",
        """Random pairs destroy the expression–accessibility relationship; the artificial pairs keep
it, gene by gene, close to the level of the true pairs (the distributions of the per-gene
correlations nearly coincide). `benchmarks/scpairing_mop.py` reports
the same comparison per gene–peak link and against CCA and nearest-neighbour pairing.

## Save and reload

The model keeps its networks, discriminators and the bridge's PCA / LSI projections.""",
    ),
    (
        "code",
        """import tempfile

with tempfile.TemporaryDirectory() as tmp:
    model.save(tmp, save_anndata=True, overwrite=True)
    loaded = scx.model.SCPAIRING.load(tmp)
np.abs(loaded.get_latent_representation(atac_only, modality="atac") - z_atac).max()""",
    ),
]


if __name__ == "__main__":
    main(CELLS, "scpairing_mop.ipynb", __doc__)
