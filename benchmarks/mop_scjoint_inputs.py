"""Does a different input rescue the rare MOp types? scJoint and CCA on the same input variants.

On each random split (the halves of ``mop_scjoint.py``) scx scJoint (defaults, seed = split)
and CCA (30 components, 30-NN vote) both see

* ``shared genes``: every gene of the RNA with ATAC gene activity (what both use by default);
* ``HVG N``: only the RNA half's ``N`` most variable genes (scanpy's ``seurat_v3`` on the
  counts; the data ship 1,677 pre-selected genes, so ``N`` should be below that);
* ``ATAC smoothed k``: each ATAC cell's binarised gene activity averaged over its ``k``
  nearest ATAC cells (itself included) in the ATAC's own LSI (TF-IDF of the binarised peaks,
  components 2–51, standardised), against binarised RNA; scJoint then takes the inputs as
  they are (``input_transform="none"``);
* ``log-normalised``: scJoint gets CCA's input, both modalities' counts normalised to 10⁴
  per cell and log1p'd (``input_transform="none"``), instead of binarised genes.

Each variant is paired split by split with scJoint's defaults and with CCA on the same input.

Run: ``python benchmarks/mop_scjoint_inputs.py`` (five splits, HVG 800 and k = 10, about
four minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy import sparse

from mop_scjoint import _quiet, _scores, atac_lsi, load_mop, run_cca, run_scjoint, split_halves


def smoothed_activity(atac_peaks, gene_activity, n_neighbors: int) -> sparse.csr_matrix:
    """Binarised gene activity averaged over each ATAC cell's ``n_neighbors`` in its LSI."""
    from scx._neighbors import knn

    lsi = atac_lsi(atac_peaks)
    idx, _ = knn(lsi, lsi, n_neighbors)  # each cell is its own nearest neighbour
    n = len(lsi)
    rows = np.repeat(np.arange(n), n_neighbors)
    average = sparse.csr_matrix(
        (np.full(n * n_neighbors, 1.0 / n_neighbors), (rows, idx.ravel())), shape=(n, n)
    )
    return sparse.csr_matrix(average @ (gene_activity.X > 0).astype(np.float32))


def transfer(
    rna, gene_activity, atac_input, annotation, seed: int, binarise_rna: bool = False, **kwargs
):
    """Labels from scJoint (``rna`` + ``atac_input``) and from CCA (``rna`` + ``gene_activity``).

    CCA always sees the RNA counts; ``binarise_rna`` hands scJoint the binarised RNA.
    """
    genes = rna.var_names.intersection(gene_activity.var_names)
    cca = run_cca(rna[:, genes], gene_activity[:, genes])
    if binarise_rna:
        rna = rna.copy()
        rna.X = (rna.X > 0).astype(np.float32)
    return run_scjoint(rna, atac_input, annotation, {"seed": seed, **kwargs}), cca


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--hvg", type=int, default=800, help="genes kept by the HVG variant")
    parser.add_argument("--smooth-k", type=int, default=10, help="ATAC neighbours averaged")
    args = parser.parse_args()
    _quiet()
    import anndata as ad
    import scanpy as sc
    import torch

    import scx

    print(f"torch threads: {torch.get_num_threads()}")
    mdata, annotation = load_mop()
    rows = []
    for split in args.splits:
        rna, atac, activity, truth = split_halves(mdata, annotation, split)
        reference_labels = set(rna.obs["cell_type"].astype(str))
        variable = sc.pp.highly_variable_genes(
            rna, n_top_genes=args.hvg, flavor="seurat_v3", inplace=False
        )["highly_variable"].to_numpy()
        obs, var = pd.DataFrame(index=atac.obs_names), pd.DataFrame(index=activity.var_names)
        smoothed = ad.AnnData(smoothed_activity(atac, activity, args.smooth_k), obs=obs, var=var)
        log_rna = rna.copy()
        log_rna.X = scx.pp.log_normalize(rna.X)
        log_activity = ad.AnnData(scx.pp.log_normalize(activity.X), obs=obs, var=var)
        shared = transfer(rna, activity, atac, annotation, split)
        variants = {
            "shared genes": shared,
            f"HVG {args.hvg}": transfer(rna[:, variable].copy(), activity, atac, annotation, split),
            f"ATAC smoothed k={args.smooth_k}": transfer(
                rna, smoothed, smoothed, None, split, binarise_rna=True, input_transform="none"
            ),
            # CCA's own input: its labels are those of the shared genes
            "log-normalised": (
                run_scjoint(
                    log_rna, log_activity, None, {"seed": split, "input_transform": "none"}
                ),
                shared[1],
            ),
        }
        for variant, (scjoint, cca) in variants.items():
            for method, result in {"scJoint": scjoint, "CCA": cca}.items():
                rows.append(
                    {
                        "input": variant,
                        "method": method,
                        "split": split,
                        **_scores(truth, result, reference_labels),
                    }
                )
        print(f"split {split} done", flush=True)
    frame = pd.DataFrame(rows)
    summary = (
        frame.drop(columns="split").groupby(["input", "method"], sort=False).agg(["mean", "std"])
    )
    print(f"\nInput variants over {len(args.splits)} random MOp splits (cell_type)")
    print(summary.round(3).to_string())
    wide = frame.pivot_table(
        index="split", columns=["input", "method"], values=["accuracy", "macro_f1"]
    )
    defaults = ("shared genes", "scJoint")
    for variant in frame["input"].unique():
        for baseline in [(variant, "CCA"), defaults]:
            if baseline == (variant, "scJoint"):
                continue
            diffs = [
                wide[metric][(variant, "scJoint")] - wide[metric][baseline]
                for metric in ("accuracy", "macro_f1")
            ]
            print(
                f"scJoint on {variant} − {baseline[1]} on {baseline[0]}: "
                + ", ".join(
                    f"{metric} {d.mean():+.3f} ± {d.std():.3f}"
                    for metric, d in zip(("accuracy", "macro-F1"), diffs, strict=True)
                )
                + " (paired over splits)"
            )


if __name__ == "__main__":
    main()
