"""Run the original Portal (``portal-sc`` 1.0.4 from PyPI) on a harness input file.

Runs in Portal's own environment (``setup_peers.py``: the wheel installed with ``--no-deps``
beside torch 2.13 and unpinned scanpy/anndata/tables). The package is imported from that
environment; nothing of it is copied here.

The inputs are the two datasets' joint PCA (``pcs``, ``first`` marks dataset A's rows). As
``benchmarks/portal_integration.py`` does, they are set as ``model.emb_A`` / ``model.emb_B`` and
the original's own ``Model.train()`` (its training loop: per step one discriminator and one
generator Adam update on 500 cells per dataset) and ``Model.eval()`` (one full-batch forward of
the saved checkpoint) run unchanged; ``model.latent`` (A's rows, then B's) is put back in the
inputs' row order. ``Model.preprocess`` is not used: the joint PCA is the input, so both sides
start from the same numbers (it would also fail on pandas ≥ 2, see below).

Budget: ``training_steps`` = ``--steps`` or the inputs' ``meta["steps"]`` (Portal's rule,
1,000 below 20,000 cells, else 2,000); its loop stops there by itself, so the timer only times
(``StepTimer(2)``: one discriminator and one generator ``Adam.step`` per training step).
``batch_size=500``, ``lambdacos=20`` and the hard-coded λ_AE 10, λ_LA 10, λ_GAN 1 and margin 5
are the original's defaults; ``seed=1234 + --seed`` (its default is 1234). The checkpoint it
writes goes to a temporary folder (``model_path``), not the working directory.

Shims: none of the method is patched. Two things in how it is called:

* the harness puts ``benchmarks/peers`` on ``sys.path``, where ``portal.py`` is scx's method
  module of the same name; this runner removes that folder from ``sys.path`` (after importing
  ``_runner_common``) so that ``import portal`` finds the installed original;
* ``Model.preprocess`` (not called) intersects two ``pandas.Index`` objects with ``&``, which
  is no longer a set intersection in pandas ≥ 2: bypassed by passing the joint PCA directly.

Known behaviour kept as is (see the reference notes): losses written as ``log(1 + exp(u))``
(safe only through the ±50 clamp), ``L_D.backward`` also filling the generator's gradients,
``cudnn.benchmark = True`` on GPUs.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import _runner_common as common
import numpy as np

HERE = Path(__file__).resolve().parent


def import_original():
    """The installed ``portal`` package, not scx's ``benchmarks/peers/portal.py``."""
    sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != HERE]
    import portal

    if Path(portal.__file__).resolve().parent == HERE:
        raise ImportError(f"found scx's method module {portal.__file__}, not portal-sc")
    return portal


def main() -> None:
    args = common.parse_args()
    common.set_threads(args.threads)
    common.add_checkout(args.checkout)  # None: the wheel is installed in this environment
    portal = import_original()
    import torch

    inputs = common.load_inputs(args.inputs)
    pcs = inputs["pcs"].astype(np.float32)
    first = inputs["first"].astype(bool)
    steps = args.steps or int(inputs["meta"]["steps"])
    base = common.reset_peak_memory()

    timer = common.StepTimer(2)
    with tempfile.TemporaryDirectory() as tmp:
        model = portal.model.Model(
            batch_size=500,
            training_steps=steps,
            seed=1234 + args.seed,
            model_path=os.path.join(tmp, "models"),
            data_path=os.path.join(tmp, "data"),
            result_path=os.path.join(tmp, "results"),
        )
        model.emb_A = pcs[first]
        model.emb_B = pcs[~first]
        model.train()
        timer.remove()
        model.eval()  # its own full-batch forward (with autograd on, as the original does)
    latent = np.empty((len(pcs), model.latent.shape[1]), dtype=np.float32)
    latent[first] = model.latent[: first.sum()]
    latent[~first] = model.latent[first.sum() :]

    meta = {
        "steps": steps,
        "batch_size": model.batch_size,
        "seed": 1234 + args.seed,
        "lambdacos": model.lambdacos,
        "lambdaAE": model.lambdaAE,
        "lambdaLA": model.lambdaLA,
        "lambdaGAN": model.lambdaGAN,
        "margin": model.margin,
        "device": str(model.device),
        "train_s": model.train_time,
        "portal_version": portal.__version__,
        "torch_version": torch.__version__,
        "base_mb": base,
        "peak_mb": common.peak_memory_mb(),
        "side": "portal",
    }
    common.save(args.out, meta, step_seconds=timer.step_seconds(), latent=latent)


if __name__ == "__main__":
    main()
