"""scDART's peak–gene prior: from a ``.varm`` key, a table, a matrix or a gene annotation."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scx import _validation as v
from scx.pp import peak_gene_prior
from scx.pp._genomic import check_annotation

PriorLike = str | pd.DataFrame | np.ndarray | sparse.spmatrix | sparse.sparray


def _check_prior_values(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    v.check_counts(matrix, argname="prior", allow_negative=True)
    matrix = matrix.copy()
    matrix.eliminate_zeros()
    if matrix.nnz == 0:
        raise ValueError(
            "`prior` links no peak to any gene (every entry is zero); pass a prior with links, "
            "e.g. `scx.pp.peak_gene_prior(mdata['atac'], mdata['rna'].var_names, annotation)`, "
            "or pass `annotation=` (a gene table or GTF of the peaks' genome build)."
        )
    return matrix


def check_prior_choice(prior, annotation, prior_kwargs) -> None:
    """Exactly one of ``prior`` and ``annotation``; ``prior_kwargs`` only with ``annotation``."""
    if (prior is None) == (annotation is None):
        raise ValueError(
            "Pass exactly one of `prior` (a genes × peaks matrix, DataFrame or `.varm` key) and "
            "`annotation` (a gene table or GTF, to build the prior with "
            f"`scx.pp.peak_gene_prior`); got {'both' if prior is not None else 'neither'}."
        )
    if annotation is not None:
        check_annotation(annotation)
    if prior_kwargs is not None and annotation is None:
        raise ValueError(
            "`prior_kwargs` only applies with `annotation=` (they are settings of "
            "`scx.pp.peak_gene_prior`); drop it or pass `annotation` instead of `prior`."
        )


def resolve_prior(
    prior: PriorLike | None,
    annotation: pd.DataFrame | str | os.PathLike | None,
    rna: AnnData,
    atac: AnnData,
    *,
    rna_name: str = "rna",
    atac_name: str = "atac",
    prior_kwargs: dict | None = None,
) -> sparse.csr_matrix:
    """The genes × peaks prior in the RNA gene order and the ATAC peak order.

    ``prior`` may be a ``.varm`` key of the RNA (genes × peaks) or ATAC (peaks × genes)
    modality, a DataFrame with gene and peak names on its axes (either orientation), or a
    matrix of shape genes × peaks or peaks × genes; ``annotation`` builds it with
    :func:`scx.pp.peak_gene_prior` instead.
    """
    check_prior_choice(prior, annotation, prior_kwargs)
    if annotation is not None:
        matrix = peak_gene_prior(atac, rna.var_names, annotation, **(prior_kwargs or {}))
        return _check_prior_values(sparse.csr_matrix(matrix, dtype=np.float32))
    if isinstance(prior, str):
        return _prior_from_varm(prior, rna, atac, rna_name, atac_name)
    if isinstance(prior, pd.DataFrame):
        return _prior_from_frame(prior, rna, atac, rna_name, atac_name)
    if isinstance(prior, np.ndarray) or sparse.issparse(prior):
        n_genes, n_peaks = rna.n_vars, atac.n_vars
        matrix = sparse.csr_matrix(prior, dtype=np.float32)
        if matrix.shape == (n_genes, n_peaks):
            return _check_prior_values(matrix)
        if matrix.shape == (n_peaks, n_genes):
            return _check_prior_values(matrix.T.tocsr())
        raise ValueError(
            f"`prior` has shape {matrix.shape}, which matches neither genes × peaks "
            f"({n_genes}, {n_peaks}) nor peaks × genes ({n_peaks}, {n_genes}) of modalities "
            f"{rna_name!r} / {atac_name!r}."
        )
    raise ValueError(
        f"`prior` must be a `.varm` key, a DataFrame, or a (sparse) matrix, got "
        f"{type(prior).__name__}."
    )


def _prior_from_varm(
    key: str, rna: AnnData, atac: AnnData, rna_name: str, atac_name: str
) -> sparse.csr_matrix:
    if key in rna.varm:
        matrix, where, transpose = rna.varm[key], f"mdata.mod[{rna_name!r}].varm[{key!r}]", False
    elif key in atac.varm:
        matrix, where, transpose = atac.varm[key], f"mdata.mod[{atac_name!r}].varm[{key!r}]", True
    else:
        raise ValueError(
            f"`prior={key!r}` is neither a `.varm` key of modality {rna_name!r} (genes × "
            f"peaks; keys {list(rna.varm.keys())}) nor of {atac_name!r} (peaks × genes; keys "
            f"{list(atac.varm.keys())}). Pass a key, a matrix, or `annotation=`."
        )
    if isinstance(matrix, pd.DataFrame):
        matrix = matrix.to_numpy()
    matrix = sparse.csr_matrix(matrix, dtype=np.float32)
    expected = (atac.n_vars, rna.n_vars) if transpose else (rna.n_vars, atac.n_vars)
    if matrix.shape != expected:
        raise ValueError(
            f"`prior` {where} has shape {matrix.shape}; it must have one column per "
            f"{'gene' if transpose else 'peak'} ({expected})."
        )
    return _check_prior_values((matrix.T if transpose else matrix).tocsr())


def _prior_from_frame(
    frame: pd.DataFrame, rna: AnnData, atac: AnnData, rna_name: str, atac_name: str
) -> sparse.csr_matrix:
    genes, peaks = rna.var_names, atac.var_names
    if frame.index.isin(peaks).all() and frame.columns.isin(genes).all():
        frame = frame.T
    if not (frame.index.isin(genes).all() and frame.columns.isin(peaks).all()):
        bad = frame.index.difference(genes).union(frame.index.difference(peaks))
        raise ValueError(
            f"`prior` DataFrame axes must be gene names of modality {rna_name!r} and peak "
            f"names of modality {atac_name!r}; e.g. {list(bad[:3])} match neither. "
            f"Genes look like {list(genes[:2])}, peaks like {list(peaks[:2])}."
        )
    matrix = sparse.csr_matrix(
        frame.reindex(index=genes, columns=peaks, fill_value=0).to_numpy(dtype=np.float32)
    )
    return _check_prior_values(matrix)


def describe_prior(prior: PriorLike | None) -> str | None:
    """How the prior was given, storable in ``.uns`` (a key, or the type and shape)."""
    if prior is None or isinstance(prior, str):
        return prior
    shape = "×".join(str(n) for n in getattr(prior, "shape", ()))
    return f"{type(prior).__name__} ({shape})" if shape else type(prior).__name__


def prior_links(prior, n_genes: int, n_peaks: int) -> tuple[np.ndarray, np.ndarray]:
    """Row (gene) and column (peak) indices of the non-zero entries of a genes × peaks prior."""
    prior = sparse.coo_matrix(prior)
    if prior.shape != (n_genes, n_peaks):
        raise ValueError(
            f"`prior` has shape {prior.shape}; the model needs genes × peaks = "
            f"({n_genes}, {n_peaks})."
        )
    keep = prior.data != 0
    if not keep.any():
        raise ValueError(
            "`prior` links no peak to any gene (all entries are zero); pass a peak–gene prior "
            "with links, e.g. from `scx.pp.peak_gene_prior`."
        )
    order = np.lexsort((prior.col[keep], prior.row[keep]))
    return prior.row[keep][order].astype(np.int64), prior.col[keep][order].astype(np.int64)
