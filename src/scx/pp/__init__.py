"""Preprocessing: peaks → genes (gene activity, peak–gene priors), shared PCA, fitted transforms."""

from ._batches import JointPCA, joint_pca, shared_highly_variable_genes
from ._cca import cca_embeddings
from ._genomic import (
    gene_activity,
    normalize_chrom,
    peak_coordinates,
    peak_gene_prior,
    read_annotation,
)
from ._shared_pca import SharedPCA, fit_shared_pca, shared_pca
from ._transforms import (
    apply_transform,
    feature_transform,
    fit_lsi,
    fit_pca,
    gene_activity_transform,
    log_blocks_transform,
    log_normalize,
    median_library_size,
    pca_transform,
)

__all__ = [
    "JointPCA",
    "SharedPCA",
    "apply_transform",
    "cca_embeddings",
    "feature_transform",
    "fit_lsi",
    "fit_pca",
    "fit_shared_pca",
    "gene_activity",
    "gene_activity_transform",
    "joint_pca",
    "log_blocks_transform",
    "log_normalize",
    "median_library_size",
    "normalize_chrom",
    "pca_transform",
    "peak_coordinates",
    "peak_gene_prior",
    "read_annotation",
    "shared_highly_variable_genes",
    "shared_pca",
]
