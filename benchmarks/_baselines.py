"""Peer methods run beside scx in the benchmarks (not part of the package)."""

from __future__ import annotations

import numpy as np
from scipy import sparse


def cca_embeddings(X_reference, X_query, n_components: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Seurat-v3-style CCA between two unpaired datasets over shared genes.

    Library-size normalised to 10⁴ and log1p'd, then :func:`scx.pp.cca_embeddings` (each gene
    standardised per dataset, leading singular vectors of ``Z1 Z2ᵀ`` without forming it, rows
    L2-normalised).
    """
    import scx

    return scx.pp.cca_embeddings(
        scx.pp.log_normalize(sparse.csr_matrix(X_reference, dtype=np.float32)),
        scx.pp.log_normalize(sparse.csr_matrix(X_query, dtype=np.float32)),
        n_components,
    )
