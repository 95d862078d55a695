"""Preprocessing: peaks → genes (gene activity, peak–gene priors)."""

from ._genomic import gene_activity, peak_coordinates, peak_gene_prior, read_annotation

__all__ = ["gene_activity", "peak_coordinates", "peak_gene_prior", "read_annotation"]
