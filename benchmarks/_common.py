"""Shared helpers of the benchmark scripts: data location, isolated timed runs, tables."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from _memory import peak_mb, reset_peak

REPO = Path(__file__).resolve().parents[1]


def find_data_dir() -> Path:
    """The real-data folder (``$SCX_DATA_DIR`` or ``../shared/data``), or exit with a message."""
    import scx

    path = scx.datasets.data_dir(default=REPO.parent / "shared" / "data")
    if path is None:
        sys.exit(
            "Real data not found: set SCX_DATA_DIR to the folder holding mop_snareseq2/ etc. "
            "(default ../shared/data next to the repository)."
        )
    return path


def cell_type_mask(obs: pd.DataFrame, cell_types: list[str] | None) -> np.ndarray:
    """Boolean mask of the nuclei whose ``cell_type`` is one of ``cell_types`` (``None``: all).

    Exits with a message naming the values that are not ``cell_type`` values.
    """
    if cell_types is None:
        return np.ones(len(obs), dtype=bool)
    known = set(obs["cell_type"].astype(str))
    unknown = sorted(set(cell_types) - known)
    if unknown:
        sys.exit(f"--cell-types {unknown} are not cell_type values; choose from {sorted(known)}")
    return obs["cell_type"].astype(str).isin(cell_types).to_numpy()


def rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (see :func:`_memory.peak_mb`)."""
    return peak_mb()


def _worker(fn: Callable, args: tuple, queue: mp.Queue) -> None:
    try:
        reset_peak()
        baseline = rss_mb()
        start = time.perf_counter()
        result = fn(*args)
        elapsed = time.perf_counter() - start
        queue.put(("ok", result, elapsed, baseline, rss_mb()))
    except Exception:
        queue.put(("error", traceback.format_exc(), 0.0, 0.0, 0.0))


def run_isolated(fn: Callable, *args: Any) -> dict:
    """Run ``fn(*args)`` in a fresh process; return its result, wall time and memory.

    ``peak_mb`` is the process's peak RSS; ``delta_mb`` is the growth over the RSS it had when
    the function started (after imports and after the arguments were unpickled), i.e. what the
    method itself needed.
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_worker, args=(fn, args, queue))
    process.start()
    status, result, elapsed, baseline, peak = queue.get()
    process.join()
    if status != "ok":
        raise RuntimeError(f"{getattr(fn, '__name__', fn)} failed:\n{result}")
    return {
        "result": result,
        "time_s": elapsed,
        "peak_mb": peak,
        "delta_mb": max(peak - baseline, 0.0),
    }


def print_table(frame: pd.DataFrame, title: str, floatfmt: str = "{:.3f}") -> None:
    """Print a plain-text table."""
    print(f"\n{title}")
    print(
        frame.to_string(float_format=lambda v: floatfmt.format(v) if abs(v) < 1000 else f"{v:,.0f}")
    )


def add_anchor_variants(parser: argparse.ArgumentParser) -> None:
    """``--score-anchors off on``: scMODAL runs without / with ``score_anchors=True``."""
    parser.add_argument(
        "--score-anchors",
        nargs="+",
        choices=["off", "on"],
        default=["off"],
        help="scMODAL runs without / with score_anchors=True",
    )


def anchor_variants(args: argparse.Namespace) -> list[tuple[str, bool]]:
    """``(label suffix, score_anchors)`` for each variant asked for by ``--score-anchors``."""
    return [(" scored anchors" if v == "on" else "", v == "on") for v in args.score_anchors]
