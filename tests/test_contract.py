"""The contract every ``scx.tl.<method>`` keeps, checked the same way for all five tools.

Unknown keywords fail before any work; a failing call leaves the data unchanged; ``copy=True``
returns a new object and leaves the input untouched; ``uns[key]["params"]`` is what the model
recorded; the same seed gives the same result; the caller's global state is untouched; a saved
model loads onto the user's data (left unchanged) and gives the same embedding; a rerun replaces
the outputs of the previous run.
"""

import logging
import os
import random
from dataclasses import dataclass
from typing import Any

import mudata
import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from anndata import AnnData

import scx
from conftest import QUIET, assert_unchanged, make_unpaired, snapshot
from scx._settings import _flush_denormal_enabled


@dataclass
class Case:
    tool: Any
    model_cls: type
    data: Any
    kwargs: dict
    obsm: list[str]
    obs: list[str]


def _scjoint() -> Case:
    mdata, _ = make_unpaired(seed=1, n_rna=200, n_atac=200, n_genes=100)
    return Case(
        scx.tl.scjoint,
        scx.model.SCJOINT,
        mdata,
        {"labels_key": "cell_type", "max_epochs": 2, "batch_size": 64},
        ["X_scjoint"],
        ["scjoint_label", "scjoint_confidence"],
    )


def _portal() -> Case:
    adata = scx.datasets.synthetic_batches(n_cells=300, n_types=3, seed=0)
    return Case(
        scx.tl.portal,
        scx.model.PORTAL,
        adata,
        {"batch_key": "batch", "n_hidden": 32, "max_steps": 20, "batch_size": 64},
        ["X_portal"],
        ["portal_boundary_score"],
    )


def _scmodal() -> Case:
    mdata = scx.datasets.synthetic_linked_modalities(
        n_rna=200, n_prot=200, n_genes=100, n_proteins=20, n_types=3, n_links=6, seed=0
    )
    links = dict(zip(mdata.uns["links"]["prot"], mdata.uns["links"]["gene"], strict=True))
    return Case(
        scx.tl.scmodal,
        scx.model.SCMODAL,
        mdata,
        {
            "modalities": ("rna", "prot"),
            "links": links,
            "n_hidden": 32,
            "max_steps": 20,
            "batch_size": 64,
        },
        ["X_scmodal"],
        [],
    )


def _scpairing() -> Case:
    rng = np.random.default_rng(0)
    n = 300
    state = rng.normal(size=(n, 6))
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(n)])
    rna = AnnData(obs=obs.copy(), obsm={"X_pca": (state @ rng.normal(size=(6, 12))).astype("f4")})
    atac = AnnData(obs=obs.copy(), obsm={"X_lsi": np.tanh(state @ rng.normal(size=(6, 9)))})
    bridge = mudata.MuData({"rna": rna, "atac": atac})
    return Case(
        scx.tl.scpairing,
        scx.model.SCPAIRING,
        bridge,
        {"use_rep": {"rna": "X_pca", "atac": "X_lsi"}, "max_epochs": 3, "batch_size": 100},
        ["X_scpairing"],
        [],
    )


def _scdart() -> Case:
    mdata = scx.datasets.synthetic_trajectory(200, 60, seed=0)
    return Case(
        scx.tl.scdart,
        scx.model.SCDART,
        mdata,
        {
            "prior": "peak_prior",
            "n_hidden_gene_activity": (32, 16),
            "n_hidden_encoder": (32, 16),
            "max_epochs": 2,
            "batch_size": 64,
        },
        ["X_scdart", "X_scdart_raw"],
        [],
    )


CASES = {
    "scjoint": _scjoint,
    "portal": _portal,
    "scmodal": _scmodal,
    "scpairing": _scpairing,
    "scdart": _scdart,
}


def global_state() -> dict:
    return {
        "torch": torch.random.get_rng_state().clone(),
        "numpy": np.random.get_state()[1].copy(),  # noqa: NPY002
        "random": random.getstate(),
        "threads": torch.get_num_threads(),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "denormal": _flush_denormal_enabled(),
        "scvi_seed": scvi.settings.seed,
        "env": {k: os.environ.get(k) for k in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")},
    }


def assert_same_state(before: dict, after: dict) -> None:
    assert torch.equal(before["torch"], after["torch"]), "torch RNG changed"
    assert np.array_equal(before["numpy"], after["numpy"]), "numpy RNG changed"
    for key in ("random", "threads", "matmul_precision", "denormal", "scvi_seed", "env"):
        assert before[key] == after[key], key


def embeddings(data, keys: list[str]) -> dict:
    """Every written embedding, per modality (MuData) or whole (AnnData)."""
    if isinstance(data, mudata.MuData):
        return {
            (m, k): np.asarray(a.obsm[k]) for m, a in data.mod.items() for k in keys if k in a.obsm
        }
    return {k: np.asarray(data.obsm[k]) for k in keys}


def state_of(data):
    if isinstance(data, mudata.MuData):
        return snapshot(data)
    return {
        "obs": data.obs.copy(),
        "obsm": {k: np.asarray(v).copy() for k, v in data.obsm.items()},
        "uns": set(data.uns.keys()),
        "X": data.X.copy(),
    }


def assert_state(before, data) -> None:
    if isinstance(data, mudata.MuData):
        assert_unchanged(before, data)
        return
    after = state_of(data)
    assert before["obs"].equals(after["obs"])
    assert before["obsm"].keys() == after["obsm"].keys()
    assert before["uns"] == after["uns"]
    assert (before["X"] != after["X"]).nnz == 0 if hasattr(before["X"], "nnz") else True


@pytest.fixture(scope="module", params=list(CASES))
def run(request, tmp_path_factory):
    """A copy=True run and a copy=False run on a copy of the same data, same seed."""
    case = CASES[request.param]()
    original = case.data
    before = state_of(original)
    state = global_state()
    result = case.tool(original, copy=True, seed=3, trainer_kwargs=QUIET, **case.kwargs)
    assert_same_state(state, global_state())
    assert_state(before, original)
    work = original.copy()
    model = case.tool(work, seed=3, trainer_kwargs=QUIET, **case.kwargs)
    return case, result, work, model, tmp_path_factory.mktemp(request.param)


def test_copy_returns_new_object_with_results(run):
    case, result, _work, model, _ = run
    assert type(result) is type(case.data) and result is not case.data
    assert isinstance(model, case.model_cls)
    emb = embeddings(result, case.obsm)
    assert emb, "no embedding written"
    for key in case.obsm:
        holder = result.obsm if key in result.obsm else next(iter(result.mod.values())).obsm
        assert key in holder, key
    for key in case.obs:
        holders = [result.obs] + (
            [a.obs for a in result.mod.values()] if hasattr(result, "mod") else []
        )
        assert any(key in h.columns for h in holders), key
    for value in emb.values():
        assert np.isfinite(value).all()


def test_same_seed_same_result(run):
    case, result, work, _, _ = run
    first, second = embeddings(result, case.obsm), embeddings(work, case.obsm)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_params_are_what_the_model_recorded(run):
    case, _, work, model, _ = run
    name = case.tool.__name__
    params = work.uns[name]["params"]
    recorded = scx.base.clean_params(model.recorded_params())
    for key, value in recorded.items():
        assert key in params, key
        stored = params[key]
        if isinstance(value, list):
            assert list(np.asarray(stored).tolist()) == value, key
        else:
            assert stored == value, (key, stored, value)
    assert params["seed"] == 3
    assert work.uns[name]["outputs"]["obsm"]


def test_save_load_on_user_data(run):
    case, _, work, model, tmp = run
    model.save(str(tmp), overwrite=True)
    before = state_of(work)
    loaded = case.model_cls.load(str(tmp), adata=work)
    assert_state(before, work)
    expected, got = model.get_latent_representation(), loaded.get_latent_representation()
    assert expected.keys() == got.keys()
    for m in expected:
        np.testing.assert_allclose(expected[m], got[m], rtol=1e-5, atol=1e-6)


def test_rerun_replaces_outputs(run):
    case, _, work, _, _ = run
    name = case.tool.__name__
    written = work.uns[name]["outputs"]
    scx.base.remove_outputs(work, name)
    for key in written["obsm"]:
        assert key not in work.obsm
    for key in written["obs"]:
        assert key not in work.obs.columns


@pytest.mark.parametrize("name", list(CASES))
def test_unknown_keyword_fails_before_any_work(name, monkeypatch):
    case = CASES[name]()
    before = state_of(case.data)

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(case.model_cls, "prepare_inputs", no_work)
    with pytest.raises(
        ValueError, match=r"`max_epoch` is not an argument.*Did you mean `max_epochs`"
    ):
        case.tool(case.data, max_epoch=3, **case.kwargs)
    with pytest.raises(ValueError, match=r"`random_state`.*`seed`"):
        case.tool(case.data, random_state=3, **case.kwargs)
    with pytest.raises(ValueError, match="trainer"):
        case.tool(case.data, trainer_kwargs={"max_epoch": 2}, **case.kwargs)
    with pytest.raises(ValueError, match="n_latent"):
        case.tool(case.data, **{**case.kwargs, "n_latent": -1})
    with pytest.raises(ValueError, match="lr"):
        case.tool(case.data, **{**case.kwargs, "lr": float("nan")})
    assert_state(before, case.data)


@pytest.mark.parametrize("name", list(CASES))
def test_failure_during_training_leaves_data_unchanged(name, monkeypatch):
    case = CASES[name]()
    before = state_of(case.data)
    state = global_state()

    def broken(self, *args, **kwargs):
        raise RuntimeError("training failed")

    monkeypatch.setattr(case.model_cls, "train", broken)
    with pytest.raises(RuntimeError, match="training failed"):
        case.tool(case.data, trainer_kwargs=QUIET, **case.kwargs)
    assert_state(before, case.data)
    assert_same_state(state, global_state())


@pytest.mark.parametrize("name", list(CASES))
def test_bf16_mixed_precision_trains(name):
    """`trainer_kwargs={"precision": "bf16-mixed"}` works for every method (gradient clipping
    included: a fused optimiser cannot be clipped under Lightning's mixed precision) and gives
    finite embeddings."""
    case = CASES[name]()
    data = case.data.copy()
    case.tool(
        data,
        seed=0,
        trainer_kwargs={**QUIET, "precision": "bf16-mixed"},
        check_mixing=False,
        **case.kwargs,
    )
    for embedding in embeddings(data, case.obsm).values():
        finite = embedding[~np.isnan(embedding).all(axis=1)]
        assert finite.size and np.isfinite(finite).all()


@pytest.mark.parametrize("bfloat16_units", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_training_precision_is_recorded(name, bfloat16_units, monkeypatch):
    """Float32 unless the CPU has bfloat16 units and the method trains in bfloat16 there
    (scMODAL only); ``params["precision"]`` says which."""
    monkeypatch.setattr(scx.train._fit, "native_bfloat16", lambda device: bfloat16_units)
    case = CASES[name]()
    case.tool(case.data, seed=0, trainer_kwargs=QUIET, check_mixing=False, **case.kwargs)
    expected = "bf16-mixed" if bfloat16_units and name == "scmodal" else "32-true"
    assert case.data.uns[name]["params"]["precision"] == expected


#: Each method's default batch size: every case's data has a modality smaller than it.
DEFAULT_BATCH_SIZES = {
    "scjoint": scx.scjoint._model.DEFAULT_BATCH_SIZE,
    "portal": scx.portal._model.DEFAULT_BATCH_SIZE,
    "scmodal": scx.scmodal._model.DEFAULT_BATCH_SIZE,
    "scpairing": scx.scpairing._model.DEFAULT_BATCH_SIZE,
}


@pytest.mark.parametrize("name", list(DEFAULT_BATCH_SIZES))
def test_default_batch_size_is_lowered_to_small_data(name, caplog):
    """Without ``batch_size`` a modality smaller than the default batch trains in one batch.

    The same policy for every method: the default is lowered to the smallest modality (and
    logged), the value used is what ``params`` records; a ``batch_size`` the user passes is
    honoured or rejected (``test_bad_inputs``), never changed.
    """
    caplog.set_level(logging.INFO, logger="scx")
    case = CASES[name]()
    kwargs = {k: v for k, v in case.kwargs.items() if k != "batch_size"}
    model = case.tool(case.data, trainer_kwargs=QUIET, **kwargs)
    smallest = min(s.n_obs for s in model.sources.values())
    assert smallest < DEFAULT_BATCH_SIZES[name]
    assert model.recorded_params()["batch_size"] == smallest
    assert case.data.uns[name]["params"]["batch_size"] == smallest
    assert any(
        f"default batch size of {DEFAULT_BATCH_SIZES[name]}" in r.getMessage()
        for r in caplog.records
    )


def test_scdart_default_batch_size_is_a_quarter_of_the_smaller_modality():
    case = CASES["scdart"]()
    kwargs = {k: v for k, v in case.kwargs.items() if k != "batch_size"}
    model = case.tool(case.data, trainer_kwargs=QUIET, **kwargs)
    smallest = min(s.n_obs for s in model.sources.values())
    assert model.recorded_params()["batch_size"] == smallest // 4


@pytest.mark.parametrize("name", list(CASES))
def test_validation_split_gives_validation_losses(name):
    """``train_size`` holds cells out of training in every method; their losses reach
    ``history`` and every cell is still embedded."""
    case = CASES[name]()
    model = case.tool(case.data, train_size=0.8, seed=1, trainer_kwargs=QUIET, **case.kwargs)
    assert "loss_validation" in model.history and "loss_train" in model.history
    validation = model.history["loss_validation"].to_numpy(dtype=float)
    assert validation.size >= 1 and np.isfinite(validation).all()
    assert case.data.uns[name]["params"]["train_size"] == 0.8
    for value in embeddings(case.data, case.obsm).values():
        assert np.isfinite(value).all()
