"""Writing per-modality results into a MuData the muon/scanpy way.

Tools compute everything first and call these writers only at the very end, so a failed call
leaves the user's object as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
from mudata import MuData

from scx._validation import clean_params

__all__ = ["check_writable", "clean_params", "global_rows", "write_obs", "write_obsm"]

logger = logging.getLogger(__name__)


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


def check_writable(mdata: MuData, modalities: list[str]) -> bool:
    """Check the global index and say whether the modalities' cells are disjoint.

    Returns ``True`` when every global row belongs to at most one of ``modalities`` (so one
    global ``obsm`` row per cell is well defined).
    """
    counts = np.zeros(mdata.n_obs, dtype=np.int64)
    for m in modalities:
        counts[global_rows(mdata, m)] += 1
    return bool((counts <= 1).all())


def write_obsm(
    mdata: MuData, key: str, values: Mapping[str, np.ndarray], *, global_: bool = True
) -> None:
    """Write ``values[m]`` to ``mdata.mod[m].obsm[key]`` and, when ``global_``, to ``mdata.obsm``.

    Global rows of cells outside ``values``' modalities are NaN.
    """
    for m, array in values.items():
        mdata.mod[m].obsm[key] = array
    if global_:
        width = next(iter(values.values())).shape[1]
        out = np.full((mdata.n_obs, width), np.nan, dtype=np.float32)
        for m, array in values.items():
            out[global_rows(mdata, m)] = array
        mdata.obsm[key] = out


def write_obs(
    mdata: MuData, key: str, values: Mapping[str, pd.Series | np.ndarray], *, global_: bool = True
) -> None:
    """Write a per-cell column to the given modalities and, when ``global_``, to ``mdata.obs``.

    Categorical values stay categorical (string categories); cells of other modalities get
    NaN/``<NA>``.
    """
    first = next(iter(values.values()))
    categorical = isinstance(first, pd.Series) and isinstance(first.dtype, pd.CategoricalDtype)
    for m, column in values.items():
        data = column.array if isinstance(column, pd.Series) else np.asarray(column)
        mdata.mod[m].obs[key] = pd.Series(data, index=mdata.mod[m].obs_names)
    if not global_:
        return
    if categorical:
        codes = np.full(mdata.n_obs, -1, dtype=np.int64)
        for m, column in values.items():
            codes[global_rows(mdata, m)] = column.cat.codes.to_numpy()
        mdata.obs[key] = pd.Categorical.from_codes(codes, categories=first.cat.categories)
    else:
        out = np.full(mdata.n_obs, np.nan, dtype=np.float64)
        for m, column in values.items():
            out[global_rows(mdata, m)] = np.asarray(column, dtype=np.float64)
        mdata.obs[key] = out
