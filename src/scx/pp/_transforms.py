"""Fitted transforms from a modality's measured features to a model's inputs.

Every method that preprocesses counts (log-normalisation, PCA, LSI, gene activity) fits the
step once on the training data and keeps it as a plain dict of arrays (``kind`` plus its
parameters), so the same mapping is re-applied to the training data when a saved model is
loaded and to new cells when they are embedded. One implementation of each step lives here.

* ``"pca"``: library-size normalisation to ``target_sum`` over all of a cell's features and
  ``log1p`` (or neither), then the selected features, centred (and scaled) by the fitted
  statistics, times the loadings.
* ``"lsi"``: TF-IDF with the formulas of ``muon.atac.pp.tfidf`` (log TF with scale factor 10⁴,
  log IDF) and LSI as in ``muon.atac.tl.lsi`` (truncated SVD, cell coordinates standardised per
  component); the fitted IDF, right singular vectors, singular values and standardisation are
  kept, and the SVD is seeded (muon's is not).
* ``"gene_activity"``: peaks → genes through a genes × peaks link matrix (counts of the peaks
  linked to each gene).
* ``"log_blocks"``: feature blocks, each normalised to its own library size over the block
  and ``log1p``, side by side (scMODAL's linked / unlinked features).
* ``"features"``: the features as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from scipy import sparse
from scipy.sparse.linalg import svds

from scx import _validation as v

__all__ = [
    "apply_transform",
    "feature_transform",
    "fit_lsi",
    "fit_pca",
    "gene_activity_transform",
    "log_blocks_transform",
    "log_normalize",
    "median_library_size",
    "pca_transform",
]


def log_normalize(X, target_sum: float | None = 1e4):
    """Library-size normalisation to ``target_sum`` and log1p, sparse in, sparse out.

    ``target_sum=None`` uses the median total of the cells with any counts. Cells without
    counts stay zero.
    """
    totals = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    if target_sum is None:
        positive = totals[totals > 0]
        target_sum = float(np.median(positive)) if positive.size else 1.0
    scale = np.divide(
        target_sum, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0
    )
    if sparse.issparse(X):
        X = sparse.csr_matrix(sparse.diags(scale.astype(np.float32)) @ X, dtype=np.float32)
        X.data = np.log1p(X.data)
        return X
    return np.log1p(np.asarray(X, dtype=np.float32) * scale[:, None].astype(np.float32))


def median_library_size(X) -> float:
    """Median total of the cells with any counts (1 when there are none)."""
    totals = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    positive = totals[totals > 0]
    return float(np.median(positive)) if positive.size else 1.0


def _as_float(X):
    return sparse.csr_matrix(X, dtype=np.float64) if sparse.issparse(X) else np.asarray(X, float)


def _columns(adata: AnnData, features: Sequence[str], *, where: str) -> np.ndarray:
    """Positions of ``features`` in ``adata.var_names``; an error names the missing ones."""
    index = pd.Index(features)
    positions = adata.var_names.get_indexer(index)
    if (positions < 0).any():
        missing = index[positions < 0]
        raise ValueError(
            f"{where} lacks {len(missing)} of the {len(index)} features the model's "
            f"preprocessing uses (e.g. {list(missing[:5])}); pass cells measured on those "
            "features."
        )
    return positions


# ---------------------------------------------------------------------------- PCA
def fit_pca(
    X,
    features: Sequence[str],
    *,
    n_comps: int,
    target_sum: float | None = 1e4,
    n_top_genes: int | None = None,
    layer: str | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, dict]:
    """PCA of (log-normalised) counts through scanpy; returns coordinates and the transform.

    Parameters
    ----------
    X
        Cells × features counts (sparse or dense).
    features
        Names of the columns of ``X``.
    n_comps
        Components (reduced to what the data allow).
    target_sum
        Library size of the log-normalisation (over all features); ``None``: no normalisation.
    n_top_genes
        Restrict to this many highly variable genes (scanpy's ``seurat`` flavour on the
        log-normalised values) when there are more; ``None``: all features.
    layer
        Layer the counts come from (kept for re-application).
    seed
        Seed of the ARPACK start vector.
    """
    work = AnnData(X=log_normalize(_as_float(X), target_sum) if target_sum else _as_float(X))
    work.var_names = pd.Index(features).astype(str)
    if n_top_genes is not None and n_top_genes < work.n_vars:
        sc.pp.highly_variable_genes(work, n_top_genes=n_top_genes, flavor="seurat")
        work = work[:, work.var["highly_variable"].to_numpy()].copy()
    n_comps = max(1, min(n_comps, work.n_vars - 1, work.n_obs - 1))
    sc.pp.pca(work, n_comps=n_comps, random_state=seed, svd_solver="arpack")
    transform = {
        "kind": "pca",
        "layer": layer,
        "features": list(work.var_names),
        "target_sum": target_sum,
        "mean": np.asarray(work.X.mean(axis=0), dtype=np.float64).ravel(),
        "scale": None,
        "loadings": np.asarray(work.varm["PCs"], dtype=np.float64),
    }
    return np.asarray(work.obsm["X_pca"], dtype=np.float32), transform


def pca_transform(
    features: Sequence[str],
    loadings: np.ndarray,
    mean: np.ndarray,
    scale: np.ndarray | None = None,
    *,
    target_sum: float | None = 1e4,
    layer: str | None = None,
) -> dict:
    """A ``"pca"`` transform from fitted statistics (e.g. one dataset of a shared PCA)."""
    return {
        "kind": "pca",
        "layer": layer,
        "features": [str(f) for f in features],
        "target_sum": target_sum,
        "mean": np.asarray(mean, dtype=np.float64),
        "scale": None if scale is None else np.asarray(scale, dtype=np.float64),
        "loadings": np.asarray(loadings, dtype=np.float64),
    }


def _apply_pca(transform: dict, adata: AnnData, where: str) -> np.ndarray:
    columns = _columns(adata, transform["features"], where=where)
    X = _as_float(v.get_matrix(adata, transform["layer"]))
    if transform["target_sum"]:
        # library sizes over all of the cells' features, as when the PCA was fitted
        X = log_normalize(X, transform["target_sum"])
    X = X[:, columns]
    loadings = transform["loadings"]
    if transform.get("scale") is not None:
        loadings = loadings / transform["scale"][:, None]
    return np.asarray(X @ loadings - transform["mean"] @ loadings, dtype=np.float32)


# ---------------------------------------------------------------------------- LSI
def _tfidf(X, idf: np.ndarray, scale_factor: float):
    totals = np.asarray(X.sum(axis=1)).ravel()
    inverse = 1.0 / np.maximum(totals, 1e-12)
    if sparse.issparse(X):
        tf = sparse.csr_matrix(sparse.diags(inverse) @ X)
        tf.data = np.log1p(tf.data * scale_factor)
        return (tf @ sparse.diags(idf)).tocsr()
    return np.log1p(X * inverse[:, None] * scale_factor) * idf[None, :]


def fit_lsi(
    X,
    features: Sequence[str],
    *,
    n_comps: int,
    layer: str | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, dict]:
    """TF-IDF + LSI of ATAC counts (muon's formulas); returns coordinates and the transform.

    Peaks without counts are left out (their IDF is infinite). The coordinates are standardised
    per component; the first component, which mostly follows sequencing depth, is kept (drop
    it where the method asks for that).
    """
    X = _as_float(X)
    colsum = np.asarray(X.sum(axis=0)).ravel()
    keep = colsum > 0
    X = X[:, keep]
    idf = np.log1p(X.shape[0] / colsum[keep])
    tfidf = _tfidf(X, idf, 1e4)
    n_comps = max(1, min(n_comps, min(tfidf.shape) - 1))
    rng = np.random.default_rng(seed)
    v0 = rng.uniform(-1, 1, size=min(tfidf.shape))
    u, s, vt = svds(tfidf, k=n_comps, v0=v0)
    order = np.argsort(-s)
    u, s, vt = u[:, order], s[order], vt[order]
    # fix the SVD's sign ambiguity: the largest |loading| of each component is positive
    signs = np.sign(vt[np.arange(n_comps), np.abs(vt).argmax(axis=1)])
    u, vt = u * signs, vt * signs[:, None]
    mean, std = u.mean(axis=0), np.maximum(u.std(axis=0), 1e-12)
    transform = {
        "kind": "lsi",
        "layer": layer,
        "features": [str(f) for f in np.asarray(features)[keep]],
        "idf": idf,
        "scale_factor": 1e4,
        "components": vt.T.copy(),
        "singular_values": s,
        "mean": mean,
        "std": std,
    }
    return ((u - mean) / std).astype(np.float32), transform


def _apply_lsi(transform: dict, adata: AnnData, where: str) -> np.ndarray:
    columns = _columns(adata, transform["features"], where=where)
    X = _as_float(v.get_matrix(adata, transform["layer"]))[:, columns]
    Y = _tfidf(X, np.asarray(transform["idf"]), transform["scale_factor"])
    u = (Y @ transform["components"]) / transform["singular_values"]
    return np.asarray((u - transform["mean"]) / transform["std"], dtype=np.float32)


# ---------------------------------------------------------------------------- others
def gene_activity_transform(
    links: sparse.spmatrix,
    peaks: Sequence[str],
    genes: Sequence[str],
    *,
    layer: str | None = None,
) -> dict:
    """A ``"gene_activity"`` transform: counts of the peaks linked to each gene.

    ``links`` is genes × peaks (e.g. from :func:`scx.pp.peak_gene_prior`), rows in ``genes``
    order and columns in ``peaks`` order.
    """
    links = sparse.csr_matrix(links, dtype=np.float32)
    if links.shape != (len(genes), len(peaks)):
        raise ValueError(
            f"`links` has shape {links.shape}; expected genes × peaks = ({len(genes)}, "
            f"{len(peaks)})."
        )
    return {
        "kind": "gene_activity",
        "layer": layer,
        "features": [str(p) for p in peaks],
        "genes": [str(g) for g in genes],
        "links": links,
    }


def _apply_gene_activity(transform: dict, adata: AnnData, where: str):
    columns = _columns(adata, transform["features"], where=where)
    X = v.get_matrix(adata, transform["layer"])
    X = sparse.csr_matrix(X, dtype=np.float32)[:, columns]
    return sparse.csr_matrix(X @ transform["links"].T.tocsc(), dtype=np.float32)


def log_blocks_transform(
    blocks: Sequence[tuple[Sequence[str], float]], *, layer: str | None = None
) -> dict:
    """A ``"log_blocks"`` transform: ``[(features, target_sum), …]`` normalised block-wise."""
    # flat lists, not (names, target) pairs: the transform is kept in a view's ``.uns``, which
    # ``model.save(save_anndata=True)`` writes to h5 (it cannot hold ragged pairs)
    return {
        "kind": "log_blocks",
        "layer": layer,
        "features": [str(f) for names, _ in blocks for f in names],
        "block_sizes": [len(names) for names, _ in blocks],
        "target_sums": [float(target) for _, target in blocks],
    }


def _apply_log_blocks(transform: dict, adata: AnnData, where: str):
    X = v.get_matrix(adata, transform["layer"])
    features = [str(f) for f in transform["features"]]
    parts, start = [], 0
    for size, target in zip(transform["block_sizes"], transform["target_sums"], strict=True):
        names, start = features[start : start + int(size)], start + int(size)
        if not names:
            continue
        columns = _columns(adata, names, where=where)
        parts.append(
            log_normalize(sparse.csr_matrix(X[:, columns], dtype=np.float32), float(target))
        )
    return sparse.hstack(parts, format="csr", dtype=np.float32)


def feature_transform(features: Sequence[str], *, layer: str | None = None) -> dict:
    """A ``"features"`` transform: the named features as they are."""
    return {"kind": "features", "layer": layer, "features": [str(f) for f in features]}


def _apply_features(transform: dict, adata: AnnData, where: str):
    columns = _columns(adata, transform["features"], where=where)
    return v.get_matrix(adata, transform["layer"])[:, columns]


_APPLY = {
    "pca": _apply_pca,
    "lsi": _apply_lsi,
    "gene_activity": _apply_gene_activity,
    "log_blocks": _apply_log_blocks,
    "features": _apply_features,
}


def apply_transform(transform: dict[str, Any], adata: AnnData, *, where: str = "`adata`"):
    """Map the cells of ``adata`` with a fitted transform (see the module docstring).

    Returns a cells × outputs matrix (sparse for sparse-preserving kinds).
    """
    if not isinstance(adata, AnnData) or adata.n_obs == 0:
        raise ValueError(f"{where} must be a non-empty AnnData.")
    v.check_unique_names(adata, where=where)
    X = v.get_matrix(adata, transform["layer"])
    counts = transform["kind"] != "features" and transform.get("target_sum", 1) is not None
    v.check_counts(X, argname=f"{where} (layer={transform['layer']!r})", allow_negative=not counts)
    return _APPLY[transform["kind"]](transform, adata, where)
