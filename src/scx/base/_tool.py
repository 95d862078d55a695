"""The one driver behind every ``scx.tl.<method>``, and the writing of results.

A tool is made by :func:`method_tool` from a model class and the method's output function. Its
signature and its documentation are assembled from the model, which declares every setting
once: the data arguments of ``_fit_inputs``, the settings of ``__init__`` and ``train``, the
options of the output function, then the common ``check_mixing`` (methods with a joint latent),
``key_added``, ``copy``, ``seed`` and ``trainer_kwargs``. A call runs one path:

1. every argument checked before any work: unknown names (with a suggestion), the model's
   setting checks (devices included), the output options, the trainer options, the types of
   the data arguments, the method's data checks;
2. the preprocessing fitted and the model's view registered (:meth:`prepare_inputs`);
3. the model built and trained, the outputs computed, and the mixing of the modalities in the
   joint latent measured (:mod:`scx.base._mixing`, for methods that declare a
   :class:`~scx.base.MixingCheck`);
4. only then the results written: the keys of an earlier run with the same ``key_added``
   removed, the new ones written, and ``uns[key_added]["params"]`` taken from what the model
   recorded (:meth:`recorded_params`); then a warning if the modalities stay apart.

All of it runs inside :func:`scx._settings.isolated_state`, so the caller's random generators,
thread count and flush-denormal mode are as they were afterwards.
"""

from __future__ import annotations

import inspect
import logging
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from scx import _validation as v
from scx._settings import isolated_state
from scx._validation import clean_params
from scx.train import TRAINER_OPTIONS, check_trainer_kwargs, unknown_name_message

from ._mixing import MixingCheck, mixing_doc, mixing_record, warn_if_apart
from ._model import INPUT_STATE_KEY

logger = logging.getLogger(__name__)

#: Rows of the global ``obsm`` of cells outside the written modalities.
MISSING = np.nan


# ---------------------------------------------------------------------------- outputs
@dataclass
class Outputs:
    """What a tool writes, computed before anything is written.

    Attributes
    ----------
    obsm
        ``{key: {modality: cells × d array}}``; mirrored into each modality and, when the
        modalities' cells are distinct, into the global ``obsm`` (NaN rows for other cells).
    obs
        ``{key: {modality: values}}`` (categorical Series stay categorical), the same way.
    modalities
        New modalities ``{name: AnnData}`` added to a MuData.
    global_obsm, global_obs
        ``{key: values over the rows of data.obs}`` written to the global ``obsm`` / ``obs``
        only (e.g. one combined embedding of a paired MuData).
    uns
        Facts stored next to the params in ``uns[key_added]`` (label vocabulary, counts…);
        ``"function"`` names the function that wrote the record (e.g. ``"scx.tl.scjoint"``),
        so that another function's ``key_added`` cannot replace it.
    rows
        For an AnnData split into datasets: ``{dataset: row positions}``.
    """

    obsm: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    obs: dict[str, dict[str, Any]] = field(default_factory=dict)
    modalities: dict[str, AnnData] = field(default_factory=dict)
    global_obsm: dict[str, np.ndarray] = field(default_factory=dict)
    global_obs: dict[str, Any] = field(default_factory=dict)
    uns: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, np.ndarray] | None = None


def global_rows(mdata: MuData, modality: str) -> np.ndarray:
    """Rows of ``mdata.obs`` holding the cells of ``modality``, in the modality's order."""
    adata = mdata.mod[modality]
    obsmap = np.asarray(mdata.obsmap[modality]).ravel() if modality in mdata.obsmap else None
    if obsmap is None or obsmap.shape[0] != mdata.n_obs or int((obsmap > 0).sum()) != adata.n_obs:
        raise ValueError(
            f"The MuData's global cell index is out of date for modality {modality!r} (it was "
            "changed after the MuData was built); call `mdata.update()` first."
        )
    rows = np.flatnonzero(obsmap > 0)
    order = np.empty(adata.n_obs, dtype=np.int64)
    order[obsmap[rows] - 1] = rows
    return order


def cells_disjoint(mdata: MuData, modalities: list[str]) -> bool:
    """Whether every global row belongs to at most one of ``modalities``."""
    counts = np.zeros(mdata.n_obs, dtype=np.int64)
    for m in modalities:
        counts[global_rows(mdata, m)] += 1
    return bool((counts <= 1).all())


def _global_array(n_obs: int, per_part: Mapping[str, np.ndarray], rows: Mapping) -> np.ndarray:
    width = next(iter(per_part.values())).shape[1]
    out = np.full((n_obs, width), MISSING, dtype=np.float32)
    for m, array in per_part.items():
        out[rows[m]] = array
    return out


def _global_column(n_obs: int, per_part: Mapping[str, Any], rows: Mapping):
    first = next(iter(per_part.values()))
    if isinstance(first, pd.Series) and isinstance(first.dtype, pd.CategoricalDtype):
        codes = np.full(n_obs, -1, dtype=np.int64)
        for m, column in per_part.items():
            codes[rows[m]] = column.cat.codes.to_numpy()
        return pd.Categorical.from_codes(codes, categories=first.cat.categories)
    out = np.full(n_obs, np.nan, dtype=np.float64)
    for m, column in per_part.items():
        out[rows[m]] = np.asarray(column, dtype=np.float64)
    return out


def remove_outputs(data: AnnData | MuData, key_added: str) -> None:
    """Delete what an earlier run with ``key_added`` wrote (as recorded in its ``uns``)."""
    record = data.uns.get(key_added)
    written = record.get("outputs") if isinstance(record, Mapping) else None
    if not isinstance(written, Mapping):
        return
    parts = [data, *(data.mod.values() if isinstance(data, MuData) else [])]
    for key in _as_list(written.get("obsm")):
        for part in parts:
            part.obsm.pop(key, None)
    for key in _as_list(written.get("obs")):
        for part in parts:
            if key in part.obs.columns:
                part.obs.drop(columns=key, inplace=True)
    if isinstance(data, MuData):
        removed = [m for m in _as_list(written.get("modalities")) if m in data.mod]
        if removed:
            for m in removed:  # MuData.mod cannot be reassigned, only edited
                del data.mod[m]
                # MuData keeps a deleted modality's cell and feature masks otherwise
                data.obsm.pop(m, None)
                data.varm.pop(m, None)
            data.update()


def _as_list(values) -> list[str]:
    if values is None:
        return []
    return [str(x) for x in np.asarray(values, dtype=object).ravel()]


def write_outputs(
    data: AnnData | MuData, key_added: str, outputs: Outputs, params: Mapping[str, Any]
) -> None:
    """Replace the results of ``key_added`` in ``data`` by ``outputs`` (see :class:`Outputs`).

    In a MuData whose modalities hold distinct cells, per-modality results also go to the
    global ``obsm``/``obs`` (NaN for other cells), with an ``obs["modality"]`` column so that
    ``sc.pl.umap(mdata, color="modality")`` works. When the modalities share cells (a paired
    MuData treated as unpaired) one global row per cell would be ambiguous: the results stay in
    each modality (``mdata.mod[m].obsm[...]``), which a warning says.
    """
    remove_outputs(data, key_added)
    written_obs = list(outputs.obs)
    if isinstance(data, MuData):
        for name, adata in outputs.modalities.items():
            data.mod[name] = adata
        if outputs.modalities:
            data.update()
        used = sorted({m for d in (*outputs.obsm.values(), *outputs.obs.values()) for m in d})
        disjoint = cells_disjoint(data, used) if used else False
        rows = {m: global_rows(data, m) for m in used} if disjoint else {}
        for key, per_mod in outputs.obsm.items():
            for m, array in per_mod.items():
                data.mod[m].obsm[key] = array
            if disjoint:
                data.obsm[key] = _global_array(data.n_obs, per_mod, rows)
        for key, per_mod in outputs.obs.items():
            for m, values in per_mod.items():
                column = values.array if isinstance(values, pd.Series) else np.asarray(values)
                data.mod[m].obs[key] = pd.Series(column, index=data.mod[m].obs_names)
            if disjoint:
                data.obs[key] = _global_column(data.n_obs, per_mod, rows)
        if disjoint and len(used) > 1 and _write_modality_column(data, used, rows):
            written_obs.append(MODALITY_COLUMN)
        hidden = [k for k in outputs.obsm if k not in outputs.global_obsm]
        if used and not disjoint and hidden:
            warnings.warn(
                f"Modalities {used} share cells, so one global row per cell would be ambiguous; "
                f"{hidden} are written to each modality only (`mdata.mod[m].obsm[{hidden[0]!r}]`).",
                UserWarning,
                stacklevel=4,
            )
    else:
        rows = outputs.rows or {}
        for key, per_part in outputs.obsm.items():
            data.obsm[key] = _global_array(data.n_obs, per_part, rows)
        for key, per_part in outputs.obs.items():
            data.obs[key] = _global_column(data.n_obs, per_part, rows)
    for key, array in outputs.global_obsm.items():
        data.obsm[key] = array
    for key, values in outputs.global_obs.items():
        data.obs[key] = values.array if isinstance(values, pd.Series) else values
    data.uns[key_added] = {
        **outputs.uns,
        "params": clean_params(params),
        "outputs": {
            "obsm": list(dict.fromkeys([*outputs.obsm, *outputs.global_obsm])),
            "obs": list(dict.fromkeys([*written_obs, *outputs.global_obs])),
            "modalities": list(outputs.modalities),
        },
    }


#: Global ``obs`` column naming the modality of each cell of a disjoint MuData.
MODALITY_COLUMN = "modality"


def _write_modality_column(data: MuData, used: list[str], rows: Mapping) -> bool:
    """Write ``obs["modality"]``; keep a user's own different column (and say so)."""
    codes = np.full(data.n_obs, -1, dtype=np.int64)
    for k, m in enumerate(used):
        codes[rows[m]] = k
    column = pd.Categorical.from_codes(codes, categories=used)
    existing = data.obs.get(MODALITY_COLUMN)
    if existing is not None and not np.array_equal(
        existing.astype(str).to_numpy(), pd.Series(column).astype(str).to_numpy()
    ):
        logger.warning(
            "`.obs[%r]` exists and is not the modality of each cell; it is kept, so color by "
            "another column to see the modalities.",
            MODALITY_COLUMN,
        )
        return False
    data.obs[MODALITY_COLUMN] = column
    return existing is None


# ---------------------------------------------------------------------------- signatures/docs
_COMMON_DOC = {
    "key_added": "key_added\n    Name of the results: ``obsm[f'X_{key_added}']``, "
    "``obs[f'{key_added}_…']`` and ``uns[key_added]``. A second run with the same name "
    "replaces all of them.",
    "copy": "copy\n    Work on a copy of ``data`` and return it with the results (the input stays "
    "untouched); otherwise write into ``data`` and return the trained model.",
    "seed": "seed\n    Seed of everything random (initialisation, sampling, PCA/LSI, kNN). The "
    "caller's global random state is left as it was.",
    "trainer_kwargs": "trainer_kwargs\n    Lightning/scvi-tools trainer options, e.g. "
    "``{'strategy': 'ddp', 'precision': 'bf16-mixed', 'enable_progress_bar': False}``.",
}


def docstring_parameters(func: Callable) -> dict[str, str]:
    """``{name: entry}`` of a numpy docstring's Parameters (grouped names share one entry)."""
    doc = inspect.cleandoc(func.__doc__ or "")
    match = re.search(r"^Parameters\n-+\n(.*?)(?=^\S[^\n]*\n-+\n|\Z)", doc, re.M | re.S)
    if not match:
        return {}
    entries: dict[str, str] = {}
    current: list[str] = []
    for line in [*match.group(1).splitlines(), ""]:
        if line and not line.startswith(" "):
            _store(entries, current)
            current = [line]
        elif current:
            current.append(line)
    _store(entries, current)
    return entries


def _store(entries: dict[str, str], lines: list[str]) -> None:
    if not lines:
        return
    text = "\n".join(lines).rstrip()
    header = lines[0].split(":")[0]
    for name in re.split(r",\s*", header):
        name = name.strip().lstrip("*")
        if name:
            entries[name] = text


def _keyword_params(func: Callable, skip: set[str]) -> list[inspect.Parameter]:
    params = []
    for p in inspect.signature(func).parameters.values():
        if p.name in skip or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    return params


@dataclass
class _ToolSpec:
    model_cls: type
    name: str
    compute_outputs: Callable
    groups: dict[str, list[str]]
    output_checks: dict[str, Callable]
    new_modalities: tuple[str, ...]
    renamed: dict[str, Any]
    mixing: MixingCheck | None = None


def method_tool(
    model_cls: type,
    compute_outputs: Callable,
    *,
    name: str,
    doc: str,
    output_checks: Mapping[str, Callable] | None = None,
    new_modalities: tuple[str, ...] = (),
    renamed: Mapping[str, Any] | None = None,
    mixing: MixingCheck | None = None,
) -> Callable:
    """Build ``scx.tl.<name>`` for ``model_cls`` (see the module docstring).

    Parameters
    ----------
    model_cls
        The model class; its ``_fit_inputs``, ``__init__`` and ``train`` declare the settings.
    compute_outputs
        ``compute_outputs(model, data, key_added, **options) -> Outputs``; its keyword options
        become tool arguments.
    name
        Tool name (also the default ``key_added``).
    doc
        The tool's docstring; ``{parameters}`` is replaced by the assembled Parameters section
        and the Returns section every tool shares.
    output_checks
        ``{option: checker}`` for the options of ``compute_outputs``.
    new_modalities
        Options of ``compute_outputs`` that name a modality the tool adds; a name already used
        by a measured modality is an error.
    renamed
        Old argument names kept for one release: ``{old: new}`` or ``{old: (new, position)}``
        for one entry of a list argument (e.g. ``"rna": ("modalities", 0)``).
    mixing
        The joint latent whose mixing of the modalities is checked after training, and what to
        try when they stay apart; gives the tool the option ``check_mixing``. ``None``: the
        method's latent is not a joint embedding of several modalities.
    """
    common = ["check_mixing", "key_added", "copy", "seed", "trainer_kwargs"]
    data_params = _keyword_params(model_cls._fit_inputs, {"cls", "data", "seed"})
    skip_init = {"self", "data", "adata", "mdata", "seed", *model_cls._data_init_args}
    init_params = _keyword_params(model_cls.__init__, skip_init)
    train_params = _keyword_params(model_cls.train, {"self", "seed"})
    output_params = _keyword_params(compute_outputs, {"model", "data", "key_added"})
    groups = {
        "data": [p.name for p in data_params],
        "init": [p.name for p in init_params],
        "train": [p.name for p in train_params],
        "output": [p.name for p in output_params],
    }
    seen: dict[str, str] = {}
    for group, names in groups.items():
        for n in names:
            if n in seen or n in common:
                raise TypeError(
                    f"scx.tl.{name}: setting {n!r} is declared in {seen.get(n, 'common')} and "
                    f"{group}; each setting must be declared once."
                )
            seen[n] = group
    Param = inspect.Parameter
    mixing_params = []
    if mixing is not None:
        mixing_params = [Param("check_mixing", Param.KEYWORD_ONLY, default=True, annotation="bool")]
    parameters = [
        Param("data", Param.POSITIONAL_OR_KEYWORD, annotation="AnnData | MuData"),
        *data_params,
        *init_params,
        *train_params,
        *output_params,
        *mixing_params,
        Param("key_added", Param.KEYWORD_ONLY, default=name, annotation="str"),
        Param("copy", Param.KEYWORD_ONLY, default=False, annotation="bool"),
        Param("seed", Param.KEYWORD_ONLY, default=0, annotation="int"),
        Param("trainer_kwargs", Param.KEYWORD_ONLY, default=None, annotation="dict | None"),
    ]
    signature = inspect.Signature(parameters, return_annotation=f"{model_cls.__name__} | None")
    docs: dict[str, str] = {}
    for source in (compute_outputs, model_cls.train, model_cls, model_cls._fit_inputs):
        docs.update(docstring_parameters(source))
    docs.update(_COMMON_DOC)
    if mixing is not None:
        docs["check_mixing"] = mixing_doc(mixing)
    spec = _ToolSpec(
        model_cls,
        name,
        compute_outputs,
        groups,
        dict(output_checks or {}),
        tuple(new_modalities),
        dict(renamed or {}),
        mixing,
    )

    def tool(data=None, *args, **kwargs):
        if args:
            raise TypeError(
                f"scx.tl.{name} takes the data as its only positional argument; pass the other "
                "arguments by name."
            )
        bound = _bind(spec, signature, data, kwargs)
        return run_tool(spec, bound)

    tool.__name__ = tool.__qualname__ = name
    tool.__module__ = "scx.tl"
    tool.__signature__ = signature
    returns = (
        "Returns\n-------\nThe trained model, or with ``copy=True`` the new object holding "
        "the results."
    )
    tool.__doc__ = doc.replace(
        "{parameters}", _parameters_section(signature, docs) + "\n\n" + returns
    )
    return tool


def _parameters_section(signature: inspect.Signature, docs: Mapping[str, str]) -> str:
    lines = ["Parameters", "----------", "data", "    The data (see above)."]
    written: set[str] = set()
    for name in list(signature.parameters)[1:]:
        entry = docs.get(name, f"{name}\n    See the model class.")
        if entry in written:
            continue
        written.add(entry)
        lines.append(entry)
    return "\n".join(lines)


def _bind(spec: _ToolSpec, signature: inspect.Signature, data, kwargs: dict) -> dict:
    kwargs = dict(kwargs)
    names = set(signature.parameters)
    for old, new in spec.renamed.items():
        if old not in kwargs:
            continue
        value = kwargs.pop(old)
        target, position = (new, None) if isinstance(new, str) else new
        warnings.warn(
            f"scx.tl.{spec.name}: `{old}=` is deprecated and will be removed in the next release; "
            f"use `{target}=`{'' if position is None else f' (entry {position})'}.",
            FutureWarning,
            stacklevel=3,
        )
        if position is None:
            kwargs.setdefault(target, value)
        else:
            current = list(kwargs.get(target) or signature.parameters[target].default)
            if position >= len(current):  # an optional trailing entry (scPairing's `mod3`)
                if value is None:
                    continue
                current += [None] * (position + 1 - len(current))
            current[position] = value
            kwargs[target] = current
    moved = {k: kwargs.pop(k) for k in list(kwargs) if k not in names and k in TRAINER_OPTIONS}
    if moved:
        warnings.warn(
            f"scx.tl.{spec.name}: trainer options {sorted(moved)} given as keywords are "
            "deprecated; pass them as `trainer_kwargs={...}`.",
            FutureWarning,
            stacklevel=3,
        )
        kwargs["trainer_kwargs"] = {**(kwargs.get("trainer_kwargs") or {}), **moved}
    for key in kwargs:
        if key not in names:
            raise ValueError(unknown_name_message(key, names, f"scx.tl.{spec.name}"))
    bound = signature.bind(data, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def run_tool(spec: _ToolSpec, arguments: dict) -> Any:
    """Check, prepare, train, compute and write (see the module docstring)."""
    model_cls = spec.model_cls
    data = arguments["data"]
    group = {g: {n: arguments[n] for n in names} for g, names in spec.groups.items()}
    key_added, copy, seed = arguments["key_added"], arguments["copy"], arguments["seed"]
    function = f"scx.tl.{spec.name}"
    check_key_added(data, key_added, function=function, embeds=True)
    v.boolean(copy, "copy")
    v.check_positive_int(seed, argname="seed", minimum=0)
    check_mixing = arguments.get("check_mixing", False)
    v.boolean(check_mixing, "check_mixing")
    model_cls.check_settings(**group["init"], **group["train"])
    v.run_checks(spec.output_checks, group["output"])
    trainer_kwargs = check_trainer_kwargs(arguments["trainer_kwargs"])
    model_cls.check_data_arguments(**group["data"])
    model_cls._check_inputs(data, settings={**group["init"], **group["train"]}, **group["data"])
    _check_new_modalities(spec, data, key_added, group["output"])

    with isolated_state(seed):
        # (copying a MuData draws from Python's global random generator)
        target = data.copy() if copy else data
        view = model_cls.prepare_inputs(target, seed=seed, **group["data"])
        state = view.uns[INPUT_STATE_KEY]
        model = model_cls(view, **state.get("init", {}), **group["init"], seed=seed)
        model.train(**group["train"], seed=seed, **trainer_kwargs)
        outputs = spec.compute_outputs(model, target, key_added, **group["output"])
        mixing = None
        if check_mixing:
            mixing = mixing_record(
                spec.mixing, outputs.obsm, key_added, seed=seed, function=function
            )
    outputs.uns = {"function": function, **outputs.uns}
    if mixing is not None:
        outputs.uns["mixing"] = mixing
    params = {**model.recorded_params(), **group["output"], "seed": seed}
    if spec.mixing is not None:
        params["check_mixing"] = bool(check_mixing)
    write_outputs(target, key_added, outputs, params)
    logger.info(
        "%s: wrote %s.",
        model_cls._method_name,
        ", ".join(
            [f".obsm[{k!r}]" for k in outputs.obsm]
            + [f".obs[{k!r}]" for k in outputs.obs]
            + [f"modality {k!r}" for k in outputs.modalities]
            + [f".uns[{key_added!r}]"]
        ),
    )
    if mixing is not None:
        warn_if_apart(spec.mixing, mixing, key_added, function=function)
    return target if copy else model


def check_key_added(
    data: AnnData | MuData, key_added: Any, *, function: str, embeds: bool = False
) -> None:
    """``key_added`` of ``function``: a name whose earlier results it may replace.

    A rerun with the same name replaces what the record ``uns[key_added]`` lists, so the name
    must not be that of other results: an ``.uns`` entry scx did not write, or the record of
    another function (``record["function"]``). A function that writes only ``.obs`` columns
    (``embeds=False``) also refuses an unmarked record listing embeddings or modalities (a
    tool's record of an earlier release).
    """
    if not isinstance(key_added, str) or not key_added or "/" in key_added:
        raise ValueError(f"`key_added` must be a non-empty name without '/', got {key_added!r}.")
    if not isinstance(data, AnnData | MuData) or key_added not in data.uns:
        return
    record = data.uns[key_added]
    written = record.get("outputs") if isinstance(record, Mapping) else None
    if not isinstance(written, Mapping):
        raise ValueError(
            f"`key_added={key_added!r}` would overwrite `.uns[{key_added!r}]`, which scx did not "
            f"write; pass another name."
        )
    owner = record.get("function")
    foreign = owner is not None and owner != function
    if owner is None and not embeds:
        foreign = any(len(_as_list(written.get(kind))) for kind in ("obsm", "modalities"))
    if foreign:
        raise ValueError(
            f"`key_added={key_added!r}` names the results of another tool (`uns[{key_added!r}]`"
            f"{f', written by {owner}' if owner else ''}), which {function} would replace; pass "
            "another name."
        )


def _check_new_modalities(spec: _ToolSpec, data, key_added: str, options: Mapping) -> None:
    """A new modality must not replace a measured one (only an earlier run's own output)."""
    names = [options[k] for k in spec.new_modalities if isinstance(options.get(k), str)]
    if not names or not isinstance(data, MuData):
        return
    previous = data.uns.get(key_added, {})
    ours = set(_as_list(previous.get("outputs", {}).get("modalities")))
    for name in names:
        if name in data.mod and name not in ours:
            raise ValueError(
                f"scx.tl.{spec.name} would add a modality {name!r}, but the MuData already has a "
                "modality of that name that scx did not write; pass another name."
            )
