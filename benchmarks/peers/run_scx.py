"""Run scx on a harness input file, in its own process (the scx side of every comparison).

``python run_scx.py --method scjoint --inputs in.npz --out out.npz [--steps N] [...]``: the
method module (``<method>.py`` next to this file) trains scx on exactly the inputs the original
gets and returns its outputs; this script adds the step times and memory, measured the same
way as in the originals' runners.
"""

from __future__ import annotations

import importlib
import sys

import _runner_common as common


def main() -> None:
    method = sys.argv[sys.argv.index("--method") + 1]
    del sys.argv[sys.argv.index("--method") : sys.argv.index("--method") + 2]
    module = importlib.import_module(method)
    args = common.parse_args(getattr(module, "scx_options", None))
    common.set_threads(args.threads)
    inputs = common.load_inputs(args.inputs)
    base = common.reset_peak_memory()
    # scx stops by itself at `--steps` (max_steps); the hook only times the steps
    timer = common.StepTimer(module.SCX_OPTIMIZERS_PER_STEP)
    arrays, meta = module.run_scx(inputs, args)
    timer.remove()
    meta.update(base_mb=base, peak_mb=common.peak_memory_mb(), side="scx")
    common.save(args.out, meta, step_seconds=timer.step_seconds(), **arrays)


if __name__ == "__main__":
    main()
