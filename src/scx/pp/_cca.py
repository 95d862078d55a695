"""Canonical correlation analysis between two unpaired datasets over shared features."""

from __future__ import annotations

import numpy as np
from scipy import sparse


def _standardised(X) -> np.ndarray:
    X = np.asarray(X.todense() if sparse.issparse(X) else X, dtype=np.float64)
    X = X - X.mean(axis=0)
    X /= np.maximum(X.std(axis=0), 1e-8)
    return X


def cca_embeddings(X, Y, n_components: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Seurat-v3-style CCA of two datasets of different cells over the same features.

    Each feature is standardised within each dataset; the embeddings are the leading singular
    vectors of the cell × cell cross-product ``Z_X Z_Yᵀ``, computed without forming it (thin
    QR ``Z = Q R``, then the SVD of the small ``R_X R_Yᵀ``), with rows scaled to unit length.

    Parameters
    ----------
    X, Y
        Cells × features (dense or sparse), already normalised, the same features in the same
        order.
    n_components
        Canonical components.

    Returns
    -------
    The embeddings of the rows of ``X`` and of ``Y``, ``(n, n_components)`` each.
    """
    zx, zy = _standardised(X), _standardised(Y)
    qx, rx = np.linalg.qr(zx)
    qy, ry = np.linalg.qr(zy)
    left, _, right_t = np.linalg.svd(rx @ ry.T)
    k = min(int(n_components), left.shape[1], right_t.shape[0])
    u = qx @ left[:, :k]
    v = qy @ right_t.T[:, :k]
    u /= np.linalg.norm(u, axis=1, keepdims=True) + 1e-12
    v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
    return u, v
