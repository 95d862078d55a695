"""scx beside the original implementations: quality and speed, side by side, in one run.

Quality (``--mode quality``): every method on its real-data cases (``CASES`` of its module),
original and scx on exactly the same inputs and budget, for each seed; the same scx.metrics
code scores both; mean ± sd over seeds. Speed (``--mode speed``): per-step time on the
method's generated inputs (``SPEED``), original and scx alternating (``--repeats``), one thread,
the first steps left out as warm-up; the ratio of the medians. Both print peak memory above
the loaded inputs.

    python benchmarks/peers/compare.py --mode speed --methods scjoint scpairing
    python benchmarks/peers/compare.py --mode quality --methods scjoint --seeds 0 1 2
    python benchmarks/peers/compare.py --mode quality --methods scmodal --option train_steps=300

``--option NAME=VALUE`` (quality) passes ``--name value`` to every side's runner, after the
module's own options, e.g. a shorter budget for an original too slow for the full one.

Needs ``peers.json`` (``setup_peers.py``) and, for quality, the real data (``SCX_DATA_DIR``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import harness  # noqa: E402

METHODS = ["scjoint", "scdart", "scmodal", "scpairing", "portal"]


def speed(methods: list[str], repeats: int, threads: int) -> pd.DataFrame:
    rows = []
    for method in methods:
        module = importlib.import_module(method)
        with tempfile.TemporaryDirectory() as tmp:
            inputs = Path(tmp) / "speed.npz"
            module.speed_inputs(inputs)
            sides = _sides(module, module.SPEED_OPTIONS)
            runs = {side: [] for side, _ in sides}
            for r in range(repeats):
                for side, name in sides:
                    out = harness.run(
                        name,
                        method,
                        inputs,
                        seed=r,
                        threads=threads,
                        steps=module.SPEED_STEPS,
                        options=module.SPEED_OPTIONS.get(side, {}),
                    )
                    runs[side].append(out)
                    print(
                        f"  {method} {side} repeat {r}: "
                        f"{harness.median_step(out) * 1e3:.1f} ms/step",
                        flush=True,
                    )
        med = {s: float(np.median([harness.median_step(o) for o in runs[s]])) for s in runs}
        mem = {s: float(np.median([_added_mb(o) for o in runs[s]])) for s in runs}
        for side in runs:
            if side == "original":
                continue
            rows.append(
                {
                    "method": method if side == "scx" else f"{method} [{side}]",
                    "inputs": module.SPEED_DESCRIPTION,
                    "original ms/step": med["original"] * 1e3,
                    "scx ms/step": med[side] * 1e3,
                    "speed-up": med["original"] / med[side],
                    "original MB": mem["original"],
                    "scx MB": mem[side],
                }
            )
    return pd.DataFrame(rows).set_index("method")


def _sides(module, options: dict) -> list[tuple[str, str]]:
    """``(side, runner)``: the original, scx, and any extra scx variants in ``options``.

    An extra variant is a key of ``options`` other than "original"/"scx" (e.g.
    ``"scx bf16-mixed"``); it runs the scx runner with that key's options.
    """
    extra = [(side, "scx") for side in options if side not in ("original", "scx")]
    return [("original", module.PEER), ("scx", "scx"), *extra]


def _added_mb(outputs: dict) -> float:
    meta = outputs["meta"]
    return float(meta["peak_mb"] - meta["base_mb"])


def quality(
    methods: list[str],
    seeds: list[int],
    threads: int,
    cases: list[str] | None,
    overrides: dict[str, int | float | str] | None = None,
):
    """Both sides of every case and seed; ``overrides`` replace any runner option."""
    tables = []
    for method in methods:
        module = importlib.import_module(method)
        for case in cases or list(module.CASES):
            rows = []
            for seed in seeds:
                with tempfile.TemporaryDirectory() as tmp:
                    inputs = Path(tmp) / "inputs.npz"
                    truth = module.CASES[case](inputs, seed)
                    for side, name in _sides(module, module.QUALITY_OPTIONS):
                        out = harness.run(
                            name,
                            method,
                            inputs,
                            seed=seed,
                            threads=threads,
                            options={
                                **module.QUALITY_OPTIONS.get(side, {}),
                                **getattr(module, "CASE_OPTIONS", {}).get(case, {}),
                                **(overrides or {}),
                            },
                        )
                        scores = module.score(out, truth)
                        rows.append(
                            {
                                "side": side,
                                "seed": seed,
                                **scores,
                                "time_s": out["wall_s"],
                                "added_mb": _added_mb(out),
                            }
                        )
                        print(f"  {method} {case} {side} seed {seed}: {scores}", flush=True)
            frame = pd.DataFrame(rows)
            summary = frame.drop(columns="seed").groupby("side").agg(["mean", "std"])
            summary.index = [f"{method} / {case} / {s}" for s in summary.index]
            tables.append(summary)
    return pd.concat(tables)


def _parse_option(item: str) -> tuple[str, int | float | str]:
    """``"train_steps=300"`` → ``("train_steps", 300)`` (numbers parsed, else a string)."""
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise SystemExit(f"--option expects NAME=VALUE (e.g. train_steps=300), got {item!r}")
    for parse in (int, float):
        try:
            return name, parse(value)
        except ValueError:
            pass
    return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["speed", "quality"], required=True)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--cases", nargs="*", default=None, help="quality cases (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="speed: alternating repeats")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="quality: a runner option for every side of every case, e.g. train_steps=300 "
        "(a shorter budget, the same for the original and scx)",
    )
    args = parser.parse_args()
    if args.option and args.mode != "quality":
        parser.error("--option applies to --mode quality only")
    overrides = dict(_parse_option(item) for item in args.option)
    print(f"threads: {args.threads}")
    pd.set_option("display.width", 250, "display.max_columns", 40)
    if args.mode == "speed":
        print(speed(args.methods, args.repeats, args.threads).round(3).to_string())
    else:
        table = quality(args.methods, args.seeds, args.threads, args.cases, overrides)
        print(table.round(4).to_string())


if __name__ == "__main__":
    main()
