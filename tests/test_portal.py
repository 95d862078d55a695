"""Portal: planted batch effects removed, types kept apart, save/load, several batches, errors."""

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import pytest
import torch

import scx
from conftest import QUIET, RecordIterates, assert_unchanged, moving_average, snapshot
from scx._neighbors import knn
from scx.portal import PORTAL
from scx.portal._module import PORTALModule

#: Small networks and few steps keep the tests fast; the planted structure is easy.
FAST = {"n_hidden": 128, "max_steps": 400, "batch_size": 200, "trainer_kwargs": QUIET}


def batch_mixing(z: np.ndarray, batches: np.ndarray, k: int = 20) -> float:
    """Mean fraction of a cell's neighbours from other batches, over its expected fraction."""
    index, _ = knn(z, z, k + 1)
    other = (batches[index[:, 1:]] != batches[:, None]).mean(axis=1)
    expected = 1 - pd.Series(batches).map(pd.Series(batches).value_counts(normalize=True))
    return float(other.mean() / expected.mean())


def type_purity(z: np.ndarray, types: np.ndarray, k: int = 20) -> float:
    """Mean fraction of a cell's neighbours of its own type."""
    index, _ = knn(z, z, k + 1)
    return float((types[index[:, 1:]] == types[:, None]).mean())


def unintegrated(adata: ad.AnnData) -> np.ndarray:
    """Portal's joint PCA without integration, rows in the order of ``adata``."""
    batches = adata.obs["batch"].astype(str).to_numpy()
    names = list(pd.unique(batches))
    pca = scx.pp.joint_pca({b: adata[batches == b] for b in names})
    out = np.empty((adata.n_obs, 30), dtype=np.float32)
    for b in names:
        out[batches == b] = pca.embeddings[b]
    return out


@pytest.fixture(scope="session")
def two_batches():
    """One Portal run on two generated batches, shared by the read-only tests."""
    adata = scx.datasets.synthetic_batches(n_cells=600, n_types=4, seed=0)
    model = scx.tl.portal(adata, batch_key="batch", **FAST)
    return adata, model


def test_synthetic_batches_have_a_batch_effect():
    adata = scx.datasets.synthetic_batches(n_cells=600, n_types=4, seed=0)
    pcs = unintegrated(adata)
    batches = adata.obs["batch"].to_numpy()
    assert batch_mixing(pcs, batches) < 0.3
    assert type_purity(pcs, adata.obs["cell_type"].to_numpy()) > 0.9


def test_portal_removes_planted_batch_effect(two_batches):
    adata, _ = two_batches
    batches = adata.obs["batch"].to_numpy()
    types = adata.obs["cell_type"].to_numpy()
    before = batch_mixing(unintegrated(adata), batches)
    z = adata.obsm["X_portal"]
    assert z.shape == (adata.n_obs, 20) and np.isfinite(z).all()
    after = batch_mixing(z, batches)
    assert after > 0.6 and after > before + 0.4, (before, after)
    assert type_purity(z, types) > 0.9
    # labels of batch0 transfer to batch1 through the joint latent
    scx.tl.transfer_labels(
        adata, labels_key="cell_type", use_rep="X_portal", reference=("batch", "batch0")
    )
    query = batches == "batch1"
    accuracy = np.mean(adata.obs["transfer_label"].astype(str)[query] == types[query])
    assert accuracy > 0.9


def test_portal_outputs(two_batches):
    adata, model = two_batches
    scores = adata.obs["portal_boundary_score"].to_numpy()
    reference = adata.obs["batch"].to_numpy() == "batch0"
    assert np.isnan(scores[reference]).all()
    assert np.isfinite(scores[~reference]).all() and (np.abs(scores[~reference]) <= 5).all()
    params = adata.uns["portal"]["params"]
    assert adata.uns["portal"]["datasets"] == ["batch0", "batch1"]
    assert adata.uns["portal"]["n_genes"] == 300
    assert params["max_steps"] == 400 and params["max_epochs"] == 4
    assert params["lambda_cos"] == [20.0] and params["boundary"] == 5.0
    assert params["reference"] == "batch0" and params["batch_key"] == "batch"
    assert params["batch_size"] == 200 and params["seed"] == 0
    assert params["ema_decay"] == 0.99
    history = model.history
    assert {"gan_train", "ae_train", "la_train", "cos_train", "discriminator_train"} <= set(history)
    # the reconstruction and cosine terms were learned
    assert history["ae_train"].iloc[-1, 0] < 0.5 * history["ae_train"].iloc[0, 0]
    assert history["cos_train"].iloc[-1, 0] < history["cos_train"].iloc[0, 0]


def test_translation_into_another_batch(two_batches):
    adata, model = two_batches
    types = adata.obs["cell_type"].astype(str).to_numpy()
    batches = adata.obs["batch"].to_numpy()
    translated = model.get_translated("batch1", "batch0")
    assert translated.shape == ((batches == "batch1").sum(), 30)
    np.testing.assert_array_equal(
        model.get_translated("batch0", "batch0"), model._input_matrix("batch0", None)
    )
    expression = model.get_translated_expression("batch1", "batch0")
    assert list(expression.index) == list(adata.obs_names[batches == "batch1"])
    # batch1 cells translated into batch0 expression look like batch0 cells of their own type
    real = scx.pp.log_normalize(adata[batches == "batch0"].X).toarray()
    real = (real - real.mean(0)) / real.std(0).clip(1e-8)
    means_real = pd.DataFrame(real).groupby(types[batches == "batch0"]).mean()
    target = model.input_state_["transforms"]["batch0"]
    assert list(expression.columns) == target["features"]
    standardised = (expression.to_numpy() - target["mean"]) / target["scale"]
    means_translated = pd.DataFrame(standardised).groupby(types[batches == "batch1"]).mean()
    genes = adata.var_names.get_indexer(expression.columns)
    corr = np.corrcoef(means_translated.to_numpy(), means_real.to_numpy()[:, genes])[:4, 4:]
    assert (corr.argmax(axis=1) == np.arange(4)).all()
    assert np.diag(corr).min() > 0.5


def _assert_close(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_allclose(first[key], second[key], atol=1e-6, equal_nan=True)


def test_save_load_keeps_discriminators(two_batches, tmp_path):
    _, model = two_batches
    model.save(tmp_path / "portal", save_anndata=True)
    loaded = PORTAL.load(tmp_path / "portal")
    original, restored = model.module.state_dict(), loaded.module.state_dict()
    discriminator_keys = [k for k in original if k.startswith("discriminators.")]
    assert discriminator_keys and set(original) == set(restored)
    for key in original:
        torch.testing.assert_close(original[key], restored[key])
    _assert_close(loaded.get_latent_representation(), model.get_latent_representation())
    _assert_close(loaded.get_boundary_scores(), model.get_boundary_scores())
    assert loaded.domains_ == model.domains_


def test_load_onto_the_users_anndata_and_new_cells_from_counts(two_batches, tmp_path):
    """The stored joint PCA rebuilds the inputs from counts; the user's data stay unchanged."""
    adata, model = two_batches
    model.save(tmp_path / "portal")
    before = _adata_state(adata)
    loaded = PORTAL.load(tmp_path / "portal", adata=adata)
    _assert_adata_unchanged(before, adata)
    _assert_close(loaded.get_latent_representation(), model.get_latent_representation())
    _assert_close(loaded.get_boundary_scores(), model.get_boundary_scores())
    # new cells given as counts go through batch1's stored transform
    batches = adata.obs["batch"].to_numpy()
    new = adata[batches == "batch1"][:50].copy()
    expected = model.get_latent_representation(modality="batch1")[:50]
    np.testing.assert_allclose(
        loaded.get_latent_representation(new, modality="batch1"), expected, atol=1e-5
    )
    np.testing.assert_allclose(
        model.get_boundary_scores(new, modality="batch1"),
        model.get_boundary_scores(modality="batch1")[:50],
        atol=1e-5,
    )
    expression = model.get_translated_expression("batch1", "batch0", new)
    assert list(expression.index) == list(new.obs_names)
    np.testing.assert_allclose(
        expression.to_numpy(),
        model.get_translated_expression("batch1", "batch0").to_numpy()[:50],
        atol=1e-4,
    )
    # the same cells through another dataset's transform map differently
    other = model.get_latent_representation(new, modality="batch0")
    assert not np.allclose(other, expected, atol=1e-3)
    with pytest.raises(ValueError, match="modality"):
        model.get_latent_representation(new)
    with pytest.raises(ValueError, match="lacks"):
        model.get_latent_representation(new[:, :100].copy(), modality="batch1")


def test_latent_per_dataset_is_written_row_by_row():
    """Datasets interleaved in the AnnData: every cell gets its own row, names untouched."""
    adata = scx.datasets.synthetic_batches(n_cells=150, n_types=3, seed=8)
    order = np.random.default_rng(0).permutation(adata.n_obs)
    adata = adata[order].copy()
    names = adata.obs_names.copy()
    model = scx.tl.portal(adata, batch_key="batch", **{**FAST, "max_steps": 20, "batch_size": 64})
    assert adata.obs_names.equals(names)
    latent = model.get_latent_representation()
    batches = adata.obs["batch"].to_numpy()
    for name, z in latent.items():
        np.testing.assert_array_equal(adata.obsm["X_portal"][batches == name], z)
        assert model.obs_names_of(name).equals(names[batches == name])
    scores = adata.obs["portal_boundary_score"].to_numpy()
    np.testing.assert_array_equal(
        scores[batches == "batch1"], model.get_boundary_scores(modality="batch1")
    )


def test_three_batches_incremental_into_the_reference():
    """Three batches: every pair is mixed and the types stay apart.

    Robust by construction (issue 13): the planted per-type batch effect (``interaction_effect``
    2.0) separates every pair of batches before integration (mixing ≤ 0.23; with the default
    1.5 and this seed batch0 and batch2 were already half mixed, 0.44, so the +0.2 check asked
    for 0.64 where a run reaches 0.54–0.66), and the stages train for the method's own default
    of 1,000 steps (at 400 the adversarial alignment had not settled: pair mixing varied from
    0.31 to 0.72 between seeds). Measured over seeds 0–3: mixing after ≥ 0.649 for every pair,
    at least 0.45 above before, purity ≥ 0.999.
    """
    adata = scx.datasets.synthetic_batches(
        n_cells=500, n_types=4, n_batches=3, interaction_effect=2.0, seed=2
    )
    model = scx.tl.portal(
        adata,
        batch_key="batch",
        reference="batch1",
        order=["batch2", "batch0"],
        **{**FAST, "max_steps": 1000},
    )
    assert model.domains_ == ["batch1", "batch2", "batch0"]
    assert model.module.n_stages == 2
    assert list(model.history["stage"].iloc[:, 0]) == [1.0] * 10 + [2.0] * 10
    params = adata.uns["portal"]["params"]
    assert params["lambda_cos"] == [20.0, 20.0] and params["max_steps"] == 1000
    assert params["order"] == ["batch2", "batch0"]
    batches = adata.obs["batch"].to_numpy()
    types = adata.obs["cell_type"].to_numpy()
    z = adata.obsm["X_portal"]
    pcs = unintegrated(adata)
    for a, b in [("batch0", "batch1"), ("batch1", "batch2"), ("batch0", "batch2")]:
        pair = np.isin(batches, [a, b])
        before, after = batch_mixing(pcs[pair], batches[pair]), batch_mixing(z[pair], batches[pair])
        assert after > 0.4 and after > before + 0.2, (a, b, before, after)
    assert type_purity(z, types) > 0.85
    scores = adata.obs["portal_boundary_score"].to_numpy()
    assert np.isnan(scores[batches == "batch1"]).all()
    assert np.isfinite(scores[batches != "batch1"]).all()
    # every non-reference dataset is translated into the reference space
    space = model.get_reference_space()
    assert set(space) == {"batch0", "batch1", "batch2"}
    assert all(x.shape == ((batches == m).sum(), 30) for m, x in space.items())
    np.testing.assert_array_equal(space["batch1"], model._input_matrix("batch1", None))
    np.testing.assert_allclose(
        space["batch0"], model.get_translated("batch0", "batch1"), rtol=1e-5, atol=1e-5
    )


def test_batch_specific_type_is_not_forced_onto_another():
    """A type missing from batch1 keeps its own neighbourhood (the boundary at work)."""
    adata = scx.datasets.synthetic_batches(n_cells=600, n_types=4, missing_types={1: [0]}, seed=3)
    model = scx.tl.portal(adata, batch_key="batch", **FAST)
    z = adata.obsm["X_portal"]
    batches = adata.obs["batch"].to_numpy()
    types = adata.obs["cell_type"].astype(str).to_numpy()
    only = types == "type0"
    index, _ = knn(z, z[only], 21)
    merged = (batches[index[:, 1:]] == "batch1").mean()
    assert merged < 0.1, merged
    # the others still mix
    shared = ~only
    assert batch_mixing(z[shared], batches[shared]) > 0.5
    assert model.is_trained_


def test_mudata_datasets_and_use_rep(tmp_path):
    adata = scx.datasets.synthetic_batches(n_cells=400, n_types=3, seed=4)
    batches = adata.obs["batch"].to_numpy()
    mdata = mudata.MuData({b: adata[batches == b].copy() for b in ["batch0", "batch1"]})
    before = snapshot(mdata)
    model = scx.tl.portal(mdata, **FAST)
    for name in ("batch0", "batch1"):
        assert mdata[name].obsm["X_portal"].shape == (400, 20)
        np.testing.assert_array_equal(
            mdata[name].obsm["X_portal"], model.get_latent_representation(modality=name)
        )
    assert mdata.obsm["X_portal"].shape == (800, 20)
    assert "portal" in mdata.uns
    assert mdata.uns["portal"]["params"]["modalities"] == ["batch0", "batch1"]
    assert before["mods"]["batch0"]["obs"].equals(
        mdata["batch0"].obs.drop(columns="portal_boundary_score")
    )
    assert set(model.input_state_["transforms"]) == {"batch0", "batch1"}
    # the MuData's cells keep their names in translations
    expression = model.get_translated_expression("batch1", "batch0")
    assert expression.index.equals(mdata["batch1"].obs_names)
    # load onto the user's MuData: the view is rebuilt from its counts
    model.save(tmp_path / "mu")
    state = snapshot(mdata)
    loaded = PORTAL.load(tmp_path / "mu", adata=mdata)
    assert_unchanged(state, mdata)
    _assert_close(loaded.get_latent_representation(), model.get_latent_representation())

    # from an existing embedding: no gene-space transform
    pcs = unintegrated(adata)
    adata.obsm["X_pca"] = pcs
    model = scx.tl.portal(adata, batch_key="batch", use_rep="X_pca", **FAST)
    assert model.input_state_["transforms"] == {}
    assert adata.uns["portal"]["params"]["use_rep"] == "X_pca"
    assert adata.uns["portal"]["n_genes"] is None
    assert batch_mixing(adata.obsm["X_portal"], batches) > batch_mixing(pcs, batches) + 0.3
    with pytest.raises(ValueError, match="gene-space transform"):
        model.get_translated_expression("batch1", "batch0")
    # load rebuilds the view from the user's .obsm; new cells are read from their .obsm
    model.save(tmp_path / "rep")
    loaded = PORTAL.load(tmp_path / "rep", adata=adata)
    _assert_close(loaded.get_latent_representation(), model.get_latent_representation())
    new = adata[batches == "batch1"][:20].copy()
    np.testing.assert_allclose(
        loaded.get_latent_representation(new, modality="batch1"),
        adata.obsm["X_portal"][batches == "batch1"][:20],
        atol=1e-5,
    )


def test_same_seed_same_embedding():
    adata = scx.datasets.synthetic_batches(n_cells=300, n_types=3, seed=5)
    runs = []
    for _ in range(2):
        copy = adata.copy()
        scx.tl.portal(copy, batch_key="batch", seed=7, **{**FAST, "max_steps": 30})
        runs.append(copy.obsm["X_portal"])
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("ema_decay", [0.5, 0.9, None])
def test_averaged_weights_are_the_moving_average_of_the_iterates(ema_decay):
    """With ``ema_decay`` the encoders/generators end as the EMA of their iterates; the
    discriminators (and, with ``REFERENCE_SETTINGS``, everything) keep the last step's weights."""
    adata = scx.datasets.synthetic_batches(n_cells=300, n_types=3, seed=5)
    record = RecordIterates()
    averaging = scx.portal.REFERENCE_SETTINGS if ema_decay is None else {"ema_decay": ema_decay}
    model = scx.tl.portal(
        adata,
        batch_key="batch",
        n_hidden=16,
        max_steps=25,
        batch_size=100,
        trainer_kwargs={**QUIET, "callbacks": [record]},
        **averaging,
    )
    generators = record.of("stages.0.")
    assert len(generators) == 25
    final = model.module.stages[0].state_dict()
    for key, value in moving_average(generators, ema_decay).items():
        torch.testing.assert_close(final[key], value, rtol=1e-5, atol=1e-6)
    if ema_decay is not None:
        # averaging changed the weights: not the last iterate
        assert not torch.allclose(
            final["encoders.0.layers.0.weight"], generators[-1]["encoders.0.layers.0.weight"]
        )
    last_discriminator = record.of("discriminators.0.")[-1]
    for key, value in model.module.discriminators[0].state_dict().items():
        torch.testing.assert_close(value, last_discriminator[key])
    assert adata.uns["portal"]["params"]["ema_decay"] == ema_decay


def test_module_boundary_stops_adversarial_gradient():
    """Translated cells scored below -boundary give the generator no adversarial gradient."""
    module = PORTALModule(4, n_latent=2, n_hidden=8)
    x = torch.randn(6, 4, requires_grad=True)
    with torch.no_grad():
        module.discriminators[0][0].layers[-1].bias.fill_(-100.0)  # sure: all fake
    logit = module.critic(x, 0, 0, step=10)
    assert torch.all(logit == -5.0)
    torch.nn.functional.softplus(-logit).mean().backward()
    assert torch.all(x.grad == 0)
    # during the warm-up the clamp is ±50 only: gradient flows
    x.grad = None
    warm = module.critic(x, 0, 0, step=0)
    assert torch.all(warm == -50.0)


# ---------------------------------------------------------------------------- bad input
def _adata_state(adata: ad.AnnData) -> dict:
    return {
        "X": adata.X.copy(),
        "obs": adata.obs.copy(),
        "obsm": {k: np.array(v) for k, v in adata.obsm.items()},
        "uns": dict(adata.uns),
    }


def _assert_adata_unchanged(before: dict, adata: ad.AnnData) -> None:
    after = _adata_state(adata)
    assert before["obs"].equals(after["obs"])
    assert before["obsm"].keys() == after["obsm"].keys()
    assert before["uns"].keys() == after["uns"].keys()
    x0, x1 = before["X"], after["X"]
    x0 = x0.toarray() if hasattr(x0, "toarray") else x0
    x1 = x1.toarray() if hasattr(x1, "toarray") else x1
    np.testing.assert_array_equal(x0, x1)


def _with_nan(adata):
    adata.X = adata.X.toarray()
    adata.X[3, 5] = np.nan


def _with_inf(adata):
    adata.X = adata.X.toarray()
    adata.X[7, 2] = np.inf


def _single_batch(adata):
    adata.obs["one"] = "a"


def _negative(adata):
    adata.X = adata.X.toarray()
    adata.X[1, 1] = -2.0


def _duplicate_cells(adata):
    adata.obs_names = ["same"] * 2 + list(adata.obs_names[2:])


def _missing_batch(adata):
    batch = adata.obs["batch"].astype(object)
    batch.iloc[4] = np.nan
    adata.obs["with_nan"] = batch


def _with_pca(adata):
    adata.obsm["X_pca"] = np.zeros((adata.n_obs, 5), dtype=np.float32)


@pytest.mark.parametrize(
    ("prepare", "kwargs", "message"),
    [
        (None, {"batch_key": "nope"}, "batch_key='nope'"),
        (_single_batch, {"batch_key": "one"}, "single value"),
        (None, {"batch_key": "batch", "batch_size": 1000}, "fewer than `batch_size="),
        (_with_nan, {"batch_key": "batch"}, "NaN"),
        (_with_inf, {"batch_key": "batch"}, "infinite"),
        (None, {"batch_key": "batch", "use_rep": "X_missing"}, "X_missing"),
        (None, {"batch_key": "batch", "reference": "batch9"}, "reference='batch9'"),
        (None, {"batch_key": "batch", "lambda_cos": -1.0}, "lambda_cos"),
        (None, {"batch_key": "batch", "boundary": 0.0}, "boundary"),
        (None, {"batch_key": "batch", "max_steps": 0}, "max_steps"),
        (None, {}, "batch_key"),
        (_negative, {"batch_key": "batch"}, "negative"),
        (_duplicate_cells, {"batch_key": "batch"}, "duplicated cell names"),
        (_missing_batch, {"batch_key": "with_nan"}, "missing values"),
        (None, {"batch_key": "batch", "modalities": ["batch0", "batch1"]}, "modalities"),
        (None, {"batch_key": "batch", "lambda_cos": [20.0, 10.0]}, "2 weights but there are 1"),
        (None, {"batch_key": "batch", "lambda_cos": [float("nan")]}, r"lambda_cos\[0\]"),
        (None, {"batch_key": "batch", "lambda_ae": float("nan")}, "lambda_ae"),
        (None, {"batch_key": "batch", "lambda_gan": -1}, "lambda_gan"),
        (None, {"batch_key": "batch", "lr": 0.0}, "lr"),
        (None, {"batch_key": "batch", "n_pcs": 1}, "n_pcs"),
        (None, {"batch_key": "batch", "n_top_genes": 0}, "n_top_genes"),
        (None, {"batch_key": "batch", "genes": ["gene1", "nope"]}, "missing from dataset"),
        (None, {"batch_key": "batch", "layer": "counts"}, "layer='counts'"),
        (_with_pca, {"batch_key": "batch", "use_rep": "X_pca", "layer": "x"}, "use_rep"),
        (None, {"batch_key": "batch", "order": "batch1"}, "order"),
        (None, {"batch_key": "batch", "max_steps": 10, "max_epochs": 1}, "not both"),
        (None, {"batch_key": "batch", "ema_decay": 1.0}, r"ema_decay.*\[0, 1\)"),
        (None, {"batch_key": "batch", "ema_decay": -0.5}, "ema_decay"),
    ],
)
def test_bad_input_is_rejected_before_training(prepare, kwargs, message, monkeypatch):
    adata = scx.datasets.synthetic_batches(n_cells=300, n_types=3, seed=6)
    if prepare is not None:
        prepare(adata)
    before = _adata_state(adata)

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(PORTAL, "prepare_inputs", no_work)
    with pytest.raises(ValueError, match=message):
        scx.tl.portal(adata, **{**FAST, "max_steps": 5, **kwargs})
    _assert_adata_unchanged(before, adata)


def test_no_shared_genes_and_bad_order():
    adata = scx.datasets.synthetic_batches(n_cells=300, n_types=3, seed=6)
    batches = adata.obs["batch"].to_numpy()
    first, second = adata[batches == "batch0"].copy(), adata[batches == "batch1"].copy()
    second.var_names = [f"other{i}" for i in range(second.n_vars)]
    mdata = mudata.MuData({"a": first, "b": second})
    before = snapshot(mdata)
    with pytest.raises(ValueError, match="share no feature names"):
        scx.tl.portal(mdata, **FAST)
    assert_unchanged(before, mdata)
    with pytest.raises(ValueError, match="batch_key"):
        scx.tl.portal(mdata, batch_key="batch", **FAST)
    assert_unchanged(before, mdata)

    three = scx.datasets.synthetic_batches(n_cells=300, n_types=3, n_batches=3, seed=6)
    state = _adata_state(three)
    with pytest.raises(ValueError, match="permutation"):
        scx.tl.portal(three, batch_key="batch", order=["batch1"], **FAST)
    _assert_adata_unchanged(state, three)


def test_mudata_modalities_select_and_order_the_datasets():
    adata = scx.datasets.synthetic_batches(n_cells=150, n_types=3, n_batches=3, seed=9)
    batches = adata.obs["batch"].to_numpy()
    mdata = mudata.MuData({m: adata[batches == f"batch{k}"].copy() for k, m in enumerate("abc")})
    model = scx.tl.portal(
        mdata, modalities=["c", "a"], **{**FAST, "max_steps": 20, "batch_size": 64}
    )
    assert model.modalities == ["c", "a"] and model.domains_ == ["c", "a"]
    assert mdata.uns["portal"]["datasets"] == ["c", "a"]
    assert "X_portal" not in mdata["b"].obsm
    assert np.isnan(mdata["c"].obs["portal_boundary_score"]).all()
    b_rows = mdata.obs_names.isin([f"{n}" for n in mdata["b"].obs_names])
    assert np.isnan(mdata.obsm["X_portal"][b_rows]).all()
    assert np.isfinite(mdata.obsm["X_portal"][~b_rows]).all()
    with pytest.raises(ValueError, match="modalities"):
        scx.tl.portal(mdata, modalities=["a"], **FAST)
    with pytest.raises(ValueError, match="modalities"):
        scx.tl.portal(mdata, modalities=["a", "z"], **FAST)


def test_old_call_forms_warn():
    adata = scx.datasets.synthetic_batches(n_cells=100, n_types=3, seed=10)
    with pytest.warns(FutureWarning, match="trainer_kwargs"):
        scx.tl.portal(adata, batch_key="batch", n_hidden=16, max_steps=5, batch_size=32, **QUIET)
    assert adata.uns["portal"]["params"]["max_steps"] == 5
    with pytest.warns(FutureWarning, match="seed"):
        scx.pp.joint_pca(
            {b: adata[adata.obs["batch"] == b] for b in ["batch0", "batch1"]}, random_state=1
        )
    with pytest.raises(TypeError, match="positional"):
        scx.tl.portal(adata, "batch")


def test_max_epochs_alone_and_copy():
    """The two calls that failed in the issue: ``max_epochs=`` alone, and ``copy=True``."""
    adata = scx.datasets.synthetic_batches(n_cells=200, n_types=3, seed=1)
    before = adata.copy()
    result = scx.tl.portal(
        adata,
        batch_key="batch",
        max_epochs=1,
        steps_per_epoch=5,
        batch_size=50,
        copy=True,
        trainer_kwargs={"enable_progress_bar": False},
    )
    params = result.uns["portal"]["params"]
    assert params["max_epochs"] == 1 and params["max_steps"] == 5
    assert "X_portal" in result.obsm and "X_portal" not in adata.obsm
    assert adata.obs.equals(before.obs) and set(adata.uns) == set(before.uns)
