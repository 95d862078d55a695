"""Preprocessing of several scRNA-seq datasets for integration (Portal's recipe).

Per dataset: highly variable genes on raw counts (kept where all datasets agree), library-size
normalisation and log1p; then every dataset standardised on its own and one PCA fitted on all
cells (:func:`scx.pp.fit_shared_pca`). Nothing is densified.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData

from scx import _validation as v

from ._shared_pca import SharedPCA, fit_shared_pca
from ._transforms import log_normalize, pca_transform

logger = logging.getLogger(__name__)

#: Fewer shared highly variable genes than this triggers a warning (Portal issue #6).
FEW_SHARED_GENES = 1000


def shared_highly_variable_genes(
    datasets: Mapping[str, AnnData],
    n_top_genes: int = 4000,
    *,
    layer: str | None = None,
    flavor: str = "seurat_v3",
) -> pd.Index:
    """Highly variable genes selected in every dataset separately, intersected.

    Ordered by their rank in the first dataset. Datasets with at most ``n_top_genes`` shared
    genes use all of them (protein panels, small gene sets).

    Parameters
    ----------
    datasets
        ``{name: AnnData}`` with raw counts.
    n_top_genes
        Genes selected per dataset (4,000 as in Portal).
    layer
        Layer with counts (``None``: ``.X``).
    flavor
        scanpy flavor; ``"seurat_v3"`` expects raw counts.
    """
    names = list(datasets)
    shared = datasets[names[0]].var_names
    for name in names[1:]:
        shared = shared.intersection(datasets[name].var_names, sort=False)
    if len(shared) == 0:
        raise ValueError(
            f"The datasets {names} share no feature names; integrate datasets measured over the "
            "same genes (map them to common gene names first)."
        )
    if len(shared) <= n_top_genes:
        return shared
    ranked = []
    for name in names:
        adata = datasets[name]
        counts = AnnData(X=v.get_matrix(adata[:, shared], layer), var=pd.DataFrame(index=shared))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            table = sc.pp.highly_variable_genes(
                counts, flavor=flavor, n_top_genes=n_top_genes, inplace=False
            )
        table.index = shared
        rank = table["highly_variable_rank"] if "highly_variable_rank" in table else None
        chosen = table.index[table["highly_variable"].to_numpy()]
        if rank is not None:
            chosen = rank.loc[chosen].sort_values().index
        ranked.append(chosen)
    genes = ranked[0]
    for other in ranked[1:]:
        genes = genes[genes.isin(other)]
    if len(genes) < 100:
        raise ValueError(
            f"Only {len(genes)} highly variable genes are shared by the datasets {names}; "
            "pass a larger `n_top_genes` or check that the datasets use the same gene names."
        )
    if len(genes) < FEW_SHARED_GENES:
        warnings.warn(
            f"Only {len(genes)} highly variable genes are shared by the datasets; the joint "
            "space may miss structure (consider a larger `n_top_genes`).",
            UserWarning,
            stacklevel=2,
        )
    return genes


@dataclass
class JointPCA:
    """The preprocessing of several datasets into one joint PCA space.

    Attributes
    ----------
    genes
        Shared highly variable genes.
    pca
        Fitted :class:`SharedPCA` over the log-normalised genes (per-dataset standardisation).
    embeddings
        ``{dataset: cells × n_comps}``.
    """

    genes: pd.Index
    pca: SharedPCA
    embeddings: dict[str, np.ndarray]

    def transforms(self, layer: str | None = None) -> dict[str, dict]:
        """``{dataset: "pca" transform}`` that maps each dataset's counts like the fit did."""
        return {
            name: pca_transform(
                self.genes,
                self.pca.loadings,
                self.pca.means[k],
                self.pca.scales[k],
                target_sum=1e4,
                layer=layer,
            )
            for k, name in enumerate(self.embeddings)
        }


def joint_pca(
    datasets: Mapping[str, AnnData],
    *,
    n_top_genes: int = 4000,
    n_comps: int = 30,
    layer: str | None = None,
    genes: Sequence[str] | None = None,
    seed: int = 0,
    random_state: int | None = None,
) -> JointPCA:
    """Portal's preprocessing of several datasets into one joint PCA.

    Highly variable genes per dataset (seurat_v3 on counts) intersected, or ``genes`` given;
    per dataset ``normalize_total(1e4)`` on all genes, ``log1p``, subset to those genes and
    standardise; one PCA on all cells. Unlike the reference the standardised values are not
    clipped at ±10, which keeps sparse inputs sparse.

    Parameters
    ----------
    datasets
        ``{name: AnnData}`` with raw counts over (largely) the same genes.
    n_top_genes
        Highly variable genes per dataset.
    n_comps
        Components (30).
    layer
        Layer with counts.
    genes
        Use these genes instead of selecting highly variable ones.
    seed
        Seed of the randomised SVD.
    random_state
        Deprecated name of ``seed``.

    Returns
    -------
    The fitted :class:`JointPCA`; :meth:`JointPCA.transforms` maps new cells of each dataset
    the same way.
    """
    if random_state is not None:
        warnings.warn(
            "scx.pp.joint_pca: `random_state=` is deprecated and will be removed in the next "
            "release; use `seed=`.",
            FutureWarning,
            stacklevel=2,
        )
        seed = random_state
    if genes is None:
        genes = shared_highly_variable_genes(datasets, n_top_genes, layer=layer)
    else:
        genes = pd.Index(genes)
        for name, adata in datasets.items():
            missing = genes.difference(adata.var_names)
            if len(missing):
                raise ValueError(
                    f"`genes` lists {len(missing)} genes missing from dataset {name!r} "
                    f"(e.g. {list(missing[:5])})."
                )
    matrices = []
    for adata in datasets.values():
        normalised = log_normalize(v.get_matrix(adata, layer))
        matrices.append(normalised[:, adata.var_names.get_indexer(genes)])
    n_comps = min(n_comps, len(genes) - 1)
    fitted = fit_shared_pca(matrices, n_comps, random_state=seed)
    embeddings = {
        name: fitted.transform(X, k).astype(np.float32)
        for k, (name, X) in enumerate(zip(datasets, matrices))
    }
    logger.info(
        "Joint PCA of %d datasets over %d genes: %d components, %.1f%% of the variance.",
        len(datasets),
        len(genes),
        n_comps,
        100 * fitted.variance_ratio.sum(),
    )
    return JointPCA(genes=pd.Index(genes), pca=fitted, embeddings=embeddings)
