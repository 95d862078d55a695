"""Thin wrappers over scib-metrics (optional ``bench`` extra) for batch mixing and clustering."""

from __future__ import annotations

import importlib

import numpy as np

from scx import _validation as v
from scx._neighbors import knn


def _scib():
    try:
        return importlib.import_module("scib_metrics")
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "This metric needs scib-metrics; install the optional extra: "
            "`pip install 'scx[bench]'`."
        ) from err


def _neighbors(X: np.ndarray, n_neighbors: int):
    """KNN of every cell among all cells (self included), as scib-metrics expects."""
    from scib_metrics.nearest_neighbors import NeighborsResults

    X = np.asarray(X, dtype=np.float32)
    indices, distances = knn(X, X, min(n_neighbors, X.shape[0]))
    return NeighborsResults(indices=indices, distances=distances)


def _codes(values) -> np.ndarray:
    return np.unique(np.asarray(values).astype(str), return_inverse=True)[1]


def _inputs(X, values, argname: str, n_neighbors: int | None = None):
    X = v.check_embedding(X, argname="X").astype(np.float32)
    values = v.check_labels_for(values, X.shape[0], argname=argname)
    if n_neighbors is not None:
        v.check_positive_int(n_neighbors, argname="n_neighbors", minimum=2)
    return X, _codes(values)


def ilisi(X: np.ndarray, batch, *, n_neighbors: int = 90) -> float:
    """Scaled integration LISI (batch mixing, higher is better; 0 = separated, 1 = mixed).

    Median inverse Simpson index of the batch labels among each cell's perplexity-weighted
    ``n_neighbors`` neighbours (perplexity ``n_neighbors / 3``), scaled by the number of
    batches, via :func:`scib_metrics.ilisi_knn`.
    """
    X, codes = _inputs(X, batch, "batch", n_neighbors)
    scib = _scib()
    return float(scib.ilisi_knn(_neighbors(X, n_neighbors), codes, scale=True))


def kbet(X: np.ndarray, batch, *, n_neighbors: int = 50, alpha: float = 0.05) -> float:
    """KBET acceptance rate (higher is better mixing) via :func:`scib_metrics.kbet`.

    The fraction of cells whose ``n_neighbors`` neighbourhood batch composition passes a χ²
    test against the global batch frequencies at level ``alpha``.
    """
    X, codes = _inputs(X, batch, "batch", n_neighbors)
    v.fraction()(alpha, "alpha")
    scib = _scib()
    acceptance, _, _ = scib.kbet(_neighbors(X, n_neighbors), codes, alpha=alpha)
    return float(acceptance)


def silhouette_label(X: np.ndarray, labels, *, rescale: bool = True) -> float:
    """Cell-type ASW: mean silhouette of the cell-type labels, rescaled to [0, 1].

    Higher means cell types are better separated (bio-conservation), via
    :func:`scib_metrics.silhouette_label`.
    """
    X, codes = _inputs(X, labels, "labels")
    v.boolean(rescale, "rescale")
    scib = _scib()
    return float(scib.silhouette_label(X, codes, rescale=rescale))
