"""scDART's defaults against the reference's losses on generated trajectories, over seeds.

:func:`scx.datasets.synthetic_trajectory` (600 cells per modality, 150 genes, branches ramping
in over 0.2 of the time range, pairing known to the scores only), :func:`scx.tl.scdart` with the
test suite's network sizes, the 10 earliest cells of each modality as anchors (the reference's
simulation scripts) and 150 epochs, then :func:`scx.tl.pseudotime` on the raw latent. Variants:

* ``defaults``: scx's defaults (candidate-pair loss, ``prior_penalty="relative_l1"``, averaged
  weights);
* ``reference losses``: ``scx.scdart.REFERENCE_SETTINGS`` with ``init_from_prior=True`` (the
  reference's losses; scx's initialisation, without which the reference does not align these
  data at all, see ``docs/methods/scdart.md``);
* ``no anchor filter``: the defaults without Seurat's anchor filter on the candidate pairs
  (``pair_filter_neighbors=None``; the default before 2026-12-02);
* ``uniform batches``: the defaults with uniformly drawn RNA batches (``sample_partners=False``;
  the default before 2026-12-02, later session);
* ``last iterate``: the defaults with the last step's weights instead of their moving average
  (``ema_decay=None``; the default before 2026-12-03).

Scores per run: FOSCTTM of the post-aligned and of the raw latent, Kendall τ of each modality's
pseudotime with the true time, Pearson r of the paired cells' pseudotimes. Mean ± sd over seeds.

Run: ``python benchmarks/scdart_trajectory.py [--seeds 0 1 2 3 4 5] [--threads 2]
[--variants defaults "uniform batches"]``.
"""

from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from _common import print_table

NETWORKS = {"n_hidden_gene_activity": (256, 128), "n_hidden_encoder": (128, 64)}
QUIET = {"enable_progress_bar": False, "enable_model_summary": False}
VARIANTS = ("defaults", "reference losses", "no anchor filter", "uniform batches", "last iterate")


def run(seed: int, settings: dict) -> dict:
    import scx

    mdata = scx.datasets.synthetic_trajectory(600, 150, seed=0, branch_ramp=0.2)
    anchors = {
        m: mdata[m].obs_names[np.argsort(mdata[m].obs["pseudotime"].to_numpy())[:10]]
        for m in ("rna", "atac")
    }
    scx.tl.scdart(
        mdata,
        prior="peak_prior",
        anchors=anchors,
        max_epochs=150,
        seed=seed,
        trainer_kwargs=QUIET,
        **NETWORKS,
        **settings,
    )
    scx.tl.pseudotime(
        mdata, use_rep="X_scdart_raw", root="trunk_early", groupby="milestone", resolution=0.3
    )
    rna, atac = mdata["rna"], mdata["atac"]
    row = {
        "FOSCTTM": scx.metrics.foscttm(rna.obsm["X_scdart"], atac.obsm["X_scdart"]),
        "FOSCTTM_raw": scx.metrics.foscttm(rna.obsm["X_scdart_raw"], atac.obsm["X_scdart_raw"]),
    }
    for name, adata in (("rna", rna), ("atac", atac)):
        row[f"tau_{name}"] = stats.kendalltau(
            adata.obs["trajectory_pseudotime"], adata.obs["pseudotime"]
        ).statistic
    row["paired_r"] = stats.pearsonr(
        rna.obs["trajectory_pseudotime"], atac.obs["trajectory_pseudotime"]
    ).statistic
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=list(VARIANTS),
        help="which variants to run (default: all)",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    for name in ("lightning", "lightning.pytorch", "scvi", "scx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import torch

    import scx

    torch.set_num_threads(args.threads)
    print(f"torch threads {args.threads}; seeds {args.seeds}")
    variants = {
        "defaults": {},
        "reference losses": {**scx.scdart.REFERENCE_SETTINGS, "init_from_prior": True},
        "no anchor filter": {"pair_filter_neighbors": None},
        "uniform batches": {"sample_partners": False},
        "last iterate": {"ema_decay": None},
    }
    variants = {name: variants[name] for name in args.variants}
    rows = []
    for seed in args.seeds:
        for variant, settings in variants.items():
            row = {"variant": variant, "seed": seed, **run(seed, settings)}
            print(
                "  "
                + "  ".join(
                    f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                ),
                flush=True,
            )
            rows.append(row)
    frame = pd.DataFrame(rows).drop(columns="seed").groupby("variant", sort=False)
    summary = frame.mean().round(3).astype(str) + " ± " + frame.std().round(3).astype(str)
    print_table(summary, f"generated trajectory, mean ± sd over seeds {args.seeds}", "{}")


if __name__ == "__main__":
    main()
