"""scDART's prior penalty under BatchNorm, on a generated trajectory with known pairing.

Every Linear layer of scDART's gene-activity network is followed by BatchNorm, so shrinking a
layer leaves the network's output unchanged while the reference's absolute penalty
(``prior_penalty="l1"``) shrinks with it. This script trains :func:`scx.tl.scdart` on
:func:`scx.datasets.synthetic_trajectory` (600 cells, 150 genes; the test suite's network sizes,
latent 4, 150 epochs, no anchors) with each penalty and reports, for every run:

* the penalty at the first and the last epoch;
* the share of the learned end-to-end peak → gene weight mass on the prior's links;
* the per-gene Pearson r (median over genes) between each ATAC cell's predicted RNA (the gene
  activity) and the measured log-normalised RNA of the same cell, and the same for the linear
  part alone (binary ATAC × end-to-end weight), against the linear prior (binary ATAC × prior);
* FOSCTTM of the post-aligned joint latent.

Run: ``python benchmarks/scdart_prior_penalty.py [--seeds 0 1 2]``.
"""

from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np
import pandas as pd

from _common import print_table
from scdart_mop import per_gene_pearson

VARIANTS = {
    "l1 (reference)": {},
    "relative_l1": {"prior_penalty": "relative_l1"},
    "no penalty (lambda_prior=0)": {"lambda_prior": 0.0},
    "l1, random init (reference)": {"init_from_prior": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=150)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    for name in ("lightning", "lightning.pytorch", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import mudata
    import torch

    import scx

    mudata.set_options(pull_on_update=False)
    torch.set_num_threads(1)
    rows = []
    for seed in args.seeds:
        data = scx.datasets.synthetic_trajectory(600, 150, seed=seed)
        counts = data["rna"].X.toarray()
        measured = np.log1p(counts / counts.sum(1, keepdims=True) * 100)
        prior = data["rna"].varm["peak_prior"]
        binary = (data["atac"].X > 0).astype(np.float32)
        linear_prior = np.asarray((binary @ prior.T).todense(), dtype=np.float64)
        rows.append(
            {
                "seed": seed,
                "variant": "linear prior (binary ATAC × prior)",
                "gene_r": float(np.nanmedian(per_gene_pearson(linear_prior, measured))),
            }
        )
        for variant, kwargs in VARIANTS.items():
            mdata = data.copy()
            model = scx.tl.scdart(
                mdata,
                prior="peak_prior",
                n_latent=4,
                n_hidden_gene_activity=(256, 128),
                n_hidden_encoder=(128, 64),
                max_epochs=args.epochs,
                seed=seed,
                trainer_kwargs={"enable_progress_bar": False},
                **kwargs,
            )
            weight = model.get_peak_gene_weights(linked_only=False)
            activity = model.get_gene_activity().to_numpy().astype(np.float64)
            penalty = model.history_["prior_train"].iloc[:, 0].astype(float)
            rows.append(
                {
                    "seed": seed,
                    "variant": variant,
                    "penalty_first": penalty.iloc[0],
                    "penalty_last": penalty.iloc[-1],
                    "on_link_mass": float(
                        np.abs(weight[prior.toarray() > 0]).sum() / np.abs(weight).sum()
                    ),
                    "gene_r": float(np.nanmedian(per_gene_pearson(activity, measured))),
                    "gene_r_linear_part": float(
                        np.nanmedian(per_gene_pearson(np.asarray(binary @ weight.T), measured))
                    ),
                    "FOSCTTM": scx.metrics.foscttm(
                        mdata["rna"].obsm["X_scdart"], mdata["atac"].obsm["X_scdart"]
                    ),
                }
            )
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows).groupby("variant", sort=False).mean(numeric_only=True)
    print_table(table.drop(columns="seed"), f"generated trajectory, mean over seeds {args.seeds}")


if __name__ == "__main__":
    main()
