import numpy as np
import pytest
from scipy import sparse

import scx
from conftest import assert_unchanged, snapshot
from scx.pp._shared_pca import fit_shared_pca


def test_shared_pca_equals_dense_pca_of_per_dataset_standardised_data():
    rng = np.random.default_rng(0)
    # five strong shared components plus noise, made sparse by clipping at zero
    loadings = rng.normal(size=(5, 40)) * np.array([8, 6, 4, 3, 2])[:, None]

    def sample(n, scale):
        values = rng.normal(size=(n, 5)) @ loadings + rng.normal(scale=0.3, size=(n, 40))
        return sparse.csr_matrix(np.maximum(values * scale, 0))

    a, b = sample(120, 5.0), sample(90, 2.0)
    fitted = fit_shared_pca([a, b], n_comps=5, random_state=0)

    def standardise(X):
        X = X.toarray()
        sd = X.std(0)
        sd[sd <= 1e-8] = 1
        return (X - X.mean(0)) / sd

    Z = np.vstack([standardise(a), standardise(b)])
    _, s, vt = np.linalg.svd(Z, full_matrices=False)
    # same subspace and same variance per component (signs are arbitrary)
    np.testing.assert_allclose(np.abs(fitted.loadings.T @ vt[:5].T), np.eye(5), atol=1e-6)
    np.testing.assert_allclose(fitted.variance_ratio, s[:5] ** 2 / Z.size, rtol=1e-6)
    np.testing.assert_allclose(
        np.abs(fitted.transform(a, 0)), np.abs(standardise(a) @ vt[:5].T), atol=1e-5
    )
    # deterministic, and sparse inputs are left sparse
    again = fit_shared_pca([a, b], n_comps=5, random_state=0)
    np.testing.assert_array_equal(fitted.loadings, again.loadings)
    assert sparse.issparse(a)
    with pytest.raises(ValueError, match="n_comps"):
        fit_shared_pca([a, b], n_comps=40)


def test_shared_pca_tool_writes_per_modality_and_checks_input():
    mdata = scx.datasets.synthetic_multiome(n_rna=200, n_atac=150, n_genes=80, seed=0)
    scx.pp.shared_pca(mdata, n_comps=10, binarize=True)
    assert mdata["rna"].obsm["X_shared_pca"].shape == (200, 10)
    assert mdata["atac"].obsm["X_shared_pca"].shape == (150, 10)
    assert mdata.uns["X_shared_pca"]["params"]["binarize"] is True
    mdata["atac"].X.data[0] = np.nan
    before = snapshot(mdata)
    with pytest.raises(ValueError, match="NaN"):
        scx.pp.shared_pca(mdata, n_comps=10, key_added="again")
    assert_unchanged(before, mdata)


def test_synthetic_multiome_options_and_data_dir(tmp_path, monkeypatch):
    paired = scx.datasets.synthetic_multiome(n_rna=60, n_atac=60, n_genes=30, paired=True)
    assert (paired["rna"].obs_names == paired["atac"].obs_names).all()
    peaks = scx.datasets.synthetic_multiome(
        n_rna=50, n_atac=40, n_genes=30, atac_features="peaks", peaks_per_gene=2
    )
    assert peaks["atac"].n_vars == 30 * 2 + int(0.2 * 60)
    assert {"chrom", "start", "end"} <= set(peaks["atac"].var.columns)
    assert sparse.issparse(peaks["rna"].X)
    with pytest.raises(ValueError, match="atac_features"):
        scx.datasets.synthetic_multiome(atac_features="lsi")
    monkeypatch.setenv("SCX_DATA_DIR", str(tmp_path))
    assert scx.datasets.data_dir() == tmp_path
    monkeypatch.setenv("SCX_DATA_DIR", str(tmp_path / "missing"))
    assert scx.datasets.data_dir() is None
