"""scDART: trajectory recovered across modalities, learned gene activity, outputs, errors."""

import mudata
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse, stats

import scx
from conftest import QUIET, assert_unchanged, snapshot
from scx.scdart import SCDART, diffusion_coordinates
from scx.scdart._module import diffusion_kl, mmd
from scx.tl._scdart import resolve_prior

#: Small networks keep the tests fast; the architecture is the reference's otherwise.
SMALL = {"n_hidden_gene_activity": (256, 128), "n_hidden_encoder": (128, 64), **QUIET}


def trajectory(seed: int = 0, n_cells: int = 600) -> mudata.MuData:
    return scx.datasets.synthetic_trajectory(n_cells, 150, seed=seed)


def earliest(mdata: mudata.MuData, n: int = 10) -> dict:
    """The reference's anchors on simulations: the earliest cells of each modality."""
    return {
        m: mdata[m].obs_names[np.argsort(mdata[m].obs["pseudotime"].to_numpy())[:n]]
        for m in ("rna", "atac")
    }


@pytest.fixture(scope="session")
def trained():
    mdata = trajectory()
    model = scx.tl.scdart(
        mdata,
        prior="peak_prior",
        anchors=earliest(mdata),
        n_latent=4,
        max_epochs=150,
        gene_activity_key="ga",
        **SMALL,
    )
    # a finer clustering than the reference default (0.1) resolves the two branches here
    scx.tl.pseudotime(mdata, root="trunk_early", groupby="milestone", resolution=0.3)
    return mdata, model


def test_trajectory_pseudotime_across_modalities(trained):
    mdata, _ = trained
    tau = {
        m: stats.kendalltau(mdata[m].obs["scdart_pseudotime"], mdata[m].obs["pseudotime"]).statistic
        for m in ("rna", "atac")
    }
    # RNA cell i and ATAC cell i are the same cell (the model never saw the pairing)
    paired = stats.pearsonr(
        mdata["rna"].obs["scdart_pseudotime"], mdata["atac"].obs["scdart_pseudotime"]
    ).statistic
    print(
        mdata["rna"]
        .obs.groupby("milestone", observed=True)["scdart_pseudotime"]
        .mean()
        .round(2)
        .to_dict(),
        mdata["atac"]
        .obs.groupby("milestone", observed=True)["scdart_pseudotime"]
        .mean()
        .round(2)
        .to_dict(),
        scx.metrics.foscttm(mdata["rna"].obsm["X_scdart"], mdata["atac"].obsm["X_scdart"]),
    )
    print(f"Kendall tau RNA {tau['rna']:.3f}, ATAC {tau['atac']:.3f}; paired r {paired:.3f}")
    # ATAC alone orders its cells less well (tau ≈ 0.6 in its own latent): noisier readout
    assert tau["rna"] > 0.6 and tau["atac"] > 0.5, tau
    assert paired > 0.8, paired
    z_rna, z_atac = mdata["rna"].obsm["X_scdart"], mdata["atac"].obsm["X_scdart"]
    assert scx.metrics.foscttm(z_rna, z_atac) < 0.25
    root = mdata.uns["scdart_pseudotime"]["root_cell"]
    assert mdata.obs.loc[root, "scdart_pseudotime"] == 0
    # the backbone separates the two branches after the branch point
    rna = mdata["rna"].obs
    late = rna["milestone"].astype(str).isin(["branch1_late", "branch2_late"])
    table = pd.crosstab(rna["branch"][late], rna["scdart_branch"][late])
    assert (table.max(axis=1) / table.sum(axis=1)).min() > 0.6
    assert table.idxmax(axis=1).nunique() == 2, table


def test_outputs_and_learned_gene_activity(trained):
    mdata, model = trained
    n_rna, n_atac = mdata["rna"].n_obs, mdata["atac"].n_obs
    for key in ("X_scdart", "X_scdart_raw"):
        assert mdata.obsm[key].shape == (mdata.n_obs, 4)
        assert np.isfinite(mdata.obsm[key]).all()
        assert mdata["rna"].obsm[key].shape == (n_rna, 4)
    params = mdata.uns["scdart"]["params"]
    assert params["n_prior_links"] == mdata["rna"].varm["peak_prior"].nnz
    assert params["batch_size"] == 150 and params["anchors"] is True
    # predicted RNA of the ATAC cells as a new modality
    ga = mdata["ga"]
    assert ga.shape == (n_atac, mdata["rna"].n_vars)
    assert list(ga.obs_names) == list(mdata["atac"].obs_names)
    assert np.isfinite(ga.X).all()
    # per-gene correlation with the paired cells' measured RNA, against the linear prior
    # (reported, not asserted: the MMD-aligned pseudo-RNA is not fitted to RNA gene by gene)
    rna = mdata["rna"].X.toarray()
    measured = np.log1p(rna / rna.sum(1, keepdims=True) * 100)
    linear = mdata["atac"].X @ mdata["rna"].varm["peak_prior"].T
    linear = np.asarray(linear.todense())

    def per_gene(pred):
        return np.nanmedian(
            [stats.pearsonr(pred[:, g], measured[:, g]).statistic for g in range(pred.shape[1])]
        )

    print(
        f"gene activity vs paired RNA, median r: scDART {per_gene(ga.X):.3f}, "
        f"linear prior {per_gene(linear):.3f}"
    )
    # end-to-end weights concentrate on the prior's links
    prior = mdata["rna"].varm["peak_prior"]
    full = model.get_peak_gene_weights(linked_only=False)
    linked = model.get_peak_gene_weights()
    assert full.shape == prior.shape and sparse.issparse(linked)
    np.testing.assert_allclose(
        linked.toarray()[prior.toarray() > 0], full[prior.toarray() > 0], rtol=1e-4, atol=1e-6
    )
    on_links = np.abs(full[prior.toarray() > 0]).sum() / np.abs(full).sum()
    density = prior.nnz / np.prod(prior.shape)
    # random weights would put ~density of the mass on the links
    assert on_links > 5 * density, (on_links, density)


def test_latent_does_not_depend_on_batch_composition(trained):
    _, model = trained
    z = model.get_latent_representation(modality="atac")
    atac = model.modality_adata("atac")
    part = model.get_latent_representation(atac[:37].copy(), modality="atac")
    np.testing.assert_allclose(part, z[:37], rtol=1e-4, atol=1e-5)


def test_save_load_roundtrip(trained, tmp_path):
    _, model = trained
    model.save(tmp_path / "m", save_anndata=True)
    loaded = SCDART.load(tmp_path / "m")
    for m in ("rna", "atac"):
        np.testing.assert_allclose(
            loaded.get_latent_representation(modality=m),
            model.get_latent_representation(modality=m),
            rtol=1e-5,
            atol=1e-6,
        )
    np.testing.assert_allclose(loaded.get_gene_activity(), model.get_gene_activity(), atol=1e-5)


def test_deterministic_with_seed():
    mdata = trajectory(seed=3, n_cells=240)
    runs = []
    for _ in range(2):
        m = mdata.copy()
        scx.tl.scdart(m, prior="peak_prior", max_epochs=3, batch_size=60, **SMALL)
        runs.append(m.obsm["X_scdart_raw"])
    np.testing.assert_array_equal(runs[0], runs[1])


def test_batch_size_honoured_and_sparse_atac_stays_sparse():
    mdata = trajectory(seed=4, n_cells=240)
    model = scx.tl.scdart(mdata, prior="peak_prior", max_epochs=2, batch_size=40, **SMALL)
    assert mdata.uns["scdart"]["params"]["batch_size"] == 40
    # 240 cells / 40 per step: six full steps per epoch, both modalities every step
    assert model.history_["loss_train"].shape[0] == 2
    assert sparse.issparse(model.modality_adata("atac").X)
    assert model.modality_adata("atac").X is mdata["atac"].X  # no copy of the input


def test_prior_sources_agree():
    mdata = trajectory(seed=5, n_cells=60)
    rna, atac = mdata["rna"], mdata["atac"]
    reference = sparse.csr_matrix(rna.varm["peak_prior"])
    frame = pd.DataFrame(reference.toarray(), index=rna.var_names, columns=atac.var_names)
    variants = [
        resolve_prior("peak_prior", None, rna, atac),
        resolve_prior(reference.T, None, rna, atac),
        resolve_prior(frame.T.iloc[::-1], None, rna, atac),
        resolve_prior(None, atac.uns["gene_annotation"], rna, atac),
    ]
    for prior in variants:
        assert (prior != reference).nnz == 0


def test_diffusion_coordinates_give_diffusion_distances():
    from scx.scdart import alpha_decay_graph

    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=(120, 3)), axis=0)
    coords = diffusion_coordinates(x, ts=(3,), n_components=117)
    kernel = alpha_decay_graph(x, 5).toarray()
    degree = kernel.sum(1)
    T = kernel / degree[:, None]
    Tt = np.linalg.matrix_power(T, 3)
    pi = degree / degree.sum()
    # exact diffusion distance (1/π-weighted rows of Tᵗ), up to scale
    diff = Tt[:, None, :] - Tt[None, :, :]
    exact = np.sqrt((diff**2 / pi).sum(-1))
    ours = np.sqrt(((coords[:, None] - coords[None]) ** 2).sum(-1))
    np.testing.assert_allclose(ours / ours.sum(), exact / exact.sum(), atol=1e-6)
    # each block is normalised by the Frobenius norm of its full distance matrix
    assert np.isclose(np.sqrt((ours**2).sum()), 1.0, rtol=1e-4)


def test_losses():
    z = torch.randn(50, 4)
    assert float(mmd(z, z)) == pytest.approx(np.sqrt(1e-9), abs=1e-6)
    assert float(mmd(z, z + 3.0)) > 0.1
    # KL vanishes when latent squared distances are proportional to the diffusion distances
    coords = torch.randn(50, 6)
    d = torch.cdist(coords, coords)
    # a latent whose squared distances are d: classical MDS of d
    n = d.shape[0]
    j = torch.eye(n) - 1 / n
    b = -0.5 * j @ d @ j
    vals, vecs = torch.linalg.eigh(b.double())
    keep = vals > 1e-9
    latent = (vecs[:, keep] * vals[keep].sqrt()).float()
    if torch.allclose(torch.cdist(latent, latent) ** 2, d, atol=1e-3):
        assert float(diffusion_kl(latent, coords)) < 1e-3
    assert float(diffusion_kl(torch.randn(50, 4), coords)) > 0.01


def test_relative_prior_penalty_ignores_layer_scale():
    """BatchNorm makes each layer's scale free: the absolute penalty falls when a layer shrinks,
    the relative one does not, and it is 0 only when all weight lies on the links."""
    from scx.scdart import SCDARTModule

    torch.manual_seed(0)
    rows, cols = torch.arange(6), torch.arange(6) * 2
    kwargs = {"n_hidden_gene_activity": (16, 8), "n_hidden_encoder": (8,)}
    absolute = SCDARTModule(6, 12, rows, cols, prior_penalty_peaks=None, **kwargs)
    relative = SCDARTModule(
        6, 12, rows, cols, prior_penalty="relative_l1", prior_penalty_peaks=None, **kwargs
    )
    relative.load_state_dict(absolute.state_dict())
    x = (torch.rand(32, 12) > 0.5).float()
    before = absolute.gene_activity_of(x), absolute.prior_loss(), relative.prior_loss()
    for module in (absolute, relative):
        module.gene_activity.linear_layers[0].weight.data.mul_(0.5)
    after = absolute.gene_activity_of(x), absolute.prior_loss(), relative.prior_loss()
    # the same function up to BatchNorm's eps
    torch.testing.assert_close(before[0], after[0], atol=0.05, rtol=0.05)
    assert float(after[1]) == pytest.approx(0.5 * float(before[1]), rel=1e-4)
    assert float(after[2]) == pytest.approx(float(before[2]), rel=1e-4)
    assert 0.5 < float(before[2]) < 1.0
    # a network whose end-to-end weight lies on the links only: penalty 0
    single = SCDARTModule(
        6,
        12,
        rows,
        cols,
        prior_penalty="relative_l1",
        n_hidden_gene_activity=(),
        n_hidden_encoder=(8,),
    )
    assert float(single.prior_loss()) == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------- bad input
def _assert_fails(mdata, match, **kwargs):
    before = snapshot(mdata)
    with pytest.raises(ValueError, match=match):
        scx.tl.scdart(mdata, **{"max_epochs": 1, **SMALL, **kwargs})
    assert_unchanged(before, mdata)


def test_bad_prior():
    mdata = trajectory(seed=6, n_cells=60)
    prior = sparse.csr_matrix(mdata["rna"].varm["peak_prior"])
    _assert_fails(mdata, "matches neither", prior=prior[:, :-1])
    _assert_fails(mdata, "links no peak", prior=sparse.csr_matrix(prior.shape))
    _assert_fails(mdata, "neither a `.varm` key", prior="nope")
    _assert_fails(mdata, "exactly one of", prior=None)
    frame = pd.DataFrame(
        prior.toarray(), index=mdata["rna"].var_names, columns=mdata["atac"].var_names
    )
    frame = frame.rename(index={"gene0": "not_a_gene"})
    _assert_fails(mdata, "match neither", prior=frame)
    bad = prior.copy().astype(np.float32)
    bad.data[0] = np.nan
    _assert_fails(mdata, "NaN", prior=bad)


def test_bad_counts_and_arguments():
    mdata = trajectory(seed=7, n_cells=60)
    mdata["rna"].X = mdata["rna"].X.copy()
    mdata["rna"].X.data[0] = np.nan
    _assert_fails(mdata, "NaN", prior="peak_prior")
    mdata = trajectory(seed=7, n_cells=60)
    mdata["atac"].X = mdata["atac"].X.copy()
    mdata["atac"].X.data[0] = -1
    _assert_fails(mdata, "negative", prior="peak_prior")
    mdata = trajectory(seed=7, n_cells=60)
    _assert_fails(mdata, "batch_size", prior="peak_prior", batch_size=100)
    _assert_fails(
        mdata,
        "anchors",
        prior="peak_prior",
        anchors={"rna": ["x", "y"], "atac": ["atac0", "atac1"]},
    )
    _assert_fails(mdata, "`rna='x'`", prior="peak_prior", rna="x")
    _assert_fails(mdata, "prior_penalty", prior="peak_prior", prior_penalty="l3")
    _assert_fails(mdata, "rna_transform", prior="peak_prior", rna_transform="log")


def test_pseudotime_bad_root(trained):
    mdata, _ = trained
    before = snapshot(mdata)
    with pytest.raises(ValueError, match="not the name of a cell"):
        scx.tl.pseudotime(mdata, root="no_such_cell")
    with pytest.raises(ValueError, match="neither a cell name nor a label"):
        scx.tl.pseudotime(mdata, root="no_such_label", groupby="milestone")
    with pytest.raises(ValueError, match=r"not in `\.obsm`"):
        scx.tl.pseudotime(mdata, use_rep="X_nope", root="rna0")
    assert_unchanged(before, mdata)


def test_pseudotime_on_anndata_with_cell_root(trained):
    mdata, _ = trained
    adata = mdata["rna"].copy()
    # the reference's root on simulations: the cell with the smallest true time
    first = int(np.argmin(adata.obs["pseudotime"].to_numpy()))
    scx.tl.pseudotime(adata, root=adata.obs_names[first], backbone=False, key_added="pt")
    assert adata.obs["pt_pseudotime"].iloc[first] == 0
    assert stats.kendalltau(adata.obs["pt_pseudotime"], adata.obs["pseudotime"]).statistic > 0.5
