"""Maximum-weight bipartite matching of two embeddings by cosine similarity (numpy / scipy).

scPairing pairs unpaired cells of two modalities once both are embedded in the shared
hyperspherical space: every cell of one side is matched to at most one cell of the other so that
the summed cosine similarity of the pairs is maximal, considering only pairs whose similarity
reaches a cutoff. Unequal sizes are allowed; at most ``min(n1, n2)`` pairs result.

Two solvers share that objective:

``"exact"``
    The dense ``n1 × n2`` similarity matrix (entries below the cutoff or ≤ 0 set to 0) solved by
    :func:`scipy.optimize.linear_sum_assignment`, then the zero-weight assignments dropped. This
    is the reference's procedure; memory and time grow with ``n1 · n2`` (and up to cubically).
``"sparse"``
    A candidate graph from the ``n_neighbors`` approximate nearest neighbours of every cell in the
    other modality, in both directions (:func:`scx._neighbors.knn`, pynndescent for large inputs),
    pruned by the cutoff, solved exactly by
    :func:`scipy.sparse.csgraph.min_weight_full_bipartite_matching` (LAPJVsp). The solver needs a
    matching that covers the smaller side, which the pruned graph rarely has; every cell of the
    smaller side therefore gets a private *slack* column (“left unpaired”). Costs are
    ``2 - similarity`` on real edges and ``2`` on slack edges: every full matching has exactly
    ``min(n1, n2)`` edges, so minimising the cost maximises the summed similarity of the real
    pairs, and a full matching always exists. Only ``O((n1 + n2) · n_neighbors)`` edges are held;
    the dense matrix is never built. The result is the optimum over the candidate edges, so it
    equals the exact optimum whenever the exact pairs are among each other's candidates.

    LAPJVsp's time grows faster than linearly (measured: ~7 s at 20,000 cells per side, ~200 s
    at 100,000 on a shared 2-core machine), so inputs with more than ``max_unblocked`` (20,000)
    cells on a side are first partitioned: k-means (fitted on a subsample of both sides
    together, which share the embedding space) cuts the cells into blocks of about
    ``block_size`` (5,000) cells per side,
    every block is matched on its own candidate graph, and the cells left unpaired (mostly near
    block borders) are matched once more among themselves (the same procedure, fresh blocks).
    Time and memory are then linear in the number of cells; the price is that pairs across block
    borders can be missed (measured against the exact solver in ``benchmarks/scale_pair_cells.py``).

``"auto"`` uses ``"exact"`` while ``n1 · n2`` ≤ :data:`EXACT_MAX_PAIRS` and ``"sparse"`` above.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from scx._neighbors import knn

logger = logging.getLogger(__name__)

MatchMethod = Literal["auto", "exact", "sparse"]

#: ``method="auto"`` solves the dense problem up to this many ``n1 × n2`` pairs (5,000 × 5,000:
#: a 200 MB float64 matrix and a few seconds of ``linear_sum_assignment``), the sparse one above.
EXACT_MAX_PAIRS = 25_000_000

#: Cells per side of one block of the sparse solver (when it partitions the problem).
BLOCK_SIZE = 5_000

#: Up to this many cells per side the sparse solver matches the whole candidate graph at once
#: (LAPJVsp takes seconds at 20,000 cells per side); above it, it works in blocks.
MAX_UNBLOCKED = 20_000

#: Offset that makes every edge cost positive (costs are ``_COST_OFFSET - similarity`` ∈ [1, 3]).
_COST_OFFSET = 2.0


@dataclass
class Matching:
    """Result of :func:`match_embeddings`.

    Attributes
    ----------
    rows, cols
        Matched row indices of the first and second embedding (sorted by ``rows``).
    similarity
        Cosine similarity of each pair.
    method
        Solver used (``"exact"`` or ``"sparse"``).
    n_candidates
        Candidate edges the solver saw (``n1 · n2`` for the exact solver).
    """

    rows: np.ndarray
    cols: np.ndarray
    similarity: np.ndarray
    method: str
    n_candidates: int

    @property
    def total_similarity(self) -> float:
        """Summed similarity of the pairs (the matching objective)."""
        return float(self.similarity.sum())


def unit_rows(x: np.ndarray, *, argname: str = "x") -> np.ndarray:
    """``x`` as float32 with unit-length rows (cosine geometry); zero rows are refused."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"`{argname}` must be a 2-d embedding, got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError(f"`{argname}` contains NaN or infinite values; pass finite embeddings.")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    if (norm == 0).any():
        raise ValueError(
            f"`{argname}` has {int((norm == 0).sum())} all-zero rows, which have no direction; "
            "drop them before pairing."
        )
    return x / norm


def check_match_options(
    *,
    cutoff: float,
    method: str,
    n_neighbors: int,
    block_size: int = BLOCK_SIZE,
    max_unblocked: int = MAX_UNBLOCKED,
) -> None:
    """Validate the options of :func:`match_embeddings` (before any embedding is computed)."""
    if (
        isinstance(cutoff, bool)
        or not isinstance(cutoff, int | float | np.number)
        or not -1 <= cutoff <= 1
    ):
        raise ValueError(f"`cutoff` must be a cosine similarity in [-1, 1], got {cutoff!r}.")
    if method not in ("auto", "exact", "sparse"):
        raise ValueError(f"`method` must be 'auto', 'exact' or 'sparse', got {method!r}.")
    if (
        isinstance(n_neighbors, bool)
        or not isinstance(n_neighbors, int | np.integer)
        or n_neighbors < 1
    ):
        raise ValueError(f"`n_neighbors` must be an integer ≥ 1, got {n_neighbors!r}.")
    if (
        isinstance(block_size, bool)
        or not isinstance(block_size, int | np.integer)
        or block_size < 2
    ):
        raise ValueError(f"`block_size` must be an integer ≥ 2, got {block_size!r}.")
    if (
        isinstance(max_unblocked, bool)
        or not isinstance(max_unblocked, int | np.integer)
        or max_unblocked < 0
    ):
        raise ValueError(f"`max_unblocked` must be an integer ≥ 0, got {max_unblocked!r}.")


def check_match_args(
    x1: np.ndarray, x2: np.ndarray, cutoff: float, method: str, n_neighbors: int
) -> None:
    """Validate the inputs of :func:`match_embeddings` (shapes, cutoff, method)."""
    for name, x in (("x1", x1), ("x2", x2)):
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(
                f"`{name}` must be a non-empty 2-d embedding (cells × dims), got shape {x.shape}."
            )
    if x1.shape[1] != x2.shape[1]:
        raise ValueError(
            f"The embeddings have different dimensions ({x1.shape[1]} and {x2.shape[1]}); both "
            "sides must come from the same model."
        )
    check_match_options(cutoff=cutoff, method=method, n_neighbors=n_neighbors)


def _exact(x1: np.ndarray, x2: np.ndarray, cutoff: float) -> Matching:
    weights = x1.astype(np.float64) @ x2.T.astype(np.float64)
    # pairs below the cutoff (or not positive) can only lower the objective: weight 0 = unpaired
    weights[weights < max(cutoff, 0.0)] = 0.0
    rows, cols = linear_sum_assignment(weights, maximize=True)
    sim = weights[rows, cols]
    keep = sim > 0
    order = np.argsort(rows[keep], kind="stable")
    return Matching(
        rows[keep][order].astype(np.int64),
        cols[keep][order].astype(np.int64),
        sim[keep][order].astype(np.float32),
        "exact",
        int(x1.shape[0]) * int(x2.shape[0]),
    )


def candidate_edges(
    x1: np.ndarray,
    x2: np.ndarray,
    n_neighbors: int,
    *,
    cutoff: float = -1.0,
    knn_method: str = "auto",
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Union of both directions' ``n_neighbors`` nearest cross-modality neighbours.

    Parameters
    ----------
    x1, x2
        Unit-row embeddings.
    n_neighbors
        Neighbours per cell in each direction.
    cutoff
        Keep only edges with cosine similarity ≥ ``cutoff`` (and > 0).
    knn_method
        ``"auto"``, ``"exact"`` or ``"pynndescent"`` (see :func:`scx._neighbors.knn`).
    random_state
        Seed of pynndescent.

    Returns
    -------
    ``(rows, cols, similarity)`` of the unique candidate edges.
    """
    n1, n2 = x1.shape[0], x2.shape[0]
    k12, _ = knn(x2, x1, n_neighbors, metric="cosine", method=knn_method, random_state=random_state)
    k21, _ = knn(x1, x2, n_neighbors, metric="cosine", method=knn_method, random_state=random_state)
    rows = np.concatenate([np.repeat(np.arange(n1), k12.shape[1]), k21.ravel()])
    cols = np.concatenate([k12.ravel(), np.repeat(np.arange(n2), k21.shape[1])])
    del k12, k21
    key = np.unique(rows.astype(np.int64) * n2 + cols)
    rows, cols = key // n2, key % n2
    del key
    sim = np.empty(rows.size, dtype=np.float32)
    chunk = 4_000_000  # row-wise dot products in chunks: a few 100 MB at most
    for start in range(0, rows.size, chunk):
        r, c = rows[start : start + chunk], cols[start : start + chunk]
        sim[start : start + chunk] = np.einsum("ij,ij->i", x1[r], x2[c])
    keep = sim >= max(cutoff, np.nextafter(np.float32(0), np.float32(1)))
    return rows[keep], cols[keep], sim[keep]


def _solve_candidates(
    n1: int, n2: int, rows: np.ndarray, cols: np.ndarray, sim: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum-similarity matching over candidate edges (LAPJVsp with one slack per row)."""
    if rows.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float32)
    swap = n1 > n2  # the solver covers the smaller side, which must be the rows
    if swap:
        rows, cols, n1, n2 = cols, rows, n2, n1
    # slack column n2 + i for row i: "row i stays unpaired" at the cost of no similarity
    data = np.concatenate([_COST_OFFSET - sim.astype(np.float64), np.full(n1, _COST_OFFSET)])
    graph = sparse.csr_matrix(
        (
            data,
            (
                np.concatenate([rows, np.arange(n1)]),
                np.concatenate([cols, n2 + np.arange(n1)]),
            ),
        ),
        shape=(n1, n2 + n1),
    )
    del data
    row_ind, col_ind = min_weight_full_bipartite_matching(graph)
    real = col_ind < n2
    r, c = row_ind[real].astype(np.int64), col_ind[real].astype(np.int64)
    matched_sim = (_COST_OFFSET - np.asarray(graph[r, c]).ravel()).astype(np.float32)
    return (c, r, matched_sim) if swap else (r, c, matched_sim)


def _sparse_global(
    x1: np.ndarray,
    x2: np.ndarray,
    cutoff: float,
    n_neighbors: int,
    knn_method: str,
    random_state: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    rows, cols, sim = candidate_edges(
        x1, x2, n_neighbors, cutoff=cutoff, knn_method=knn_method, random_state=random_state
    )
    r, c, s = _solve_candidates(x1.shape[0], x2.shape[0], rows, cols, sim)
    return r, c, s, int(rows.size)


def _blocks(x1: np.ndarray, x2: np.ndarray, n_blocks: int, random_state: int):
    """Block label of every cell of both sides from k-means on a subsample of both."""
    from sklearn.cluster import MiniBatchKMeans

    rng = np.random.default_rng(random_state)
    both = (x1, x2)
    n_fit = min(200_000, x1.shape[0] + x2.shape[0])
    picks = rng.choice(x1.shape[0] + x2.shape[0], size=n_fit, replace=False)
    sample = np.concatenate(
        [x1[picks[picks < x1.shape[0]]], x2[picks[picks >= x1.shape[0]] - x1.shape[0]]]
    )
    kmeans = MiniBatchKMeans(
        n_clusters=n_blocks, random_state=random_state, n_init=3, batch_size=4096
    ).fit(sample)
    centres = kmeans.cluster_centers_.astype(np.float32)
    labels = []
    for x in both:
        out = np.empty(x.shape[0], dtype=np.int64)
        for start in range(0, x.shape[0], 65_536):
            # unit rows: nearest centre = largest dot product minus half the centre's norm²
            score = x[start : start + 65_536] @ centres.T - 0.5 * (centres**2).sum(1)
            out[start : start + 65_536] = score.argmax(1)
        labels.append(out)
    return labels


def _sparse(
    x1: np.ndarray,
    x2: np.ndarray,
    cutoff: float,
    n_neighbors: int,
    knn_method: str,
    random_state: int,
    block_size: int,
    max_unblocked: int,
    depth: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    n1, n2 = x1.shape[0], x2.shape[0]
    if max(n1, n2) <= max(max_unblocked, block_size) or depth >= 3:
        return _sparse_global(x1, x2, cutoff, n_neighbors, knn_method, random_state)
    n_blocks = int(np.ceil(max(n1, n2) / block_size))
    lab1, lab2 = _blocks(x1, x2, n_blocks, random_state + depth)
    order1, order2 = np.argsort(lab1, kind="stable"), np.argsort(lab2, kind="stable")
    bounds1 = np.searchsorted(lab1[order1], np.arange(n_blocks + 1))
    bounds2 = np.searchsorted(lab2[order2], np.arange(n_blocks + 1))
    parts_r, parts_c, parts_s, n_candidates = [], [], [], 0
    for b in range(n_blocks):
        i1 = order1[bounds1[b] : bounds1[b + 1]]
        i2 = order2[bounds2[b] : bounds2[b + 1]]
        if i1.size == 0 or i2.size == 0:
            continue
        r, c, s, n_cand = _sparse(
            x1[i1],
            x2[i2],
            cutoff,
            n_neighbors,
            knn_method,
            random_state,
            block_size,
            max_unblocked,
            depth + 1,
        )
        parts_r.append(i1[r])
        parts_c.append(i2[c])
        parts_s.append(s)
        n_candidates += n_cand
    rows = np.concatenate(parts_r) if parts_r else np.empty(0, np.int64)
    cols = np.concatenate(parts_c) if parts_c else np.empty(0, np.int64)
    sims = np.concatenate(parts_s) if parts_s else np.empty(0, np.float32)
    # cells left unpaired (mostly at block borders) get a second chance among themselves
    free1 = np.setdiff1d(np.arange(n1), rows, assume_unique=True)
    free2 = np.setdiff1d(np.arange(n2), cols, assume_unique=True)
    if free1.size and free2.size:
        logger.info("Second round on %d × %d unpaired cells.", free1.size, free2.size)
        r, c, s, n_cand = _sparse(
            x1[free1],
            x2[free2],
            cutoff,
            n_neighbors,
            knn_method,
            random_state,
            block_size,
            max_unblocked,
            depth + 1,
        )
        rows = np.concatenate([rows, free1[r]])
        cols = np.concatenate([cols, free2[c]])
        sims = np.concatenate([sims, s])
        n_candidates += n_cand
    return rows, cols, sims, n_candidates


def match_embeddings(
    x1: np.ndarray,
    x2: np.ndarray,
    *,
    cutoff: float = 0.8,
    method: MatchMethod = "auto",
    n_neighbors: int = 10,
    knn_method: str = "auto",
    block_size: int = BLOCK_SIZE,
    max_unblocked: int = MAX_UNBLOCKED,
    random_state: int = 0,
) -> Matching:
    """Maximum-weight one-to-one pairing of the rows of two embeddings by cosine similarity.

    Parameters
    ----------
    x1, x2
        ``(n1, d)`` and ``(n2, d)`` embeddings (any length; rows are normalised).
    cutoff
        Pairs with cosine similarity below this are never formed (0.8, the reference README's
        value; its paper scripts used 0.9). Pairs with similarity ≤ 0 never raise the objective,
        so a cutoff below 0 acts as 0.
    method
        ``"exact"``, ``"sparse"`` or ``"auto"`` (see the module notes and
        :data:`EXACT_MAX_PAIRS`).
    n_neighbors
        Candidate partners per cell and direction of the sparse solver (10).
    knn_method
        Neighbour search of the sparse solver (``"auto"``: exact chunked search up to 10⁹ pairs,
        pynndescent above).
    block_size
        Cells per side of the sparse solver's k-means blocks (:data:`BLOCK_SIZE`, 5,000).
    max_unblocked
        Up to this many cells per side the sparse solver needs no blocks
        (:data:`MAX_UNBLOCKED`, 20,000).
    random_state
        Seed of pynndescent and of the k-means blocks.

    Returns
    -------
    :class:`Matching` with the pairs, their similarity and the solver used.
    """
    x1 = unit_rows(x1, argname="x1")
    x2 = unit_rows(x2, argname="x2")
    check_match_args(x1, x2, cutoff, method, n_neighbors)
    check_match_options(
        cutoff=cutoff,
        method=method,
        n_neighbors=n_neighbors,
        block_size=block_size,
        max_unblocked=max_unblocked,
    )
    if method == "auto":
        method = "exact" if x1.shape[0] * x2.shape[0] <= EXACT_MAX_PAIRS else "sparse"
    logger.info("Pairing %d × %d cells with the %s solver.", x1.shape[0], x2.shape[0], method)
    if method == "exact":
        return _exact(x1, x2, float(cutoff))
    rows, cols, sim, n_candidates = _sparse(
        x1,
        x2,
        float(cutoff),
        int(n_neighbors),
        knn_method,
        random_state,
        int(block_size),
        int(max_unblocked),
    )
    order = np.argsort(rows, kind="stable")
    return Matching(rows[order], cols[order], sim[order], "sparse", n_candidates)


def nearest_neighbour_pairs(
    x1: np.ndarray, x2: np.ndarray, *, knn_method: str = "auto", random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Each row of ``x1`` paired with its most similar row of ``x2`` (no one-to-one constraint).

    The baseline that matching improves on: several cells may pick the same partner.

    Returns
    -------
    ``(cols, similarity)``: the chosen row of ``x2`` for every row of ``x1`` and its cosine
    similarity.
    """
    x1 = unit_rows(x1, argname="x1")
    x2 = unit_rows(x2, argname="x2")
    idx, dist = knn(x2, x1, 1, metric="cosine", method=knn_method, random_state=random_state)
    return idx[:, 0], (1.0 - dist[:, 0]).astype(np.float32)
