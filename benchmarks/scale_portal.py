"""Portal at scale: time per 1,000 training steps and peak memory at 100k and 1M cells.

Two generated datasets of 30-dimensional inputs (as after Portal's joint PCA): a mixture of 10
Gaussian cell types, the second dataset with a type-specific shift. Each run is a fresh process;
``delta_MB`` is the peak memory over what the process held once the inputs existed, i.e. what
the method itself needed. The inputs themselves are ``n_cells × 30`` float32
(``input_MB``). Portal trains a fixed number of mini-batch steps, so its time should not depend
on the number of cells, and its memory should not grow beyond a copy of the inputs plus the
outputs.

scx Portal runs ``scx.tl.portal(adata, batch_key=..., use_rep=...)`` end to end (latent and
boundary scores of every cell included). The original Portal (``portal-sc``) runs its own
training loop and its full-batch ``eval()``.

Run: ``python benchmarks/scale_portal.py [--sizes 100000 1000000] [--steps 1000]``
(about 10 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
import pandas as pd

from _common import print_table, rss_mb, run_isolated

N_DIMS = 30


def generate(n_cells: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two datasets of ``n_cells / 2`` cells each; returns inputs and dataset labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(10, N_DIMS)).astype(np.float32)
    shift = rng.normal(0, 1.5, size=(10, N_DIMS)).astype(np.float32)
    half = n_cells // 2
    X = np.empty((2 * half, N_DIMS), dtype=np.float32)
    for b in range(2):
        types = rng.integers(0, 10, size=half)
        block = X[b * half : (b + 1) * half]
        block[:] = rng.standard_normal((half, N_DIMS), dtype=np.float32)
        block += centres[types] + (shift[types] if b else 0)
    return X, np.repeat(np.array(["A", "B"]), half)


def _quiet() -> None:
    warnings.simplefilter("ignore")
    for name in ("lightning", "lightning.pytorch", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_scx(n_cells: int, steps: int, precision: str | None) -> dict:
    _quiet()
    import anndata as ad

    import scx

    X, batches = generate(n_cells)
    adata = ad.AnnData(
        obs=pd.DataFrame({"batch": batches}, index=pd.RangeIndex(n_cells).astype(str)),
        obsm={"X_pca": X},
    )
    base = rss_mb()
    trainer = {"enable_progress_bar": False}
    if precision is not None:
        trainer["precision"] = precision
    start = time.perf_counter()
    scx.tl.portal(
        adata,
        batch_key="batch",
        use_rep="X_pca",
        max_steps=steps,
        seed=0,
        trainer_kwargs=trainer,
    )
    total = time.perf_counter() - start
    return {"time_s": total, "delta_MB": rss_mb() - base}


def run_portal_sc(n_cells: int, steps: int) -> dict:
    _quiet()
    import os
    import tempfile

    import portal

    X, batches = generate(n_cells)
    first = batches == "A"
    base = rss_mb()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        model = portal.model.Model(
            training_steps=steps,
            model_path=os.path.join(tmp, "models"),
            data_path=os.path.join(tmp, "data"),
            result_path=os.path.join(tmp, "results"),
        )
        model.emb_A, model.emb_B = X[first], X[~first]
        model.train()
        model.eval()
    total = time.perf_counter() - start
    return {"time_s": total, "delta_MB": rss_mb() - base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        runs = {
            "scx Portal": (run_scx, (n, args.steps, None)),
            "scx Portal bf16": (run_scx, (n, args.steps, "bf16-mixed")),
        }
        if not args.skip_reference:
            runs["Portal (portal-sc)"] = (run_portal_sc, (n, args.steps))
        for name, (fn, fn_args) in runs.items():
            run = run_isolated(fn, *fn_args)
            row = {
                "method": name,
                "n_cells": n,
                "input_MB": n * N_DIMS * 4 / 2**20,
                "s per 1000 steps (end to end)": run["result"]["time_s"] * 1000 / args.steps,
                "delta_MB": run["result"]["delta_MB"],
                "peak_MB": run["peak_mb"],
            }
            rows.append(row)
            print(row, flush=True)
    print_table(
        pd.DataFrame(rows).set_index(["method", "n_cells"]),
        f"Portal scaling, {args.steps} steps, batch 500 per dataset, 2 CPU cores",
        "{:.1f}",
    )


if __name__ == "__main__":
    main()
