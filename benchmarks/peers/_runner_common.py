"""What the runner scripts of the original implementations share.

A runner executes inside the original's own virtual environment, so this file needs only the
standard library, numpy and torch (never scx). The scx side (``harness.py``) writes the inputs
to an ``.npz`` file, starts the runner with the original's Python, and reads the ``.npz`` the
runner writes back.

Every runner takes the same command line (:func:`parse_args`) and reports

* the outputs (embeddings, labels, imputations) as arrays,
* ``step_seconds``: the wall time of every training step, taken from a global optimiser hook
  (:class:`StepTimer`): the same measurement scx's side uses, whatever the original's loop looks
  like,
* ``peak_mb`` / ``base_mb``: the process's peak resident memory, and the memory after loading
  the inputs (``peak_mb - base_mb`` is what training and inference added).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

# the benchmarks' stdlib-only memory helpers, one folder up (runners run in the originals' venvs)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _memory import peak_mb, reset_peak, status_mb


def parse_args(extra=None) -> argparse.Namespace:
    """The runner command line (plus method-specific options added by ``extra(parser)``)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkout", type=Path, help="checkout of the original repository")
    parser.add_argument("--inputs", type=Path, required=True, help="inputs .npz from harness.py")
    parser.add_argument("--out", type=Path, required=True, help="outputs .npz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--steps", type=int, default=None, help="stop after this many training steps (speed runs)"
    )
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def set_threads(n: int) -> None:
    """One thread setting for torch and the BLAS libraries (set before they start work)."""
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[key] = str(n)
    import torch

    torch.set_num_threads(n)


def add_checkout(path: Path | None) -> None:
    """Make the original's modules importable from its checkout (never copied anywhere)."""
    if path is not None:
        sys.path.insert(0, str(Path(path).resolve()))


def reset_peak_memory() -> float:
    """Reset the peak-RSS mark to the current RSS (Linux); returns the current RSS in MB."""
    reset_peak()
    current = status_mb("VmRSS")
    return float("nan") if current is None else current


def peak_memory_mb() -> float:
    """Peak resident memory of this process (MB)."""
    return peak_mb()


class StepTimer:
    """Time stamps of optimiser steps, from torch's global post-step hook.

    ``optimizers_per_step`` optimiser steps make one training step (e.g. scJoint: encoder and
    classifier SGD; Portal: one discriminator and one generator Adam; scMODAL: five
    discriminator steps and one generator step). :meth:`step_seconds` gives the wall time of
    each training step (time between the last optimiser steps of consecutive training steps).
    With ``stop_after`` the process stops training by raising :class:`StopTraining` after that
    many training steps (for speed runs of long schedules).
    """

    def __init__(self, optimizers_per_step: int, stop_after: int | None = None):
        # torch 2.13 does not expose the submodule as ``torch.optim.optimizer``
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.per_step = int(optimizers_per_step)
        self.stop_after = stop_after
        self.stamps: list[float] = []
        self._handle = register_optimizer_step_post_hook(self._hook)

    def _hook(self, optimizer, args, kwargs) -> None:
        self.stamps.append(time.perf_counter())
        if self.stop_after is not None and len(self.stamps) >= self.stop_after * self.per_step:
            raise StopTraining

    def step_seconds(self) -> list[float]:
        """Seconds of every training step after the first (no reference point before it)."""
        ends = self.stamps[self.per_step - 1 :: self.per_step]
        return [b - a for a, b in itertools.pairwise(ends)]

    def remove(self) -> None:
        """Remove the hook."""
        self._handle.remove()


class StopTraining(Exception):
    """Raised by :class:`StepTimer` once a speed run has taken its steps."""


def save(path: Path, meta: dict, **arrays) -> None:
    """Write the outputs (``meta`` as JSON inside the archive)."""
    import numpy as np

    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def load_inputs(path: Path) -> dict:
    """The inputs written by the harness (numpy arrays, scipy CSR parts and JSON metadata)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as archive:
        data = {key: archive[key] for key in archive.files}
    data["meta"] = json.loads(str(data.pop("meta")))
    return data


def csr(data: dict, name: str):
    """The CSR matrix ``name`` stored by the harness as ``name_{data,indices,indptr,shape}``."""
    from scipy import sparse

    return sparse.csr_matrix(
        (data[f"{name}_data"], data[f"{name}_indices"], data[f"{name}_indptr"]),
        shape=tuple(data[f"{name}_shape"]),
    )
