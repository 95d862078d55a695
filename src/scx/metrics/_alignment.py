"""Alignment and label-transfer metrics computed in-house (numpy / scikit-learn only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from scx import _validation as v


def foscttm(
    x: np.ndarray, y: np.ndarray, *, per_cell: bool = False, chunk_size: int = 2048
) -> float | tuple[np.ndarray, np.ndarray]:
    """Fraction of samples closer than the true match (lower is better; random ≈ 0.5).

    Row ``i`` of ``x`` and row ``i`` of ``y`` are the same cell seen in two modalities. For each
    cell, the fraction of the other modality's ``n`` cells that are strictly closer (Euclidean)
    than its true partner, in both directions (denominator ``n``, strict ``<``; the GLUE /
    scPairing definition).

    Parameters
    ----------
    x, y
        ``(n, d)`` embeddings of the paired cells.
    per_cell
        Return the per-cell values of both directions instead of their overall mean.
    chunk_size
        Rows per chunk; distances are never held for all pairs at once.

    Returns
    -------
    The mean over both directions, or ``(foscttm_x, foscttm_y)`` per cell.
    """
    x = v.check_embedding(x, argname="x")
    y = v.check_embedding(y, argname="y")
    if x.shape != y.shape:
        raise ValueError(
            f"`x` and `y` must be paired embeddings of the same shape (row i of both is the same "
            f"cell), got {x.shape} and {y.shape}."
        )
    v.check_positive_int(chunk_size, argname="chunk_size")
    v.boolean(per_cell, "per_cell")
    n = x.shape[0]
    y_sq = np.einsum("ij,ij->i", y, y)
    # true-partner distances from the same expansion as the chunks, so ties compare exactly
    true = np.einsum("ij,ij->i", x, x) + y_sq - 2 * np.einsum("ij,ij->i", x, y)
    closer_x = np.empty(n)
    closer_y = np.zeros(n)
    for start in range(0, n, chunk_size):
        xc = x[start : start + chunk_size]
        d = np.einsum("ij,ij->i", xc, xc)[:, None] + y_sq[None, :] - 2 * (xc @ y.T)
        rows = np.arange(xc.shape[0])
        d[rows, start + rows] = true[start : start + xc.shape[0]]
        closer_x[start : start + xc.shape[0]] = (d < true[start : start + xc.shape[0], None]).sum(1)
        closer_y += (d < true[None, :]).sum(0)
    fx, fy = closer_x / n, closer_y / n
    if per_cell:
        return fx, fy
    return float((fx.mean() + fy.mean()) / 2)


def label_transfer_accuracy(
    true_labels: Iterable,
    predicted_labels: Iterable,
    *,
    reference_labels: Iterable | None = None,
    exclude: Iterable = (),
) -> dict[str, float]:
    """Accuracy, macro-F1 and balanced accuracy of transferred labels.

    Query cells whose true label is missing, listed in ``exclude`` (e.g. ``"unknown"``), or
    absent from ``reference_labels`` (types the reference cannot predict) are not scored.
    Macro-F1 averages the F1 of every true class present among the scored cells.

    Parameters
    ----------
    true_labels
        Hidden true labels of the query cells.
    predicted_labels
        Transferred labels, same order.
    reference_labels
        Labels present in the reference; ``None`` scores every cell with a true label.
    exclude
        True labels to leave out.

    Returns
    -------
    ``{"accuracy", "macro_f1", "balanced_accuracy", "n_scored"}``.
    """
    true = _label_vector(true_labels, "true_labels")
    pred = _label_vector(predicted_labels, "predicted_labels")
    if len(true) != len(pred):
        raise ValueError(
            f"`true_labels` and `predicted_labels` differ in length ({len(true)} vs {len(pred)}); "
            "pass one predicted label per query cell, in the same order."
        )
    keep = true.notna() & ~true.isin(list(_label_vector(exclude, "exclude")))
    if reference_labels is not None:
        reference = _label_vector(reference_labels, "reference_labels")
        keep &= true.astype(str).isin({str(label) for label in reference})
    true, pred = true[keep].astype(str).to_numpy(), pred[keep].astype(str).to_numpy()
    if true.size == 0:
        raise ValueError(
            "No query cell is left to score: every true label is missing, listed in `exclude` "
            "or absent from `reference_labels`; pass fewer exclusions."
        )
    classes = np.unique(true)
    recall = [(pred[true == c] == c).mean() for c in classes]
    return {
        "accuracy": float((true == pred).mean()),
        "macro_f1": float(f1_score(true, pred, labels=classes, average="macro", zero_division=0)),
        "balanced_accuracy": float(np.mean(recall)),
        "n_scored": int(true.size),
    }


def _label_vector(values: Any, argname: str) -> pd.Series:
    """A 1-d sequence of labels (a single string or number is refused, not split)."""
    if not isinstance(values, str | bytes) and isinstance(values, Iterable):
        if not hasattr(values, "shape"):  # a set, a dict's keys, a generator
            values = list(values)
    if isinstance(values, str | bytes) or np.ndim(values) == 0:
        raise ValueError(
            f"`{argname}` must be a list or array of labels (one per cell), got {values!r:.80}; "
            "pass e.g. `adata.obs['cell_type']` or `['unknown']`."
        )
    return pd.Series(np.asarray(values, dtype=object).ravel())
