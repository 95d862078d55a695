"""Temporary: the writers moved to :mod:`scx.base` (removed once every tool is ported)."""

from scx._validation import clean_params
from scx.base._tool import cells_disjoint, global_rows
from scx.base._tool import write_outputs as _write_outputs  # noqa: F401

__all__ = ["check_writable", "clean_params", "global_rows", "write_obs", "write_obsm"]


def check_writable(mdata, modalities):
    return cells_disjoint(mdata, modalities)


def write_obsm(mdata, key, values, *, global_=True):
    import numpy as np

    for m, array in values.items():
        mdata.mod[m].obsm[key] = array
    if global_:
        width = next(iter(values.values())).shape[1]
        out = np.full((mdata.n_obs, width), np.nan, dtype=np.float32)
        for m, array in values.items():
            out[global_rows(mdata, m)] = array
        mdata.obsm[key] = out


def write_obs(mdata, key, values, *, global_=True):
    import numpy as np
    import pandas as pd

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
