"""Scaling of ``scx.tl.pair_cells``: time, peak memory and matching quality, 10k to 1M cells.

Generated embeddings stand in for a trained scPairing model's output: 10-dimensional unit vectors
(the scPairing latent) of a mixture of 50 cell states; both "modalities" of a cell are its state
plus independent noise, so every cell of side 1 has a true partner on side 2. Each run is a fresh
process (``run_isolated``); ``peak_MB`` is its peak RSS, ``delta_MB`` the growth over what it
held once the embeddings existed (i.e. what the matching needed).

Solvers: ``exact`` is the reference's dense ``linear_sum_assignment`` on the ``n1 × n2``
similarity matrix (only where the float64 matrix fits in ``--dense-max-gb``); ``sparse`` is
scx's candidate-graph solver (10 cross-modality neighbours per cell and direction,
``min_weight_full_bipartite_matching``), which works in k-means blocks of 5,000 cells above
20,000 cells per side. At 10k the sparse solver also runs with forced blocks of 5,000 to show
what blocks cost against the exact optimum.
Quality columns: ``objective_vs_exact`` (summed similarity / the exact optimum), ``same_as_exact``
(fraction of the exact pairs found), ``true_partner`` (pairs that are the same generated cell).

Run: ``python benchmarks/scale_pair_cells.py [--sizes 10000 100000 1000000]`` (about 30
minutes on 2 shared CPU cores, most of it at 1M).
"""

from __future__ import annotations

import argparse
import logging
import warnings

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd

import scx
from _common import print_table, run_isolated

N_DIMS = 10


def generate(n: int, seed: int = 0, noise: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of ``n`` cells seen by two modalities (row ``i`` ↔ row ``i``)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, N_DIMS)).astype(np.float32)
    state = centres[rng.integers(0, 50, n)]
    state += 0.5 * rng.standard_normal((n, N_DIMS), dtype=np.float32)
    a = state + noise * rng.standard_normal((n, N_DIMS), dtype=np.float32)
    b = state + noise * rng.standard_normal((n, N_DIMS), dtype=np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return a, b


def run(n: int, method: str, block_size: int, max_unblocked: int, cutoff: float) -> dict:
    warnings.simplefilter("ignore")
    logging.getLogger("scx").setLevel(logging.WARNING)
    a, b = generate(n)
    # both sides name their cells 0 … n-1, so a pair (i, i) is a true partner
    side1 = ad.AnnData(obsm={"Z": a}, shape=(n, 0))
    side2 = ad.AnnData(obsm={"Z": b}, shape=(n, 0))
    paired = scx.tl.pair_cells(
        md.MuData({"mod1": side1, "mod2": side2}),
        use_rep="Z",
        cutoff=cutoff,
        method=method,
        block_size=block_size,
        max_unblocked=max_unblocked,
    )
    table = paired.uns["scpairing_pairs"]
    rows = table["mod1"].astype(int).to_numpy()
    cols = table["mod2"].astype(int).to_numpy()
    return {"rows": rows, "cols": cols, "objective": float(table["similarity"].sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--cutoff", type=float, default=0.8)
    parser.add_argument("--block-size", type=int, default=5_000)
    parser.add_argument("--dense-max-gb", type=float, default=4.0)
    args = parser.parse_args()

    rows = []
    for n in args.sizes:
        runs = []
        if n * n * 8 / 2**30 <= args.dense_max_gb:
            runs.append(("exact (dense linear_sum_assignment)", "exact", args.block_size, 0))
        else:
            rows.append(
                {
                    "cells/side": n,
                    "solver": "exact (dense linear_sum_assignment)",
                    "note": f"not run: the dense matrix needs {n * n * 8 / 2**30:,.0f} GiB",
                }
            )
        runs.append(("sparse (scx defaults)", "sparse", args.block_size, 20_000))
        if n <= 20_000:  # what the blocks cost, against the exact optimum
            runs.append(
                (
                    f"sparse, forced blocks of {args.block_size:,}",
                    "sparse",
                    args.block_size,
                    0,
                )
            )
        exact = None
        for label, method, block, max_unblocked in runs:
            out = run_isolated(run, n, method, block, max_unblocked, args.cutoff)
            res = out["result"]
            if method == "exact":
                exact = res
            row = {
                "cells/side": n,
                "solver": label,
                "time_s": out["time_s"],
                "peak_MB": out["peak_mb"],
                "delta_MB": out["delta_mb"],
                "pairs": len(res["rows"]),
                "true_partner": float((res["rows"] == res["cols"]).mean() * len(res["rows"]) / n),
            }
            if exact is not None:
                row["objective_vs_exact"] = res["objective"] / exact["objective"]
                found = set(zip(res["rows"].tolist(), res["cols"].tolist()))
                same = sum((r, c) in found for r, c in zip(exact["rows"], exact["cols"]))
                row["same_as_exact"] = same / max(len(exact["rows"]), 1)
            rows.append(row)
            print(row, flush=True)
    frame = pd.DataFrame(rows).set_index(["cells/side", "solver"])
    print_table(frame, f"pair_cells scaling (cutoff {args.cutoff}, {N_DIMS}-d embeddings)")


if __name__ == "__main__":
    main()
