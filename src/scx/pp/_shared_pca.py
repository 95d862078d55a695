"""One PCA over several datasets that share features, each standardised on its own.

Per-dataset standardisation removes dataset-specific feature means and scales (sequencing
depth, gene-activity biases of long genes, batch offsets) before the shared principal axes are
found, so the components describe structure the datasets have in common. Sparse inputs are never
densified: centring and scaling are applied implicitly inside the matrix–vector products.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from mudata import MuData
from scipy import sparse
from scipy.sparse.linalg import LinearOperator

from scx import _validation as v

logger = logging.getLogger(__name__)


@dataclass
class SharedPCA:
    """A fitted shared PCA.

    Attributes
    ----------
    loadings
        ``(n_features, n_comps)`` principal axes.
    means, scales
        ``(n_datasets, n_features)`` per-dataset feature means and standard deviations (after
        binarisation when ``binarize``).
    binarize
        Whether inputs are binarised (``x > 0``) first.
    variance_ratio
        Fraction of the standardised total variance each component explains.
    """

    loadings: np.ndarray
    means: np.ndarray
    scales: np.ndarray
    binarize: bool
    variance_ratio: np.ndarray

    def transform(self, X, dataset: int) -> np.ndarray:
        """Project the cells of dataset ``dataset`` (sparse or dense) onto the components."""
        X = _binarized(X) if self.binarize else X
        scaled_loadings = self.loadings / self.scales[dataset][:, None]
        offset = self.means[dataset] @ scaled_loadings
        return np.asarray(X @ scaled_loadings) - offset


def _binarized(X):
    """``X > 0`` as float32; a sparse result shares ``indices``/``indptr`` with ``X``."""
    if sparse.issparse(X):
        X = X.tocsr()
        return sparse.csr_matrix(
            ((X.data > 0).astype(np.float32), X.indices, X.indptr), shape=X.shape
        )
    return (np.asarray(X) > 0).astype(np.float32)


def _column_moments(X, chunk_rows: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation, in row chunks to bound temporaries."""
    total = np.zeros(X.shape[1])
    total_sq = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], chunk_rows):
        chunk = X[start : start + chunk_rows]
        if sparse.issparse(chunk):
            total += np.asarray(chunk.sum(axis=0), dtype=np.float64).ravel()
            total_sq += np.asarray(chunk.multiply(chunk).sum(axis=0), dtype=np.float64).ravel()
        else:
            chunk = np.asarray(chunk, dtype=np.float64)
            total += chunk.sum(axis=0)
            total_sq += (chunk * chunk).sum(axis=0)
    mean = total / X.shape[0]
    return mean, np.sqrt(np.maximum(total_sq / X.shape[0] - mean**2, 0.0))


def _randomized_svd(
    operator: LinearOperator, k: int, rng: np.random.Generator, n_iter: int, n_oversamples: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` singular values and right singular vectors by randomised subspace iteration.

    Halko, Martinsson & Tropp (2011): a block of ``k + n_oversamples`` vectors is iterated with
    ``AᵀA`` and re-orthonormalised in feature space, then the small Gram matrix of ``AW`` gives
    the singular pairs. Each iteration reads the data twice for the whole block (ARPACK's
    Lanczos needs a pass per vector), and only one cells × block matrix exists at a time, so the
    memory on top of the data is ``n_cells × (k + n_oversamples)`` floats.
    """
    width = min(k + n_oversamples, min(operator.shape))
    w, _ = np.linalg.qr(rng.standard_normal((operator.shape[1], width)))
    for _ in range(n_iter):
        w, _ = np.linalg.qr(operator.rmatmat(operator.matmat(w)))
    projected = operator.matmat(w)
    eigenvalues, eigenvectors = np.linalg.eigh(projected.T @ projected)
    del projected
    order = np.argsort(eigenvalues)[::-1][:k]
    singular = np.sqrt(np.maximum(eigenvalues[order], 0.0))
    return singular, (w @ eigenvectors[:, order]).T


def fit_shared_pca(
    matrices: Sequence,
    n_comps: int = 30,
    *,
    binarize: bool = False,
    random_state: int = 0,
    n_iter: int = 7,
) -> SharedPCA:
    """Fit one PCA on the concatenation of per-dataset standardised matrices.

    Parameters
    ----------
    matrices
        Cells × features matrices (sparse or dense), same features in the same order.
    n_comps
        Number of components.
    binarize
        Binarise (``x > 0``) before standardising (for very sparse counts, as scJoint does).
    random_state
        Seed of the random start block.
    n_iter
        Power iterations of the randomised SVD (7, scikit-learn's default for few components).

    Returns
    -------
    The fitted :class:`SharedPCA`.
    """
    n_features = matrices[0].shape[1]
    if any(m.shape[1] != n_features for m in matrices):
        raise ValueError("All matrices must have the same features (columns).")
    n_total = sum(m.shape[0] for m in matrices)
    if not 1 <= n_comps < min(n_features, n_total):
        raise ValueError(
            f"`n_comps` must be between 1 and {min(n_features, n_total) - 1} (features and cells "
            f"available), got {n_comps}."
        )
    blocks = [_binarized(m) if binarize else m for m in matrices]
    blocks = [b.tocsr() if sparse.issparse(b) else np.asarray(b, dtype=np.float64) for b in blocks]
    means, scales = zip(*(_column_moments(b) for b in blocks))
    means, scales = np.vstack(means), np.vstack(scales)
    # a feature constant within a dataset contributes zeros there; any positive scale will do
    scales[scales <= 1e-8] = 1.0
    bounds = np.cumsum([0] + [b.shape[0] for b in blocks])

    def matvec(w: np.ndarray) -> np.ndarray:
        w = np.asarray(w, dtype=np.float64).reshape(n_features, -1)
        out = np.empty((n_total, w.shape[1]))
        for k, block in enumerate(blocks):
            ws = w / scales[k][:, None]
            out[bounds[k] : bounds[k + 1]] = np.asarray(block @ ws) - means[k] @ ws
        return out

    def rmatvec(u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64).reshape(n_total, -1)
        out = np.zeros((n_features, u.shape[1]))
        for k, block in enumerate(blocks):
            uk = u[bounds[k] : bounds[k + 1]]
            out += (np.asarray(block.T @ uk) - np.outer(means[k], uk.sum(axis=0))) / scales[k][
                :, None
            ]
        return out

    operator = LinearOperator(
        (n_total, n_features),
        matvec=matvec,
        rmatvec=rmatvec,
        matmat=matvec,
        rmatmat=rmatvec,
        dtype=np.float64,
    )
    rng = np.random.default_rng(random_state)
    singular, vt = _randomized_svd(operator, n_comps, rng, n_iter=n_iter, n_oversamples=20)
    loadings = vt.T
    # fix each axis' sign so that results do not depend on the solver's arbitrary choice
    loadings *= np.sign(loadings[np.abs(loadings).argmax(axis=0), np.arange(n_comps)])
    total_variance = float(n_features * 1.0) * n_total  # every standardised column has variance 1
    variance_ratio = singular**2 / total_variance
    return SharedPCA(loadings, means, scales, binarize, variance_ratio)


def shared_pca(
    mdata: MuData,
    modalities: Sequence[str] | None = None,
    *,
    n_comps: int = 30,
    layer: str | dict[str, str | None] | None = None,
    binarize: bool = False,
    key_added: str = "X_shared_pca",
    random_state: int = 0,
) -> None:
    """Shared PCA of several modalities/datasets over the same features.

    Each modality is standardised on its own (per-feature mean 0, variance 1, after optional
    binarisation), then one PCA is fitted on all cells together, so the components capture
    structure the datasets share rather than their offsets (the preprocessing of Portal and of
    scx's scJoint). Sparse matrices stay sparse.

    Writes ``mdata.mod[m].obsm[key_added]`` for every modality and
    ``mdata.uns[key_added] = {"params": ..., "variance_ratio": ...}``.

    Parameters
    ----------
    mdata
        MuData whose modalities share feature names (only the shared features are used).
    modalities
        Modalities to include; all by default.
    n_comps
        Number of components.
    layer
        Layer to use (once, or per modality); ``None`` for ``.X``.
    binarize
        Binarise counts first.
    key_added
        ``.obsm`` key of the result.
    random_state
        Seed of the randomised SVD.
    """
    v.check_mudata(mdata)
    modalities = list(modalities) if modalities is not None else list(mdata.mod.keys())
    adatas = [v.check_modality(mdata, m, argname="modalities") for m in modalities]
    features = adatas[0].var_names
    for adata in adatas[1:]:
        features = features.intersection(adata.var_names, sort=False)
    if len(features) <= n_comps:
        raise ValueError(
            f"The modalities {modalities} share {len(features)} features, not more than "
            f"`n_comps={n_comps}`; pass modalities over the same features or fewer components."
        )
    layers = layer if isinstance(layer, dict) else dict.fromkeys(modalities, layer)
    matrices = []
    for m, adata in zip(modalities, adatas):
        X = v.get_matrix(adata, layers.get(m))
        v.check_counts(X, argname=f"mdata.mod[{m!r}]", allow_negative=not binarize)
        matrices.append(X[:, adata.var_names.get_indexer(features)])
    fitted = fit_shared_pca(matrices, n_comps, binarize=binarize, random_state=random_state)
    for k, (m, X) in enumerate(zip(modalities, matrices)):
        mdata.mod[m].obsm[key_added] = fitted.transform(X, k).astype(np.float32)
    mdata.uns[key_added] = {
        "params": {
            "modalities": modalities,
            "n_comps": n_comps,
            "binarize": binarize,
            "n_features": len(features),
        },
        "variance_ratio": fitted.variance_ratio,
    }
