import itertools
import warnings

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import torch
from power_spherical import PowerSpherical
from scipy import sparse
from scvi import REGISTRY_KEYS

import scx
from conftest import QUIET, assert_unchanged, snapshot
from scx.data import ModalitySource, MultiModalDataModule
from scx.scpairing import SCPAIRING, match_embeddings, nearest_neighbour_pairs
from scx.scpairing._inputs import apply_input, fit_lsi, fit_pca


def make_paired(n: int = 1000, seed: int = 0) -> tuple[ad.AnnData, ad.AnnData]:
    """Two modalities of the same cells: different non-linear views of a shared cell state."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 8)) * 2
    types = rng.integers(0, 6, n)
    state = centres[types] + rng.normal(size=(n, 8))
    x1 = state @ rng.normal(size=(8, 20)) + 0.5 * rng.normal(size=(n, 20))
    x2 = np.tanh(state @ rng.normal(size=(8, 15)) / 3) * 3 + 0.3 * rng.normal(size=(n, 15))
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical([f"t{t}" for t in types])},
        index=[f"cell{i}" for i in range(n)],
    )
    rna = ad.AnnData(obs=obs.copy(), obsm={"X_pca": x1.astype(np.float32)}, shape=(n, 0))
    atac = ad.AnnData(obs=obs.copy(), obsm={"X_lsi": x2.astype(np.float32)}, shape=(n, 0))
    return rna, atac


REPS = {"rna": "X_pca", "atac": "X_lsi"}


@pytest.fixture(scope="module")
def trained():
    """Bridge of 600 paired cells; 400 held-out cells per modality act as unpaired data."""
    rna, atac = make_paired()
    bridge = md.MuData({"rna": rna[:600].copy(), "atac": atac[:600].copy()})
    model = scx.tl.scpairing(bridge, use_rep=REPS, max_epochs=40, batch_size=200, seed=0, **QUIET)
    return bridge, model, rna[600:].copy(), atac[600:].copy()


def test_power_spherical_sampler():
    torch.manual_seed(0)
    d = 10
    mu = torch.nn.functional.normalize(torch.randn(3, d), dim=-1)
    kappa = torch.tensor([2.0, 20.0, 200.0])
    z = PowerSpherical(mu, kappa).rsample((4000,))
    assert torch.allclose(z.norm(dim=-1), torch.ones(()), atol=1e-4)
    cosine = (z * mu).sum(-1).mean(0)
    # the cosine to the mean direction is 2·Beta(α, β) − 1 with α = (d−1)/2 + κ, β = (d−1)/2
    alpha, beta = (d - 1) / 2 + kappa, (d - 1) / 2
    expected = (alpha - beta) / (alpha + beta)
    assert torch.allclose(cosine, expected, atol=0.02)
    # the sample mean points along μ
    direction = torch.nn.functional.normalize(z.mean(0), dim=-1)
    assert ((direction * mu).sum(-1) > 0.97).all()


def test_learns_and_pairs_held_out_cells(trained):
    bridge, model, rna_q, atac_q = trained
    z1 = model.get_latent_representation(rna_q, modality="rna")
    z2 = model.get_latent_representation(atac_q, modality="atac")
    assert np.allclose(np.linalg.norm(z1, axis=1), 1, atol=1e-5)
    assert scx.metrics.foscttm(z1, z2) < 0.05  # random ≈ 0.5
    paired = scx.tl.pair_cells(model, rna_q, atac_q, cutoff=0.5)
    table = paired.uns["scpairing_pairs"]
    true_rate = float((table["rna"] == table["atac"]).mean())
    assert len(table) > 300
    assert true_rate > 0.5  # chance: 1 / 400
    # matching beats nearest-neighbour pairing on true partners
    nn, _ = nearest_neighbour_pairs(z1, z2)
    assert true_rate >= (nn == np.arange(len(nn))).mean()
    # outputs of the tool and of the pairing
    for m in ("rna", "atac"):
        assert bridge[m].obsm["X_scpairing"].shape == (600, 10)
    assert bridge.obsm["X_scpairing"].shape == (600, 10)
    assert bridge.uns["scpairing"]["params"]["temperature"] == pytest.approx(
        model.get_temperature()
    )
    assert paired.n_obs == len(table)
    assert paired["rna"].obs["original_obs_name"].tolist() == table["rna"].tolist()
    assert paired["atac"].obs["original_obs_name"].tolist() == table["atac"].tolist()
    assert np.allclose(paired.obs["scpairing_similarity"], table["similarity"])
    assert (paired.obs["scpairing_similarity"] >= 0.5).all()
    assert "loss_train" in model.history_
    assert "discriminator_accuracy_train" in model.history_


def test_seed_determinism():
    rna, atac = make_paired(300, seed=3)
    runs = []
    for _ in range(2):
        bridge = md.MuData({"rna": rna.copy(), "atac": atac.copy()})
        model = scx.tl.scpairing(
            bridge, use_rep=REPS, max_epochs=3, batch_size=100, seed=0, **QUIET
        )
        runs.append(bridge["atac"].obsm["X_scpairing"].copy())
    assert np.array_equal(runs[0], runs[1])
    bridge = md.MuData({"rna": rna.copy(), "atac": atac.copy()})
    scx.tl.scpairing(bridge, use_rep=REPS, max_epochs=3, batch_size=100, seed=1, **QUIET)
    assert not np.allclose(runs[0], bridge["atac"].obsm["X_scpairing"])
    assert model.module.training is False


def test_save_load(trained, tmp_path):
    _, model, rna_q, atac_q = trained
    model.save(tmp_path / "m", save_anndata=True)
    loaded = SCPAIRING.load(tmp_path / "m")
    for adata, m in ((rna_q, "rna"), (atac_q, "atac")):
        assert np.allclose(
            loaded.get_latent_representation(adata, modality=m),
            model.get_latent_representation(adata, modality=m),
            atol=1e-6,
        )
    assert loaded.get_temperature() == pytest.approx(model.get_temperature())


def brute_force_optimum(x1, x2, cutoff):
    s = x1 @ x2.T
    s = np.where(s >= max(cutoff, 0), s, 0)
    n1, n2 = s.shape
    best = 0.0
    for perm in itertools.permutations(range(n2), n1):
        best = max(best, s[np.arange(n1), perm].sum())
    return best


def test_matching_is_optimal_and_handles_unequal_sizes():
    rng = np.random.default_rng(0)
    for n1, n2 in [(5, 7), (6, 6)]:
        x1 = rng.normal(size=(n1, 3)).astype(np.float32)
        x2 = rng.normal(size=(n2, 3)).astype(np.float32)
        u1 = x1 / np.linalg.norm(x1, axis=1, keepdims=True)
        u2 = x2 / np.linalg.norm(x2, axis=1, keepdims=True)
        best = brute_force_optimum(u1, u2, 0.2)
        for method in ("exact", "sparse"):
            m = match_embeddings(x1, x2, cutoff=0.2, method=method, n_neighbors=n2)
            assert m.total_similarity == pytest.approx(best, abs=1e-4)
            assert (m.similarity >= 0.2).all()
            assert len(set(m.rows)) == len(m.rows) and len(set(m.cols)) == len(m.cols)
    # larger and unequal: exact and sparse reach (nearly) the same objective; blocks stay valid
    x1 = rng.normal(size=(700, 5)).astype(np.float32)
    x2 = (np.repeat(x1, 2, axis=0)[:1100] + 0.3 * rng.normal(size=(1100, 5))).astype(np.float32)
    exact = match_embeddings(x1, x2, cutoff=0.5, method="exact")
    sp = match_embeddings(x1, x2, cutoff=0.5, method="sparse", n_neighbors=15)
    blocked = match_embeddings(x1, x2, cutoff=0.5, method="sparse", block_size=300, max_unblocked=0)
    assert exact.rows.size <= 700
    assert sp.total_similarity >= 0.999 * exact.total_similarity
    assert blocked.total_similarity >= 0.95 * exact.total_similarity
    for m in (sp, blocked):
        assert np.unique(m.rows).size == m.rows.size and np.unique(m.cols).size == m.cols.size
        u1 = x1 / np.linalg.norm(x1, axis=1, keepdims=True)
        u2 = x2 / np.linalg.norm(x2, axis=1, keepdims=True)
        assert np.allclose((u1[m.rows] * u2[m.cols]).sum(1), m.similarity, atol=1e-5)


def test_pair_cells_unequal_sizes_and_cutoff(trained):
    _, model, rna_q, atac_q = trained
    small = atac_q[:150].copy()
    paired = scx.tl.pair_cells(model, rna_q, small, cutoff=0.3, method="sparse")
    assert paired.n_obs <= 150
    assert paired.uns["scpairing"]["params"]["method"] == "sparse"
    assert paired["atac"].obs["original_obs_name"].is_unique
    high = scx.tl.pair_cells(model, rna_q, small, cutoff=0.95, method="exact")
    assert high.n_obs < paired.n_obs
    assert (high.obs["scpairing_similarity"] >= 0.95).all()
    with pytest.warns(UserWarning, match="No pair reaches"):
        empty = scx.tl.pair_cells(model, rna_q, small, cutoff=1.0)
    assert empty.n_obs == 0
    # without a model: a shared embedding in .obsm
    a = ad.AnnData(obsm={"Z": rna_q.obsm["X_pca"][:, :5]}, shape=(rna_q.n_obs, 0))
    b = ad.AnnData(obsm={"Z": rna_q.obsm["X_pca"][:200, :5] + 0.01}, shape=(200, 0))
    out = scx.tl.pair_cells(None, a, b, use_rep="Z", cutoff=0.9)
    assert out.n_obs == 200


def test_computed_inputs_project_new_cells_like_the_bridge():
    mdata = scx.datasets.synthetic_multiome(
        n_rna=400, n_atac=400, n_genes=120, paired=True, atac_features="peaks", seed=2
    )
    bridge = md.MuData({"rna": mdata["rna"][:300].copy(), "atac": mdata["atac"][:300].copy()})
    model = scx.tl.scpairing(bridge, max_epochs=2, batch_size=150, n_comps=8, **QUIET)
    assert bridge.uns["scpairing"]["params"]["inputs"] == {"rna": "pca", "atac": "lsi"}
    for m in ("rna", "atac"):
        registered = model.model_inputs(modality=m)
        assert registered.shape == (300, 8)
        projected = model.model_inputs(bridge[m], modality=m)
        assert np.allclose(projected, registered, atol=1e-3)
    # unpaired cells are embedded through the stored projection (their counts)
    z = model.get_latent_representation(mdata["atac"][300:].copy(), modality="atac")
    assert z.shape == (100, 10)
    # the LSI follows muon's TF-IDF + LSI (up to the SVD's signs)
    import muon as mu

    atac = bridge["atac"].copy()
    coords, _ = fit_lsi(atac, n_comps=5)
    mu.atac.pp.tfidf(atac)
    mu.atac.tl.lsi(atac, n_comps=5)
    corr = np.abs(np.corrcoef(coords.T, atac.obsm["X_lsi"].T)[:5, 5:]).diagonal()
    assert (corr > 0.99).all()
    # with a gene selection, new cells are still normalised over all their genes, as the bridge
    coords, transform = fit_pca(bridge["rna"], n_comps=6, n_top_genes=60)
    assert len(transform["features"]) == 60
    assert np.allclose(apply_input(transform, bridge["rna"]), coords, atol=1e-3)
    # features missing in new cells
    rna_new = mdata["rna"][300:, :50].copy()
    with pytest.raises(ValueError, match="lacks"):
        apply_input(model.input_transforms_["rna"], rna_new)


def test_trimodal_and_loss_variants():
    rna, atac = make_paired(240, seed=5)
    prot = ad.AnnData(X=(rna.obsm["X_pca"][:, :6] + 0.1).astype(np.float32), obs=rna.obs.copy())
    bridge = md.MuData({"rna": rna, "atac": atac, "prot": prot})
    model = scx.tl.scpairing(
        bridge,
        mod3="prot",
        use_rep={"rna": "X_pca", "atac": "X_lsi"},
        preprocess={"prot": "none"},
        max_epochs=3,
        batch_size=120,
        **QUIET,
    )
    assert bridge["prot"].obsm["X_scpairing"].shape == (240, 10)
    assert model.module.discriminators["modality"].linear_layers[-1].out_features == 3
    pred = model.get_cross_modality_prediction("rna", "prot")
    assert pred.shape == (240, 6)
    for kwargs in (
        {"loss_method": "debiased_clip"},
        {"loss_method": "sigmoid", "combine": "average"},
        {"adversarial": "confusion", "cap_temperature": 20.0},
        {"modality_discriminative": False},
    ):
        b = md.MuData({"rna": rna.copy(), "atac": atac.copy()})
        m = scx.tl.scpairing(b, use_rep=REPS, max_epochs=2, batch_size=120, **kwargs, **QUIET)
        assert np.isfinite(b["rna"].obsm["X_scpairing"]).all()
        assert np.isfinite(m.history_["loss_train"].to_numpy(dtype=float)).all()


def test_batch_discriminator(tmp_path):
    rna, atac = make_paired(200, seed=6)
    rna.obs["batch"] = np.repeat(["a", "b"], 100)
    bridge = md.MuData({"rna": rna, "atac": atac})
    model = scx.tl.scpairing(
        bridge,
        use_rep=REPS,
        batch_key="batch",
        batch_discriminative=True,
        max_epochs=2,
        batch_size=100,
        **QUIET,
    )
    assert "batch" in model.module.discriminators
    assert "batch_ce_train" in model.history_
    model.save(tmp_path / "b", save_anndata=True)
    loaded = SCPAIRING.load(tmp_path / "b")
    assert "batch" in loaded.module.discriminators


def test_paired_datamodule_keeps_pairs():
    rna, atac = make_paired(100, seed=1)
    bridge = md.MuData({"rna": rna, "atac": atac})
    SCPAIRING.setup_mudata(bridge, use_rep=REPS)
    model = SCPAIRING(bridge)
    dm = MultiModalDataModule(model.sources, batch_size=32, paired=True, seed=4)
    dm_unpaired = MultiModalDataModule(model.sources, batch_size=32, seed=4)
    for batch, _, _ in dm.train_dataloader():
        assert torch.equal(
            batch["rna"][REGISTRY_KEYS.INDICES_KEY], batch["atac"][REGISTRY_KEYS.INDICES_KEY]
        )
    first = next(iter(dm_unpaired.train_dataloader()))[0]
    assert not torch.equal(
        first["rna"][REGISTRY_KEYS.INDICES_KEY], first["atac"][REGISTRY_KEYS.INDICES_KEY]
    )
    with pytest.raises(ValueError, match="paired=True"):
        MultiModalDataModule(
            {
                "a": model.sources["rna"],
                "b": ModalitySource(model.sources["atac"].manager, np.arange(50)),
            },
            batch_size=16,
            paired=True,
        )


def test_bad_inputs_leave_data_unchanged(trained):
    _, model, rna_q, atac_q = trained
    rna, atac = make_paired(200, seed=2)
    # a bridge that is not paired: different cells
    shuffled = atac[np.random.default_rng(0).permutation(200)].copy()
    bridge = md.MuData({"rna": rna.copy(), "atac": shuffled})
    before = snapshot(bridge)
    with pytest.raises(ValueError, match="same cells in the same order"):
        scx.tl.scpairing(bridge, use_rep=REPS, max_epochs=1, **QUIET)
    assert_unchanged(before, bridge)
    other = atac[:150].copy()
    bridge = md.MuData({"rna": rna.copy(), "atac": other})
    with pytest.raises(ValueError, match="same cells"):
        SCPAIRING.setup_mudata(bridge, use_rep=REPS)
    # use_rep missing
    bridge = md.MuData({"rna": rna.copy(), "atac": atac.copy()})
    before = snapshot(bridge)
    with pytest.raises(ValueError, match="X_missing"):
        scx.tl.scpairing(bridge, use_rep={"rna": "X_missing", "atac": "X_lsi"}, **QUIET)
    with pytest.raises(ValueError, match="no `use_rep`"):
        scx.tl.scpairing(
            md.MuData({"rna": rna.copy(), "foo": atac.copy()}),
            mod2="foo",
            use_rep={"rna": "X_pca"},
            **QUIET,
        )
    with pytest.raises(ValueError, match="n_latent"):
        scx.tl.scpairing(bridge, use_rep=REPS, n_latent=1, **QUIET)
    with pytest.raises(ValueError, match="loss_method"):
        scx.tl.scpairing(bridge, use_rep=REPS, loss_method="triplet", **QUIET)
    assert_unchanged(before, bridge)
    # empty inputs
    with pytest.raises(ValueError, match="no cells"):
        scx.tl.scpairing(
            md.MuData({"rna": rna[:0].copy(), "atac": atac[:0].copy()}), use_rep=REPS, **QUIET
        )
    q_before = rna_q.obsm["X_pca"].copy()
    with pytest.raises(ValueError, match="no cells"):
        scx.tl.pair_cells(model, rna_q[:0].copy(), atac_q)
    # mismatched latent / input dimensions
    wrong = ad.AnnData(obsm={"X_pca": np.ones((5, 7), np.float32)}, shape=(5, 0))
    with pytest.raises(ValueError, match="dimensions"):
        model.get_latent_representation(wrong, modality="rna")
    a = ad.AnnData(obsm={"Z": np.ones((5, 4), np.float32)}, shape=(5, 0))
    b = ad.AnnData(obsm={"Z5": np.ones((5, 5), np.float32)}, shape=(5, 0))
    b.obsm["Z"] = np.ones((5, 5), np.float32)
    with pytest.raises(ValueError, match="different dimensions"):
        scx.tl.pair_cells(None, a, b, use_rep="Z")
    with pytest.raises(ValueError, match="cutoff"):
        scx.tl.pair_cells(model, rna_q, atac_q, cutoff=2)
    with pytest.raises(ValueError, match="method"):
        scx.tl.pair_cells(model, rna_q, atac_q, method="greedy")
    with pytest.raises(ValueError, match="modalities"):
        scx.tl.pair_cells(model, rna_q, atac_q, mod2="prot")
    assert np.array_equal(rna_q.obsm["X_pca"], q_before)


def test_sparse_inputs_stay_supported():
    # LSI projection of sparse counts equals the dense computation
    rng = np.random.default_rng(0)
    counts = sparse.random(80, 60, density=0.2, random_state=0, format="csr") * 3
    counts.data = np.ceil(counts.data)
    adata = ad.AnnData(X=counts.astype(np.float32))
    coords, transform = fit_lsi(adata, n_comps=4)
    dense = ad.AnnData(X=counts.toarray().astype(np.float32))
    assert np.allclose(apply_input(transform, dense), coords, atol=1e-3)
    assert rng is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=RuntimeWarning)
        apply_input(transform, adata)
