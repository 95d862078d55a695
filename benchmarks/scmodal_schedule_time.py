"""How long scMODAL's 10,000-step default schedule takes on the CITE-seq data, per setting.

Times ``scx.tl.scmodal`` end to end (preprocessing, 300 training steps, embedding) on the
``cite_pbmc_inhouse`` data of ``scmodal_cite.py`` with one and two torch threads, in float32
and in bf16 mixed precision, and extrapolates to 10,000 steps.

Run: ``python benchmarks/scmodal_schedule_time.py [--steps 300]``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import scmodal_cite as bench
from _common import find_data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import scx

    data_dir = find_data_dir()
    for threads, precision in ((1, None), (2, None), (2, "bf16-mixed")):
        scx.settings.num_threads = threads
        mdata, _, _, _ = bench.load(data_dir)
        trainer_kwargs = dict(bench.QUIET)
        if precision:
            trainer_kwargs["precision"] = precision
        start = time.perf_counter()
        scx.tl.scmodal(
            mdata,
            modalities=("rna", "prot"),
            links=bench.LINKS,
            max_steps=args.steps,
            seed=0,
            trainer_kwargs=trainer_kwargs,
        )
        elapsed = time.perf_counter() - start
        print(
            f"threads {threads}, precision {precision or 'float32'}: {args.steps} steps "
            f"{elapsed:.1f} s → 10,000 steps ≈ {elapsed / args.steps * 10_000 / 60:.1f} min",
            flush=True,
        )


if __name__ == "__main__":
    main()
