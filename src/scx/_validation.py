"""Input checks shared by every tool.

Each check raises a :class:`ValueError` whose message names the argument, says what was wrong and
what to pass instead. All checks only read their inputs, so a failing call leaves the user's data
untouched; tools run every check before any training starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import sparse


def get_matrix(adata: AnnData, layer: str | None, *, argname: str = "layer"):
    """Return ``adata.X`` or ``adata.layers[layer]`` without copying."""
    if layer is not None and (not isinstance(layer, str) or not layer):
        raise ValueError(
            f"`{argname}` must be the name of a layer (a string), or None for `.X`; got "
            f"{layer!r}. Available layers: {list(adata.layers.keys())}."
        )
    if layer is None:
        if adata.X is None:
            raise ValueError(
                f"`{argname}=None` selects `.X`, but `.X` is empty; pass one of the layers "
                f"{list(adata.layers.keys())}."
            )
        return adata.X
    if layer not in adata.layers:
        raise ValueError(
            f"`{argname}={layer!r}` is not a layer of this AnnData; available layers: "
            f"{list(adata.layers.keys())}. Pass one of them, or None for `.X`."
        )
    return adata.layers[layer]


def check_mudata(mdata: Any, *, argname: str = "mdata") -> MuData:
    """Check that ``mdata`` is a MuData."""
    if not isinstance(mdata, MuData):
        raise ValueError(
            f"`{argname}` must be a MuData with one modality per data type, got "
            f"{type(mdata).__name__}. Build one with `mudata.MuData({{'rna': rna, 'atac': atac}})`."
        )
    return mdata


def check_modality(
    mdata: MuData, name: Any, *, argname: str, require_features: bool = True
) -> AnnData:
    """Return ``mdata.mod[name]`` or raise an error listing the modalities.

    The modality needs cells, and features unless ``require_features`` is False (a modality
    given only as an ``.obsm`` embedding).
    """
    if not isinstance(name, str) or name not in mdata.mod:
        raise ValueError(
            f"`{argname}={name!r}` is not a modality of the MuData; its modalities are "
            f"{list(mdata.mod.keys())}. Pass one of those names."
        )
    adata = mdata.mod[name]
    if adata.n_obs == 0 or (require_features and adata.n_vars == 0):
        raise ValueError(
            f"Modality `{argname}={name!r}` is empty ({adata.n_obs} cells × {adata.n_vars} "
            "features); pass a modality with at least one cell and one feature."
        )
    return adata


def check_obs_key(adata: AnnData, key: Any, *, argname: str, where: str = "") -> pd.Series:
    """Return ``adata.obs[key]`` or raise an error listing the available columns."""
    if key is None or not isinstance(key, str):
        raise ValueError(
            f"`{argname}` must name a column of `.obs`{where}, got {key!r}. Available columns: "
            f"{list(adata.obs.columns)}."
        )
    if key not in adata.obs.columns:
        raise ValueError(
            f"`{argname}={key!r}` is not a column of `.obs`{where}; available columns: "
            f"{list(adata.obs.columns)}. Pass one of them."
        )
    return adata.obs[key]


def check_labels(labels: pd.Series, *, argname: str, where: str = "") -> pd.Series:
    """Check a reference label column: no missing values and at least two classes."""
    if labels.isna().any():
        n_missing = int(labels.isna().sum())
        raise ValueError(
            f"`{argname}={labels.name!r}`{where} has {n_missing} missing labels; every reference "
            "cell needs a label. Drop the unlabelled cells from the reference or fill them in."
        )
    n_classes = labels.nunique()
    if n_classes < 2:
        raise ValueError(
            f"`{argname}={labels.name!r}`{where} has {n_classes} class "
            f"({list(labels.unique()[:1])}); label transfer needs at least two classes. Pass a "
            "column with two or more cell types."
        )
    return labels


def check_counts(
    X, *, argname: str, allow_negative: bool = False, allow_non_numeric: bool = False
) -> None:
    """Check a data matrix: numeric, finite and (unless allowed) non-negative.

    Sparse matrices are checked through their stored values, never densified.
    """
    values = X.data if sparse.issparse(X) else np.asarray(X)
    if not np.issubdtype(values.dtype, np.number) or np.issubdtype(
        values.dtype, np.complexfloating
    ):
        if allow_non_numeric:
            return
        raise ValueError(
            f"`{argname}` holds non-numeric values (dtype {values.dtype}); pass a numeric matrix."
        )
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values)
        if bad.any():
            n_nan = int(np.isnan(values).sum())
            raise ValueError(
                f"`{argname}` contains {n_nan} NaN and {int(bad.sum()) - n_nan} infinite values; "
                "pass a finite matrix (e.g. fill or drop the affected cells/features)."
            )
    if not allow_negative and values.size and values.min() < 0:
        raise ValueError(
            f"`{argname}` contains negative values (minimum {values.min():.4g}); this method "
            "expects counts or non-negative normalised values. Pass raw counts (e.g. a `counts` "
            "layer) instead of scaled data."
        )


def check_disjoint_obs(mdata: MuData, names: Iterable[str]) -> bool:
    """Whether the given modalities share no cell names (diagonal integration)."""
    seen: set[str] = set()
    for name in names:
        obs = set(mdata.mod[name].obs_names)
        if seen & obs:
            return False
        seen |= obs
    return True


def check_positive_int(value: Any, *, argname: str, minimum: int = 1) -> int:
    """Check an integer hyper-parameter."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"`{argname}` must be an integer ≥ {minimum}, got {value!r}.")
    return int(value)


def check_fraction(value: Any, *, argname: str, low_open: bool = True) -> float:
    """Check a value in (0, 1] (or [0, 1] when ``low_open`` is False)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and (0 < value <= 1 if low_open else 0 <= value <= 1)
    if not ok:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"`{argname}` must be a number in {interval}, got {value!r}.")
    return float(value)


def check_rep(data: AnnData | MuData, use_rep: str, *, argname: str = "use_rep") -> np.ndarray:
    """Return ``data.obsm[use_rep]`` as a 2-d finite float array."""
    if use_rep not in data.obsm:
        raise ValueError(
            f"`{argname}={use_rep!r}` is not in `.obsm`; available keys: {list(data.obsm.keys())}. "
            "Pass one of them (e.g. 'X_pca' after `sc.pp.pca`)."
        )
    rep = data.obsm[use_rep]
    rep = rep.toarray() if sparse.issparse(rep) else np.asarray(rep)
    if rep.ndim != 2:
        raise ValueError(f"`.obsm[{use_rep!r}]` must be 2-d, got shape {rep.shape}.")
    check_counts(rep, argname=f".obsm[{use_rep!r}]", allow_negative=True)
    return rep


def clean_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Make settings storable in ``.uns`` and readable: the one convention for every tool.

    ``None`` (a setting that is off or unset) stays ``None`` at the top level and becomes
    ``"None"`` inside lists (h5 cannot hold it there); tuples become lists; matrices and tables
    are summarised by their type and shape.
    """
    cleaned = {}
    for key, value in params.items():
        if isinstance(value, np.ndarray | pd.DataFrame) or sparse.issparse(value):
            shape = "×".join(str(n) for n in value.shape)
            value = f"{type(value).__name__} ({shape})"
        elif isinstance(value, tuple | list | pd.Index):
            value = [str(x) if x is None else _plain(x) for x in value]
        elif isinstance(value, Mapping):
            value = clean_params(value)
        else:
            value = _plain(value)
        cleaned[str(key)] = value
    return cleaned


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple | list):
        return [str(x) if x is None else _plain(x) for x in value]
    return value


# ---------------------------------------------------------------------------- settings
# Each model declares one checker per setting (``_setting_checks``); the tools call them before
# any work and the model's ``__init__``/``train`` call the same ones, so a setting's constraint is
# written once. A checker takes ``(value, argname)`` and raises a ValueError or returns None.


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)


def positive_int(minimum: int = 1):
    """Checker: an integer ≥ ``minimum``."""

    def check(value: Any, argname: str) -> None:
        check_positive_int(value, argname=argname, minimum=minimum)

    check.__doc__ = f"an integer ≥ {minimum}"
    return check


def number(
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
):
    """Checker: a finite number in ``[low, high]`` (an open end with ``low_open``/``high_open``)."""

    def check(value: Any, argname: str) -> None:
        ok = _is_number(value) and np.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            raise ValueError(f"`{argname}` must be {describe}, got {value!r}.")

    if low is None and high is None:
        describe = "a finite number"
    elif high is None:
        describe = f"a finite number {'>' if low_open else '≥'} {low:g}"
    else:
        describe = (
            f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        )
    check.__doc__ = describe
    return check


#: A loss weight: finite and ≥ 0 (NaN or a negative weight silently ruins training).
weight = number(low=0)
#: A learning rate or other strictly positive quantity.
positive = number(low=0, low_open=True)
#: The decay of a moving average of weights: in [0, 1) (1 would never move).
decay = number(low=0, high=1, high_open=True)


def fraction(*, low_open: bool = True):
    """Checker: a number in (0, 1] (or [0, 1])."""

    def check(value: Any, argname: str) -> None:
        check_fraction(value, argname=argname, low_open=low_open)

    return check


def choice(*values: Any):
    """Checker: one of ``values``."""

    def check(value: Any, argname: str) -> None:
        if not any(value is v or (type(value) is type(v) and value == v) for v in values):
            raise ValueError(f"`{argname}` must be one of {list(values)}, got {value!r}.")

    return check


def boolean(value: Any, argname: str) -> None:
    """Checker: ``True`` or ``False``."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"`{argname}` must be True or False, got {value!r}.")


def name(what: str = "a name"):
    """Checker: a non-empty string (a layer, an ``.obs`` column, an ``.obsm`` key…)."""

    def check(value: Any, argname: str) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError(f"`{argname}` must be {what} (a string), got {value!r}.")

    check.__doc__ = what
    return check


def per_modality(checker):
    """Checker: one value, or ``{modality: value}`` whose values ``checker`` accepts.

    Only the values are checked here; the modality keys are checked against the data by
    :func:`check_per_modality`.
    """

    def check(value: Any, argname: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                checker(item, f"{argname}[{key!r}]")
        else:
            checker(value, argname)

    return check


def optional(checker):
    """Checker: ``None`` or what ``checker`` accepts."""

    def check(value: Any, argname: str) -> None:
        if value is not None:
            checker(value, argname)

    return check


def sequence_of(checker, *, min_length: int = 0):
    """Checker: a list or tuple (not a string) whose items ``checker`` accepts."""

    def check(value: Any, argname: str) -> None:
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple | np.ndarray):
            raise ValueError(f"`{argname}` must be a list, got {value!r}.")
        if len(value) < min_length:
            raise ValueError(
                f"`{argname}` must have at least {min_length} items, got {list(value)!r}."
            )
        for k, item in enumerate(value):
            checker(item, f"{argname}[{k}]")

    return check


def one_or_sequence_of(checker):
    """Checker: one value or a list of values that ``checker`` accepts."""

    def check(value: Any, argname: str) -> None:
        if isinstance(value, list | tuple):
            sequence_of(checker, min_length=1)(value, argname)
        else:
            checker(value, argname)

    return check


def run_checks(checks: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """Apply ``checks[name]`` to every ``values[name]`` that has a checker."""
    for name, value in values.items():
        checker = checks.get(name)
        if checker is not None:
            checker(value, name)


def check_per_modality(value: Any, modalities: Iterable[str], *, argname: str) -> dict:
    """Expand a setting given once or as ``{modality: value}``; unknown modality keys fail."""
    modalities = list(modalities)
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in modalities]
        if unknown:
            raise ValueError(
                f"`{argname}` names modalities {unknown} that are not used here; the modalities "
                f"are {modalities}. Fix the key (a typo?) or give one value for all."
            )
        return {m: value.get(m) for m in modalities}
    return dict.fromkeys(modalities, value)


def check_unique_names(adata: AnnData, *, where: str) -> None:
    """Cell and feature names must be unique (features are matched by name)."""
    for axis, names, fix in (
        ("cell", adata.obs_names, "obs_names_make_unique()"),
        ("feature", adata.var_names, "var_names_make_unique()"),
    ):
        if not names.is_unique:
            dup = names[names.duplicated()].unique()
            raise ValueError(
                f"{where} has {len(dup)} duplicated {axis} names (e.g. {list(dup[:3])}); "
                f"features and cells are matched by name, so duplicates would be silently "
                f"misaligned. Call `.{fix}` on it first (and `mdata.update()` for a MuData)."
            )


# ---------------------------------------------------------------------------- metric inputs
def check_embedding(x: Any, *, argname: str, min_rows: int = 2) -> np.ndarray:
    """A finite 2-d float array with at least ``min_rows`` rows (metrics refuse NaN/inf)."""
    if sparse.issparse(x):
        x = x.toarray()
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`{argname}` must be a numeric cells × dimensions array.") from err
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"`{argname}` must be a 2-d cells × dimensions array, got {array.shape}.")
    if array.shape[0] < min_rows:
        raise ValueError(f"`{argname}` has {array.shape[0]} cells; at least {min_rows} needed.")
    bad = ~np.isfinite(array)
    if bad.any():
        rows = int(bad.any(axis=1).sum())
        raise ValueError(
            f"`{argname}` has {rows} cells with NaN or infinite values; a metric of such an "
            "embedding would be meaningless. Drop those cells (e.g. the cells a tool did not "
            "embed) or fix the embedding."
        )
    return array


def check_labels_for(values: Any, n: int, *, argname: str, min_classes: int = 2) -> np.ndarray:
    """One label per cell (``n`` of them), with at least ``min_classes`` distinct values."""
    array = np.asarray(values, dtype=object).ravel()
    if array.shape[0] != n:
        raise ValueError(
            f"`{argname}` has {array.shape[0]} entries but the embedding has {n} cells; pass one "
            "value per cell, in the embedding's order."
        )
    missing = pd.isna(array)
    if missing.any():
        raise ValueError(
            f"`{argname}` has {int(missing.sum())} missing values; pass a value for every cell "
            "(or drop those cells)."
        )
    n_classes = len(pd.unique(array.astype(str)))
    if n_classes < min_classes:
        raise ValueError(
            f"`{argname}` has {n_classes} distinct value; this metric compares at least "
            f"{min_classes} (e.g. two batches or two cell types)."
        )
    return array


def check_batch_size_fits(
    batch_size: int | Mapping[str, int] | None,
    sizes: Mapping[str, int],
    *,
    train_size: float = 1.0,
) -> None:
    """Every modality (or dataset) must fill one mini-batch of its training cells.

    ``batch_size`` is one size or ``{modality: size}``; ``None`` (a method's own default, which
    always fits) passes. Cells are drawn per modality per step, so a modality with fewer
    training cells than its batch cannot be sampled.
    """
    if batch_size is None:
        return
    names = list(sizes)
    per_modality = check_per_modality(batch_size, names, argname="batch_size")
    missing = [m for m, size in per_modality.items() if size is None]
    if missing:
        raise ValueError(
            f"`batch_size` has no entry for modalities {missing}; pass an int or a dict with "
            f"every modality {names}."
        )
    for m, n_cells in sizes.items():
        check_positive_int(per_modality[m], argname="batch_size", minimum=2)
        n_train = int(np.ceil(train_size * n_cells))
        if n_train < per_modality[m]:
            cells = "cells" if train_size >= 1 else f"training cells (train_size={train_size})"
            raise ValueError(
                f"Modality {m!r} has {n_train} {cells}, fewer than `batch_size="
                f"{per_modality[m]}`; pass `batch_size` ≤ {n_train} (or leave that modality out)."
            )


def check_modality_names(
    modalities: Any, *, counts: tuple[int, ...] = (2,), roles: str = "the two modalities"
) -> list[str]:
    """``modalities`` as a list of distinct names; its length must be one of ``counts``.

    ``roles`` says what the names stand for in the error message (e.g. "the RNA (labelled)
    and ATAC (query) modalities, e.g. ('rna', 'atac')").
    """
    if (
        isinstance(modalities, str)
        or not isinstance(modalities, list | tuple)
        or len(modalities) not in counts
        or not all(isinstance(m, str) for m in modalities)
    ):
        raise ValueError(f"`modalities` must name {roles}; got {modalities!r}.")
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"`modalities` must be different modalities, got {list(modalities)}.")
    return list(modalities)
