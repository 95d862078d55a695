"""Portal's mixing metric and the data-driven choice of λ_cos (``search_lambda_cos``)."""

import logging

import numpy as np
import pytest
from scipy.spatial import cKDTree

import scx
import scx._neighbors
import scx.base._model
from conftest import QUIET
from scx.metrics import mixing_metric
from scx.portal import PORTAL
from scx.portal._model import LAMBDA_COS_GRID


# ---------------------------------------------------------------------------- the metric
def brute_force(X: np.ndarray, batch: np.ndarray, k: int = 5, max_k: int = 300) -> float:
    """The definition, cell by cell, with an exact kd-tree (as the reference computes it)."""
    _, index = cKDTree(X).query(X, k=max_k)
    index = index[:, 1:]  # the cell itself
    scores = []
    for i in range(X.shape[0]):
        ranks = []
        for b in np.unique(batch):
            positions = np.flatnonzero(batch[index[i]] == b)
            ranks.append(positions[k - 1] if len(positions) >= k else max_k - 1)
        scores.append(np.median(ranks) + 1)
    return float(np.mean(scores))


@pytest.mark.parametrize(
    ("n", "n_batches", "k", "max_k", "shift"),
    [(300, 2, 5, 50, 0.0), (300, 2, 5, 50, 1.5), (240, 3, 3, 40, 0.7), (200, 2, 5, 200, 2.0)],
)
def test_mixing_metric_matches_the_definition(n, n_batches, k, max_k, shift):
    rng = np.random.default_rng(n + n_batches)
    batch = rng.choice([f"b{i}" for i in range(n_batches)], n)
    codes = np.unique(batch, return_inverse=True)[1]
    X = rng.normal(size=(n, 6)) + shift * codes[:, None]
    expected = brute_force(X, batch, k=k, max_k=max_k)
    assert mixing_metric(X, batch, k=k, max_k=max_k) == pytest.approx(expected, abs=1e-12)


def test_mixing_metric_lower_when_mixed_and_subsampled_reproducibly():
    rng = np.random.default_rng(0)
    batch = np.repeat(["a", "b"], 400)
    mixed = rng.normal(size=(800, 10))
    apart = mixed + 8.0 * (batch == "b")[:, None]
    assert mixing_metric(mixed, batch, max_k=100) < 15
    # separated: the other batch is never among the 99 neighbours, so its rank is 99
    assert mixing_metric(apart, batch, max_k=100) == pytest.approx((4 + 99) / 2 + 1)
    # max_k is capped at the cells scored; the subsample is seeded
    small = mixing_metric(mixed, batch, max_cells=200, seed=1)
    assert small == mixing_metric(mixed, batch, max_cells=200, seed=1)
    assert small != mixing_metric(mixed, batch, max_cells=200, seed=2)
    assert mixing_metric(mixed, batch, max_cells=None) == mixing_metric(mixed, batch)


@pytest.mark.slow
def test_mixing_metric_approximate_neighbours_agree(monkeypatch):
    """Above 10⁹ cell pairs (``max_cells=None`` on large data) pynndescent's approximate
    neighbours are used: on clustered data the metric moves by less than 0.1 %."""
    rng = np.random.default_rng(0)
    types, batch = rng.integers(0, 6, 2000), rng.integers(0, 2, 2000)
    X = (
        rng.normal(scale=4, size=(6, 20))[types]
        + rng.normal(size=(2000, 20))
        + 0.8 * batch[:, None]
    )
    exact = mixing_metric(X, batch)
    monkeypatch.setattr(scx._neighbors, "EXACT_MAX_PAIRS", 0)
    assert mixing_metric(X, batch) == pytest.approx(exact, rel=1e-3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda X, b: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), b), "NaN"),
        (lambda X, b: (np.where(np.arange(X.size).reshape(X.shape) == 3, np.inf, X), b), "NaN"),
        (lambda X, b: (X, b[:-1]), "`batch` has 99 entries"),
        (lambda X, b: (X, np.full(len(b), "a")), "distinct value"),
        (lambda X, b: (X[:, 0], b), "2-d"),
        (lambda X, b: (X, np.where(np.arange(len(b)) == 2, None, b)), "missing"),
    ],
)
def test_mixing_metric_bad_inputs(change, message):
    rng = np.random.default_rng(0)
    X, batch = change(rng.normal(size=(100, 4)), np.repeat(np.array(["a", "b"], dtype=object), 50))
    with pytest.raises(ValueError, match=message):
        mixing_metric(X, batch)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "`k`"),
        ({"k": 300}, "smaller than `max_k=300`"),
        ({"max_k": 1}, "`max_k`"),
        ({"max_cells": 1}, "`max_cells`"),
        ({"seed": -1}, "`seed`"),
    ],
)
def test_mixing_metric_bad_settings(kwargs, message):
    X = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(ValueError, match=message):
        mixing_metric(X, np.repeat(["a", "b"], 25), **kwargs)


# ---------------------------------------------------------------------------- the search
SHORT = {
    "n_hidden": 64,
    "max_steps": 30,
    "batch_size": 100,
    "check_mixing": False,
    "trainer_kwargs": QUIET,
}


def test_search_keeps_the_best_candidate_and_equals_a_plain_run(caplog, monkeypatch):
    adata = scx.datasets.synthetic_batches(n_cells=300, n_types=3, seed=5)
    labels = []
    fit = scx.base._model.fit

    def recording_fit(*args, **kwargs):
        labels.append(kwargs["label"])
        return fit(*args, **kwargs)

    monkeypatch.setattr(scx.base._model, "fit", recording_fit)
    searched = adata.copy()
    with caplog.at_level(logging.INFO, logger="scx"):
        model = scx.tl.portal(
            searched, batch_key="batch", search_lambda_cos=[5.0, 40.0], seed=3, **SHORT
        )
    record = searched.uns["portal"]["lambda_cos_search"]
    assert record["candidates"] == [5.0, 40.0] and record["integrated"] == ["batch1"]
    assert record["mixing_metric"].shape == (1, 2)
    best = record["candidates"][int(np.argmin(record["mixing_metric"][0]))]
    assert record["chosen"] == [best]
    params = searched.uns["portal"]["params"]
    assert params["lambda_cos"] == [best] and params["search_lambda_cos"] == [5.0, 40.0]
    assert model.module.lambda_cos == [best]
    assert labels == [
        "Portal stage 1/1, lambda_cos 5 (1/2)",
        "Portal stage 1/1, lambda_cos 40 (2/2)",
    ]
    assert "lambda_cos 5 gives mixing metric" in caplog.text
    assert f"chose lambda_cos {best:g}" in caplog.text
    # the history is the kept candidate's only
    assert len(model.history["ae_train"]) == 1

    # each candidate is exactly a plain run with that weight and seed (its recorded score too)
    for weight, score in zip(record["candidates"], record["mixing_metric"][0]):
        plain = adata.copy()
        other = scx.tl.portal(plain, batch_key="batch", lambda_cos=weight, seed=3, **SHORT)
        batches = plain.obs["batch"].to_numpy()
        sides = np.where(batches == "batch0", "A", "B")
        assert mixing_metric(plain.obsm["X_portal"], sides, seed=3) == pytest.approx(score)
        if weight == best:
            np.testing.assert_array_equal(plain.obsm["X_portal"], searched.obsm["X_portal"])
            np.testing.assert_array_equal(
                plain.obs["portal_boundary_score"], searched.obs["portal_boundary_score"]
            )
            assert other.history["ae_train"].equals(model.history["ae_train"])
    # the default trains once, without a search (and records none)
    assert plain.uns["portal"]["params"]["search_lambda_cos"] is None
    assert "lambda_cos_search" not in plain.uns["portal"]
    assert other.lambda_cos_search_ is None


def test_search_per_stage_with_three_datasets(tmp_path):
    adata = scx.datasets.synthetic_batches(n_cells=150, n_types=3, n_batches=3, seed=9)
    searched = adata.copy()
    model = scx.tl.portal(
        searched,
        batch_key="batch",
        search_lambda_cos=(10, 45),
        seed=1,
        **{**SHORT, "max_steps": 20},
    )
    record = model.lambda_cos_search_
    assert record["mixing_metric"].shape == (2, 2)
    assert record["integrated"] == ["batch1", "batch2"]
    chosen = [record["candidates"][int(np.argmin(row))] for row in record["mixing_metric"]]
    assert record["chosen"] == chosen == searched.uns["portal"]["params"]["lambda_cos"]
    assert list(model.history["stage"].iloc[:, 0]) == [1.0, 2.0]
    plain = adata.copy()
    scx.tl.portal(plain, batch_key="batch", lambda_cos=chosen, seed=1, **{**SHORT, "max_steps": 20})
    np.testing.assert_array_equal(plain.obsm["X_portal"], searched.obsm["X_portal"])
    # the saved model is the one built with the chosen weights
    model.save(tmp_path / "m")
    loaded = PORTAL.load(tmp_path / "m", adata=searched)
    assert loaded.module.lambda_cos == chosen
    assert loaded.lambda_cos_search_["chosen"] == chosen


def test_reference_grid():
    assert LAMBDA_COS_GRID == (15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "at least 1 items"),
        ([-5.0, 20.0], r"search_lambda_cos\[0\]"),
        ([20.0, float("nan")], r"search_lambda_cos\[1\]"),
        ([20.0, float("inf")], r"search_lambda_cos\[1\]"),
        ([20.0, 20], "twice"),
        (20.0, "True .* False .* or a list"),
        ("yes", "True .* False .* or a list"),
        (["20"], r"search_lambda_cos\[0\]"),
    ],
)
def test_bad_candidates_are_rejected_before_any_work(value, message, monkeypatch):
    adata = scx.datasets.synthetic_batches(n_cells=100, n_types=3, seed=6)

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(PORTAL, "prepare_inputs", no_work)
    with pytest.raises(ValueError, match=message):
        scx.tl.portal(adata, batch_key="batch", search_lambda_cos=value, **SHORT)
    assert "portal" not in adata.uns and "X_portal" not in adata.obsm
