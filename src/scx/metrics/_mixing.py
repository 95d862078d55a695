"""Mixing of groups (modalities, datasets) in a joint embedding, computed in-house."""

from __future__ import annotations

import numpy as np

from scx import _validation as v
from scx._neighbors import knn

#: Default cap on the cells of each group that :func:`cross_modality_neighbor_rate` scores.
MAX_CELLS_PER_GROUP = 2000


def cross_modality_neighbor_rate(
    X: np.ndarray,
    groups,
    *,
    n_neighbors: int = 15,
    max_cells: int | None = MAX_CELLS_PER_GROUP,
    seed: int = 0,
) -> float:
    """How well groups mix in an embedding: 1 ≈ well mixed, 0 = fully separate.

    For each cell, the fraction of its ``n_neighbors`` nearest neighbours (itself excluded)
    that belong to a different group, divided by the fraction perfect mixing would give
    (``(N - n_g) / (N - 1)`` for a cell of a group of ``n_g`` among ``N`` cells). The ratios are
    averaged over the cells of each group, then over the groups with equal weight, so a small
    group counts as much as a large one. Values slightly above 1 can occur (neighbours even
    more mixed than chance).

    Groups are modalities (RNA vs ATAC cells of a joint latent) or datasets (batches). The
    neighbours come from :func:`scx._neighbors.knn` (exact in chunks for small inputs,
    pynndescent for large ones; never an N × N matrix).

    Parameters
    ----------
    X
        ``(n_cells, d)`` embedding (finite values).
    groups
        One group label per cell, at least two distinct groups.
    n_neighbors
        Neighbours per cell (capped at the number of scored cells minus one).
    max_cells
        Score at most this many cells of each group: a larger group is subsampled, without
        replacement and reproducibly from ``seed``, before the neighbours are searched, which
        keeps the cost bounded on large data; the expected fraction is that of the subsample.
        ``None`` scores every cell.
    seed
        Seed of the subsampling and of the approximate neighbour search.

    Returns
    -------
    The mean over groups of the observed-over-expected cross-group neighbour fraction.

    Examples
    --------
    >>> rate = scx.metrics.cross_modality_neighbor_rate(
    ...     mdata.obsm["X_scdart_raw"], mdata.obs["modality"]
    ... )
    """
    _, per_group = neighbor_rates(
        X, groups, n_neighbors=n_neighbors, max_cells=max_cells, seed=seed
    )
    return float(np.mean(per_group))


def neighbor_rates(
    X: np.ndarray,
    groups,
    *,
    n_neighbors: int = 15,
    max_cells: int | None = MAX_CELLS_PER_GROUP,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The groups (sorted names) and each one's rate of :func:`cross_modality_neighbor_rate`.

    Every argument is checked as there; their mean over the groups is that function's value.
    """
    X = v.check_embedding(X, argname="X")
    labels = v.check_labels_for(groups, X.shape[0], argname="groups")
    v.check_positive_int(n_neighbors, argname="n_neighbors")
    if max_cells is not None:
        v.check_positive_int(max_cells, argname="max_cells", minimum=2)
    v.check_positive_int(seed, argname="seed", minimum=0)
    names, codes = np.unique(labels.astype(str), return_inverse=True)
    keep = _subsample(codes, len(names), max_cells, seed)
    X, codes = X[keep], codes[keep]
    n = codes.shape[0]
    k = min(int(n_neighbors), n - 1)
    indices, _ = knn(X, X, k + 1, random_state=seed)
    indices = _drop_self(indices, k)
    other = (codes[indices] != codes[:, None]).mean(axis=1)
    sizes = np.bincount(codes, minlength=len(names))
    expected = (n - sizes) / (n - 1)
    observed = np.bincount(codes, weights=other, minlength=len(names)) / sizes
    return names, observed / expected


def _subsample(codes: np.ndarray, n_groups: int, max_cells: int | None, seed: int) -> np.ndarray:
    """Sorted row positions: every cell of a small group, ``max_cells`` drawn from a large one."""
    if max_cells is None:
        return np.arange(codes.shape[0])
    rng = np.random.default_rng(seed)
    keep = []
    for g in range(n_groups):
        rows = np.flatnonzero(codes == g)
        if rows.shape[0] > max_cells:
            rows = rng.choice(rows, size=max_cells, replace=False)
        keep.append(rows)
    return np.sort(np.concatenate(keep))


def _drop_self(indices: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` neighbours of each row other than the row itself.

    The row is usually its own first neighbour, but not always (duplicated cells tie); where it
    is missing from the ``k + 1`` found, the farthest one is dropped instead.
    """
    n = indices.shape[0]
    keep = indices != np.arange(n)[:, None]
    missing = keep.all(axis=1)
    keep[missing, -1] = False
    return indices[keep].reshape(n, k)
