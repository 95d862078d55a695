"""Portal's mixing metric (rank of the k-th neighbour from each batch), computed in-house."""

from __future__ import annotations

import numpy as np

from scx import _validation as v
from scx._neighbors import knn


def mixing_metric(
    X: np.ndarray,
    batch,
    *,
    k: int = 5,
    max_k: int = 300,
    max_cells: int | None = 10_000,
    seed: int = 0,
) -> float:
    """Portal's mixing metric: how far down its neighbour list a cell meets every batch.

    Lower is better (batches mixed); the worst value is ``max_k``. For each cell, its
    ``max_k - 1`` nearest neighbours (itself excluded) are ranked from 0; for each batch, the
    rank of the ``k``-th neighbour from that batch is taken, or ``max_k - 1`` when fewer than
    ``k`` neighbours come from it. The cell's score is the median of these ranks over the
    batches, plus 1; the metric is the mean score over cells. This is the criterion by which the
    Portal reference chooses ``lambda_cos`` (Zhao et al., 2022; Seurat's mixing metric).

    The neighbours come from :func:`scx._neighbors.knn`: exact (chunked brute force, never an
    N × N matrix) while cells² ≤ 10⁹, which always holds with the default ``max_cells``, so the
    result equals the reference's exact kd-tree search (up to ties between equal distances);
    pynndescent's approximate search above that (``max_cells=None`` on very large data).

    Parameters
    ----------
    X
        ``(n_cells, d)`` embedding (finite values).
    batch
        One batch (dataset) label per cell, at least two distinct values.
    k
        Which neighbour from each batch is ranked (the 5th); fewer than ``max_k``.
    max_k
        Length of the neighbour list, the cell itself included (300, i.e. 299 neighbours);
        capped at the number of scored cells.
    max_cells
        Score at most this many cells (10,000, as the reference): more are subsampled, without
        replacement and reproducibly from ``seed``, before the neighbours are searched.
        ``None`` scores every cell.
    seed
        Seed of the subsampling (and of the approximate search, when used).

    Returns
    -------
    The mean over cells of (median over batches of the ``k``-th-neighbour rank) + 1.

    Examples
    --------
    >>> scx.metrics.mixing_metric(adata.obsm["X_portal"], adata.obs["batch"])
    """
    X = v.check_embedding(X, argname="X")
    labels = v.check_labels_for(batch, X.shape[0], argname="batch")
    v.check_positive_int(k, argname="k")
    v.check_positive_int(max_k, argname="max_k", minimum=2)
    if k >= max_k:
        raise ValueError(
            f"`k={k}` must be smaller than `max_k={max_k}` (the neighbour list holds max_k - 1 "
            "cells); pass a smaller `k` or a larger `max_k`."
        )
    if max_cells is not None:
        v.check_positive_int(max_cells, argname="max_cells", minimum=2)
    v.check_positive_int(seed, argname="seed", minimum=0)
    batches, codes = np.unique(labels.astype(str), return_inverse=True)
    if max_cells is not None and X.shape[0] > max_cells:
        keep = np.sort(np.random.default_rng(seed).choice(X.shape[0], max_cells, replace=False))
        X, codes = X[keep], codes[keep]
    n = X.shape[0]
    n_list = min(max_k, n)
    index, _ = knn(X, X, n_list, random_state=seed)
    neighbours = _without_self(index)  # (n, n_list - 1), nearest first
    missing = n_list - 1  # the rank given when fewer than k neighbours are from a batch
    ranks = np.empty((n, len(batches)), dtype=np.float64)
    neighbour_codes = codes[neighbours]
    for b in range(len(batches)):
        seen = np.cumsum(neighbour_codes == b, axis=1, dtype=np.int32)
        reached = seen >= k
        ranks[:, b] = np.where(reached[:, -1], reached.argmax(axis=1), missing)
    return float(np.mean(np.median(ranks, axis=1) + 1))


def _without_self(index: np.ndarray) -> np.ndarray:
    """Each row's neighbours without the cell itself.

    Where the cell is not among its own neighbours (ties between duplicated cells), the last,
    farthest neighbour is dropped instead, so every row keeps one neighbour fewer.
    """
    n, m = index.shape
    is_self = index == np.arange(n)[:, None]
    # at most one entry per row is the cell itself; rows without it drop their last entry
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), m - 1)
    keep = np.ones((n, m), dtype=bool)
    keep[np.arange(n), drop] = False
    return index[keep].reshape(n, m - 1)
