"""Modality mixing: the metric, and the check every tool runs on its joint latent."""

import inspect
import logging
import warnings

import mudata
import numpy as np
import pytest

import scx
from conftest import QUIET
from scx.base import MIXING_THRESHOLD, MixingCheck
from scx.base._mixing import mixing_record, warn_if_apart
from scx.metrics import cross_modality_neighbor_rate
from test_scpairing import REPS, make_paired

TOOLS = [scx.tl.scjoint, scx.tl.scdart, scx.tl.portal, scx.tl.scmodal, scx.tl.scpairing]


def mixed(seed: int, n: int = 600, n_groups: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)), rng.choice([f"g{i}" for i in range(n_groups)], n)


def separated(seed: int, sizes=(200, 500)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(size=(n, 6)) + 10 * g for g, n in enumerate(sizes)])
    return X, np.repeat([f"g{g}" for g in range(len(sizes))], sizes)


# ---------------------------------------------------------------------------- the metric
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rate_is_one_when_mixed_and_zero_when_apart(seed):
    for n_groups in (2, 3):
        X, groups = mixed(seed, n_groups=n_groups)
        assert abs(cross_modality_neighbor_rate(X, groups) - 1) < 0.1
    X, groups = separated(seed)
    assert cross_modality_neighbor_rate(X, groups) == 0.0
    # unequal sizes: each group weighs the same, the expected fraction follows the sizes
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(1000, 4))
    groups = np.where(np.arange(1000) < 100, "small", "large")
    assert abs(cross_modality_neighbor_rate(X, groups, n_neighbors=30) - 1) < 0.1
    # half the cells of one group apart: about halfway
    X, groups = mixed(seed, n=800)
    X[(groups == "g0") & (np.arange(800) % 2 == 0)] += 20
    assert 0.45 < cross_modality_neighbor_rate(X, groups) < 0.85


def test_subsampling_is_reproducible_and_bounded():
    X, groups = mixed(0, n=3000)
    full = cross_modality_neighbor_rate(X, groups, max_cells=None)
    small = cross_modality_neighbor_rate(X, groups, max_cells=300, seed=4)
    assert small == cross_modality_neighbor_rate(X, groups, max_cells=300, seed=4)
    assert abs(full - small) < 0.1
    # duplicated cells: the cell itself is dropped even when it is not its first neighbour
    X = np.repeat(np.random.default_rng(0).normal(size=(50, 3)), 2, axis=0)
    groups = np.tile(["a", "b"], 50)
    assert cross_modality_neighbor_rate(X, groups, n_neighbors=1) == pytest.approx(99 / 50)


def test_metric_errors():
    X, groups = mixed(0, n=50)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        cross_modality_neighbor_rate(bad, groups)
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        cross_modality_neighbor_rate(bad, groups)
    with pytest.raises(ValueError, match="49 entries but the embedding has 50 cells"):
        cross_modality_neighbor_rate(X, groups[:49])
    with pytest.raises(ValueError, match="1 distinct value"):
        cross_modality_neighbor_rate(X, ["a"] * 50)
    with pytest.raises(ValueError, match="missing values"):
        cross_modality_neighbor_rate(X, [None, *groups[1:]])
    with pytest.raises(ValueError, match="n_neighbors"):
        cross_modality_neighbor_rate(X, groups, n_neighbors=0)
    with pytest.raises(ValueError, match="max_cells"):
        cross_modality_neighbor_rate(X, groups, max_cells=1)
    with pytest.raises(ValueError, match="2-d"):
        cross_modality_neighbor_rate(X[:, 0], groups)


# ---------------------------------------------------------------------------- the check
def test_check_on_planted_latents(caplog):
    X, groups = separated(0)
    apart = {g: X[groups == g] for g in ("g0", "g1")}
    with caplog.at_level(logging.INFO, logger="scx"):
        record = mixing_record(MixingCheck(), {"X_m": apart}, "m", seed=0, function="scx.tl.m")
    assert "cross-modality neighbour rate of `X_m`: 0.00" in caplog.text
    assert record["rate"] == 0.0 and not record["mixed"]
    assert record["groups"] == ["g0", "g1"] and list(record["per_modality"]) == ["g0", "g1"]
    assert record["n_neighbors"] == 15 and record["threshold"] == MIXING_THRESHOLD
    hint = MixingCheck(hint="Raise `lambda_mmd` of {key_added}.")
    with pytest.warns(UserWarning, match=r"stay apart.*rate 0\.00.*Raise `lambda_mmd` of m\."):
        warn_if_apart(hint, record, "m", function="scx.tl.m")
    # a method that only records: no warning
    quiet = MixingCheck(threshold=None)
    record = mixing_record(quiet, {"X_m": apart}, "m", seed=0, function="scx.tl.m")
    # recorded, not judged: neither "mixed" nor "apart"
    assert record["mixed"] is None and record["threshold"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_apart(quiet, record, "m", function="scx.tl.m")
    X, groups = mixed(0)
    together = {g: X[groups == g] for g in ("g0", "g1")}
    record = mixing_record(MixingCheck(), {"X_m": together}, "m", seed=0, function="scx.tl.m")
    assert record["rate"] > 0.8 and record["mixed"]


def test_check_never_fails(caplog):
    X, _ = separated(0)
    broken = {"a": X[:10], "b": np.full((10, 6), np.nan)}
    with caplog.at_level(logging.WARNING, logger="scx"):
        assert mixing_record(MixingCheck(), {"X_m": broken}, "m", seed=0, function="f") is None
    assert "could not measure the mixing" in caplog.text
    one = {"a": X}
    assert mixing_record(MixingCheck(), {"X_m": one}, "m", seed=0, function="f") is None
    assert mixing_record(MixingCheck(), {"X_m": X}, "m", seed=0, function="f") is None
    assert mixing_record(MixingCheck(), {}, "m", seed=0, function="f") is None


def test_every_tool_declares_check_mixing_once():
    for tool in TOOLS:
        parameter = inspect.signature(tool).parameters["check_mixing"]
        assert parameter.default is True and parameter.kind is parameter.KEYWORD_ONLY
        assert tool.__doc__.count("check_mixing\n") == 1


def bridge(shuffled: bool) -> mudata.MuData:
    rna, atac = make_paired(300, seed=0)
    if shuffled:  # the "pairs" are unrelated cells: nothing to align
        atac.obsm["X_lsi"] = np.random.default_rng(0).permutation(atac.obsm["X_lsi"])
    return mudata.MuData({"rna": rna, "atac": atac})


def scpairing(data: mudata.MuData, **kwargs):
    options = {"use_rep": REPS, "max_epochs": 10, "batch_size": 100, "trainer_kwargs": QUIET}
    return scx.tl.scpairing(data, **options, **kwargs)


def test_tool_warns_when_the_modalities_stay_apart():
    data = bridge(shuffled=True)
    with pytest.warns(UserWarning, match=r"scx.tl.scpairing: the modalities \['rna', 'atac'\]"):
        scpairing(data)
    record = data.uns["scpairing"]["mixing"]
    assert record["rate"] < 0.05 and record["mixed"] is False
    assert record["embedding"] == "X_scpairing" and record["groups"] == ["rna", "atac"]
    assert data.uns["scpairing"]["params"]["check_mixing"] is True
    # turned off: no warning, no record; a rerun replaces the earlier record
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        scpairing(data, check_mixing=False)
    assert "mixing" not in data.uns["scpairing"]
    assert data.uns["scpairing"]["params"]["check_mixing"] is False
    with pytest.raises(ValueError, match="`check_mixing` must be True or False"):
        scpairing(data, check_mixing="no")


def test_no_warning_on_a_normal_run(tmp_path):
    data = bridge(shuffled=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        scpairing(data)
    record = data.uns["scpairing"]["mixing"]
    assert record["mixed"] and record["rate"] > 0.5
    data.write(tmp_path / "run.h5mu")  # the record is storable
    assert (
        mudata.read_h5mu(tmp_path / "run.h5mu").uns["scpairing"]["mixing"]["rate"] == record["rate"]
    )


def test_scdart_checks_the_raw_latent():
    data = scx.datasets.synthetic_trajectory(200, 60, seed=0)
    tiny = {"n_hidden_gene_activity": (32, 16), "n_hidden_encoder": (32, 16)}
    scx.tl.scdart(
        data, prior="peak_prior", max_epochs=2, batch_size=64, trainer_kwargs=QUIET, **tiny
    )
    record = data.uns["scdart"]["mixing"]
    assert record["embedding"] == "X_scdart_raw" and record["groups"] == ["rna", "atac"]
    assert np.isfinite(record["rate"])
