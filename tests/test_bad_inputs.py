"""Bad inputs to every tool, companion, metric and model method.

The project standard, checked case by case: bad input gets a ``ValueError`` whose message names
the argument, says what was wrong and what to pass instead; it is raised before any work (the
model's ``prepare_inputs`` and ``train`` fail the test when reached); the user's data is
unchanged afterwards. Outputs are written only after success, and a rerun replaces the outputs
of the previous run with the same ``key_added``, and nothing else.

The wrong-type and loss-weight batteries are generated from the tools' signatures, so a new
argument is covered without a new test.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable
from functools import cache
from typing import Any

import mudata
import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData

import scx
from conftest import QUIET, assert_unchanged, make_unpaired, snapshot
from scx.base import Outputs, write_outputs
from test_contract import CASES, Case

TOOLS = list(CASES)
#: A message says what to pass instead (or what is expected).
HINT = re.compile(
    r"\b(must|pass|needs?|use|expects?|expected|at least|at most|one of|instead|only|call|"
    r"restrict|drop|fill|fix|accepted|did you mean)\b",
    re.IGNORECASE,
)


# ---------------------------------------------------------------------------- helpers
def state(data) -> dict:
    """Everything a call could change in an AnnData or a MuData, deep-copied."""
    if isinstance(data, mudata.MuData):
        return snapshot(data)
    return {
        "X": None if data.X is None else data.X.copy(),
        "obs": data.obs.copy(),
        "var": data.var.copy(),
        "obsm": {k: np.asarray(v).copy() for k, v in data.obsm.items()},
        "layers": {k: v.copy() for k, v in data.layers.items()},
        "uns": copy.deepcopy(dict(data.uns)),
        "obs_names": data.obs_names.copy(),
        "var_names": data.var_names.copy(),
    }


def assert_same(before: dict, data) -> None:
    if isinstance(data, mudata.MuData):
        assert_unchanged(before, data)
        return
    after = state(data)
    assert before.keys() == after.keys()
    for key in before:
        a, b = before[key], after[key]
        if isinstance(a, pd.DataFrame | pd.Index):
            assert a.equals(b), key
        elif isinstance(a, dict):
            assert a.keys() == b.keys(), key
            for k in a:
                if isinstance(a[k], np.ndarray) or hasattr(a[k], "nnz"):
                    _same_matrix(a[k], b[k])
                else:
                    assert _eq(a[k], b[k]), (key, k)
        elif a is None:
            assert b is None
        else:
            _same_matrix(a, b)


def _same_matrix(a, b) -> None:
    a = a.toarray() if hasattr(a, "toarray") else np.asarray(a)
    b = b.toarray() if hasattr(b, "toarray") else np.asarray(b)
    assert a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def _eq(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_eq(a[k], b[k]) for k in a)
    if isinstance(a, pd.DataFrame):
        return isinstance(b, pd.DataFrame) and a.equals(b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, np.asarray(b), equal_nan=a.dtype.kind == "f")
    return bool(a == b)


def rejects(call: Callable[[], Any], data, *names: str, error=ValueError) -> str:
    """``call()`` raises ``error`` naming one of ``names`` with a hint; ``data`` stays as it was."""
    before = state(data) if data is not None else None
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    if names:
        assert any(name in message for name in names), f"{names} not named in: {message}"
    assert HINT.search(message), f"no hint of what to pass in: {message}"
    if data is not None:
        assert_same(before, data)
    return message


def forbid_work(monkeypatch, model_cls: type) -> None:
    """Fail the test if a tool gets past its checks to the preprocessing or the training."""

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(model_cls, "prepare_inputs", no_work)
    monkeypatch.setattr(model_cls, "train", no_work)


@cache
def _case(name: str) -> Case:
    """One contract case per tool, shared by the read-only tests (calls fail before work)."""
    return CASES[name]()


def tool_params(name: str) -> list[inspect.Parameter]:
    return list(inspect.signature(_case(name).tool).parameters.values())[1:]


_CASE_DATA = object()


def call_tool(name: str, monkeypatch, data=_CASE_DATA, **overrides) -> Callable[[], Any]:
    """``tool(data, **case kwargs, **overrides)``, with the work forbidden."""
    case = _case(name)
    forbid_work(monkeypatch, case.model_cls)
    kwargs = {**case.kwargs, **overrides}
    return lambda: case.tool(case.data if data is _CASE_DATA else data, **kwargs)


# ---------------------------------------------------------------------------- wrong types
def wrong_values(param: inspect.Parameter) -> dict[str, Any]:
    """Values of the wrong type for an argument, read from its annotation and default.

    ``object()`` is wrong for every argument; a string where a number is expected, a number
    where a name or a choice is expected, a list where one name is expected, a string for a
    flag.
    """
    annotation = str(param.annotation)
    values: dict[str, Any] = {"object": object()}
    numeric = re.search(r"\b(int|float)\b", annotation) is not None
    if "bool" in annotation:
        values["str-for-bool"] = "yes"
    elif numeric and "str" not in annotation:
        values["str-for-number"] = "3"
    if re.search(r"\bstr\b", annotation) and not re.search(r"Sequence|list|Links", annotation):
        values["list-for-name"] = ["a", "b"]
    if isinstance(param.default, str) and not numeric:
        values["number-for-name"] = 3
    return values


WRONG_TYPES = [
    pytest.param(name, p.name, value, id=f"{name}-{p.name}-{label}")
    for name in TOOLS
    for p in tool_params(name)
    for label, value in wrong_values(p).items()
]


@pytest.mark.parametrize(("name", "arg", "value"), WRONG_TYPES)
def test_wrong_type_fails_before_any_work(name, arg, value, monkeypatch):
    rejects(call_tool(name, monkeypatch, **{arg: value}), _case(name).data, arg)


COMMON_BAD = [
    ("seed", -1),
    ("seed", 1.5),
    ("seed", "0"),
    ("seed", True),
    ("copy", "yes"),
    ("copy", 1),
    ("copy", None),
    ("key_added", ""),
    ("key_added", "a/b"),
    ("key_added", ["scx"]),
    ("key_added", None),
    ("trainer_kwargs", ["strategy"]),
    ("trainer_kwargs", {"max_epochs": 3}),
    ("trainer_kwargs", {"devices": 2}),
    ("max_epochs", True),
    ("max_epochs", 1.5),
    ("max_epochs", -1),
    ("batch_size", "64"),
    ("batch_size", 2.5),
    ("modalities", "rna"),
    ("accelerator", "gpus"),
    ("accelerator", ""),
    ("devices", "many"),
    ("devices", 0),
    ("devices", 2.5),
    ("devices", []),
]


@pytest.mark.parametrize(("arg", "value"), COMMON_BAD, ids=[f"{a}={v!r}" for a, v in COMMON_BAD])
@pytest.mark.parametrize("name", TOOLS)
def test_common_arguments_checked_before_any_work(name, arg, value, monkeypatch):
    if arg == "modalities" and name == "portal":
        value = "batch0"  # Portal on an AnnData takes no `modalities` at all
    rejects(call_tool(name, monkeypatch, **{arg: value}), _case(name).data, arg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("name", TOOLS)
def test_unavailable_accelerator_fails_before_any_work(name, monkeypatch):
    rejects(call_tool(name, monkeypatch, accelerator="gpu"), _case(name).data, "accelerator")


# ---------------------------------------------------------------------------- weights and rates
def is_learning_rate(arg: str) -> bool:
    return arg == "lr" or (arg.startswith("lr_") and "decay" not in arg)


def is_loss_weight(arg: str) -> bool:
    return arg.startswith("lambda_") or arg.endswith("_weight") or arg == "weight_decay"


RATES_AND_WEIGHTS = sorted(
    {
        (name, p.name)
        for name in TOOLS
        for p in tool_params(name)
        if is_loss_weight(p.name) or p.name.startswith("lr")
    }
)


def test_every_weight_and_rate_is_covered():
    found = {arg for _, arg in RATES_AND_WEIGHTS}
    expected = {"lambda_gan", "lambda_cos", "lambda_dist", "lambda_mmd", "center_weight"}
    expected |= {"kl_weight", "l1_weight", "lr", "lr_stage3", "lr_discriminator", "lr_decay"}
    assert expected <= found, expected - found
    assert {name for name, _ in RATES_AND_WEIGHTS} == set(TOOLS)


def bad_numbers(arg: str) -> dict[str, Any]:
    values = {"nan": float("nan"), "negative": -1.0, "inf": float("inf"), "string": "0.1"}
    values.update({"numpy-nan": np.float32("nan"), "bool": True})
    if arg.startswith("lr") and "epochs" in arg:  # an integer schedule (lr_decay_epochs)
        values.update(zero=0, fraction=0.5)
    elif is_learning_rate(arg):
        values.update({"zero": 0.0, "tiny-negative": -1e-3})
    return values


WEIGHT_CASES = [
    pytest.param(name, arg, value, id=f"{name}-{arg}-{label}")
    for name, arg in RATES_AND_WEIGHTS
    for label, value in bad_numbers(arg).items()
]


@pytest.mark.parametrize(("name", "arg", "value"), WEIGHT_CASES)
def test_bad_loss_weight_or_learning_rate(name, arg, value, monkeypatch):
    rejects(call_tool(name, monkeypatch, **{arg: value}), _case(name).data, arg)


@pytest.mark.parametrize("value", [[float("nan")], [-1.0], ["1"], [1.0, 2.0]])
def test_portal_lambda_cos_per_stage(value, monkeypatch):
    """One weight per integration stage: each checked, and one per stage."""
    rejects(call_tool("portal", monkeypatch, lambda_cos=value), _case("portal").data, "lambda_cos")


# ---------------------------------------------------------------------------- per-modality dicts
PER_MODALITY = [
    ("scjoint", "layer", {"rna": None, "nomod": "counts"}),
    ("scmodal", "layer", {"nomod": None}),
    ("scdart", "layer", {"rna": None, "nomod": None}),
    ("scdart", "batch_size", {"rna": 32, "nomod": 32}),
    ("scdart", "anchors", {"rna": ["c0", "c1"], "nomod": ["c0", "c1"]}),
    ("scpairing", "use_rep", {"rna": "X_pca", "atac": "X_lsi", "nomod": "X_pca"}),
    ("scpairing", "preprocess", {"nomod": "pca"}),
    ("scpairing", "layer", {"nomod": "counts"}),
    ("scjoint", "batch_size", {"rna": 32, "nomod": 32}),
    ("scmodal", "batch_size", {"rna": 32, "nomod": 32}),
    ("scpairing", "batch_size", {"rna": 32, "nomod": 32}),
    # Portal reads one layer / one embedding for all datasets
    ("portal", "layer", {"batch0": None}),
    ("portal", "use_rep", {"batch0": "X_pca"}),
    ("portal", "batch_size", {"batch0": 32}),
]


@pytest.mark.parametrize(
    ("name", "arg", "value"), PER_MODALITY, ids=[f"{n}-{a}" for n, a, _ in PER_MODALITY]
)
def test_per_modality_dict_with_unknown_modality(name, arg, value, monkeypatch):
    rejects(call_tool(name, monkeypatch, **{arg: value}), _case(name).data, arg)


@pytest.mark.parametrize("name", ["scjoint", "scmodal", "scdart", "scpairing"])
@pytest.mark.parametrize("value", [{"rna": 3}, {"rna": ["a"]}, {"rna": ""}])
def test_per_modality_dict_with_wrong_value_type(name, value, monkeypatch):
    rejects(call_tool(name, monkeypatch, layer=value), _case(name).data, "layer")


# ---------------------------------------------------------------------------- late errors
LATE = [
    ("scjoint", {"min_confidence": "high"}, "min_confidence"),
    ("scjoint", {"min_confidence": 2}, "min_confidence"),
    ("scjoint", {"min_confidence": -0.1}, "min_confidence"),
    ("scjoint", {"min_confidence": float("nan")}, "min_confidence"),
    ("scjoint", {"pseudo_label_min_confidence": 2}, "pseudo_label_min_confidence"),
    ("scjoint", {"batch_size": 1}, "batch_size"),
    ("scmodal", {"batch_size": 1}, "batch_size"),
    ("scpairing", {"batch_size": 1}, "batch_size"),
    ("scdart", {"batch_size": 1}, "batch_size"),
    ("scdart", {"batch_size": {"rna": 1, "atac": 32}}, "batch_size"),
    ("scjoint", {"batch_size": 10_000}, "batch_size"),
    ("scmodal", {"batch_size": 10_000}, "batch_size"),
    ("scdart", {"batch_size": 10_000}, "batch_size"),
    ("portal", {"batch_size": 10_000}, "batch_size"),
    ("scpairing", {"batch_size": 10_000}, "batch_size"),
    ("portal", {"batch_size": 1}, "batch_size"),
    ("scjoint", {"max_epochs": 0}, "max_epochs"),
    ("portal", {"max_steps": 0, "max_epochs": None}, "max_steps"),
    ("scmodal", {"max_steps": 0}, "max_steps"),
    ("scpairing", {"max_epochs": 0}, "max_epochs"),
    ("scdart", {"max_epochs": 0}, "max_epochs"),
    ("scjoint", {"max_epochs": 2, "max_steps": 20}, "max_steps"),
    ("portal", {"max_epochs": 2, "max_steps": 20}, "max_steps"),
    ("scmodal", {"max_epochs": 2, "max_steps": 20}, "max_steps"),
    ("scpairing", {"max_epochs": 2, "max_steps": 20}, "max_steps"),
    ("scdart", {"max_epochs": 2, "max_steps": 20}, "max_steps"),
    ("scjoint", {"stage3_epochs": -1}, "stage3_epochs"),
    ("scjoint", {"train_size": 0.9, "validation_size": 0.5}, "validation_size"),
    ("scmodal", {"train_size": 0.9, "validation_size": 0.5}, "validation_size"),
    ("scpairing", {"train_size": 0.9, "validation_size": 0.5}, "validation_size"),
    ("portal", {"train_size": 0.9, "validation_size": 0.5}, "validation_size"),
    ("scdart", {"train_size": 0.9, "validation_size": 0.5}, "validation_size"),
    ("portal", {"train_size": 0}, "train_size"),
    ("scdart", {"train_size": 1.5}, "train_size"),
    ("scdart", {"batch_size": 150, "train_size": 0.5}, "batch_size"),
    ("scjoint", {"train_size": 0}, "train_size"),
    ("scmodal", {"train_size": 1.5}, "train_size"),
    ("scpairing", {"train_size": 0.001}, "train_size"),
    ("scjoint", {"validation_size": float("nan")}, "validation_size"),
    ("scjoint", {"dropout": 1.0}, "dropout"),
    ("scpairing", {"dropout": 1.0}, "dropout"),
    ("scjoint", {"p": 0}, "p"),
    ("scjoint", {"n_pcs": 0}, "n_pcs"),
    ("scpairing", {"n_latent": 1}, "n_latent"),
    ("scpairing", {"temperature": 0}, "temperature"),
    ("scpairing", {"cap_temperature": -1.0}, "cap_temperature"),
    ("portal", {"boundary": 0}, "boundary"),
    ("portal", {"reference": "nobatch"}, "reference"),
    ("portal", {"order": ["batch1", "batch1"]}, "order"),
    ("portal", {"n_pcs": 1}, "n_pcs"),
    ("portal", {"genes": ["g0"]}, "genes"),
    ("scmodal", {"clip_norm": 0}, "clip_norm"),
    ("scmodal", {"init_std": -0.1}, "init_std"),
    ("scmodal", {"n_discriminator_steps": 0}, "n_discriminator_steps"),
    ("scdart", {"ts": []}, "ts"),
    ("scdart", {"ts": [30, -1]}, "ts"),
    ("scdart", {"n_hidden_encoder": [32, 0]}, "n_hidden_encoder"),
    ("scdart", {"post_align_neighbors": 0}, "post_align_neighbors"),
    ("scdart", {"anchors": {"rna": ["nocell", "c1"], "atac": ["x", "y"]}}, "anchors"),
    ("scdart", {"prior": "no_such_varm"}, "prior"),
    ("scdart", {"prior": None, "annotation": "no_such_file.gtf"}, "annotation"),
    ("scjoint", {"annotation": "no_such_file.gtf"}, "annotation"),
    ("scmodal", {"links": {"CD3": 1}}, "links"),
    ("scmodal", {"links": "CD3"}, "links"),
    ("scpairing", {"preprocess": "tfidf"}, "preprocess"),
    ("scpairing", {"preprocess": {"rna": "tfidf"}}, "preprocess"),
    # the case reads every modality from `use_rep`: a layer or preprocessing would be ignored
    ("scpairing", {"layer": "counts"}, "layer"),
    ("scpairing", {"preprocess": "pca"}, "preprocess"),
    ("scpairing", {"batch_discriminative": True}, "batch_key"),
]


@pytest.mark.parametrize(
    ("name", "overrides", "arg"),
    LATE,
    ids=[f"{n}-{'-'.join(map(str, o.items()))}" for n, o, _ in LATE],
)
def test_errors_that_used_to_surface_after_training(name, overrides, arg, monkeypatch):
    rejects(call_tool(name, monkeypatch, **overrides), _case(name).data, arg)


# ---------------------------------------------------------------------------- data defects
def _parts(data) -> list[AnnData]:
    if isinstance(data, mudata.MuData):
        return list(data.mod.values())
    return [data]


def _duplicate_names(adata: AnnData, axis: str) -> None:
    names = list(getattr(adata, f"{axis}_names"))
    names[1] = names[0]
    setattr(adata, f"{axis}_names", names)


@pytest.mark.parametrize("axis", ["obs", "var"])
@pytest.mark.parametrize("name", TOOLS)
def test_duplicated_names(name, axis, monkeypatch):
    if name == "scpairing" and axis == "var":
        pytest.skip("the contract bridge has no features (inputs from .obsm)")
    data = CASES[name]().data
    for part in _parts(data):
        _duplicate_names(part, axis)
    if isinstance(data, mudata.MuData):
        data.update()
    rejects(call_tool(name, monkeypatch, data=data), data, "duplicated")


BAD_VALUES = {"nan": np.nan, "inf": np.inf, "negative": -3.0}


@pytest.mark.parametrize("what", list(BAD_VALUES))
@pytest.mark.parametrize("name", ["scjoint", "portal", "scdart", "scmodal"])
def test_non_finite_or_negative_counts(name, what, monkeypatch):
    data = CASES[name]().data
    part = _parts(data)[0]
    X = part.X.toarray() if hasattr(part.X, "toarray") else np.array(part.X, dtype=np.float32)
    X = X.astype(np.float32)
    X[0, 0] = BAD_VALUES[what]
    part.X = X
    rejects(call_tool(name, monkeypatch, data=data), data, "data", "Dataset", "`data`")


@pytest.mark.parametrize("what", ["nan", "inf"])
def test_non_finite_embedding_input(what, monkeypatch):
    data = CASES["scpairing"]().data
    data.mod["rna"].obsm["X_pca"][0, 0] = BAD_VALUES[what]
    rejects(call_tool("scpairing", monkeypatch, data=data), data, "X_pca")


@pytest.mark.parametrize("name", TOOLS)
def test_wrong_data_type(name, monkeypatch):
    for data in (None, np.zeros((10, 3)), {"rna": 1}):
        rejects(call_tool(name, monkeypatch, data=data), None, "data", "MuData", "AnnData")


# ---------------------------------------------------------------------------- metrics
_RNG = np.random.default_rng(0)
EMB = _RNG.normal(size=(60, 4))
BATCH = np.repeat(["a", "b"], 30)
nan, inf = float("nan"), float("inf")


def _with(value, row: int = 0) -> np.ndarray:
    x = EMB.copy()
    x[row, 0] = value
    return x


m = scx.metrics
METRICS = {
    "foscttm-nan": (lambda: m.foscttm(_with(nan), EMB), "x"),
    "foscttm-inf": (lambda: m.foscttm(EMB, _with(inf)), "y"),
    "foscttm-shapes": (lambda: m.foscttm(EMB, EMB[:-1]), "x"),
    "foscttm-1d": (lambda: m.foscttm(EMB[:, 0], EMB[:, 0]), "x"),
    "foscttm-strings": (lambda: m.foscttm([["a", "b"]] * 3, [["a", "b"]] * 3), "x"),
    "foscttm-one-cell": (lambda: m.foscttm(EMB[:1], EMB[:1]), "x"),
    "foscttm-per_cell": (lambda: m.foscttm(EMB, EMB, per_cell="yes"), "per_cell"),
    "foscttm-chunk_size-0": (lambda: m.foscttm(EMB, EMB, chunk_size=0), "chunk_size"),
    "foscttm-chunk_size-str": (lambda: m.foscttm(EMB, EMB, chunk_size="8"), "chunk_size"),
    "lta-lengths": (lambda: m.label_transfer_accuracy(["a", "b"], ["a"]), "predicted_labels"),
    "lta-exclude-str": (
        lambda: m.label_transfer_accuracy(["unknown", "a"], ["a", "a"], exclude="unknown"),
        "exclude",
    ),
    "lta-reference-str": (
        lambda: m.label_transfer_accuracy(["b", "a"], ["a", "a"], reference_labels="ab"),
        "reference_labels",
    ),
    "lta-scalar": (lambda: m.label_transfer_accuracy("a", "a"), "true_labels"),
    "lta-nothing-left": (
        lambda: m.label_transfer_accuracy(["a", "b"], ["a", "b"], exclude=["a", "b"]),
        "exclude",
    ),
}
for _name, _metric in (("ilisi", m.ilisi), ("kbet", m.kbet), ("silhouette", m.silhouette_label)):
    METRICS |= {
        f"{_name}-nan": (lambda f=_metric: f(_with(nan), BATCH), "X"),
        f"{_name}-inf": (lambda f=_metric: f(_with(-inf, 5), BATCH), "X"),
        f"{_name}-1d": (lambda f=_metric: f(EMB[:, 0], BATCH), "X"),
        f"{_name}-empty": (lambda f=_metric: f(EMB[:0], BATCH[:0]), "X"),
        f"{_name}-short-labels": (lambda f=_metric: f(EMB, BATCH[:-1]), "has 59 entries"),
        f"{_name}-2d-labels": (lambda f=_metric: f(EMB, np.stack([BATCH, BATCH], 1)), "entries"),
        f"{_name}-one-label": (lambda f=_metric: f(EMB, np.full(60, "a")), "distinct"),
        f"{_name}-missing-label": (
            lambda f=_metric: f(EMB, np.where(np.arange(60) == 3, None, BATCH)),
            "missing",
        ),
    }
for _name, _metric in (("ilisi", m.ilisi), ("kbet", m.kbet)):
    for _value in ("5", 1, 0, 2.5, True):
        METRICS[f"{_name}-n_neighbors-{_value!r}"] = (
            lambda f=_metric, k=_value: f(EMB, BATCH, n_neighbors=k),
            "n_neighbors",
        )
for _value in (nan, 0, 2, "0.05"):
    METRICS[f"kbet-alpha-{_value!r}"] = (lambda a=_value: m.kbet(EMB, BATCH, alpha=a), "alpha")
METRICS["silhouette-rescale"] = (lambda: m.silhouette_label(EMB, BATCH, rescale="yes"), "rescale")


@pytest.mark.parametrize("case", list(METRICS))
def test_metric_refuses_bad_input(case):
    call, argname = METRICS[case]
    before = (EMB.copy(), BATCH.copy())
    rejects(call, None, argname)
    assert np.array_equal(before[0], EMB) and np.array_equal(before[1], BATCH)


# ---------------------------------------------------------------------------- trained models
_TRAINED: dict[str, tuple[Any, Any]] = {}


def trained(name: str):
    """``(data, model)``: the contract case trained with its tiniest settings (shared)."""
    if name not in _TRAINED:
        case = CASES[name]()
        model = case.tool(case.data, seed=0, trainer_kwargs=QUIET, **case.kwargs)
        _TRAINED[name] = (case.data, model)
    return _TRAINED[name]


def model_state(model) -> dict:
    return {
        "module": {k: v.detach().clone() for k, v in model.module.state_dict().items()},
        "train_params": copy.deepcopy(model.train_params_),
        "history": {k: v.copy() for k, v in (model.history_ or {}).items()},
    }


def assert_model_unchanged(before: dict, model) -> None:
    after = model_state(model)
    assert before["module"].keys() == after["module"].keys()
    for key in before["module"]:
        assert torch.equal(before["module"][key], after["module"][key]), key
    assert before["train_params"] == after["train_params"]
    assert before["history"].keys() == after["history"].keys()


def train_settings(name: str) -> list[str]:
    """Rates and weights that ``model.train`` takes."""
    model_cls = CASES[name]().model_cls if name not in _TRAINED else type(_TRAINED[name][1])
    params = inspect.signature(model_cls.train).parameters
    return [p for p in params if is_learning_rate(p) or is_loss_weight(p) or p == "lr_decay"]


@pytest.mark.parametrize("name", TOOLS)
def test_model_train_refuses_bad_settings_before_touching_the_model(name):
    data, model = trained(name)
    before = model_state(model)
    bad = [{arg: nan} for arg in train_settings(name)]
    bad += [{"max_epochs": 0}, {"max_epochs": 1, "max_steps": 5}, {"batch_size": 1}]
    bad += [{"accelerator": "gpus"}, {"devices": "many"}, {"seed": -1}]
    base = {"batch_size": _case(name).kwargs["batch_size"]}  # fits the small data
    for settings in bad:
        rejects(lambda s=settings: model.train(**{**base, **s}), data, *settings)
        assert_model_unchanged(before, model)


@pytest.mark.parametrize("name", TOOLS)
def test_model_methods_refuse_bad_arguments(name):
    data, model = trained(name)
    calls = [
        (lambda: model.get_latent_representation(modality="nomod"), "modality"),
        (lambda: model.get_latent_representation(modality=["x"]), "modality"),
        (lambda: model.get_latent_representation(batch_size=0), "batch_size"),
        (lambda: model.get_latent_representation(batch_size="64"), "batch_size"),
        (lambda: model.get_latent_representation(np.zeros((3, 3)), model.modalities[0]), "adata"),
        (lambda: model.get_latent_representation(AnnData(np.zeros((2, 2)))), "modality"),
    ]
    if name == "scjoint":
        calls += [
            (lambda: model.get_latent_representation(normalize="yes"), "normalize"),
            (lambda: model.predict(min_confidence="high"), "min_confidence"),
            (lambda: model.predict(min_confidence=2), "min_confidence"),
            (lambda: model.predict(min_confidence=nan), "min_confidence"),
            (lambda: model.predict(n_neighbors="5"), "n_neighbors"),
            (lambda: model.predict(n_neighbors=0), "n_neighbors"),
            (lambda: model.predict(max_reference=0), "max_reference"),
            (lambda: model.predict(method="fast"), "method"),
            (lambda: model.predict(modality="nomod"), "modality"),
        ]
    if name == "scmodal":
        calls += [
            (lambda: model.get_imputed("rna", "rna"), "target"),
            (lambda: model.get_imputed("rna", "nomod"), "target"),
            (lambda: model.get_imputed("rna", "prot", batch_size=0), "batch_size"),
            (lambda: model.get_imputed("rna", "prot", strategy="mean"), "strategy"),
            (lambda: model.get_imputed("rna", "prot", n_neighbors=0), "n_neighbors"),
            (
                lambda: model.get_imputed("rna", "prot", strategy="generator", batch_size=0),
                "batch_size",
            ),
        ]
    if name == "scdart":
        calls += [
            (lambda: model.get_aligned_latent(n_neighbors=0), "n_neighbors"),
            (lambda: model.get_peak_gene_weights(linked_only="yes"), "linked_only"),
            (lambda: model.get_gene_activity(batch_size=0), "batch_size"),
        ]
    if name == "portal":
        calls += [
            (lambda: model.get_translated("batch0", "nobatch"), "target"),
            (lambda: model.get_boundary_scores(modality="nobatch"), "modality"),
        ]
    before = model_state(model)
    for call, argname in calls:
        rejects(call, data, argname)
    assert_model_unchanged(before, model)


# ---------------------------------------------------------------------------- Model.load
def _wrong_data(name: str) -> dict[str, Any]:
    data, model = trained(name)
    other = CASES["scdart" if name != "scdart" else "scjoint"]().data
    wrong = {"anndata": AnnData(np.ones((20, 5), dtype=np.float32)), "other-tool": other}
    if isinstance(data, mudata.MuData):
        first = model.modalities[0]
        fewer = data.copy()
        if fewer.mod[first].n_vars:
            fewer.mod[first] = fewer.mod[first][:, 3:].copy()  # features the model needs
        else:
            rep = next(iter(fewer.mod[first].obsm))
            fewer.mod[first].obsm[rep] = fewer.mod[first].obsm[rep][:, :-1]  # narrower input
        fewer.update()
        wrong["fewer-features"] = fewer
        missing = mudata.MuData({m: data.mod[m].copy() for m in model.modalities[:1]})
        wrong["missing-modality"] = missing
    else:
        wrong["mudata"] = other
        fewer = data[:, 3:].copy()
        wrong["fewer-features"] = fewer
        no_batch = data.copy()
        del no_batch.obs["batch"]
        wrong["no-batch-column"] = no_batch
    return wrong


@pytest.mark.parametrize("name", TOOLS)
def test_load_onto_wrong_data_leaves_it_unchanged(name, tmp_path):
    _, model = trained(name)
    model.save(str(tmp_path), overwrite=True)
    for label, wrong in _wrong_data(name).items():
        before = state(wrong)
        with pytest.raises(ValueError) as info:
            type(model).load(str(tmp_path), adata=wrong)
        assert HINT.search(str(info.value)), (label, str(info.value))
        assert_same(before, wrong)


def test_load_of_a_directly_registered_model_onto_wrong_data(tmp_path):
    """A model registered on the user's data itself (no stored preprocessing): scvi-tools
    registers the data it loads onto, which must be undone when that fails."""
    case = CASES["scpairing"]()
    bridge = case.data
    scx.model.SCPAIRING.setup_mudata(bridge, use_rep={"rna": "X_pca", "atac": "X_lsi"})
    model = scx.model.SCPAIRING(bridge, n_hidden=16)
    model.train(max_epochs=1, batch_size=100, **QUIET)
    model.save(str(tmp_path), overwrite=True)
    wrong = CASES["scpairing"]().data
    wrong.mod["atac"].obsm["X_lsi"] = wrong.mod["atac"].obsm["X_lsi"][:, :4]
    before = state(wrong)
    with pytest.raises(ValueError):
        scx.model.SCPAIRING.load(str(tmp_path), adata=wrong)
    assert_same(before, wrong)


# ---------------------------------------------------------------------------- transfer_labels
@pytest.fixture
def three_modalities() -> mudata.MuData:
    """RNA and ATAC embedded the way scx's tools write it, and a third modality they did not
    embed (NaN rows in the global embedding)."""
    mdata, _ = make_unpaired(seed=2, n_rna=120, n_atac=120, n_genes=40)
    rng = np.random.default_rng(1)
    mdata.mod["prot"] = AnnData(
        X=rng.poisson(2, size=(50, 6)).astype(np.float32),
        obs=pd.DataFrame(index=[f"prot{i}" for i in range(50)]),
    )
    mdata.update()
    types = pd.factorize(mdata["rna"].obs["cell_type"])[0]
    z = {
        "rna": (rng.normal(size=(120, 3)) + 4 * types[:, None]).astype(np.float32),
        "atac": (rng.normal(size=(120, 3)) + 4 * rng.integers(0, 4, 120)[:, None]).astype(
            np.float32
        ),
    }
    write_outputs(mdata, "tool", Outputs(obsm={"X_tool": z}), {"seed": 0})
    assert np.isnan(mdata.obsm["X_tool"]).any(axis=1).sum() == 50
    return mdata


TRANSFER = {"labels_key": "cell_type", "use_rep": "X_tool", "reference": "rna"}
TRANSFER_BAD = [
    ("labels_key", None),
    ("labels_key", ["cell_type"]),
    ("labels_key", 3),
    ("labels_key", "nocol"),
    ("use_rep", None),
    ("use_rep", ["X_tool"]),
    ("use_rep", "X_none"),
    ("reference", None),
    ("reference", 3),
    ("reference", ["rna"]),
    ("reference", "nomod"),
    ("reference", ("modality",)),
    ("reference", ("nocol", "rna")),
    ("reference", ("modality", "nomod")),
    ("reference", np.zeros(5, dtype=bool)),
    ("reference", "prot"),
    ("query", 3),
    ("query", "nomod"),
    ("query", "prot"),
    ("query", np.zeros(290, dtype=bool)),
    ("n_neighbors", "5"),
    ("n_neighbors", 0),
    ("n_neighbors", 2.5),
    ("n_neighbors", True),
    ("metric", "manhattan"),
    ("metric", 3),
    ("method", "fast"),
    ("min_confidence", "high"),
    ("min_confidence", 2),
    ("min_confidence", -0.1),
    ("min_confidence", nan),
    ("max_reference", 0),
    ("max_reference", "10"),
    ("key_added", ""),
    ("key_added", "a/b"),
    ("key_added", ["a"]),
    ("key_added", None),
    ("key_added", "tool"),
    ("copy", "yes"),
    ("copy", None),
    ("seed", -1),
    ("seed", "0"),
    ("random_stat", 0),
]


@pytest.mark.parametrize(
    ("arg", "value"), TRANSFER_BAD, ids=[f"{a}={v!r:.20}" for a, v in TRANSFER_BAD]
)
def test_transfer_labels_bad_argument(three_modalities, arg, value):
    names = (arg, "prot") if isinstance(value, str) and value == "prot" else (arg,)
    kwargs = {**TRANSFER, arg: value}
    rejects(lambda: scx.tl.transfer_labels(three_modalities, **kwargs), three_modalities, *names)


def test_transfer_labels_leaves_cells_without_the_embedding_out(three_modalities):
    mdata = three_modalities
    scx.tl.transfer_labels(mdata, **TRANSFER)
    label = mdata.obs["transfer_label"]
    rows = {m: scx.base.global_rows(mdata, m) for m in mdata.mod}
    assert label.iloc[rows["atac"]].notna().all()
    assert label.iloc[rows["prot"]].isna().all() and label.iloc[rows["rna"]].isna().all()
    assert np.isnan(mdata.obs["transfer_confidence"].to_numpy()[rows["prot"]]).all()
    assert "X_tool" in mdata.obsm and "X_tool" in mdata["rna"].obsm  # the tool's results stay
    assert mdata.uns["transfer"]["n_query"] == 120


def test_transfer_labels_twice_keeps_both_and_replaces_its_own(three_modalities):
    mdata = three_modalities
    scx.tl.transfer_labels(mdata, **TRANSFER, min_confidence=0.99)
    assert "unassigned" in mdata.obs["transfer_label"].cat.categories
    scx.tl.transfer_labels(mdata, **TRANSFER, key_added="second", n_neighbors=5)
    scx.tl.transfer_labels(mdata, **TRANSFER)  # same key, other options: replaced
    assert {"transfer_label", "second_label", "second_confidence"} <= set(mdata.obs.columns)
    assert "unassigned" not in mdata.obs["transfer_label"].cat.categories
    assert mdata.uns["transfer"]["params"]["min_confidence"] is None
    assert mdata.uns["second"]["params"]["n_neighbors"] == 5
    before = state(mdata)
    rejects(lambda: scx.tl.transfer_labels(mdata, **TRANSFER, n_neighbors=0), mdata)
    assert_same(before, mdata)


@pytest.mark.parametrize("data", [None, np.zeros((5, 2)), "mdata"])
def test_transfer_labels_wrong_data(data):
    rejects(lambda: scx.tl.transfer_labels(data, **TRANSFER), None, "data")


# ---------------------------------------------------------------------------- pseudotime
@pytest.fixture
def curve() -> AnnData:
    """Cells along a branching curve (the embedding pseudotime reads), with a group label."""
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 1, 240))
    side = 2 * rng.integers(0, 2, 240) - 1
    emb = np.c_[t, np.where(t > 0.5, (t - 0.5) * side, 0), rng.normal(0, 0.02, 240)]
    obs = pd.DataFrame(
        {"group": pd.Categorical(np.where(t < 0.2, "start", "later"))},
        index=[f"c{i}" for i in range(240)],
    )
    return AnnData(obs=obs, obsm={"X_emb": emb.astype(np.float32)})


PSEUDO = {"use_rep": "X_emb", "root": "c0"}
PSEUDO_BAD = [
    ("use_rep", None),
    ("use_rep", ["X_emb"]),
    ("use_rep", "X_none"),
    ("use_rep", 3),
    ("root", None),
    ("root", ["c0"]),
    ("root", 3),
    ("root", "nocell"),
    ("groupby", ["group"]),
    ("groupby", 3),
    ("groupby", "nocol"),
    ("n_neighbors", "5"),
    ("n_neighbors", 1),
    ("n_neighbors", 1000),
    ("n_neighbors", 2.5),
    ("n_neighbors", True),
    ("n_dcs", "x"),
    ("n_dcs", 1),
    ("backbone", "yes"),
    ("backbone", 1),
    ("backbone_neighbors", 1),
    ("backbone_neighbors", "5"),
    ("resolution", nan),
    ("resolution", -1),
    ("resolution", 0),
    ("resolution", "0.1"),
    ("key_added", ""),
    ("key_added", "a/b"),
    ("key_added", ["a"]),
    ("key_added", None),
    ("key_added", "tool"),
    ("key_added", "mine"),
    ("copy", "yes"),
    ("seed", -1),
    ("seed", "0"),
    ("random_state", 0),
]


@pytest.mark.parametrize(("arg", "value"), PSEUDO_BAD, ids=[f"{a}={v!r}" for a, v in PSEUDO_BAD])
def test_pseudotime_bad_argument(curve, arg, value):
    curve.uns["tool"] = {"params": {}, "outputs": {"obsm": ["X_emb"], "obs": []}}  # a tool's
    curve.uns["mine"] = {"note": "the user's own entry"}
    rejects(lambda: scx.tl.pseudotime(curve, **{**PSEUDO, arg: value}), curve, arg)


def test_pseudotime_label_root_and_data_defects(curve):
    rejects(
        lambda: scx.tl.pseudotime(curve, use_rep="X_emb", root="nolabel", groupby="group"),
        curve,
        "root",
    )
    everyone = curve.copy()
    everyone.obs["group"] = "start"
    rejects(
        lambda: scx.tl.pseudotime(everyone, use_rep="X_emb", root="start", groupby="group"),
        everyone,
        "root",
    )
    duplicated = curve.copy()
    _duplicate_names(duplicated, "obs")
    rejects(lambda: scx.tl.pseudotime(duplicated, **PSEUDO), duplicated, "root", "duplicated")
    empty = curve.copy()
    empty.obsm["X_emb"] = np.full_like(empty.obsm["X_emb"], np.nan)
    rejects(lambda: scx.tl.pseudotime(empty, **PSEUDO), empty, "X_emb")
    for data in (None, np.zeros((5, 2))):
        rejects(lambda d=data: scx.tl.pseudotime(d, **PSEUDO), None, "data")


def test_pseudotime_rerun_replaces_its_own_outputs(curve):
    scx.tl.pseudotime(curve, **PSEUDO)
    assert {"trajectory_branch", "trajectory_backbone_cluster"} <= set(curve.obs.columns)
    scx.tl.pseudotime(curve, **PSEUDO, backbone=False)  # other options, same key
    assert "trajectory_pseudotime" in curve.obs.columns
    assert "trajectory_branch" not in curve.obs.columns
    assert "trajectory_backbone_cluster" not in curve.obs.columns
    assert "backbone_edges" not in curve.uns["trajectory"]
    scx.tl.pseudotime(curve, **PSEUDO, backbone=False, key_added="again")
    assert {"trajectory_pseudotime", "again_pseudotime"} <= set(curve.obs.columns)
    # the other companion's record is not pseudotime's to replace
    curve.obs["cell_type"] = curve.obs["group"].astype(str)
    scx.tl.transfer_labels(
        curve, labels_key="cell_type", use_rep="X_emb", reference=("group", "start")
    )
    rejects(lambda: scx.tl.pseudotime(curve, **PSEUDO, key_added="transfer"), curve, "key_added")
    rejects(
        lambda: scx.tl.transfer_labels(
            curve,
            labels_key="cell_type",
            use_rep="X_emb",
            reference=("group", "start"),
            key_added="trajectory",
        ),
        curve,
        "key_added",
    )


def test_pseudotime_with_a_third_modality_left_nan(three_modalities):
    mdata = three_modalities
    root = mdata["rna"].obs_names[0]
    scx.tl.pseudotime(mdata, use_rep="X_tool", root=root, backbone=False)
    rows = scx.base.global_rows(mdata, "prot")
    assert np.isnan(mdata.obs["trajectory_pseudotime"].to_numpy()[rows]).all()
    assert "trajectory_pseudotime" not in mdata["prot"].obs.columns
    assert "X_tool" in mdata.obsm
    rejects(
        lambda: scx.tl.pseudotime(mdata, use_rep="X_tool", root="prot0"), mdata, "root", "prot0"
    )


# ---------------------------------------------------------------------------- impute
IMPUTE = {"source": "rna", "target": "prot"}
IMPUTE_BAD = [
    ({"key_added": "rna"}, "key_added"),
    ({"key_added": "prot"}, "key_added"),
    ({"key_added": "prot", "to": "obsm"}, "key_added"),
    ({"key_added": "X_scmodal", "to": "obsm"}, "key_added"),
    ({"key_added": "scmodal"}, "key_added"),
    ({"key_added": ""}, "key_added"),
    ({"key_added": ["a"]}, "key_added"),
    ({"key_added": 3}, "key_added"),
    ({"to": "layer"}, "to"),
    ({"to": None}, "to"),
    ({"copy": "yes"}, "copy"),
    ({"source": None}, "source"),
    ({"source": "nomod"}, "source"),
    ({"source": ["rna"]}, "source"),
    ({"target": "rna"}, "target"),
    ({"target": 3}, "target"),
    ({"random_state": 0}, "random_state"),
    ({"strategy": "translate"}, "strategy"),
    ({"strategy": None}, "strategy"),
    ({"n_neighbors": 0}, "n_neighbors"),
    ({"n_neighbors": 2.5}, "n_neighbors"),
]


@pytest.mark.parametrize(("overrides", "arg"), IMPUTE_BAD, ids=[f"{o}" for o, _ in IMPUTE_BAD])
def test_impute_bad_argument(overrides, arg):
    data, model = trained("scmodal")
    rejects(lambda: scx.tl.impute(data, model, **{**IMPUTE, **overrides}), data, arg)


def test_impute_wrong_model_or_data():
    data, model = trained("scmodal")
    _, other = trained("scpairing")
    for wrong in (None, object(), other):
        rejects(lambda w=wrong: scx.tl.impute(data, w, **IMPUTE), data, "model")
    for wrong in (None, data["rna"], np.zeros((3, 3))):
        rejects(lambda w=wrong: scx.tl.impute(w, model, **IMPUTE), None, "data")


def test_impute_rerun_with_other_options_leaves_nothing_stale():
    data, model = trained("scmodal")
    work = data.copy()
    scx.tl.impute(work, model, **IMPUTE, to="obsm", key_added="imp")
    assert "imp" in work["rna"].obsm
    scx.tl.impute(work, model, **IMPUTE, key_added="imp")  # now as a modality
    assert "imp" in work.mod and "imp" not in work["rna"].obsm
    assert work["imp"].n_vars == work["prot"].n_vars
    scx.tl.impute(work, model, **IMPUTE, to="obsm", key_added="imp")  # and back
    assert "imp" not in work.mod and "imp" in work["rna"].obsm
    # the global entry is the imputation (NaN outside the source), not the old modality's mask
    assert np.asarray(work.obsm["imp"]).shape == (work.n_obs, work["prot"].n_vars)
    # the tool's own results are untouched by all of it
    assert "X_scmodal" in work.obsm and "scmodal" in work.uns


# ---------------------------------------------------------------------------- pair_cells
PAIR_BAD = [
    ("cutoff", "x"),
    ("cutoff", nan),
    ("cutoff", 2),
    ("cutoff", -2),
    ("method", "fast"),
    ("n_neighbors", 0),
    ("n_neighbors", "5"),
    ("block_size", 0),
    ("max_unblocked", "x"),
    ("seed", -1),
    ("seed", "0"),
    ("key_added", ""),
    ("key_added", ["a"]),
    ("modalities", "rna"),
    ("modalities", ["rna", "rna"]),
    ("modalities", ["rna", "nomod"]),
    ("modalities", ["rna"]),
    ("use_rep", "X_pca"),
    ("random_state", 0),
]


@pytest.mark.parametrize(("arg", "value"), PAIR_BAD, ids=[f"{a}={v!r}" for a, v in PAIR_BAD])
def test_pair_cells_bad_argument(arg, value):
    data, model = trained("scpairing")
    rejects(lambda: scx.tl.pair_cells(data, model, **{arg: value}), data, arg)


def test_pair_cells_wrong_model_or_data_and_data_unchanged():
    data, model = trained("scpairing")
    rejects(lambda: scx.tl.pair_cells(data, None), data, "use_rep")
    rejects(lambda: scx.tl.pair_cells(data, object()), data, "model")
    rejects(lambda: scx.tl.pair_cells(data, None, use_rep=["X_pca"]), data, "use_rep")
    rejects(lambda: scx.tl.pair_cells(data, None, use_rep="X_none"), data, "use_rep")
    rejects(lambda: scx.tl.pair_cells(np.zeros((3, 3)), model), None, "data")
    before = state(data)
    paired = scx.tl.pair_cells(data, model, cutoff=-1)
    assert paired is not data and paired.n_obs > 0
    assert_same(before, data)


# ---------------------------------------------------------------------------- reruns
def test_scdart_rerun_without_gene_activity_removes_it(monkeypatch):
    case = CASES["scdart"]()
    mdata = case.data
    options = {**case.kwargs, "max_epochs": 1, "trainer_kwargs": QUIET}
    scx.tl.scdart(mdata, **options, gene_activity_key="activity")
    assert "activity" in mdata.mod and "activity" in mdata.obsm
    scx.tl.scdart(mdata, **options, key_added="other")  # another name: both kept
    assert "activity" in mdata.mod and "X_other" in mdata.obsm and "X_scdart" in mdata.obsm
    scx.tl.scdart(mdata, **options)  # same name, without gene activity
    assert "activity" not in mdata.mod
    assert "activity" not in mdata.obsm and "activity" not in mdata.varm
    assert list(mdata.uns["scdart"]["outputs"]["modalities"]) == []
    assert {"X_scdart", "X_scdart_raw", "X_other"} <= set(mdata.obsm)
    # a measured modality is never replaced by the gene activity
    rejects(
        call_tool("scdart", monkeypatch, data=mdata, gene_activity_key="rna"),
        mdata,
        "rna",
    )


def test_failed_rerun_keeps_the_previous_results(monkeypatch):
    data, _ = trained("scdart")
    before = state(data)
    case = _case("scdart")

    def broken(self, *args, **kwargs):
        raise RuntimeError("training failed")

    monkeypatch.setattr(case.model_cls, "train", broken)
    with pytest.raises(RuntimeError, match="training failed"):
        case.tool(data, **case.kwargs, gene_activity_key="activity", trainer_kwargs=QUIET)
    assert_same(before, data)
    rejects(lambda: case.tool(data, **case.kwargs, lr=nan), data, "lr")


# ---------------------------------------------------------------------------- names of results
@pytest.mark.parametrize("name", TOOLS)
def test_key_added_never_replaces_what_the_tool_did_not_write(name, monkeypatch):
    data = CASES[name]().data
    data.uns["mine"] = {"note": "the user's own entry"}
    data.uns["transfer"] = {"function": "scx.tl.transfer_labels", "params": {}, "outputs": {}}
    data.uns["other"] = {"function": "scx.tl.other", "params": {}, "outputs": {"obsm": ["X"]}}
    for key in ("mine", "transfer", "other"):
        rejects(call_tool(name, monkeypatch, data=data, key_added=key), data, "key_added")


def test_scmodal_key_added_of_the_datasets_links_table(monkeypatch):
    data = CASES["scmodal"]().data
    assert "links" in data.uns  # the synthetic data's own table
    rejects(call_tool("scmodal", monkeypatch, data=data, key_added="links"), data, "links")


def test_pair_cells_duplicated_cell_names():
    data, model = trained("scpairing")
    work = data.copy()
    for part in work.mod.values():
        _duplicate_names(part, "obs")
    work.update()
    rejects(lambda: scx.tl.pair_cells(work, model, cutoff=-1), work, "duplicated")


# ---------------------------------------------------------------------------- labels, batches
def _relabel(name: str, column: str, values) -> Any:
    data = CASES[name]().data
    holder = data["rna"] if isinstance(data, mudata.MuData) else data
    holder.obs[column] = values(holder.n_obs)
    return data


LABELS = [
    ("scjoint", "cell_type", lambda n: ["t0"] * n, "labels_key"),
    ("scjoint", "cell_type", lambda n: [None, *np.resize(["t0", "t1"], n - 1)], "labels_key"),
    ("scjoint", "cell_type", lambda n: np.full(n, np.nan), "labels_key"),
    ("portal", "batch", lambda n: ["b0"] * n, "batch_key"),
    ("portal", "batch", lambda n: [None, *np.resize(["b0", "b1"], n - 1)], "batch_key"),
]


@pytest.mark.parametrize(
    ("name", "column", "values", "arg"),
    LABELS,
    ids=["one-label", "missing-label", "all-missing", "one-batch", "missing-batch"],
)
def test_single_or_missing_labels_and_batches(name, column, values, arg, monkeypatch):
    data = _relabel(name, column, values)
    rejects(call_tool(name, monkeypatch, data=data), data, arg)


@pytest.mark.parametrize(
    ("name", "arg"),
    [
        ("scjoint", "labels_key"),
        ("portal", "batch_key"),
        ("scpairing", "batch_key"),
    ],
)
def test_missing_label_or_batch_column(name, arg, monkeypatch):
    rejects(call_tool(name, monkeypatch, **{arg: "nocol"}), _case(name).data, arg)


def test_tool_on_paired_cells_keeps_the_pairing_record(monkeypatch):
    data, model = trained("scpairing")
    paired = scx.tl.pair_cells(data, model, cutoff=-1)
    rejects(call_tool("scpairing", monkeypatch, data=paired), paired, "key_added", "pair_cells")
