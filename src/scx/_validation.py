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


def check_modality(mdata: MuData, name: Any, *, argname: str) -> AnnData:
    """Return ``mdata.mod[name]`` or raise an error listing the modalities."""
    if not isinstance(name, str) or name not in mdata.mod:
        raise ValueError(
            f"`{argname}={name!r}` is not a modality of the MuData; its modalities are "
            f"{list(mdata.mod.keys())}. Pass one of those names."
        )
    adata = mdata.mod[name]
    if adata.n_obs == 0 or adata.n_vars == 0:
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
    """Make parameters storable in ``.uns`` (h5 cannot hold tuples or ``None`` inside lists)."""
    cleaned = {}
    for key, value in params.items():
        if isinstance(value, tuple | list):
            value = [str(v) if v is None else v for v in value]
        elif isinstance(value, Mapping):
            value = clean_params(value)
        elif isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, os.PathLike):
            value = os.fspath(value)
        cleaned[key] = value
    return cleaned
