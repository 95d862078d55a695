"""``scx.tl.transfer_labels``: kNN majority-vote label transfer in any embedding."""

from __future__ import annotations

import logging
import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from scx import _validation as v
from scx._neighbors import knn_transfer
from scx.base import Outputs, check_key_added, global_rows, write_outputs
from scx.train import unknown_name_message

logger = logging.getLogger(__name__)

#: ``uns[key_added]["function"]`` of the records :func:`transfer_labels` writes.
FUNCTION = "scx.tl.transfer_labels"

CellSelection = str | tuple[str, Any] | np.ndarray | pd.Series


def _select(
    data: AnnData | MuData, selection: CellSelection, *, argname: str
) -> tuple[np.ndarray, AnnData | MuData]:
    """Rows of ``data.obs`` chosen by a modality name, an ``(obs_key, value)`` pair or a mask.

    Also returns the object whose ``.obs`` holds those cells' annotations (the modality for a
    MuData modality name, else ``data`` itself).
    """
    if isinstance(selection, str):
        if not isinstance(data, MuData):
            raise ValueError(
                f"`{argname}={selection!r}` names a modality, but the data is an AnnData; pass "
                "an (obs column, value) pair such as ('batch', 'CTRL') or a boolean mask."
            )
        v.check_modality(data, selection, argname=argname)
        return global_rows(data, selection), data.mod[selection]
    if isinstance(selection, tuple):
        if len(selection) != 2:
            raise ValueError(
                f"`{argname}` as a tuple must be (obs column, value), got {selection}."
            )
        key, value = selection
        column = v.check_obs_key(data, key, argname=f"{argname}[0]")
        rows = np.flatnonzero((column == value).to_numpy())
        if rows.size == 0:
            raise ValueError(
                f"No cell has `.obs[{key!r}] == {value!r}` (`{argname}`); pass one of the values "
                f"present: {list(pd.unique(column))[:10]}."
            )
        return rows, data
    mask = np.asarray(selection)
    if mask.dtype != bool or mask.shape != (data.n_obs,):
        raise ValueError(
            f"`{argname}` must be a modality name, an (obs column, value) pair, or a boolean "
            f"mask of length {data.n_obs}; got an array of dtype {mask.dtype} and shape "
            f"{mask.shape}."
        )
    if not mask.any():
        raise ValueError(
            f"The boolean mask `{argname}` selects no cell; pass a mask with at least one True."
        )
    return np.flatnonzero(mask), data


def transfer_labels(
    data: AnnData | MuData,
    *args,
    labels_key: str | None = None,
    use_rep: str | None = None,
    reference: CellSelection | None = None,
    query: CellSelection | None = None,
    n_neighbors: int = 30,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    method: Literal["auto", "exact", "pynndescent"] = "auto",
    min_confidence: float | None = None,
    max_reference: int | None = None,
    key_added: str = "transfer",
    copy: bool = False,
    seed: int = 0,
    **deprecated,
) -> AnnData | MuData | None:
    """Transfer labels from reference cells to query cells by kNN majority vote.

    Each query cell gets the most frequent label among its ``n_neighbors`` nearest reference
    cells in ``obsm[use_rep]`` (ties go to the label that sorts first) and a confidence: the
    fraction of those neighbours that carry the winning label. Exact search in row chunks for
    small inputs, pynndescent for large ones.

    Writes ``obs[f"{key_added}_label"]`` (categorical; NaN outside the query),
    ``obs[f"{key_added}_confidence"]`` and ``uns[key_added]["params"]``; for a MuData the
    columns also go to the query modality's ``.obs`` when the query is a modality. A rerun with
    the same ``key_added`` replaces them.

    Parameters
    ----------
    data
        AnnData or MuData with the joint embedding in ``.obsm[use_rep]``.
    labels_key
        ``.obs`` column with the reference labels (for a reference modality: that modality's
        ``.obs``).
    use_rep
        Key of the embedding in ``.obsm``.
    reference
        Reference cells: a modality name (MuData), an ``(obs column, value)`` pair such as
        ``("batch", "CTRL")``, or a boolean mask over ``data.obs``.
    query
        Query cells, given the same way; defaults to every other cell that has the embedding
        (cells of modalities a tool did not embed, NaN rows, are left out).
    n_neighbors
        Voting neighbours.
    metric
        ``"euclidean"`` or ``"cosine"``.
    method
        ``"exact"``, ``"pynndescent"`` or ``"auto"`` (by size).
    min_confidence
        Query cells with a lower confidence are labelled ``"unassigned"``.
    max_reference
        Use at most this many evenly spaced reference cells.
    key_added
        Prefix of the written keys.
    copy
        Return a copy of ``data`` with the results instead of writing into ``data``.
    seed
        Seed of pynndescent.

    Returns
    -------
    ``None``, or the copy with the results when ``copy=True``.
    """
    labels_key, use_rep, reference, seed = _old_call_forms(
        args, deprecated, labels_key, use_rep, reference, seed
    )
    if not isinstance(data, AnnData | MuData):
        raise ValueError(f"`data` must be an AnnData or a MuData, got {type(data).__name__}.")
    if labels_key is None or use_rep is None or reference is None:
        raise ValueError(
            "`labels_key`, `use_rep` and `reference` are required; pass all three, e.g. "
            "`transfer_labels(mdata, labels_key='cell_type', use_rep='X_scjoint', "
            "reference='rna')`."
        )
    if not isinstance(use_rep, str) or use_rep not in data.obsm:
        raise ValueError(
            f"`use_rep={use_rep!r}` is not in `.obsm`; available keys: {list(data.obsm.keys())}. "
            "Pass the key of the joint embedding (e.g. 'X_scjoint')."
        )
    v.check_positive_int(n_neighbors, argname="n_neighbors")
    v.choice("euclidean", "cosine")(metric, "metric")
    v.choice("auto", "exact", "pynndescent")(method, "method")
    v.optional(v.fraction(low_open=False))(min_confidence, "min_confidence")
    v.optional(v.positive_int())(max_reference, "max_reference")
    v.boolean(copy, "copy")
    v.check_positive_int(seed, argname="seed", minimum=0)
    check_key_added(data, key_added, function=FUNCTION)
    embedding = np.asarray(data.obsm[use_rep], dtype=np.float64)
    if embedding.ndim != 2:
        raise ValueError(f"`.obsm[{use_rep!r}]` must be 2-d, got shape {embedding.shape}.")
    embedded = np.isfinite(embedding).all(axis=1)
    ref_rows, ref_labels, query_rows, query_holder = _cells(
        data, labels_key, reference, query, embedded, use_rep
    )

    predicted, confidence, classes = knn_transfer(
        embedding[ref_rows],
        ref_labels,
        embedding[query_rows],
        n_neighbors=n_neighbors,
        metric=metric,
        method=method,
        max_reference=max_reference,
        random_state=seed,
    )
    categories = list(classes)
    if min_confidence is not None:
        predicted = np.where(confidence < min_confidence, "unassigned", predicted)
        categories.append("unassigned")
    query_labels = pd.Categorical(predicted, categories=categories)
    codes = np.full(data.n_obs, -1, dtype=np.int64)
    codes[query_rows] = query_labels.codes
    conf = np.full(data.n_obs, np.nan)
    conf[query_rows] = confidence
    label_key, conf_key = f"{key_added}_label", f"{key_added}_confidence"
    outputs = Outputs(
        global_obs={
            label_key: pd.Categorical.from_codes(codes, categories=categories),
            conf_key: conf,
        },
        uns={
            "function": FUNCTION,
            "n_reference": int(ref_rows.size),
            "n_query": int(query_rows.size),
        },
    )
    if query_holder is not data:
        outputs.obs = {
            label_key: {query: pd.Series(query_labels)},
            conf_key: {query: confidence},
        }
    params = {
        "labels_key": labels_key,
        "use_rep": use_rep,
        "n_neighbors": n_neighbors,
        "metric": metric,
        "method": method,
        "min_confidence": min_confidence,
        "max_reference": max_reference,
        "seed": seed,
    }
    target = data.copy() if copy else data
    write_outputs(target, key_added, outputs, params)
    return target if copy else None


def _cells(data, labels_key, reference, query, embedded: np.ndarray, use_rep: str):
    """Reference rows with their labels, query rows, and the object holding the query."""
    ref_rows, ref_holder = _select(data, reference, argname="reference")
    labels_source = ref_holder if ref_holder is not data else data
    where = "" if labels_source is data else " of the reference modality"
    labels = v.check_obs_key(labels_source, labels_key, argname="labels_key", where=where)
    ref_labels = labels.to_numpy() if labels_source is not data else labels.to_numpy()[ref_rows]
    ref_labels = pd.Series(ref_labels)
    keep = ~ref_labels.isna().to_numpy()
    if not keep.all():
        logger.info("transfer_labels: %d reference cells without a label ignored.", (~keep).sum())
        ref_rows, ref_labels = ref_rows[keep], ref_labels[keep]
    if ref_labels.empty:
        raise ValueError(f"No reference cell has a label in `labels_key={labels_key!r}`.")
    if query is None:
        # every other cell that has the embedding (a tool's NaN rows are not queries)
        query_mask = embedded.copy()
        query_mask[ref_rows] = False
        if isinstance(reference, str) and isinstance(data, MuData):
            query_mask[global_rows(data, reference)] = False
        if not query_mask.any():
            raise ValueError("Every embedded cell is a reference cell; pass `query=` explicitly.")
        query_rows, query_holder = np.flatnonzero(query_mask), data
    else:
        query_rows, query_holder = _select(data, query, argname="query")
    for name, rows in (("reference", ref_rows), ("query", query_rows)):
        if not embedded[rows].all():
            raise ValueError(
                f"`.obsm[{use_rep!r}]` has NaN rows among the {name} cells (cells the embedding "
                f"does not cover); restrict `{name}` to embedded cells."
            )
    return ref_rows, ref_labels.to_numpy(), query_rows, query_holder


def _old_call_forms(args, deprecated, labels_key, use_rep, reference, seed):
    """Keep ``transfer_labels(data, "cell_type", ...)`` and ``random_state=`` for one release."""
    if len(args) > 1:
        raise TypeError("transfer_labels takes `data` and at most `labels_key` positionally.")
    if args:
        warnings.warn(
            "Passing `labels_key` positionally is deprecated; use `labels_key=`.",
            FutureWarning,
            stacklevel=3,
        )
        labels_key = args[0]
    for name in deprecated:
        if name != "random_state":
            accepted = [
                "labels_key", "use_rep", "reference", "query", "n_neighbors", "metric", "method",
                "min_confidence", "max_reference", "key_added", "copy", "seed",
            ]  # fmt: skip
            raise ValueError(unknown_name_message(name, accepted, "scx.tl.transfer_labels"))
    if "random_state" in deprecated:
        warnings.warn("`random_state=` is deprecated; use `seed=`.", FutureWarning, stacklevel=3)
        seed = deprecated["random_state"]
    return labels_key, use_rep, reference, seed
