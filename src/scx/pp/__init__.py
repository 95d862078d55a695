"""Preprocessing: peaks → genes (gene activity, peak–gene priors) and a shared PCA."""

from ._genomic import (
    gene_activity,
    normalize_chrom,
    peak_coordinates,
    peak_gene_prior,
    read_annotation,
)
from ._shared_pca import SharedPCA, fit_shared_pca, shared_pca

__all__ = [
    "SharedPCA",
    "fit_shared_pca",
    "gene_activity",
    "normalize_chrom",
    "peak_coordinates",
    "peak_gene_prior",
    "read_annotation",
    "shared_pca",
]
