import itertools
import warnings

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch
from power_spherical import PowerSpherical
from scipy import sparse
from scvi import REGISTRY_KEYS

import scx
from conftest import QUIET, assert_unchanged, snapshot
from scx.data import ModalitySource, MultiModalDataModule
from scx.pp import apply_transform, fit_lsi, fit_pca
from scx.scpairing import SCPAIRING, match_embeddings, nearest_neighbour_pairs


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


def unpaired(rna: ad.AnnData, atac: ad.AnnData) -> md.MuData:
    """The unpaired cells of both modalities as one MuData (what ``pair_cells`` takes)."""
    return md.MuData({"rna": rna, "atac": atac})


@pytest.fixture(scope="module")
def trained():
    """Bridge of 600 paired cells; 400 held-out cells per modality act as unpaired data."""
    rna, atac = make_paired()
    bridge = md.MuData({"rna": rna[:600].copy(), "atac": atac[:600].copy()})
    model = scx.tl.scpairing(
        bridge, use_rep=REPS, max_epochs=40, batch_size=200, seed=0, trainer_kwargs=QUIET
    )
    return bridge, model, rna[600:].copy(), atac[600:].copy()


@pytest.fixture(scope="module")
def counts_bridge():
    """A count-level bridge (RNA counts, ATAC peaks) of 300 cells and 100 more unpaired cells."""
    mdata = scx.datasets.synthetic_multiome(
        n_rna=400, n_atac=400, n_genes=120, paired=True, atac_features="peaks", seed=2
    )
    bridge = md.MuData({"rna": mdata["rna"][:300].copy(), "atac": mdata["atac"][:300].copy()})
    return bridge, mdata["rna"][300:].copy(), mdata["atac"][300:].copy()


@pytest.mark.parametrize("scale", [1.0, 14.3, 60.0])
@pytest.mark.parametrize("unit_norm", [True, False])
def test_fused_clip_loss_matches_the_two_cross_entropies(scale, unit_norm):
    """The one-exponential CLIP loss equals (CE(L, I) + CE(Lᵀ, I)) / 2, value and gradients.

    Scale 60 (and non-unit inputs at 14.3) exceed the single-shift bound and take the
    log-softmax path; the others take the fused path.
    """
    from scx.scpairing._module import clip_loss

    generator = torch.Generator().manual_seed(0)
    f1 = torch.randn(120, 10, generator=generator, dtype=torch.float64)
    f2 = torch.randn(120, 10, generator=generator, dtype=torch.float64)
    if unit_norm:
        f1, f2 = torch.nn.functional.normalize(f1, dim=1), torch.nn.functional.normalize(f2, dim=1)
    f1.requires_grad_(), f2.requires_grad_()
    s = torch.tensor(scale, dtype=torch.float64, requires_grad=True)

    def reference(a, b, t):
        logits = t * a @ b.T
        target = torch.arange(a.shape[0])
        ce = torch.nn.functional.cross_entropy
        return (ce(logits, target) + ce(logits.T, target)) / 2

    fused, expected = clip_loss(f1, f2, s), reference(f1, f2, s)
    assert torch.allclose(fused, expected, rtol=1e-10, atol=1e-12)
    grads = torch.autograd.grad(fused, (f1, f2, s))
    expected_grads = torch.autograd.grad(expected, (f1, f2, s))
    for g, e in zip(grads, expected_grads, strict=True):
        assert torch.allclose(g, e, rtol=1e-8, atol=1e-10)
    assert torch.autograd.gradcheck(clip_loss, (f1, f2, s))


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
    data = unpaired(rna_q, atac_q)
    before = snapshot(data)
    paired = scx.tl.pair_cells(data, model, cutoff=0.5)
    assert_unchanged(before, data)  # nothing is written into the unpaired data
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
    joint = bridge.obsm["X_scpairing"]
    assert joint.shape == (600, 10)
    mean = bridge["rna"].obsm["X_scpairing"] + bridge["atac"].obsm["X_scpairing"]
    np.testing.assert_allclose(joint, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-6)
    record = bridge.uns["scpairing"]
    assert record["learned_temperature"] == pytest.approx(model.get_temperature())
    assert record["inputs"] == REPS
    assert record["params"]["max_epochs"] == 40 and record["params"]["batch_size"] == 200
    assert paired.n_obs == len(table)
    assert paired["rna"].obs["original_obs_name"].tolist() == table["rna"].tolist()
    assert paired["atac"].obs["original_obs_name"].tolist() == table["atac"].tolist()
    assert np.allclose(paired.obs["scpairing_similarity"], table["similarity"])
    assert (paired.obs["scpairing_similarity"] >= 0.5).all()
    assert list(paired.uns["scpairing"]["params"]["modalities"]) == ["rna", "atac"]
    assert "loss_train" in model.history_
    assert "discriminator_accuracy_train" in model.history_


def test_latent_representation_semantics(trained):
    bridge, model, rna_q, _ = trained
    z = model.get_latent_representation()
    assert set(z) == {"rna", "atac"}
    np.testing.assert_array_equal(z["atac"], bridge["atac"].obsm["X_scpairing"])
    np.testing.assert_array_equal(model.get_latent_representation(modality="rna"), z["rna"])
    with pytest.raises(ValueError, match="Pass `modality=`"):
        model.get_latent_representation(rna_q)
    with pytest.raises(ValueError, match="prot"):
        model.get_latent_representation(rna_q, modality="prot")
    # the cross-modality prediction decodes one modality's embedding with the other's decoder
    pred = model.get_cross_modality_prediction("rna", "atac", rna_q[:50])
    assert pred.shape == (50, 15)
    assert np.isfinite(pred).all()


def test_seed_determinism():
    rna, atac = make_paired(300, seed=3)
    runs = []
    for _ in range(2):
        bridge = md.MuData({"rna": rna.copy(), "atac": atac.copy()})
        model = scx.tl.scpairing(
            bridge, use_rep=REPS, max_epochs=3, batch_size=100, seed=0, trainer_kwargs=QUIET
        )
        runs.append(bridge["atac"].obsm["X_scpairing"].copy())
    assert np.array_equal(runs[0], runs[1])
    bridge = md.MuData({"rna": rna.copy(), "atac": atac.copy()})
    scx.tl.scpairing(
        bridge, use_rep=REPS, max_epochs=3, batch_size=100, seed=1, trainer_kwargs=QUIET
    )
    assert not np.allclose(runs[0], bridge["atac"].obsm["X_scpairing"])
    assert model.module.training is False


def test_save_load(trained, tmp_path):
    bridge, model, rna_q, atac_q = trained
    model.save(tmp_path / "m", save_anndata=True)
    loaded = SCPAIRING.load(tmp_path / "m")
    for adata, m in ((rna_q, "rna"), (atac_q, "atac")):
        assert np.allclose(
            loaded.get_latent_representation(adata, modality=m),
            model.get_latent_representation(adata, modality=m),
            atol=1e-6,
        )
    assert loaded.get_temperature() == pytest.approx(model.get_temperature())
    # onto the bridge as the user holds it (left unchanged)
    model.save(tmp_path / "n")
    before = snapshot(bridge)
    on_user_data = SCPAIRING.load(tmp_path / "n", adata=bridge)
    assert_unchanged(before, bridge)
    got = on_user_data.get_latent_representation()
    for m in ("rna", "atac"):
        np.testing.assert_allclose(got[m], bridge[m].obsm["X_scpairing"], atol=1e-6)


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
    data = unpaired(rna_q, small)
    paired = scx.tl.pair_cells(data, model, cutoff=0.3, method="sparse")
    assert paired.n_obs <= 150
    assert paired.uns["scpairing"]["params"]["method"] == "sparse"
    assert paired["atac"].obs["original_obs_name"].is_unique
    high = scx.tl.pair_cells(data, model, cutoff=0.95, method="exact")
    assert high.n_obs < paired.n_obs
    assert (high.obs["scpairing_similarity"] >= 0.95).all()
    with pytest.warns(UserWarning, match="No pair reaches"):
        empty = scx.tl.pair_cells(data, model, cutoff=1.0)
    assert empty.n_obs == 0
    # the other order: ATAC cells first, their RNA partners second
    flipped = scx.tl.pair_cells(data, model, modalities=("atac", "rna"), cutoff=0.3)
    assert list(flipped.uns["scpairing_pairs"].columns) == ["atac", "rna", "similarity"]
    assert flipped.n_obs == paired.n_obs
    # without a model: a shared embedding in .obsm of both modalities
    a = ad.AnnData(obsm={"Z": rna_q.obsm["X_pca"][:, :5]}, shape=(rna_q.n_obs, 0))
    b = ad.AnnData(obsm={"Z": rna_q.obsm["X_pca"][:200, :5] + 0.01}, shape=(200, 0))
    b.obs_names = [f"b{i}" for i in range(200)]
    out = scx.tl.pair_cells(md.MuData({"x": a, "y": b}), use_rep="Z", cutoff=0.9)
    assert out.n_obs == 200
    assert list(out.uns["scpairing_pairs"].columns) == ["x", "y", "similarity"]


def test_pair_cells_old_form_still_works_with_a_warning(trained):
    _, model, rna_q, atac_q = trained
    new = scx.tl.pair_cells(unpaired(rna_q, atac_q), model, cutoff=0.5)
    with pytest.warns(FutureWarning, match="deprecated"):
        old = scx.tl.pair_cells(model, rna_q, atac_q, cutoff=0.5)
    pd.testing.assert_frame_equal(old.uns["scpairing_pairs"], new.uns["scpairing_pairs"])
    with pytest.warns(FutureWarning, match="deprecated"):
        flipped = scx.tl.pair_cells(model, atac_q, rna_q, mod1="atac", mod2="rna", cutoff=0.5)
    assert list(flipped.mod) == ["atac", "rna"]
    with pytest.warns(FutureWarning, match="deprecated"):
        mod_names = scx.tl.pair_cells(unpaired(rna_q, atac_q), model, mod1="atac", mod2="rna")
    assert list(mod_names.mod) == ["atac", "rna"]
    a = ad.AnnData(obsm={"Z": rna_q.obsm["X_pca"][:, :5]}, shape=(rna_q.n_obs, 0))
    with pytest.warns(FutureWarning, match="deprecated"):
        out = scx.tl.pair_cells(None, a, a.copy(), use_rep="Z", cutoff=0.9)
    assert list(out.uns["scpairing_pairs"].columns) == ["mod1", "mod2", "similarity"]
    assert out.n_obs == rna_q.n_obs


def test_pair_cells_checks_everything_before_any_work(trained, monkeypatch):
    _, model, rna_q, atac_q = trained
    data = unpaired(rna_q, atac_q)
    before = snapshot(data)

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(SCPAIRING, "get_latent_representation", no_work)
    monkeypatch.setattr(scx.scpairing._tool, "match_embeddings", no_work)
    bad = [
        ({"cutoff": 2}, "cutoff"),
        ({"cutoff": "high"}, "cutoff"),
        ({"method": "greedy"}, "method"),
        ({"n_neighbors": 0}, "n_neighbors"),
        ({"block_size": 1}, "block_size"),
        ({"max_unblocked": -1}, "max_unblocked"),
        ({"seed": -1}, "seed"),
        ({"key_added": ""}, "key_added"),
        ({"modalities": ("rna", "prot")}, "prot"),
        ({"modalities": ("rna", "rna")}, "different"),
        ({"modalities": "rna"}, "`modalities` must name"),
        ({"use_rep": "X_pca"}, "use_rep"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            scx.tl.pair_cells(data, model, **kwargs)
    with pytest.raises(ValueError, match=r"no cells|is empty"):
        scx.tl.pair_cells(unpaired(rna_q[:0].copy(), atac_q), model)
    with pytest.raises(ValueError, match="must be a MuData"):
        scx.tl.pair_cells(rna_q, model)
    with pytest.raises(ValueError, match="SCPAIRING"):
        scx.tl.pair_cells(data, "model")
    with pytest.raises(ValueError, match="use_rep"):
        scx.tl.pair_cells(data)  # neither a model nor an embedding
    with pytest.raises(ValueError, match=r"use_rep \(modality 'rna'\)='Z'` is not in `.obsm`"):
        scx.tl.pair_cells(data, use_rep="Z")
    with pytest.raises(ValueError, match=r"cutof.*Did you mean `cutoff`"):
        scx.tl.pair_cells(data, model, cutof=0.5)
    assert_unchanged(before, data)
    monkeypatch.undo()
    # mismatched embedding widths without a model
    a = ad.AnnData(obsm={"Z": np.ones((5, 4), np.float32)}, shape=(5, 0))
    b = ad.AnnData(obsm={"Z": np.ones((5, 5), np.float32)}, shape=(5, 0))
    with pytest.raises(ValueError, match="different dimensions"):
        scx.tl.pair_cells(md.MuData({"a": a, "b": b}), use_rep="Z")


def test_computed_inputs_project_new_cells_like_the_bridge(counts_bridge, tmp_path):
    bridge, rna_new, atac_new = counts_bridge
    model = scx.tl.scpairing(bridge, max_epochs=2, batch_size=150, n_comps=8, trainer_kwargs=QUIET)
    assert bridge.uns["scpairing"]["inputs"] == {"rna": "pca", "atac": "lsi"}
    assert bridge.uns["scpairing"]["params"]["preprocess"] == {"rna": "pca", "atac": "lsi"}
    transforms = model.input_state_["transforms"]
    assert transforms["rna"]["kind"] == "pca" and transforms["atac"]["kind"] == "lsi"
    for m in ("rna", "atac"):
        registered = model.model_inputs(modality=m)
        assert registered.shape == (300, 8)
        projected = model.model_inputs(bridge[m], modality=m)
        np.testing.assert_allclose(projected, registered, atol=1e-5)
        # the bridge's own counts map onto its written embedding
        np.testing.assert_allclose(
            model.get_latent_representation(bridge[m], modality=m),
            bridge[m].obsm["X_scpairing"],
            atol=1e-5,
        )
    # unpaired cells are embedded through the stored projection (their raw counts)
    z = model.get_latent_representation(atac_new, modality="atac")
    assert z.shape == (100, 10) and np.isfinite(z).all()
    # features missing in new cells
    with pytest.raises(ValueError, match="lacks"):
        model.get_latent_representation(rna_new[:, :50].copy(), modality="rna")
    # a saved model loads onto the user's count-level bridge and gives the same embedding
    model.save(tmp_path / "m")
    before = snapshot(bridge)
    loaded = SCPAIRING.load(tmp_path / "m", adata=bridge)
    assert_unchanged(before, bridge)
    got = loaded.get_latent_representation()
    for m in ("rna", "atac"):
        np.testing.assert_allclose(got[m], bridge[m].obsm["X_scpairing"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        loaded.get_latent_representation(atac_new, modality="atac"), z, rtol=1e-5, atol=1e-6
    )


def test_preprocessing_follows_scanpy_and_muon(counts_bridge):
    bridge, _, _ = counts_bridge
    # the LSI follows muon's TF-IDF + LSI (up to the SVD's signs)
    import muon as mu

    atac = bridge["atac"].copy()
    coords, _ = fit_lsi(atac.X, atac.var_names, n_comps=5)
    mu.atac.pp.tfidf(atac)
    mu.atac.tl.lsi(atac, n_comps=5)
    corr = np.abs(np.corrcoef(coords.T, atac.obsm["X_lsi"].T)[:5, 5:]).diagonal()
    assert (corr > 0.99).all()
    # the PCA is scanpy's normalize_total(1e4) → log1p → HVG (seurat) → pca
    rna = bridge["rna"].copy()
    coords, transform = fit_pca(rna.X, rna.var_names, n_comps=6, n_top_genes=60)
    assert len(transform["features"]) == 60
    sc.pp.normalize_total(rna, target_sum=1e4)
    sc.pp.log1p(rna)
    sc.pp.highly_variable_genes(rna, n_top_genes=60, flavor="seurat")
    rna = rna[:, rna.var["highly_variable"].to_numpy()].copy()
    sc.pp.pca(rna, n_comps=6, svd_solver="arpack", random_state=0)
    corr = np.abs(np.corrcoef(coords.T, rna.obsm["X_pca"].T)[:6, 6:]).diagonal()
    assert (corr > 0.999).all()
    # with a gene selection, new cells are still normalised over all their genes, as the bridge
    assert np.allclose(apply_transform(transform, bridge["rna"]), coords, atol=1e-3)


def test_trimodal_and_loss_variants():
    rna, atac = make_paired(240, seed=5)
    prot = ad.AnnData(X=(rna.obsm["X_pca"][:, :6] + 0.1).astype(np.float32), obs=rna.obs.copy())
    bridge = md.MuData({"rna": rna, "atac": atac, "prot": prot})
    model = scx.tl.scpairing(
        bridge,
        modalities=("rna", "atac", "prot"),
        use_rep={"rna": "X_pca", "atac": "X_lsi"},
        preprocess={"prot": "none"},
        max_epochs=3,
        batch_size=120,
        trainer_kwargs=QUIET,
    )
    assert bridge["prot"].obsm["X_scpairing"].shape == (240, 10)
    assert bridge.obsm["X_scpairing"].shape == (240, 10)
    assert model.module.discriminators["modality"].linear_layers[-1].out_features == 3
    pred = model.get_cross_modality_prediction("rna", "prot")
    assert pred.shape == (240, 6)
    # the "none" input maps new protein cells by their features
    z = model.get_latent_representation(prot[:20].copy(), modality="prot")
    np.testing.assert_allclose(z, bridge["prot"].obsm["X_scpairing"][:20], atol=1e-5)
    for kwargs in (
        {"loss_method": "debiased_clip"},
        {"loss_method": "sigmoid", "combine": "average"},
        {"adversarial": "confusion", "cap_temperature": 20.0},
        {"modality_discriminative": False},
        {"norm": "layer", "learn_temperature": False, "max_steps": 3},
    ):
        b = md.MuData({"rna": rna.copy(), "atac": atac.copy()})
        call = {"use_rep": REPS, "batch_size": 120, "trainer_kwargs": QUIET, **kwargs}
        if "max_steps" not in call:
            call["max_epochs"] = 2
        m = scx.tl.scpairing(b, **call)
        assert np.isfinite(b["rna"].obsm["X_scpairing"]).all()
        assert np.isfinite(m.history_["loss_train"].to_numpy(dtype=float)).all()
    # max_steps rounds up to whole epochs of 2 steps
    assert b.uns["scpairing"]["params"]["max_steps"] == 4
    assert b.uns["scpairing"]["params"]["max_epochs"] == 2


def test_old_argument_names_still_work_with_a_warning():
    rna, atac = make_paired(240, seed=5)
    prot = ad.AnnData(X=(rna.obsm["X_pca"][:, :6] + 0.1).astype(np.float32), obs=rna.obs.copy())
    bridge = md.MuData({"gex": rna, "atac": atac, "prot": prot})
    with pytest.warns(FutureWarning, match="`mod3=` is deprecated"):
        scx.tl.scpairing(
            bridge,
            mod1="gex",
            mod3="prot",
            use_rep={"gex": "X_pca", "atac": "X_lsi"},
            preprocess={"prot": "none"},
            max_epochs=1,
            batch_size=120,
            trainer_kwargs=QUIET,
        )
    assert list(bridge.uns["scpairing"]["params"]["modalities"]) == ["gex", "atac", "prot"]
    bridge = md.MuData({"rna": rna.copy(), "atac": atac.copy()})
    with pytest.warns(FutureWarning, match="`mod3=` is deprecated"):
        scx.tl.scpairing(bridge, mod3=None, use_rep=REPS, max_epochs=1, trainer_kwargs=QUIET)
    assert list(bridge.uns["scpairing"]["params"]["modalities"]) == ["rna", "atac"]


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
        trainer_kwargs=QUIET,
    )
    assert "batch" in model.module.discriminators
    assert "batch_ce_train" in model.history_
    model.save(tmp_path / "b", save_anndata=True)
    loaded = SCPAIRING.load(tmp_path / "b")
    assert "batch" in loaded.module.discriminators
    loaded = SCPAIRING.load(tmp_path / "b", adata=bridge)
    np.testing.assert_allclose(
        loaded.get_latent_representation(modality="atac"),
        bridge["atac"].obsm["X_scpairing"],
        atol=1e-6,
    )


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
    # the manual path trains too
    model.train(max_epochs=1, batch_size=50, **QUIET)
    assert model.train_params_["max_steps"] == 2


def _bad_calls():
    def shuffled(m):
        m.mod["atac"] = m["atac"][np.random.default_rng(0).permutation(200)].copy()

    def fewer(m):
        m.mod["atac"] = m["atac"][:150].copy()

    def duplicated(m):
        names = list(m["rna"].obs_names)
        names[1] = names[0]
        for a in m.mod.values():
            a.obs_names = names

    def nan_rep(m):
        m["rna"].obsm["X_pca"][0, 0] = np.nan

    return [
        (shuffled, {}, "same cells in the same order"),
        (fewer, {}, "same cells"),
        (duplicated, {}, "duplicated cell names"),
        (nan_rep, {}, "NaN"),
        (None, {"use_rep": {"rna": "X_missing", "atac": "X_lsi"}}, "X_missing"),
        (None, {"use_rep": {"rna": "X_pca", "atax": "X_lsi"}}, "names modalities.*atax"),
        (None, {"modalities": ("rna",)}, "2 or 3 modalities"),
        (None, {"modalities": ("rna", "rna")}, "different modalities"),
        (None, {"modalities": ("rna", "prot")}, "prot"),
        (None, {"n_comps": 1}, "n_comps"),
        (None, {"batch_key": "batch"}, "batch_key"),
        (None, {"use_rep": None, "preprocess": "tsne"}, "preprocess"),
        (None, {"n_latent": 1}, "n_latent"),
        (None, {"n_hidden": 0}, "n_hidden"),
        (None, {"loss_method": "triplet"}, "loss_method"),
        (None, {"combine": "max"}, "combine"),
        (None, {"adversarial": "gan"}, "adversarial"),
        (None, {"norm": "group"}, "norm"),
        (None, {"dropout": 1.0}, "dropout"),
        (None, {"dropout": -0.1}, "dropout"),
        (None, {"cosine_weight": -1.0}, "cosine_weight"),
        (None, {"kl_weight": float("nan")}, "kl_weight"),
        (None, {"modality_weight": float("inf")}, "modality_weight"),
        (None, {"batch_weight": "1"}, "batch_weight"),
        (None, {"temperature": 0.0}, "temperature"),
        (None, {"cap_temperature": -1.0}, "cap_temperature"),
        (None, {"learn_temperature": "yes"}, "learn_temperature"),
        (None, {"lr": 0.0}, "`lr`"),
        (None, {"lr_decay": -1e-3}, "lr_decay"),
        (None, {"lr_discriminator": float("nan")}, "lr_discriminator"),
        (None, {"weight_decay": -1.0}, "weight_decay"),
        (None, {"clip_norm": 0.0}, "clip_norm"),
        (None, {"batch_size": 1}, "batch_size"),
        (None, {"max_epochs": 0}, "max_epochs"),
        (None, {"max_epochs": 2, "max_steps": 2}, "either `max_epochs`"),
        (None, {"train_size": 0.0}, "train_size"),
    ]


@pytest.mark.parametrize("mutate, kwargs, message", _bad_calls())
def test_bad_inputs_fail_before_any_work_and_leave_data_unchanged(
    mutate, kwargs, message, monkeypatch
):
    rna, atac = make_paired(200, seed=2)
    bridge = md.MuData({"rna": rna, "atac": atac})
    if mutate is not None:
        mutate(bridge)
    before = snapshot(bridge)

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(SCPAIRING, "prepare_inputs", no_work)
    call = {"use_rep": REPS, "max_epochs": 1, "trainer_kwargs": QUIET, **kwargs}
    with pytest.raises(ValueError, match=message):
        scx.tl.scpairing(bridge, **call)
    assert_unchanged(before, bridge)


def test_bad_count_inputs(counts_bridge, monkeypatch):
    bridge, _, _ = counts_bridge
    bridge = bridge.copy()
    monkeypatch.setattr(SCPAIRING, "prepare_inputs", lambda *a, **k: 1 / 0)
    bridge["rna"].X = bridge["rna"].X.copy()
    bridge["rna"].X.data[0] = -1.0
    before = snapshot(bridge)
    with pytest.raises(ValueError, match="negative values"):
        scx.tl.scpairing(bridge, trainer_kwargs=QUIET)
    with pytest.raises(ValueError, match=r"layer\['rna'\]='counts'"):
        scx.tl.scpairing(bridge, layer="counts", trainer_kwargs=QUIET)
    with pytest.raises(ValueError, match="kind cannot be told"):
        scx.tl.scpairing(
            md.MuData({"rna": bridge["rna"], "foo": bridge["atac"]}),
            modalities=("rna", "foo"),
            trainer_kwargs=QUIET,
        )
    with pytest.raises(ValueError, match="both `use_rep"):
        scx.tl.scpairing(
            bridge, use_rep={"rna": "X_pca"}, preprocess={"rna": "pca"}, trainer_kwargs=QUIET
        )
    assert_unchanged(before, bridge)
    # empty inputs
    empty = md.MuData({"rna": bridge["rna"][:0].copy(), "atac": bridge["atac"][:0].copy()})
    with pytest.raises(ValueError, match="is empty"):
        scx.tl.scpairing(empty, trainer_kwargs=QUIET)


def test_new_cells_with_wrong_inputs(trained):
    _, model, _, _ = trained
    wrong = ad.AnnData(obsm={"X_pca": np.ones((5, 7), np.float32)}, shape=(5, 0))
    with pytest.raises(ValueError, match="dimensions"):
        model.get_latent_representation(wrong, modality="rna")
    missing = ad.AnnData(obsm={"X_other": np.ones((5, 20), np.float32)}, shape=(5, 0))
    with pytest.raises(ValueError, match="X_pca"):
        model.get_latent_representation(missing, modality="rna")


def test_sparse_inputs_stay_supported():
    # LSI projection of sparse counts equals the dense computation
    counts = sparse.random(80, 60, density=0.2, random_state=0, format="csr") * 3
    counts.data = np.ceil(counts.data)
    adata = ad.AnnData(X=counts.astype(np.float32))
    coords, transform = fit_lsi(adata.X, adata.var_names, n_comps=4)
    dense = ad.AnnData(X=counts.toarray().astype(np.float32))
    assert np.allclose(apply_transform(transform, dense), coords, atol=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=RuntimeWarning)
        apply_transform(transform, adata)
