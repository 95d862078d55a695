"""Nearest neighbours between two point sets, kNN label transfer and kNN averaging.

Small problems use exact brute force in row chunks (never an all-cells N × N matrix); large
ones use pynndescent's approximate index, which scales to millions of cells.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd
from scipy import sparse

logger = logging.getLogger(__name__)

KnnMethod = Literal["auto", "exact", "pynndescent"]
Metric = Literal["euclidean", "cosine"]

#: Above this many reference × query pairs ``method="auto"`` switches from exact to pynndescent.
EXACT_MAX_PAIRS = 1e9
#: Distance-matrix entries per chunk of the exact search (64 MiB of float32).
EXACT_CHUNK_ELEMENTS = 2**24
#: Pairs per chunk of :func:`anchor_scores` (their two neighbourhood rows: ~100 MB at k = 30).
SCORE_CHUNK_PAIRS = 2**17


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def knn(
    reference: np.ndarray,
    query: np.ndarray,
    n_neighbors: int,
    *,
    metric: Metric = "euclidean",
    method: KnnMethod = "auto",
    chunk_size: int = 2048,
    random_state: int = 0,
    n_jobs: int = -1,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances of the ``n_neighbors`` nearest reference points of each query.

    Parameters
    ----------
    reference, query
        ``(n_ref, d)`` and ``(n_query, d)`` arrays.
    n_neighbors
        Neighbours per query point (capped at ``n_ref``).
    metric
        ``"euclidean"`` or ``"cosine"`` (1 − cosine similarity).
    method
        ``"exact"`` (chunked brute force), ``"pynndescent"`` (approximate), or ``"auto"``: exact
        while ``n_ref * n_query`` ≤ :data:`EXACT_MAX_PAIRS`.
    chunk_size
        Query rows per chunk of the exact search.
    random_state
        Seed of pynndescent.
    n_jobs
        Threads of pynndescent.

    Returns
    -------
    ``(indices, distances)``, each ``(n_query, k)``, nearest first.
    """
    reference = np.ascontiguousarray(reference, dtype=np.float32)
    query = np.ascontiguousarray(query, dtype=np.float32)
    k = min(int(n_neighbors), reference.shape[0])
    if method == "auto":
        exact = reference.shape[0] * query.shape[0] <= EXACT_MAX_PAIRS
        method = "exact" if exact else "pynndescent"
    if metric == "cosine":
        # cosine ranking is euclidean ranking of unit vectors; d_cos = ||a - b||² / 2
        reference, query = _normalise_rows(reference), _normalise_rows(query)
    if method == "exact":
        idx, dist = _knn_exact(reference, query, k, chunk_size)
    elif method == "pynndescent":
        idx, dist = _knn_pynndescent(reference, query, k, random_state, n_jobs)
    else:
        raise ValueError(f"`method` must be 'auto', 'exact' or 'pynndescent', got {method!r}.")
    if metric == "cosine":
        dist = dist**2 / 2
    return idx, dist


def _knn_exact(
    reference: np.ndarray, query: np.ndarray, k: int, chunk_size: int
) -> tuple[np.ndarray, np.ndarray]:
    ref_sq = np.einsum("ij,ij->i", reference, reference)
    chunk_size = max(1, min(chunk_size, EXACT_CHUNK_ELEMENTS // reference.shape[0]))
    indices = np.empty((query.shape[0], k), dtype=np.int64)
    distances = np.empty((query.shape[0], k), dtype=np.float32)
    for start in range(0, query.shape[0], chunk_size):
        q = query[start : start + chunk_size]
        d2 = ref_sq[None, :] - 2.0 * (q @ reference.T)
        d2 += np.einsum("ij,ij->i", q, q)[:, None]
        if k < reference.shape[0]:
            part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(k), (q.shape[0], k))
        part_d = np.take_along_axis(d2, part, axis=1)
        order = np.argsort(part_d, axis=1, kind="stable")
        indices[start : start + q.shape[0]] = np.take_along_axis(part, order, axis=1)
        distances[start : start + q.shape[0]] = np.sqrt(
            np.maximum(np.take_along_axis(part_d, order, axis=1), 0)
        )
    return indices, distances


def _knn_pynndescent(
    reference: np.ndarray, query: np.ndarray, k: int, random_state: int, n_jobs: int
) -> tuple[np.ndarray, np.ndarray]:
    from pynndescent import NNDescent

    # a few more graph neighbours than queried keeps recall high at small k
    n_graph = max(min(reference.shape[0] - 1, 30), min(k + 5, reference.shape[0] - 1), 2)
    index = NNDescent(
        reference,
        metric="euclidean",
        n_neighbors=n_graph,
        random_state=random_state,
        n_jobs=n_jobs,
        low_memory=True,
    )
    indices, distances = index.query(query, k=k)
    return indices.astype(np.int64), distances.astype(np.float32)


def mutual_neighbors(
    a: np.ndarray,
    b: np.ndarray,
    n_neighbors: int,
    *,
    metric: Metric = "euclidean",
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours between the rows of ``a`` and of ``b``.

    ``(i, j)`` is a pair when ``b[j]`` is among the ``n_neighbors`` nearest rows of ``b`` to
    ``a[i]`` and ``a[i]`` among the nearest rows of ``a`` to ``b[j]``. Returns the row indices
    ``(i, j)`` of every pair, sorted by ``i`` then ``j``.
    """
    n_a, n_b = a.shape[0], b.shape[0]
    of_a, _ = knn(b, a, n_neighbors, metric=metric, random_state=random_state)
    of_b, _ = knn(a, b, n_neighbors, metric=metric, random_state=random_state)
    # one integer per (i, j); a pair is mutual when both searches found it
    keys_a = (np.arange(n_a, dtype=np.int64)[:, None] * n_b + of_a).ravel()
    keys_b = (of_b * n_b + np.arange(n_b, dtype=np.int64)[:, None]).ravel()
    mutual = np.intersect1d(keys_a, keys_b)
    return mutual // n_b, mutual % n_b


def anchor_scores(
    a: np.ndarray,
    b: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    n_neighbors: int = 30,
    *,
    metric: Metric = "euclidean",
    quantiles: tuple[float, float] = (0.01, 0.9),
    random_state: int = 0,
) -> np.ndarray:
    """Seurat-v3 shared-neighbour scores of cross-dataset pairs ``(a[i], b[j])``, in [0, 1].

    Each cell's neighbourhood is its ``n_neighbors`` nearest rows of ``a`` and of ``b`` (a
    cell is its own nearest neighbour); a pair's raw score is the number of cells its two
    neighbourhoods share — pairs inside one population share many, pairs that bridge two
    populations few. Raw scores are rescaled so that their ``quantiles`` map to 0 and 1 and
    clipped, as Seurat's ``ScoreAnchors`` (Stuart et al., Cell 2019).

    Parameters
    ----------
    a, b
        The two embeddings, ``(n_a, d)`` and ``(n_b, d)``.
    i, j
        Row indices of the pairs in ``a`` and ``b`` (e.g. from :func:`mutual_neighbors`).
    n_neighbors
        Neighbours per cell in each dataset (Seurat's ``k.score``, 30).
    metric
        Metric of the neighbour searches.
    quantiles
        Raw-score quantiles mapped to 0 and 1.
    random_state
        Seed of pynndescent.
    """
    n_a, n_b = a.shape[0], b.shape[0]
    i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
    if i.size == 0:
        return np.zeros(0)

    cells_a, where_a = np.unique(i, return_inverse=True)
    cells_b, where_b = np.unique(j, return_inverse=True)
    # one search per dataset for the paired cells of both: their neighbours in a and in b
    query = np.concatenate([a[cells_a], b[cells_b]])
    in_a, _ = knn(a, query, n_neighbors, metric=metric, random_state=random_state)
    in_b, _ = knn(b, query, n_neighbors, metric=metric, random_state=random_state)
    # indicator of each paired cell's neighbourhood over the n_a + n_b cells
    columns = np.concatenate([in_a, in_b + n_a], axis=1)
    indptr = np.arange(query.shape[0] + 1, dtype=np.int64) * columns.shape[1]
    data = np.ones(columns.size, np.float32)
    members = sparse.csr_matrix((data, columns.ravel(), indptr), (query.shape[0], n_a + n_b))
    of_a, of_b = members[: cells_a.size], members[cells_a.size :]
    raw = np.empty(i.size)
    # shared neighbours of each pair: row-wise product of the two indicator rows, in chunks of
    # pairs so that memory stays with the cells, not the pairs × neighbourhood entries
    for start in range(0, i.size, SCORE_CHUNK_PAIRS):
        chunk = slice(start, start + SCORE_CHUNK_PAIRS)
        shared = of_a[where_a[chunk]].multiply(of_b[where_b[chunk]])
        raw[chunk] = np.asarray(shared.sum(axis=1)).ravel()
    low, high = np.quantile(raw, quantiles)
    if high <= low:
        return np.ones(raw.size)
    return np.clip((raw - low) / (high - low), 0.0, 1.0)


def vote(
    neighbor_labels: np.ndarray, n_classes: int, *, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Majority vote over neighbour label codes.

    Parameters
    ----------
    neighbor_labels
        ``(n_query, k)`` integer codes in ``[0, n_classes)``.
    n_classes
        Number of classes.
    weights
        Optional ``(n_query, k)`` vote weights (uniform by default).

    Returns
    -------
    ``(winner, fraction)``: the winning code per query (ties go to the smallest code, as in
    scikit-learn's ``KNeighborsClassifier``) and the fraction of the (weighted) vote it received.
    """
    n_query, k = neighbor_labels.shape
    if weights is None:
        weights = np.ones((n_query, k), dtype=np.float64)
    flat = (np.arange(n_query)[:, None] * n_classes + neighbor_labels).ravel()
    counts = np.bincount(flat, weights=weights.ravel(), minlength=n_query * n_classes)
    counts = counts.reshape(n_query, n_classes)
    winner = counts.argmax(axis=1)
    total = counts.sum(axis=1)
    fraction = counts[np.arange(n_query), winner] / np.maximum(total, 1e-300)
    return winner, fraction


def knn_transfer(
    reference: np.ndarray,
    reference_labels: np.ndarray | pd.Series,
    query: np.ndarray,
    *,
    n_neighbors: int = 30,
    metric: Metric = "euclidean",
    method: KnnMethod = "auto",
    max_reference: int | None = None,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """KNN majority-vote label transfer with a per-query agreement score.

    Parameters
    ----------
    reference, query
        Embeddings of labelled reference cells and of query cells.
    reference_labels
        Labels of the reference cells.
    n_neighbors
        Neighbours that vote.
    metric, method
        See :func:`knn`.
    max_reference
        Keep at most this many reference cells, evenly spaced (scJoint's 20,000 cap); ``None``
        keeps all.
    random_state
        Seed of pynndescent.

    Returns
    -------
    ``(labels, confidence, classes)``: predicted label per query, the fraction of the
    ``n_neighbors`` neighbours that carry it, and the sorted class list.
    """
    reference_labels = np.asarray(reference_labels)
    if max_reference is not None and reference.shape[0] > max_reference:
        keep = np.floor(np.arange(max_reference) * (reference.shape[0] / max_reference)).astype(int)
        reference, reference_labels = reference[keep], reference_labels[keep]
    classes, codes = np.unique(reference_labels.astype(str), return_inverse=True)
    idx, _ = knn(
        reference, query, n_neighbors, metric=metric, method=method, random_state=random_state
    )
    winner, fraction = vote(codes[idx], len(classes))
    return classes[winner], fraction, classes


def knn_average(
    reference: np.ndarray,
    values: np.ndarray | sparse.spmatrix,
    query: np.ndarray,
    *,
    n_neighbors: int = 30,
    metric: Metric = "euclidean",
    method: KnnMethod = "auto",
    random_state: int = 0,
) -> np.ndarray:
    """Mean of the reference cells' ``values`` over each query's nearest reference cells.

    The value counterpart of :func:`knn_transfer` (Seurat v3's ``TransferData`` with uniform
    weights): each query gets the average of the rows of ``values`` of its ``n_neighbors``
    nearest reference cells in the embedding.

    Parameters
    ----------
    reference, query
        Embeddings of the reference cells (the rows of ``values``) and of the query cells.
    values
        ``(n_ref, p)`` dense or sparse matrix of what the reference cells measured.
    n_neighbors
        Neighbours averaged per query.
    metric, method, random_state
        See :func:`knn`.

    Returns
    -------
    ``(n_query, p)`` float32 array.
    """
    idx, _ = knn(
        reference, query, n_neighbors, metric=metric, method=method, random_state=random_state
    )
    n_query, k = idx.shape
    # one sparse product instead of gathering n_query × k rows of a possibly sparse matrix
    weights = sparse.csr_matrix(
        (np.full(idx.size, 1.0 / k, dtype=np.float32), idx.ravel(), np.arange(0, idx.size + 1, k)),
        shape=(n_query, reference.shape[0]),
    )
    mean = weights @ values
    mean = mean.toarray() if sparse.issparse(mean) else np.asarray(mean)
    return mean.astype(np.float32, copy=False)
