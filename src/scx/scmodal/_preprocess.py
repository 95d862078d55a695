"""The reference's preprocessing of counts, fitted once as per-modality transforms.

Linked features of both modalities are normalised to one common library size (the median
linked total of the first modality, at least :data:`MIN_LINKED_TARGET`) and log1p, so that a
gene and its protein land on comparable scales; the other features, reduced to the most
variable ones, to their own median library size and log1p. The two targets are stored numbers
(a ``"log_blocks"`` transform of :mod:`scx.pp`), so re-applying the transform to the training
data, or applying it to new cells, is exact.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from scipy import sparse

from scx import _validation as v
from scx.pp import log_blocks_transform, median_library_size

logger = logging.getLogger(__name__)

#: Smallest library-size target of the linked blocks (the reference's floor).
MIN_LINKED_TARGET = 20.0


def linked_target(linked_counts) -> float:
    """Common library size of the linked blocks: median linked total, at least 20.

    The median is over all cells, those without linked counts included, as the reference
    computes it (unlike :func:`scx.pp.median_library_size`, which skips empty cells).
    """
    totals = np.asarray(linked_counts.sum(axis=1), dtype=np.float64).ravel()
    return max(float(np.median(totals)), MIN_LINKED_TARGET)


def unlinked_features(adata: AnnData, counts, linked: pd.Index, n_top: int, name: str) -> pd.Index:
    """Detected features outside the links; the ``n_top`` most variable when there are more."""
    detected = np.asarray((counts != 0).sum(axis=0)).ravel() > 0
    candidates = adata.var_names[detected & ~adata.var_names.isin(linked)]
    if len(candidates) <= n_top:
        return candidates
    columns = adata.var_names.get_indexer(candidates)
    block = AnnData(X=sparse.csr_matrix(counts[:, columns], dtype=np.float32))
    block.var_names = candidates
    hvg = sc.pp.highly_variable_genes(block, flavor="seurat_v3", n_top_genes=n_top, inplace=False)
    logger.info("scMODAL: %d of %d unlinked %s features kept.", n_top, len(candidates), name)
    return candidates[np.asarray(hvg["highly_variable"])]


def fit_log_blocks(
    adatas: Mapping[str, AnnData],
    layers: Mapping[str, str | None],
    linked: Mapping[str, pd.Index],
    n_top_features: int,
) -> dict[str, dict]:
    """``{modality: "log_blocks" transform}``: ``[linked | unlinked]`` features per modality."""
    names = list(adatas)
    first = adatas[names[0]]
    first_counts = v.get_matrix(first, layers[names[0]])
    target = linked_target(first_counts[:, first.var_names.get_indexer(linked[names[0]])])
    transforms = {}
    for m in names:
        adata = adatas[m]
        X = v.get_matrix(adata, layers[m])
        other = unlinked_features(adata, X, linked[m], n_top_features, m)
        blocks = [(list(linked[m]), target)]
        if len(other):
            block = sparse.csr_matrix(X[:, adata.var_names.get_indexer(other)], dtype=np.float32)
            blocks.append((list(other), median_library_size(block)))
        transforms[m] = log_blocks_transform(blocks, layer=layers[m])
    return transforms
