"""Preprocessing: peaks → genes (gene activity, peak–gene priors) and a shared PCA."""

from ._batches import JointPCA, joint_pca, log_normalize, shared_highly_variable_genes
from ._genomic import (
    gene_activity,
    normalize_chrom,
    peak_coordinates,
    peak_gene_prior,
    read_annotation,
)
from ._shared_pca import SharedPCA, fit_shared_pca, shared_pca

__all__ = [
    "JointPCA",
    "SharedPCA",
    "fit_shared_pca",
    "gene_activity",
    "joint_pca",
    "log_normalize",
    "normalize_chrom",
    "peak_coordinates",
    "peak_gene_prior",
    "read_annotation",
    "shared_highly_variable_genes",
    "shared_pca",
]
