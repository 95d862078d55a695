import importlib.util

import anndata as ad
import matplotlib

matplotlib.use("Agg")

import mudata
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

import scx
from scx._neighbors import knn, knn_transfer, vote

HAS_SCIB = importlib.util.find_spec("scib_metrics") is not None


def clusters(n_per=60, n_types=3, dim=8, spread=0.3, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(100).normal(scale=3, size=(n_types, dim))
    labels = np.repeat(np.arange(n_types), n_per)
    X = centres[labels] + rng.normal(scale=spread, size=(labels.size, dim)) + shift
    return X.astype(np.float32), np.array([f"t{k}" for k in labels])


# ---------------------------------------------------------------------------- FOSCTTM
def brute_foscttm(x, y):
    d = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    diag = np.diag(d)
    return (d < diag[:, None]).mean(1), (d < diag[None, :]).mean(0)


def test_foscttm_matches_brute_force_and_extremes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(57, 4))
    y = x + rng.normal(scale=0.8, size=x.shape)
    fx, fy = scx.metrics.foscttm(x, y, per_cell=True, chunk_size=10)
    bx, by = brute_foscttm(x, y)
    np.testing.assert_allclose(fx, bx)
    np.testing.assert_allclose(fy, by)
    assert scx.metrics.foscttm(x, x) == 0.0
    random = scx.metrics.foscttm(rng.normal(size=(400, 5)), rng.normal(size=(400, 5)))
    assert 0.4 < random < 0.6
    with pytest.raises(ValueError, match="same shape"):
        scx.metrics.foscttm(x, y[:10])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x: scx.metrics.foscttm(x, np.full_like(x, np.nan)), "NaN or infinite"),
        (lambda x: scx.metrics.foscttm(x, np.where(x > 1, np.inf, x)), "NaN or infinite"),
        (lambda x: scx.metrics.foscttm(x[:, 0], x[:, 0]), "2-d"),
        (lambda x: scx.metrics.foscttm(x[:1], x[:1]), "at least 2"),
        (lambda x: scx.metrics.foscttm(x, x, chunk_size=0), "chunk_size"),
    ],
)
def test_metrics_refuse_nonsense(call, message):
    x = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match=message):
        call(x)


@pytest.mark.skipif(not HAS_SCIB, reason="needs the `bench` extra (scib-metrics)")
def test_scib_wrappers_refuse_nonsense():
    X, labels = clusters(n_per=20, seed=9)
    batch = np.repeat(["a", "b"], len(X) // 2)
    for metric in (scx.metrics.ilisi, scx.metrics.kbet):
        with pytest.raises(ValueError, match="entries but the embedding has"):
            metric(X, batch[:-1])
        with pytest.raises(ValueError, match="1 distinct value"):
            metric(X, np.full(len(X), "a"))
        with pytest.raises(ValueError, match="NaN"):
            metric(np.where(X > 2, np.nan, X), batch)
    with pytest.raises(ValueError, match="missing values"):
        scx.metrics.silhouette_label(X, np.where(labels == "t0", None, labels))
    with pytest.raises(ValueError, match="1 distinct value"):
        scx.metrics.silhouette_label(X, np.full(len(X), "t0"))


# ---------------------------------------------------------------------------- accuracy
def test_label_transfer_accuracy_exclusions_and_macro_f1():
    true = ["a", "a", "b", "b", "c", "unknown", None, "d"]
    pred = ["a", "b", "b", "b", "a", "a", "a", "a"]
    scores = scx.metrics.label_transfer_accuracy(
        true, pred, reference_labels=["a", "b", "c"], exclude=["unknown"]
    )
    assert scores["n_scored"] == 5
    assert scores["accuracy"] == pytest.approx(3 / 5)
    kept_true, kept_pred = ["a", "a", "b", "b", "c"], ["a", "b", "b", "b", "a"]
    expected = f1_score(kept_true, kept_pred, labels=["a", "b", "c"], average="macro")
    assert scores["macro_f1"] == pytest.approx(expected)
    assert scores["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0) / 3)
    with pytest.raises(ValueError, match="length"):
        scx.metrics.label_transfer_accuracy(true, pred[:3])
    with pytest.raises(ValueError, match="No query cell"):
        scx.metrics.label_transfer_accuracy(["x"], ["x"], reference_labels=["y"])


# ---------------------------------------------------------------------------- kNN
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exact_knn_matches_sklearn(metric):
    rng = np.random.default_rng(1)
    ref, query = rng.normal(size=(300, 6)), rng.normal(size=(120, 6))
    idx, dist = knn(ref, query, 7, metric=metric, method="exact", chunk_size=50)
    nn = NearestNeighbors(n_neighbors=7, metric=metric, algorithm="brute").fit(ref)
    d_ref, i_ref = nn.kneighbors(query)
    np.testing.assert_array_equal(idx, i_ref)
    np.testing.assert_allclose(dist, d_ref, atol=1e-4)


def test_pynndescent_agrees_with_exact_on_clusters():
    ref, _ = clusters(n_per=400, seed=1)
    query, _ = clusters(n_per=100, seed=2)
    exact, _ = knn(ref, query, 10, method="exact")
    approx, _ = knn(ref, query, 10, method="pynndescent")
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx)])
    assert recall > 0.95


def test_vote_ties_go_to_the_smallest_code_like_sklearn():
    winner, fraction = vote(np.array([[2, 1, 1, 2], [0, 3, 3, 3]]), 4)
    np.testing.assert_array_equal(winner, [1, 3])
    np.testing.assert_allclose(fraction, [0.5, 0.75])
    ref, labels = clusters(n_per=30, spread=2.5, seed=3)
    query, _ = clusters(n_per=30, spread=2.5, seed=4)
    pred, _, _ = knn_transfer(ref, labels, query, n_neighbors=10, method="exact")
    sk = KNeighborsClassifier(n_neighbors=10, algorithm="brute").fit(ref, labels).predict(query)
    np.testing.assert_array_equal(pred, sk)


# ---------------------------------------------------------------------------- transfer_labels
def test_transfer_labels_on_anndata_by_batch():
    ref, labels = clusters(seed=5)
    query, truth = clusters(seed=6, shift=0.1)
    adata = ad.AnnData(
        X=np.zeros((ref.shape[0] + query.shape[0], 1), dtype=np.float32),
        obs=pd.DataFrame(
            {
                "batch": ["ctrl"] * len(ref) + ["stim"] * len(query),
                "cell_type": list(labels) + [None] * len(query),
            }
        ),
    )
    adata.obsm["X_emb"] = np.vstack([ref, query])
    scx.tl.transfer_labels(
        adata, labels_key="cell_type", use_rep="X_emb", reference=("batch", "ctrl"), n_neighbors=15
    )
    out = adata.obs["transfer_label"]
    assert out.iloc[: len(ref)].isna().all()
    assert (out.iloc[len(ref) :].astype(str).to_numpy() == truth).mean() > 0.95
    conf = adata.obs["transfer_confidence"].to_numpy()[len(ref) :]
    assert ((conf > 0) & (conf <= 1)).all()
    assert adata.uns["transfer"]["params"]["n_neighbors"] == 15
    scx.tl.transfer_labels(
        adata,
        labels_key="cell_type",
        use_rep="X_emb",
        reference=("batch", "ctrl"),
        min_confidence=1.0,
        key_added="strict",
    )
    strict = adata.obs.iloc[len(ref) :]
    unassigned = (strict["strict_label"] == "unassigned").to_numpy()
    np.testing.assert_array_equal(unassigned, strict["strict_confidence"].to_numpy() < 1)


def test_transfer_labels_on_mudata_by_modality():
    ref, labels = clusters(seed=7)
    query, truth = clusters(seed=8)
    rna = ad.AnnData(np.zeros((len(ref), 2)), obs=pd.DataFrame({"ct": labels}))
    rna.obs_names = [f"r{i}" for i in range(len(ref))]
    atac = ad.AnnData(np.zeros((len(query), 3)))
    atac.obs_names = [f"a{i}" for i in range(len(query))]
    mdata = mudata.MuData({"rna": rna, "atac": atac})
    mdata.obsm["X_joint"] = np.vstack([ref, query])
    scx.tl.transfer_labels(mdata, labels_key="ct", use_rep="X_joint", reference="rna", query="atac")
    assert (mdata["atac"].obs["transfer_label"].astype(str).to_numpy() == truth).mean() > 0.95
    assert mdata.obs["transfer_label"].iloc[: len(ref)].isna().all()


def test_transfer_labels_skips_cells_without_the_embedding_and_copies():
    """A third modality that a tool did not embed (NaN rows) is not a query by default."""
    ref, labels = clusters(seed=7)
    query, truth = clusters(seed=8)
    rna = ad.AnnData(np.zeros((len(ref), 2)), obs=pd.DataFrame({"ct": labels}))
    rna.obs_names = [f"r{i}" for i in range(len(ref))]
    atac = ad.AnnData(np.zeros((len(query), 3)))
    atac.obs_names = [f"a{i}" for i in range(len(query))]
    prot = ad.AnnData(np.zeros((30, 2)))
    prot.obs_names = [f"p{i}" for i in range(30)]
    mdata = mudata.MuData({"rna": rna, "atac": atac, "prot": prot})
    mdata.obsm["X_joint"] = np.vstack([ref, query, np.full((30, ref.shape[1]), np.nan)])
    out = scx.tl.transfer_labels(
        mdata, labels_key="ct", use_rep="X_joint", reference="rna", copy=True
    )
    assert "transfer_label" not in mdata.obs
    label = out.obs["transfer_label"]
    atac_rows = scx.base.global_rows(out, "atac")
    assert (label.iloc[atac_rows].astype(str).to_numpy() == truth).mean() > 0.95
    assert label.iloc[scx.base.global_rows(out, "prot")].isna().all()
    with pytest.raises(ValueError, match="NaN rows among the query"):
        scx.tl.transfer_labels(
            mdata, labels_key="ct", use_rep="X_joint", reference="rna", query="prot"
        )
    with pytest.warns(FutureWarning, match="random_state"):
        scx.tl.transfer_labels(
            mdata, labels_key="ct", use_rep="X_joint", reference="rna", random_state=1
        )
    with pytest.raises(ValueError, match="Did you mean `n_neighbors`"):
        scx.tl.transfer_labels(
            mdata, labels_key="ct", use_rep="X_joint", reference="rna", n_neighbor=5
        )


def test_transfer_labels_errors():
    adata = ad.AnnData(np.zeros((10, 2)), obs=pd.DataFrame({"b": ["x"] * 5 + ["y"] * 5}))
    adata.obs["ct"] = "a"
    adata.obsm["emb"] = np.zeros((10, 3))
    with pytest.raises(ValueError, match="use_rep='X_nope'"):
        scx.tl.transfer_labels(adata, labels_key="ct", use_rep="X_nope", reference=("b", "x"))
    with pytest.raises(ValueError, match="names a modality"):
        scx.tl.transfer_labels(adata, labels_key="ct", use_rep="emb", reference="rna")
    with pytest.raises(ValueError, match="No cell has"):
        scx.tl.transfer_labels(adata, labels_key="ct", use_rep="emb", reference=("b", "z"))
    with pytest.raises(ValueError, match="boolean mask"):
        scx.tl.transfer_labels(adata, labels_key="ct", use_rep="emb", reference=np.arange(10))
    with pytest.raises(ValueError, match="labels_key='cell'"):
        scx.tl.transfer_labels(adata, labels_key="cell", use_rep="emb", reference=("b", "x"))
    with pytest.raises(ValueError, match="min_confidence"):
        scx.tl.transfer_labels(
            adata, labels_key="ct", use_rep="emb", reference=("b", "x"), min_confidence="high"
        )
    assert "transfer_label" not in adata.obs


# ---------------------------------------------------------------------------- scib wrappers
@pytest.mark.skipif(not HAS_SCIB, reason="needs the `bench` extra (scib-metrics)")
def test_scib_wrappers_score_mixing_and_separation():
    X, labels = clusters(n_per=150, seed=9)
    rng = np.random.default_rng(0)
    mixed_batch = rng.choice(["a", "b"], size=len(X))
    separated = X + np.where(mixed_batch == "a", 0.0, 20.0)[:, None]
    assert scx.metrics.ilisi(X, mixed_batch) > 0.7
    assert scx.metrics.ilisi(separated, mixed_batch) < 0.1
    assert scx.metrics.kbet(X, mixed_batch) > scx.metrics.kbet(separated, mixed_batch)
    shuffled = rng.permutation(labels)
    assert scx.metrics.silhouette_label(X, labels) > scx.metrics.silhouette_label(X, shuffled)


# ---------------------------------------------------------------------------- plots
def test_metrics_table_and_history_errors():
    table = pd.DataFrame(
        {"accuracy": [0.5, 0.6], "time (s)": [10.0, 3.0], "note": ["x", "y"]},
        index=["cca", "scjoint"],
    )
    ax = scx.pl.metrics_table(table, lower_is_better=["time (s)"])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["scjoint", "cca"]
    with pytest.raises(ValueError, match="lower_is_better"):
        scx.pl.metrics_table(table, lower_is_better=["memory"])
    with pytest.raises(ValueError, match="non-empty"):
        scx.pl.metrics_table(pd.DataFrame())

    class Untrained:
        history = None

    with pytest.raises(ValueError, match="no training history"):
        scx.pl.history(Untrained())
