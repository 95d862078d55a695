"""scDART on MOp SNARE-seq2 with the pairing hidden, side by side with its peers.

Every cell is measured in both modalities. The RNA cells are renamed ``rna_*`` and the ATAC cells
``atac_*`` (and the ATAC cells shuffled), so no method sees which cells match; the true pairing
only scores:

* FOSCTTM of the joint embedding (0 = every cell's partner is its nearest cross-modal point);
* RNA → ATAC label transfer (``cell_type``, kNN with k = 30 in the joint embedding for scDART
  and CCA; scJoint's own transfer);
* for scDART, per-gene Pearson correlation between the predicted RNA of each ATAC cell (its
  learned gene activity) and the measured, log-normalised RNA of the same cell (median over all
  genes, and over the genes detected in at least 5 % of the nuclei), against the linear prior
  baseline (binary ATAC × prior, the gene activity the prior alone gives), and the share of the
  learned end-to-end peak → gene weight mass that lies on the prior's links.

Methods (each in its own process; wall time and peak memory are its own): scx scDART with its
defaults apart from the number of epochs (see ``--max-epochs``) and the variants of
``--scdart-variants`` (``scx.scdart.REFERENCE_SETTINGS``: the reference's losses and
initialisation; the reference's SNARE-seq script; the defaults without the candidate-pair
loss, with unweighted candidate pairs, with the reference's absolute prior penalty, with
Seurat's anchor filter on the candidate pairs, or with the last step's weights instead of their
moving average),
Seurat-v3-style CCA (30 components) on log-normalised RNA and prior-based gene activity, and
scx scJoint with its defaults (gene activity from the mm10 table). The prior is the shipped
``rna.varm["gene_region"]`` (gene body + 2 kb upstream).

Run: ``python benchmarks/scdart_mop.py [--max-epochs 60] [--threads 1]
[--scdart-variants default,relative]`` (without ``--max-epochs``: scDART's default schedule,
≈ 2,000 steps); ``--skip-cca`` / ``--skip-scjoint`` leave peers out. ``--cell-types L2/3 L4/5
L6 --labels cell_type_fine`` builds a second pairing from the same data: the excitatory neurons
only, a continuum across the cortical layers (12 fine types), closer to the continuous
populations scDART was designed for. ``--nuclei 2000 --max-epochs 100`` runs the peers on the
2,000 random nuclei of the peer harness's case ``mop_2k`` (``benchmarks/peers/``).
Timings are for the given thread count.
"""

from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np
import pandas as pd

from _common import cell_type_mask, find_data_dir, print_table, run_isolated

ANNOTATION = "annotations/genes_mm10_GRCm38_ensembl_MAESTRO.tsv.gz"
#: scDART runs: name → (row label, arguments of ``scx.tl.scdart`` besides the defaults).
SCDART_VARIANTS = {
    "default": ("scDART scx defaults", {}),
    "reference": ("scDART REFERENCE_SETTINGS", {"reference": True}),
    "no-pairs": ("scDART lambda_pairs=0", {"lambda_pairs": 0.0}),
    "unweighted-pairs": ("scDART pair_score_neighbors=None", {"pair_score_neighbors": None}),
    "l1": ("scDART prior_penalty='l1'", {"prior_penalty": "l1"}),
    "anchor-filter": ("scDART pair_filter_neighbors=200", {"pair_filter_neighbors": 200}),
    "no-filter": (
        "scDART pair_filter_neighbors=None, sample_partners=False",
        {"pair_filter_neighbors": None, "sample_partners": False},
    ),
    "uniform-batches": ("scDART sample_partners=False", {"sample_partners": False}),
    "last-iterate": ("scDART ema_decay=None (the last step's weights)", {"ema_decay": None}),
    "sampled-no-filter": (
        "scDART pair_filter_neighbors=None (partners still drawn into the batches)",
        {"pair_filter_neighbors": None},
    ),
    "mmd10": ("scDART lambda_mmd=10 (the reference's SNARE-seq setting)", {"lambda_mmd": 10.0}),
    "latent4": ("scDART n_latent=4 (the reference scripts')", {"n_latent": 4}),
    "reference-scripts": (
        "scDART REFERENCE_SETTINGS, n_latent=4, lambda_mmd=10 (reference SNARE script)",
        {"reference": True, "n_latent": 4, "lambda_mmd": 10.0},
    ),
}


def _quiet(threads: int) -> None:
    warnings.simplefilter("ignore")
    for name in ("lightning", "lightning.pytorch", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import mudata
    import torch

    mudata.set_options(pull_on_update=False)
    torch.set_num_threads(threads)


def log_normalised(X) -> np.ndarray:
    """Library size 100 and log1p (scDART's RNA preprocessing), dense."""
    X = np.asarray(X.todense() if hasattr(X, "todense") else X, dtype=np.float64)
    return np.log1p(X / np.maximum(X.sum(1, keepdims=True), 1e-12) * 100)


def per_gene_pearson(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Pearson r of every gene (column) with a non-constant prediction and truth."""
    p = pred - pred.mean(0)
    t = truth - truth.mean(0)
    denom = np.sqrt((p**2).sum(0) * (t**2).sum(0))
    r = np.full(pred.shape[1], np.nan)
    ok = denom > 0
    r[ok] = (p[:, ok] * t[:, ok]).sum(0) / denom[ok]
    return r


#: seed of the random nuclei of ``--nuclei`` (and of the peer harness's case ``mop_2k``): the same
#: nuclei for every ``--seed``, which varies the training and the ATAC order only
RANDOM_NUCLEI_SEED = 2026


def random_nuclei(n_obs: int, n_nuclei: int) -> np.ndarray:
    """``n_nuclei`` of ``n_obs`` nuclei drawn at random with ``RANDOM_NUCLEI_SEED``, in order."""
    rng = np.random.default_rng(RANDOM_NUCLEI_SEED)
    return np.sort(rng.choice(n_obs, n_nuclei, replace=False))


def nuclei_subset(rna, atac, keep: np.ndarray):
    """The nuclei ``keep`` of both modalities, the peaks open in none of them left out.

    Returns the RNA and ATAC AnnData views and the genes × peaks prior
    ``rna.varm["gene_region"]`` over the kept peaks (CSR, float32).
    """
    from scipy import sparse

    open_peaks = np.asarray((atac.X[keep] > 0).sum(0)).ravel() > 0
    prior = sparse.csr_matrix(rna.varm["gene_region"], dtype=np.float32)[:, open_peaks]
    return rna[keep], atac[keep][:, open_peaks], prior


def run_scdart(rna, atac, kwargs: dict, threads: int) -> dict:
    """scx.tl.scdart; returns the embeddings, the kNN-transferred labels and the gene activity."""
    _quiet(threads)
    import mudata

    import scx
    from scx._neighbors import knn_transfer

    if kwargs.pop("reference", False):
        kwargs = {**scx.scdart.REFERENCE_SETTINGS, **kwargs}
    mdata = mudata.MuData({"rna": rna, "atac": atac})
    model = scx.tl.scdart(
        mdata, prior="gene_region", trainer_kwargs={"enable_progress_bar": False}, **kwargs
    )
    weights = np.abs(model.get_peak_gene_weights(linked_only=False))
    linked = np.abs(model.get_peak_gene_weights().data)
    z_rna, z_atac = mdata["rna"].obsm["X_scdart"], mdata["atac"].obsm["X_scdart"]
    labels = rna.obs["cell_type"].astype(str).to_numpy()
    return {
        "z_rna": z_rna,
        "z_atac": z_atac,
        "z_rna_raw": mdata["rna"].obsm["X_scdart_raw"],
        "z_atac_raw": mdata["atac"].obsm["X_scdart_raw"],
        "labels": knn_transfer(z_rna, labels, z_atac, n_neighbors=30)[0],
        "gene_activity": model.get_gene_activity().to_numpy(),
        "epochs": len(model.history_["loss_train"]),
        "on_link_mass": float(linked.sum() / weights.sum()),
        # each ATAC cell's candidate RNA partners (row indices, −1: none), or None
        "partners": None if model.candidate_pairs_ is None else model._pairs_cache[1].partners,
        "partner_weights": None
        if model.candidate_pairs_ is None
        else model._pairs_cache[1].weights,
        "history": {k: v.iloc[:, 0].astype(float).tolist() for k, v in model.history_.items()},
    }


def run_cca(rna, atac, prior, threads: int) -> dict:
    """CCA between log-normalised RNA and prior-based gene activity (ATAC × prior)."""
    _quiet(threads)
    from _baselines import cca_embeddings
    from scx._neighbors import knn_transfer

    binary = (atac.X > 0).astype(np.float32)
    activity = binary @ prior.T
    keep = np.asarray(activity.sum(0)).ravel() > 0
    u, v = cca_embeddings(rna.X[:, keep], activity[:, keep], 30)
    labels = rna.obs["cell_type"].astype(str).to_numpy()
    return {"z_rna": u, "z_atac": v, "labels": knn_transfer(u, labels, v, n_neighbors=30)[0]}


def run_scjoint(rna, atac, annotation: str, threads: int) -> dict:
    """scx.tl.scjoint with its defaults (gene activity from the annotation)."""
    _quiet(threads)
    import mudata

    import scx

    rna = rna.copy()
    del rna.varm["gene_region"]
    mdata = mudata.MuData({"rna": rna, "atac": atac})
    scx.tl.scjoint(
        mdata,
        labels_key="cell_type",
        annotation=annotation,
        trainer_kwargs={"enable_progress_bar": False},
    )
    return {
        "z_rna": mdata["rna"].obsm["X_scjoint"],
        "z_atac": mdata["atac"].obsm["X_scjoint"],
        "labels": mdata["atac"].obs["scjoint_label"].astype(str).to_numpy(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="default: scDART's (≈ 2,000 steps)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--scdart-variants",
        default=",".join(SCDART_VARIANTS),
        help=f"comma-separated subset of {', '.join(SCDART_VARIANTS)}",
    )
    parser.add_argument(
        "--cell-types",
        nargs="+",
        default=None,
        help="keep only the nuclei of these cell_type values, e.g. the excitatory neurons "
        "'L2/3 L4/5 L6' (a continuum across the cortical layers); peaks open in none of them "
        "are left out with their prior links",
    )
    parser.add_argument(
        "--nuclei",
        type=int,
        default=None,
        help="keep this many nuclei drawn at random (the same for every --seed; 2000 gives the "
        "peer harness's case mop_2k), the peaks open in none of them left out",
    )
    parser.add_argument(
        "--labels",
        default="cell_type",
        choices=("cell_type", "cell_type_fine"),
        help="the labels transferred from RNA to ATAC and scored",
    )
    parser.add_argument("--skip-scjoint", action="store_true")
    parser.add_argument("--skip-cca", action="store_true")
    args = parser.parse_args()
    if args.nuclei is not None and args.cell_types is not None:
        parser.error("pass --nuclei or --cell-types, not both")
    _quiet(args.threads)
    import mudata

    import scx

    data = find_data_dir()
    mdata = mudata.read_h5mu(data / "mop_snareseq2" / "mop_snareseq2.h5mu")
    # the same nuclei in the same order in both modalities
    rna_all, atac_all, subset_prior = mdata["rna"], mdata["atac"], None
    subset = "all nuclei"
    if args.cell_types is not None:
        keep = cell_type_mask(rna_all.obs, args.cell_types)
        rna_all, atac_all, subset_prior = nuclei_subset(rna_all, atac_all, keep)
        subset = f"cell types {', '.join(args.cell_types)}"
    if args.nuclei is not None:
        if not 0 < args.nuclei <= rna_all.n_obs:
            parser.error(f"--nuclei must be between 1 and {rna_all.n_obs}, got {args.nuclei}")
        keep = random_nuclei(rna_all.n_obs, args.nuclei)
        rna_all, atac_all, subset_prior = nuclei_subset(rna_all, atac_all, keep)
        subset = f"{args.nuclei:,} random nuclei"
    rna = rna_all.copy()
    if subset_prior is not None:
        rna.varm["gene_region"] = subset_prior
    # the scored labels travel as "cell_type" through every method
    rna.obs = pd.DataFrame({"cell_type": rna_all.obs[args.labels]}, index=rna.obs_names)
    rna.obs_names = [f"rna_{i}" for i in range(rna.n_obs)]
    perm = np.random.default_rng(args.seed).permutation(rna.n_obs)
    atac = atac_all[perm].copy()
    truth = atac.obs[args.labels].astype(str).to_numpy()
    atac.obs = pd.DataFrame(index=[f"atac_{i}" for i in range(atac.n_obs)])
    prior = rna.varm["gene_region"].tocsr()
    # partner of ATAC cell j is RNA cell perm[j]
    measured = log_normalised(rna_all.X)[perm]
    # genes measured in at least 5 % of the nuclei: the rest are nearly constant zeros
    detected = (measured > 0).mean(0) >= 0.05
    reference_labels = set(rna.obs["cell_type"].astype(str))
    print(
        f"MOp SNARE-seq2 ({subset}; labels {args.labels}): {rna.n_obs} RNA × {rna.n_vars} "
        f"genes, {atac.n_obs} ATAC × {atac.n_vars} peaks, {prior.nnz} prior links; pairing "
        f"hidden; torch threads {args.threads}."
    )
    rows: dict[str, dict] = {}

    def record(name: str, run: dict) -> dict:
        res = run["result"]
        z_rna = res["z_rna"][perm]
        scores = scx.metrics.label_transfer_accuracy(
            truth, res["labels"], reference_labels=reference_labels
        )
        row = {
            "FOSCTTM": scx.metrics.foscttm(z_rna, res["z_atac"]),
            "label_acc": scores["accuracy"],
            "macro_f1": scores["macro_f1"],
            "time_s": run["time_s"],
            "peak_mb": run["peak_mb"],
        }
        if "z_rna_raw" in res:
            row["FOSCTTM_raw"] = scx.metrics.foscttm(res["z_rna_raw"][perm], res["z_atac_raw"])
        if res.get("partners") is not None:
            atac_index, slot = np.nonzero(res["partners"] >= 0)
            rna_types = rna.obs["cell_type"].astype(str).to_numpy()
            partner_types = rna_types[res["partners"][atac_index, slot]]
            same = partner_types == truth[atac_index]
            row["pairs_same_type"] = float(same.mean())
            if res.get("partner_weights") is not None:
                weights = res["partner_weights"][atac_index, slot]
                row["pairs_same_type_weighted"] = float((same * weights).sum() / weights.sum())
            row["pairs_true_partner"] = float(
                (res["partners"][atac_index, slot] == perm[atac_index]).mean()
            )
        if "gene_activity" in res:
            r = per_gene_pearson(res["gene_activity"].astype(np.float64), measured)
            row["gene_r_median"] = float(np.nanmedian(r))
            row["gene_r_median_detected"] = float(np.nanmedian(r[detected]))
            row["gene_r_mean"] = float(np.nanmean(r))
            row["epochs"] = res["epochs"]
            row["on_link_mass"] = res["on_link_mass"]
        rows[name] = row
        print(f"  {name:<40} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
        return res

    linear = np.asarray(((atac.X > 0).astype(np.float32) @ prior.T).todense(), dtype=np.float64)
    r_lin = per_gene_pearson(linear, measured)
    r_lin_log = per_gene_pearson(np.log1p(linear), measured)
    print(
        f"  linear prior baseline (binary ATAC × prior): per-gene Pearson median "
        f"{np.nanmedian(r_lin):.3f}, mean {np.nanmean(r_lin):.3f}; log1p: median "
        f"{np.nanmedian(r_lin_log):.3f}, mean {np.nanmean(r_lin_log):.3f}",
        flush=True,
    )
    # how well each modality's own diffusion-step embedding separates the types (true labels)
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    from scx.scdart import diffusion_embeddings

    rna_emb, atac_emb = diffusion_embeddings(
        rna.X, rna.var_names, atac.X, atac.var_names, n_pcs=30, seed=args.seed
    )
    own = {
        "RNA PCA (30)": (rna_emb, rna.obs["cell_type"].astype(str).to_numpy()),
        "ATAC LSI (30)": (atac_emb, truth),
    }
    for name, (embedding, labels) in own.items():
        accuracy = cross_val_score(KNeighborsClassifier(30), embedding, labels, cv=5).mean()
        print(f"  {name}: 5-fold 30-NN accuracy of the true labels {accuracy:.3f}", flush=True)
    base = {"max_epochs": args.max_epochs, "seed": args.seed}
    print("\nRunning (each method in its own process):", flush=True)
    variants = [name.strip() for name in args.scdart_variants.split(",") if name.strip()]
    unknown = set(variants) - set(SCDART_VARIANTS)
    if unknown:
        parser.error(f"unknown --scdart-variants {sorted(unknown)}; choose from {SCDART_VARIANTS}")
    for name in variants:
        label, kwargs = SCDART_VARIANTS[name]
        res = record(
            f"{label} ({args.max_epochs or 'default'} epochs)",
            run_isolated(run_scdart, rna, atac, {**base, **kwargs}, args.threads),
        )
        print(
            "  history (first/last epoch):",
            {k: (round(v[0], 4), round(v[-1], 4)) for k, v in res["history"].items()},
            flush=True,
        )
    if not args.skip_cca:
        record(
            "CCA on prior gene activity (30)", run_isolated(run_cca, rna, atac, prior, args.threads)
        )
    if not args.skip_scjoint:
        record(
            "scJoint scx defaults",
            run_isolated(run_scjoint, rna, atac, str(data / ANNOTATION), args.threads),
        )
    rows["linear prior (ATAC × prior)"] = {
        "gene_r_median": float(np.nanmedian(r_lin)),
        "gene_r_mean": float(np.nanmean(r_lin)),
        "gene_r_median_detected": float(np.nanmedian(r_lin[detected])),
        "on_link_mass": 1.0,
    }
    print_table(
        pd.DataFrame(rows).T,
        f"MOp SNARE-seq2 ({subset}), pairing hidden ({len(truth)} cells per modality); "
        "time and peak memory per method process",
    )


if __name__ == "__main__":
    main()
