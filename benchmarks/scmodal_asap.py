"""scMODAL protein ↔ protein: CITE-seq vs ASAP-seq ADT with fewer and fewer declared links.

Data: ``asap_cite_pbmc_protein`` (``$SCX_DATA_DIR``): 17,055 PBMC, one 216-antibody panel read
by CITE-seq (8,689 cells) and by ASAP-seq (8,366 cells). Both modalities measure all 216
proteins, but only a nested random subset (seed 0) of them is declared as links (216 → 50 →
12); the undeclared proteins are unlinked features on each side, as for two panels that share
a few markers.

Scores in the joint space: kNN (k = 20) label transfer CITE → ASAP on the 4 coarse types
(``acc_type``) and on the 12 clusters (``acc_cluster``), and technology mixing (iLISI, scaled
to [0, 1], and the kBET acceptance rate).

Peers in the same run, for every link count:

* ``linked``: the declared proteins alone (log-normalised to one library size, z-scored per
  technology) as the shared space;
* ``portal``: scx Portal (``scx.tl.portal``, ``use_rep``) on that same shared space;
* ``scmodal``: ``scx.tl.scmodal`` from counts, defaults except ``max_steps``;
  ``--score-anchors off on`` adds the run with ``score_anchors=True`` beside it.

Run: ``python benchmarks/scmodal_asap.py [--links 216 50 12] [--steps 2000] [--seeds 0 1 2]
[--score-anchors off on] [--threads 2] [--skip portal]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import warnings

import numpy as np
import pandas as pd

from _common import add_anchor_variants, anchor_variants, find_data_dir, print_table, run_isolated

CITE, ASAP = "CITE-seq", "ASAP-seq"
QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


def _quiet() -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    warnings.simplefilter("ignore")
    for name in ("lightning", "lightning.pytorch", "scvi", "scx"):
        logging.getLogger(name).setLevel(logging.ERROR)


def declared_links(data_dir, sizes: list[int]) -> dict[int, list[str]]:
    """Nested random subsets of the panel (seed 0): the first ``n`` of one permutation."""
    import anndata as ad

    proteins = ad.read_h5ad(
        f"{data_dir}/asap_cite_pbmc_protein/asap_cite_pbmc_protein.h5ad", backed="r"
    ).var_names
    order = np.random.default_rng(0).permutation(len(proteins))
    return {n: list(proteins[order[:n]]) for n in sizes}


def load(data_dir):
    import anndata as ad
    import mudata as md

    adata = ad.read_h5ad(f"{data_dir}/asap_cite_pbmc_protein/asap_cite_pbmc_protein.h5ad")
    tech = adata.obs["technology"].astype(str).to_numpy()
    mods = {"cite": adata[tech == CITE].copy(), "asap": adata[tech == ASAP].copy()}
    return md.MuData(mods)


def scores(z_cite, z_asap, mdata) -> dict:
    import scx
    from scx._neighbors import knn_transfer

    out = {}
    for key, name in [("cell_type", "acc_type"), ("cluster", "acc_cluster")]:
        ref = mdata["cite"].obs[key].astype(str).to_numpy()
        truth = mdata["asap"].obs[key].astype(str).to_numpy()
        pred, _, _ = knn_transfer(z_cite, ref, z_asap, n_neighbors=20)
        out[name] = float(np.mean(pred == truth))
    z = np.vstack([z_cite, z_asap])
    tech = np.repeat([CITE, ASAP], [len(z_cite), len(z_asap)])
    out["ilisi"] = scx.metrics.ilisi(z, tech)
    out["kbet"] = scx.metrics.kbet(z, tech)
    return out


def _linked_space(mdata, proteins):
    from scipy import sparse

    from scx.pp import log_normalize
    from scx.scmodal import MIN_LINKED_TARGET

    cite = mdata["cite"][:, proteins].X
    target = max(float(np.median(np.asarray(cite.sum(axis=1)).ravel())), MIN_LINKED_TARGET)
    out = []
    for m in ("cite", "asap"):
        block = sparse.csr_matrix(mdata[m][:, proteins].X, dtype=np.float32)
        x = log_normalize(block, target).toarray()
        out.append((x - x.mean(0)) / np.maximum(x.std(0), 1e-8))
    return out


def run_linked(data_dir, proteins) -> dict:
    _quiet()
    mdata = load(data_dir)
    z_cite, z_asap = _linked_space(mdata, proteins)
    return scores(z_cite, z_asap, mdata)


def run_portal(data_dir, proteins, seed) -> dict:
    _quiet()
    import anndata as ad

    import scx

    mdata = load(data_dir)
    z_cite, z_asap = _linked_space(mdata, proteins)
    n = len(z_cite)
    adata = ad.AnnData(
        X=np.zeros((n + len(z_asap), 1), dtype=np.float32),
        obs=pd.DataFrame(
            {"dataset": pd.Categorical(["cite"] * n + ["asap"] * len(z_asap))},
            index=[f"c{i}" for i in range(n + len(z_asap))],
        ),
    )
    adata.obsm["X_linked"] = np.vstack([z_cite, z_asap]).astype(np.float32)
    scx.tl.portal(
        adata,
        batch_key="dataset",
        reference="cite",
        use_rep="X_linked",
        seed=seed,
        trainer_kwargs=QUIET,
    )
    z = adata.obsm["X_portal"]
    return scores(z[:n], z[n:], mdata)


def run_scmodal(data_dir, proteins, seed, steps, score_anchors) -> dict:
    _quiet()
    import scx

    mdata = load(data_dir)
    scx.tl.scmodal(
        mdata,
        modalities=("cite", "asap"),
        links=[(p, p) for p in proteins],
        max_steps=steps,
        score_anchors=score_anchors,
        seed=seed,
        trainer_kwargs=QUIET,
    )
    return scores(mdata["cite"].obsm["X_scmodal"], mdata["asap"].obsm["X_scmodal"], mdata)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--links", type=int, nargs="+", default=[216, 50, 12])
    parser.add_argument("--steps", type=int, default=2000, help="scMODAL training steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    add_anchor_variants(parser)
    parser.add_argument("--skip", nargs="*", default=[], help="peers to leave out")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    print(f"torch threads per run: {args.threads}")
    data_dir = find_data_dir()
    subsets = declared_links(data_dir, args.links)
    print({n: p[:12] for n, p in subsets.items()})
    rows = {}
    for n, proteins in subsets.items():
        runs = {"linked": (run_linked, (data_dir, proteins))}
        for seed in args.seeds:
            runs[f"portal (seed {seed})"] = (run_portal, (data_dir, proteins, seed))
            for label, score_anchors in anchor_variants(args):
                runs[f"scmodal{label} (seed {seed})"] = (
                    run_scmodal,
                    (data_dir, proteins, seed, args.steps, score_anchors),
                )
        for name, (fn, fn_args) in runs.items():
            if name.split(" ")[0] in args.skip:
                continue
            out = run_isolated(fn, *fn_args)
            rows[(n, name)] = {**out["result"], "time_s": out["time_s"], "peak_mb": out["peak_mb"]}
            print(n, name, {k: round(v, 3) for k, v in rows[(n, name)].items()}, flush=True)
    table = pd.DataFrame(rows).T
    table.index.names = ["links", "method"]
    if len(args.seeds) > 1:
        over_seeds = table.groupby(
            [
                table.index.get_level_values(0),
                table.index.get_level_values(1).str.split(" [(]seed").str[0],
            ]
        )
        summary = (
            over_seeds.mean().round(3).astype(str) + " ± " + over_seeds.std().round(3).astype(str)
        )
        print(f"\nmean ± sd over seeds {args.seeds}")
        print(summary.to_string())
    print_table(
        table,
        f"asap_cite_pbmc_protein: CITE-seq ↔ ASAP-seq ADT, declared links {args.links}, "
        f"scMODAL {args.steps} steps (2-core CPU, shared)",
    )


if __name__ == "__main__":
    main()
