"""Low-dimensional inputs of scPairing that can be re-applied to new cells.

The reference expects PCA / LSI / scVI coordinates in ``.obsm`` and does not check that query
cells are in the bridge's coordinate system. Here, when scx computes the inputs, the fitted
projection (feature list, normalisation statistics, loadings) is kept on the model as a plain
dict, so unpaired cells are embedded with exactly the bridge's projection.

* ``"pca"`` (RNA): scanpy's ``normalize_total(target_sum=1e4)`` → ``log1p`` → highly variable
  genes (seurat flavour) → ``pca`` (centred, unscaled); new cells: the same normalisation, minus
  the bridge's gene means, times the loadings.
* ``"lsi"`` (ATAC): TF-IDF with the formulas of ``muon.atac.pp.tfidf`` (defaults: log TF with
  scale factor 10⁴, log IDF) and LSI as in ``muon.atac.tl.lsi`` (truncated SVD, cell coordinates
  standardised per component). The bridge's IDF, right singular vectors, singular values and
  standardisation are kept; SVD is seeded (muon's is not).
* ``"none"``: the matrix itself (e.g. CLR-normalised proteins).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scanpy as sc
from anndata import AnnData
from scipy import sparse
from scipy.sparse.linalg import svds

from scx import _validation as v
from scx.pp._batches import log_normalize

Preprocess = Literal["pca", "lsi", "none"]


def _check_features(adata: AnnData, features: list[str], *, where: str) -> None:
    missing = _index(features).difference(adata.var_names)
    if len(missing):
        raise ValueError(
            f"{where} lacks {len(missing)} of the {len(features)} features the bridge's "
            f"projection uses (e.g. {list(missing[:5])}); pass cells measured on those features."
        )


def _matrix(adata: AnnData, layer: str | None, features: list[str] | None, *, where: str):
    if features is not None and not adata.var_names.equals(_index(features)):
        _check_features(adata, features, where=where)
        adata = adata[:, features]
    X = v.get_matrix(adata, layer)
    return sparse.csr_matrix(X, dtype=np.float64) if sparse.issparse(X) else np.asarray(X, float)


def _index(features):
    import pandas as pd

    return pd.Index(features)


def fit_pca(
    adata: AnnData,
    *,
    layer: str | None = None,
    n_comps: int = 10,
    n_top_genes: int = 2000,
    seed: int = 0,
) -> tuple[np.ndarray, dict]:
    """Log-normalised PCA of RNA counts through scanpy; returns coordinates and projection."""
    X = _matrix(adata, layer, None, where="The RNA modality")
    work = AnnData(X=log_normalize(X, 1e4))
    work.var_names = adata.var_names.astype(str)
    if n_top_genes < work.n_vars:
        sc.pp.highly_variable_genes(work, n_top_genes=n_top_genes, flavor="seurat")
        work = work[:, work.var["highly_variable"].to_numpy()].copy()
    n_comps = min(n_comps, work.n_vars - 1, work.n_obs - 1)
    sc.pp.pca(work, n_comps=n_comps, random_state=seed, svd_solver="arpack")
    mean = np.asarray(work.X.mean(axis=0)).ravel()
    transform = {
        "kind": "pca",
        "layer": layer,
        "features": list(work.var_names),
        "target_sum": 1e4,
        "mean": mean.astype(np.float64),
        "loadings": np.asarray(work.varm["PCs"], dtype=np.float64),
    }
    return np.asarray(work.obsm["X_pca"], dtype=np.float32), transform


def _tfidf(X, idf: np.ndarray, scale_factor: float):
    totals = np.asarray(X.sum(axis=1)).ravel()
    tf = (
        (sparse.diags(1.0 / np.maximum(totals, 1e-12)) @ X)
        if sparse.issparse(X)
        else X / (np.maximum(totals, 1e-12)[:, None])
    )
    tf = sparse.csr_matrix(tf) if sparse.issparse(tf) else tf
    if sparse.issparse(tf):
        tf.data = np.log1p(tf.data * scale_factor)
        return (tf @ sparse.diags(idf)).tocsr()
    return np.log1p(tf * scale_factor) * idf[None, :]


def fit_lsi(
    adata: AnnData, *, layer: str | None = None, n_comps: int = 10, seed: int = 0
) -> tuple[np.ndarray, dict]:
    """TF-IDF + LSI of ATAC counts (muon's formulas); returns coordinates and projection."""
    X = _matrix(adata, layer, None, where="The ATAC modality")
    colsum = np.asarray(X.sum(axis=0)).ravel()
    keep = colsum > 0  # peaks never seen have infinite IDF; muon would produce NaN
    X = X[:, keep]
    idf = np.log1p(X.shape[0] / colsum[keep])
    tfidf = _tfidf(X, idf, 1e4)
    n_comps = min(n_comps, min(tfidf.shape) - 1)
    rng = np.random.default_rng(seed)
    v0 = rng.uniform(-1, 1, size=min(tfidf.shape))
    u, s, vt = svds(tfidf, k=n_comps, v0=v0)
    order = np.argsort(-s)
    u, s, vt = u[:, order], s[order], vt[order]
    # fix the SVD's sign ambiguity: the largest |loading| of each component is positive
    signs = np.sign(vt[np.arange(n_comps), np.abs(vt).argmax(axis=1)])
    u, vt = u * signs, vt * signs[:, None]
    mean, std = u.mean(axis=0), u.std(axis=0)
    transform = {
        "kind": "lsi",
        "layer": layer,
        "features": list(adata.var_names[keep].astype(str)),
        "idf": idf,
        "scale_factor": 1e4,
        "components": vt.T.copy(),
        "singular_values": s,
        "mean": mean,
        "std": np.maximum(std, 1e-12),
    }
    return ((u - mean) / transform["std"]).astype(np.float32), transform


def fit_identity(adata: AnnData, *, layer: str | None = None) -> tuple[np.ndarray, dict]:
    """The matrix itself as input (e.g. CLR proteins); returns it and the feature list."""
    X = _matrix(adata, layer, None, where="The modality")
    X = X.toarray() if sparse.issparse(X) else X
    return np.asarray(X, dtype=np.float32), {
        "kind": "none",
        "layer": layer,
        "features": list(adata.var_names.astype(str)),
    }


def fit_input(
    adata: AnnData,
    kind: Preprocess,
    *,
    layer: str | None,
    n_comps: int,
    n_top_genes: int,
    seed: int,
) -> tuple[np.ndarray, dict]:
    """Fit the projection ``kind`` on the bridge; returns the bridge's coordinates and it."""
    if kind == "pca":
        return fit_pca(adata, layer=layer, n_comps=n_comps, n_top_genes=n_top_genes, seed=seed)
    if kind == "lsi":
        return fit_lsi(adata, layer=layer, n_comps=n_comps, seed=seed)
    return fit_identity(adata, layer=layer)


def apply_input(transform: dict, adata: AnnData, *, where: str = "`adata`") -> np.ndarray:
    """Project new cells with a projection fitted by :func:`fit_input`."""
    kind = transform["kind"]
    if kind == "pca":
        # library sizes over all of the cells' genes (as on the bridge), then the PCA genes
        _check_features(adata, transform["features"], where=where)
        X = _matrix(adata, transform["layer"], None, where=where)
        Y = log_normalize(X, transform["target_sum"])
        Y = Y[:, adata.var_names.get_indexer(_index(transform["features"]))]
        out = Y @ transform["loadings"] - transform["mean"] @ transform["loadings"]
        return np.asarray(out, dtype=np.float32)
    X = _matrix(adata, transform["layer"], transform["features"], where=where)
    if kind == "lsi":
        Y = _tfidf(X, np.asarray(transform["idf"]), transform["scale_factor"])
        u = (Y @ transform["components"]) / transform["singular_values"]
        out = (u - transform["mean"]) / transform["std"]
    else:
        out = X.toarray() if sparse.issparse(X) else X
    return np.asarray(out, dtype=np.float32)
