"""scDART at scale: time per epoch and peak memory at 10k and 100k generated cells.

Each size is a generated branching trajectory (:func:`scx.datasets.synthetic_trajectory`) with
the same number of RNA and ATAC cells (pairing hidden), 1,000 genes and 3,600 peaks, run
end to end through ``scx.tl.scdart`` in a fresh process: diffusion geometry of both modalities
(PCA / LSI, pynndescent kNN graph, sparse eigensolver), a few training epochs, the latent,
post-alignment (the diffusion step runs at the start of ``SCDART.train``). Reported: the time
of the diffusion step, the time per training epoch (mean over the epochs after the first), and
the peak memory of the process. Nothing of size
cells × cells is ever formed; the reference's dense diffusion step would need
``cells² × 8`` bytes per matrix (80 GB at 100k cells).

Run: ``python benchmarks/scale_scdart.py [--sizes 10000 100000] [--epochs 2] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
import pandas as pd

from _common import print_table, run_isolated


def run(n_cells: int, epochs: int, threads: int) -> dict:
    warnings.simplefilter("ignore")
    for name in ("lightning", "lightning.pytorch", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import mudata
    import torch
    from lightning.pytorch.callbacks import Callback

    import scx
    import scx.scdart._model as tool

    torch.set_num_threads(threads)
    mudata.set_options(pull_on_update=False)
    mdata = scx.datasets.synthetic_trajectory(n_cells, 1000, seed=0)
    timings: dict[str, float] = {}
    original = tool.diffusion_coordinates

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = original(*args, **kwargs)
        timings["diffusion_s"] = timings.get("diffusion_s", 0.0) + time.perf_counter() - start
        return out

    epoch_times: list[float] = []

    class EpochTimer(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            epoch_times.append(time.perf_counter() - self.start)

    tool.diffusion_coordinates = timed
    start = time.perf_counter()
    model = scx.tl.scdart(
        mdata,
        prior="peak_prior",
        max_epochs=epochs,
        trainer_kwargs={"enable_progress_bar": False, "callbacks": [EpochTimer()]},
    )
    total = time.perf_counter() - start
    tool.diffusion_coordinates = original
    return {
        "peaks": mdata["atac"].n_vars,
        "batch_size": model.default_batch_size(),
        "steps_per_epoch": -(-n_cells // model.default_batch_size()),
        "diffusion_s": timings["diffusion_s"],
        "s_per_epoch": float(np.mean(epoch_times[1:] if len(epoch_times) > 1 else epoch_times)),
        "total_s": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rows = {}
    for n in args.sizes:
        result = run_isolated(run, n, args.epochs, args.threads)
        rows[f"{n:,} + {n:,} cells"] = {**result["result"], "peak_mb": result["peak_mb"]}
        print(rows[f"{n:,} + {n:,} cells"], flush=True)
    print_table(
        pd.DataFrame(rows).T,
        f"scDART scale (each size a fresh process; {args.epochs} epochs; torch threads "
        f"{args.threads})",
    )


if __name__ == "__main__":
    main()
