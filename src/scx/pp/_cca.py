"""Canonical correlation analysis between two unpaired datasets over shared features."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import LinearOperator, svds


def _standardiser(X) -> tuple[sparse.csr_matrix | np.ndarray, np.ndarray, np.ndarray]:
    """``X`` (sparse stays sparse), its column means and inverse standard deviations."""
    X = sparse.csr_matrix(X, dtype=np.float64) if sparse.issparse(X) else np.asarray(X, float)
    mean = np.asarray(X.mean(axis=0)).ravel()
    square = X.multiply(X) if sparse.issparse(X) else X * X
    variance = np.maximum(np.asarray(square.mean(axis=0)).ravel() - mean**2, 0.0)
    return X, mean, 1.0 / np.maximum(np.sqrt(variance), 1e-8)


def cca_embeddings(X, Y, n_components: int = 30, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seurat-v3-style CCA of two datasets of different cells over the same features.

    Each feature is standardised within each dataset; the embeddings are the leading singular
    vectors of the cell × cell cross-product ``Z_X Z_Yᵀ``. Neither the standardised matrices
    nor the cross-product are formed: the truncated SVD (ARPACK) only multiplies by
    ``Z = (X − 1μᵀ) D⁻¹``, so sparse inputs stay sparse and memory grows with the non-zeros.
    Rows are scaled to unit length.

    Parameters
    ----------
    X, Y
        Cells × features (dense or sparse), already normalised, the same features in the same
        order.
    n_components
        Canonical components (at most ``min(cells of X, cells of Y, features) − 1``).
    seed
        Seed of the SVD's start vector.

    Returns
    -------
    The embeddings of the rows of ``X`` and of ``Y``, ``(n, n_components)`` each.
    """
    x, mean_x, scale_x = _standardiser(X)
    y, mean_y, scale_y = _standardiser(Y)
    n_x, n_y = x.shape[0], y.shape[0]

    def z(matrix, mean, scale, v):  # Z v
        w = scale * v
        return matrix @ w - mean @ w

    def zt(matrix, mean, scale, u):  # Zᵀ u
        return scale * (matrix.T @ u - mean * u.sum())

    operator = LinearOperator(
        (n_x, n_y),
        matvec=lambda v: z(x, mean_x, scale_x, zt(y, mean_y, scale_y, np.ravel(v))),
        rmatvec=lambda u: z(y, mean_y, scale_y, zt(x, mean_x, scale_x, np.ravel(u))),
        dtype=np.float64,
    )
    k = min(int(n_components), n_x - 1, n_y - 1, x.shape[1] - 1)
    start = np.random.default_rng(seed).uniform(-1, 1, min(n_x, n_y))
    u, values, vt = svds(operator, k=k, v0=start, random_state=seed)
    order = np.argsort(-values)
    u, v = u[:, order], vt[order].T
    u /= np.linalg.norm(u, axis=1, keepdims=True) + 1e-12
    v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
    return u, v
