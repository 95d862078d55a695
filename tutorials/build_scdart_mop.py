"""Build (and with --execute, run) the scDART tutorial notebook on MOp SNARE-seq2.

    python tutorials/build_scdart_mop.py --execute

needs ``pip install nbformat nbclient ipykernel`` in the scx environment and the real data
(``SCX_DATA_DIR`` or ``../shared/data``).
"""

from _notebook import main

CELLS = [
    (
        "md",
        """# scDART: integrate unpaired RNA and ATAC and learn gene activity (MOp SNARE-seq2)

This tutorial runs `scx.tl.scdart`, scx's implementation of scDART (Zhang et al., *Genome
Biology* 2022): a gene-activity network maps ATAC peaks to pseudo-RNA, a shared encoder embeds
RNA and pseudo-RNA together, each modality keeps its diffusion geometry, an MMD aligns the two,
and the network's end-to-end peak → gene weights are kept on the links of a genomic prior.

The data are mouse primary motor cortex nuclei measured by SNARE-seq2 (RNA and ATAC of the same
nucleus). We hide the pairing — the RNA and ATAC cells get different names and the ATAC cells are
shuffled — so the model sees two unpaired datasets; the pairing and the ATAC labels only score
the result. To keep the runtime to a few minutes on a laptop CPU we use 4,000 random cells, the
peaks open in at least 20 of them, and 25 epochs (the default is ~2,000 steps; see the
benchmarks for the full data).""",
    ),
    (
        "code",
        """import warnings

import matplotlib.pyplot as plt
import mudata
import numpy as np
import pandas as pd
import scanpy as sc
import torch

import scx

# deprecation notices of scanpy, anndata and mudata; scx's own warnings stay visible
warnings.filterwarnings("ignore", category=FutureWarning, module="scanpy|anndata|mudata")
mudata.set_options(pull_on_update=False)
sc.set_figure_params(dpi=80, frameon=False)
torch.set_num_threads(1)  # small networks: one thread is fastest on a busy CPU

DATA = scx.datasets.data_dir(default="../../shared/data")
assert DATA is not None, "set SCX_DATA_DIR to the folder with mop_snareseq2/"
full = mudata.read_h5mu(DATA / "mop_snareseq2" / "mop_snareseq2.h5mu")
rng = np.random.default_rng(0)
cells = np.sort(rng.choice(full.n_obs, 4000, replace=False))
rna = full["rna"][cells].copy()
atac_all = full["atac"][cells].copy()
open_in = np.asarray((atac_all.X > 0).sum(0)).ravel()
keep_peaks = open_in >= 20
prior = rna.varm["gene_region"].tocsr()[:, keep_peaks]  # genes × peaks, gene body + 2 kb
del rna.varm["gene_region"]
perm = rng.permutation(len(cells))  # ATAC cell j is RNA cell perm[j]
atac = atac_all[perm][:, keep_peaks].copy()
truth = atac.obs["cell_type"].astype(str).to_numpy()  # for scoring only
rna.obs = rna.obs[["cell_type"]].copy()
rna.obs_names = [f"rna_{i}" for i in range(rna.n_obs)]
atac.obs = pd.DataFrame(index=[f"atac_{i}" for i in range(atac.n_obs)])
mdata = mudata.MuData({"rna": rna, "atac": atac})
print(mdata)
n_linked = int((prior.getnnz(axis=1) > 0).sum())
print(f"prior: {prior.nnz} links, {n_linked} genes with a linked peak")""",
    ),
    (
        "md",
        """## Train

`prior` can be a `.varm` key, a DataFrame, a genes × peaks or peaks × genes matrix, or
`annotation=` (a gene table / GTF) to build it with `scx.pp.peak_gene_prior`. The RNA counts
are library-normalised (100) and log-transformed, and the ATAC peaks binarised, inside every
mini-batch; the sparse ATAC matrix is never densified. Before training, the tool computes each
modality's diffusion-map coordinates from a sparse kNN graph (no cells × cells matrix).""",
    ),
    (
        "code",
        """%%time
model = scx.tl.scdart(
    mdata,
    modalities=("rna", "atac"),
    prior=prior,
    max_epochs=25,
    gene_activity_key="gene_activity",
    trainer_kwargs={"enable_progress_bar": False},
)
model""",
    ),
    (
        "code",
        """\
history = pd.DataFrame({k: v.iloc[:, 0].astype(float) for k, v in model.history_.items()})
fig, axes = plt.subplots(1, 4, figsize=(14, 2.8))
for ax, key in zip(axes, ["dist_rna_train", "dist_atac_train", "mmd_train", "prior_train"]):
    ax.plot(history[key])
    ax.set_title(key)
    ax.set_xlabel("epoch")
plt.tight_layout()""",
    ),
    (
        "md",
        """## Integration

`obsm["X_scdart"]` holds the latent after the reference's kNN post-alignment (each ATAC cell
averaged over its 10 nearest RNA cells, then each RNA cell over its nearest smoothed ATAC
cells); `obsm["X_scdart_raw"]` the latent before it. FOSCTTM uses the hidden pairing (0: every
cell's partner is its nearest cross-modal cell; 0.5: random); labels are transferred from RNA to
ATAC by a 30-nearest-neighbour vote.""",
    ),
    (
        "code",
        """from scx._neighbors import knn_transfer

scores = {}
for key in ("X_scdart", "X_scdart_raw"):
    z_rna, z_atac = mdata["rna"].obsm[key], mdata["atac"].obsm[key]
    rna_labels = rna.obs["cell_type"].astype(str).to_numpy()
    predicted = knn_transfer(z_rna, rna_labels, z_atac, n_neighbors=30)[0]
    acc = scx.metrics.label_transfer_accuracy(truth, predicted)
    scores[key] = {
        "FOSCTTM": scx.metrics.foscttm(z_rna[perm], z_atac),
        "label accuracy": acc["accuracy"],
    }
mdata["atac"].obs["transferred"] = pd.Categorical(predicted)
pd.DataFrame(scores).T""",
    ),
    (
        "md",
        """**Read these numbers with the training length in mind.** 25 epochs are 100 optimisation
steps, 5 % of the default schedule (~2,000 steps, the reference's): the modalities are only
partly aligned (FOSCTTM: 0 when every cell's partner is its nearest cross-modal point, 0.5 for
unrelated embeddings) and the learned gene activity is not yet predictive. On all 10,309 nuclei
the default schedule took about 11 minutes on two CPU threads (use `accelerator="gpu"` for real
analyses) and reached FOSCTTM 0.24 and RNA → ATAC accuracy 0.56 (three seeds), against 0.23 /
0.56 for CCA and 0.18 / 0.59 for scJoint: scDART matches CCA's accuracy on MOp but stays behind
it on FOSCTTM and macro-F1, and its gene activity did not beat the linear prior: see
`docs/benchmarks.md`.""",
    ),
    (
        "code",
        """mdata.obs["modality"] = pd.Categorical(["RNA"] * rna.n_obs + ["ATAC"] * atac.n_obs)
mdata.obs["cell_type"] = pd.Categorical(
    list(rna.obs["cell_type"].astype(str)) + list(truth)  # ATAC labels only for display
)
sc.pp.neighbors(mdata, use_rep="X_scdart", n_neighbors=30)
sc.tl.umap(mdata, random_state=0)
sc.pl.umap(mdata, color=["modality", "cell_type"], wspace=0.35)""",
    ),
    (
        "md",
        """## Pseudotime along the excitatory neurons

The excitatory neurons of layers 2/3, 4/5 and 6 form a continuum of cortical depth. We run
`scx.tl.pseudotime` (scanpy's diffusion pseudotime on the joint latent, plus scDART's cluster
backbone) on those cells of both modalities (ATAC cells chosen by their transferred label),
rooted at the L2/3 label (its medoid cell).""",
    ),
    (
        "code",
        """labels = np.concatenate(
    [rna.obs["cell_type"].astype(str), mdata["atac"].obs["transferred"].astype(str)]
)
exc = np.isin(labels, ["L2/3", "L4/5", "L6"])
neurons = sc.AnnData(
    obs=pd.DataFrame(
        {
            "label": pd.Categorical(labels[exc]),
            "modality": mdata.obs["modality"].to_numpy()[exc],
            "true_type": mdata.obs["cell_type"].to_numpy()[exc],
        },
        index=mdata.obs_names[exc],
    )
)
neurons.obsm["X_scdart"] = mdata.obsm["X_scdart"][exc]
scx.tl.pseudotime(neurons, use_rep="X_scdart", root="L2/3", groupby="label")
sc.pp.neighbors(neurons, use_rep="X_scdart", n_neighbors=30)
sc.tl.umap(neurons, random_state=0)
sc.pl.umap(
    neurons,
    color=["trajectory_pseudotime", "true_type", "modality", "trajectory_branch"],
    wspace=0.35,
    ncols=4,
)
by_type = neurons.obs.groupby(["true_type", "modality"], observed=True)
by_type["trajectory_pseudotime"].median().unstack()""",
    ),
    (
        "code",
        """# the same cell's pseudotime from its RNA and from its ATAC profile
# (the pairing is hidden from the model)
pt = neurons.obs["trajectory_pseudotime"]
rna_idx = {f"rna_{i}": i for i in range(rna.n_obs)}
pairs = [(f"rna_{perm[j]}", f"atac_{j}") for j in range(atac.n_obs)]
pairs = [(r, a) for r, a in pairs if r in pt.index and a in pt.index]
x = pt.loc[[r for r, _ in pairs]].to_numpy()
y = pt.loc[[a for _, a in pairs]].to_numpy()
print(
    f"{len(pairs)} cells with both profiles among the neurons; Pearson r of their pseudotimes: "
    f"{np.corrcoef(x, y)[0, 1]:.3f}"
)""",
    ),
    (
        "md",
        """## Learned vs prior gene activity

`mdata["gene_activity"]` holds the gene-activity network's prediction of each ATAC cell's RNA.
The linear baseline is the prior alone: the number of open peaks linked to each gene. We compare
both with the measured (log-normalised) RNA of the same cells, gene by gene.""",
    ),
    (
        "code",
        """measured_counts = rna.X.toarray()[perm]
measured = np.log1p(measured_counts / measured_counts.sum(1, keepdims=True) * 100)
linear = np.asarray(((atac.X > 0).astype(np.float32) @ prior.T).todense())
learned = mdata["gene_activity"].X


def per_gene_r(pred, truth):
    p, t = pred - pred.mean(0), truth - truth.mean(0)
    d = np.sqrt((p**2).sum(0) * (t**2).sum(0))
    return np.where(d > 0, (p * t).sum(0) / np.where(d > 0, d, 1), np.nan)


r = pd.DataFrame(
    {"scDART": per_gene_r(learned, measured), "linear prior": per_gene_r(linear, measured)},
    index=rna.var_names,
)
print(r.describe().loc[["mean", "50%"]])
fig, ax = plt.subplots(figsize=(4, 4))
ax.scatter(r["linear prior"], r["scDART"], s=4, alpha=0.5)
lim = [np.nanmin(r.values), np.nanmax(r.values)]
ax.plot(lim, lim, "k--", lw=0.8)
ax.set_xlabel("linear prior r")
ax.set_ylabel("scDART r")
ax.set_title("per-gene r with measured RNA")""",
    ),
    (
        "code",
        """# learned end-to-end peak → gene weights: on the prior's links vs everywhere else
full = model.get_peak_gene_weights(linked_only=False)
linked = np.asarray(prior.todense()) > 0
on, off = np.abs(full[linked]), np.abs(full[~linked])
print(
    f"mean |w| on links {on.mean():.2e}, off links {off.mean():.2e}; share of the |w| mass "
    f"on the {linked.mean():.3%} linked pairs: {on.sum() / np.abs(full).sum():.1%}"
)""",
    ),
    (
        "md",
        """## Save and load

The model keeps its configuration, prior links and per-modality BatchNorm statistics; it loads
onto the MuData as you hold it (`adata=mdata`), which it leaves unchanged.""",
    ),
    (
        "code",
        """import tempfile

with tempfile.TemporaryDirectory() as tmp:
    model.save(tmp, overwrite=True)
    loaded = scx.model.SCDART.load(tmp, adata=mdata)
    before = model.get_latent_representation(modality="atac")
    diff = np.abs(loaded.get_latent_representation(modality="atac") - before).max()
print(f"max latent difference after reload: {diff:.2e}")""",
    ),
]


if __name__ == "__main__":
    main(CELLS, "scdart_mop.ipynb", __doc__)
