"""How long scMODAL's 10,000-step default schedule takes on the CITE-seq data, per setting.

Times ``scx.tl.scmodal`` end to end (preprocessing, training, embedding) on the
``cite_pbmc_inhouse`` data of ``scmodal_cite.py`` at two step counts; the difference gives the
time per training step, extrapolated to the reference's 10,000 steps plus the fixed cost.
Settings: torch threads, ``scx.settings.matmul_precision`` (``"highest"``: exact float32;
``"medium"``: float32 tensors whose products round their inputs to bfloat16, accumulating in
float32, where the CPU has bfloat16 units) and the Lightning precision (``"32-true"``;
``"bf16-mixed"``: autocast, products of bfloat16 tensors, scMODAL's default on CPUs with
bfloat16 units). The settings are interleaved over ``--repeats`` rounds, all in one process,
so that their ratio is measured under the same machine load.

Run: ``python benchmarks/scmodal_schedule_time.py [--steps 50 250] [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import scmodal_cite as bench
from _common import find_data_dir

#: (torch threads, matmul precision, Lightning precision); the second is the baseline.
SETTINGS = (
    (1, "highest", "32-true"),
    (2, "highest", "32-true"),
    (2, "medium", "32-true"),
    (2, "highest", "bf16-mixed"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs=2, default=[50, 250])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import scx

    mdata, _, _, _ = bench.load(find_data_dir())

    import torch

    print(f"bfloat16 units: {scx.train.native_bfloat16(torch.device('cpu'))}")

    def run(steps: int, trainer_precision: str = "32-true") -> float:
        start = time.perf_counter()
        scx.tl.scmodal(
            mdata,
            modalities=("rna", "prot"),
            links=bench.LINKS,
            max_steps=steps,
            seed=0,
            trainer_kwargs={**bench.QUIET, "precision": trainer_precision},
        )
        return time.perf_counter() - start

    run(20)  # warm-up: imports, allocator, thread pools
    few, many = args.steps
    per_step: dict[tuple, list[float]] = {s: [] for s in SETTINGS}
    fixed: dict[tuple, list[float]] = {s: [] for s in SETTINGS}
    for repeat in range(args.repeats):
        for setting in SETTINGS:
            threads, matmul_precision, trainer_precision = setting
            scx.settings.num_threads = threads
            scx.settings.matmul_precision = matmul_precision
            t_few, t_many = run(few, trainer_precision), run(many, trainer_precision)
            step = (t_many - t_few) / (many - few)
            per_step[setting].append(step)
            fixed[setting].append(t_few - few * step)
            print(f"round {repeat}: {_name(setting)}: {step * 1e3:.1f} ms/step", flush=True)
    baseline = np.median(per_step[SETTINGS[1]])
    for setting in SETTINGS:
        step, rest = np.median(per_step[setting]), np.median(fixed[setting])
        print(
            f"{_name(setting)}: {step * 1e3:.1f} ms/step (median of {args.repeats}), fixed "
            f"{rest:.0f} s → 10,000 steps ≈ {(step * 10_000 + rest) / 60:.1f} min; "
            f"{baseline / step:.2f}× the speed of {_name(SETTINGS[1])}",
            flush=True,
        )


def _name(setting: tuple) -> str:
    threads, matmul_precision, trainer_precision = setting
    return f"threads {threads}, matmul {matmul_precision}, trainer {trainer_precision}"


if __name__ == "__main__":
    main()
