"""How long scMODAL's 10,000-step default schedule takes on the CITE-seq data, per setting.

Times ``scx.tl.scmodal`` end to end (preprocessing, training, embedding) on the
``cite_pbmc_inhouse`` data of ``scmodal_cite.py`` at two step counts; the difference gives the
time per training step, extrapolated to the reference's 10,000 steps plus the fixed cost.
Settings: torch threads and ``scx.settings.matmul_precision`` (``"highest"``: exact float32;
``"medium"``: bfloat16 products with float32 accumulation where the CPU has bfloat16 units).
The settings are interleaved over ``--repeats`` rounds, all in one process, so that their
ratio is measured under the same machine load.

Run: ``python benchmarks/scmodal_schedule_time.py [--steps 50 250] [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import scmodal_cite as bench
from _common import find_data_dir

SETTINGS = ((1, "highest"), (2, "highest"), (2, "medium"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs=2, default=[50, 250])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import scx

    mdata, _, _, _ = bench.load(find_data_dir())

    def run(steps: int) -> float:
        start = time.perf_counter()
        scx.tl.scmodal(
            mdata,
            modalities=("rna", "prot"),
            links=bench.LINKS,
            max_steps=steps,
            seed=0,
            trainer_kwargs=bench.QUIET,
        )
        return time.perf_counter() - start

    run(20)  # warm-up: imports, allocator, thread pools
    few, many = args.steps
    per_step: dict[tuple[int, str], list[float]] = {s: [] for s in SETTINGS}
    fixed: dict[tuple[int, str], list[float]] = {s: [] for s in SETTINGS}
    for repeat in range(args.repeats):
        for threads, precision in SETTINGS:
            scx.settings.num_threads = threads
            scx.settings.matmul_precision = precision
            t_few, t_many = run(few), run(many)
            step = (t_many - t_few) / (many - few)
            per_step[threads, precision].append(step)
            fixed[threads, precision].append(t_few - few * step)
            print(
                f"round {repeat}: threads {threads}, matmul precision {precision}: "
                f"{step * 1e3:.1f} ms/step",
                flush=True,
            )
    baseline = np.median(per_step[SETTINGS[1]])
    for setting in SETTINGS:
        step, rest = np.median(per_step[setting]), np.median(fixed[setting])
        print(
            f"threads {setting[0]}, matmul precision {setting[1]}: {step * 1e3:.1f} ms/step "
            f"(median of {args.repeats}), fixed {rest:.0f} s → 10,000 steps ≈ "
            f"{(step * 10_000 + rest) / 60:.1f} min; {baseline / step:.2f}× the speed of "
            "2 threads, highest",
            flush=True,
        )


if __name__ == "__main__":
    main()
