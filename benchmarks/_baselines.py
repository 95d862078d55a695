"""Peer methods run beside scx in the benchmarks (not part of the package)."""

from __future__ import annotations

import numpy as np
import scanpy as sc
from anndata import AnnData
from scipy import sparse


def log_normalize_scale(X, target_sum: float = 1e4) -> np.ndarray:
    """Library-size normalise, log1p, and z-score each gene (Seurat's NormalizeData + Scale)."""
    adata = AnnData(X=sparse.csr_matrix(X, dtype=np.float32))
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
    dense = adata.X.toarray().astype(np.float64)
    dense -= dense.mean(axis=0)
    dense /= np.maximum(dense.std(axis=0), 1e-8)
    return dense


def cca_embeddings(X_reference, X_query, n_components: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Seurat-v3-style CCA between two unpaired datasets over shared genes.

    The leading singular vectors of the cell × cell cross-product ``Z1 Z2ᵀ`` of the
    standardised matrices, computed without forming it: with thin QR ``Z = Q R`` the SVD of the
    small ``R1 R2ᵀ`` gives ``U = Q1 A`` and ``V = Q2 B``. Rows are L2-normalised.
    """
    z1, z2 = log_normalize_scale(X_reference), log_normalize_scale(X_query)
    q1, r1 = np.linalg.qr(z1)
    q2, r2 = np.linalg.qr(z2)
    a, _, bt = np.linalg.svd(r1 @ r2.T)
    u = q1 @ a[:, :n_components]
    v = q2 @ bt.T[:, :n_components]
    u /= np.linalg.norm(u, axis=1, keepdims=True) + 1e-12
    v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
    return u, v
