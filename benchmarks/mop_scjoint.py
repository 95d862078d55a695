"""scJoint label transfer on MOp SNARE-seq2, side by side with its peers.

The paired cells are split at random (seed 0) into two disjoint halves: the RNA half keeps its
labels, the ATAC half is the unlabelled query (its labels only score). Every method runs in its
own process, so its wall time and peak memory are its own.

Methods
-------
* scx scJoint with scx defaults, and with the reference settings
  (``scx.scjoint.REFERENCE_SETTINGS``), over several seeds; ablations that add one scx
  improvement at a time to the reference; the reference's own MOp configuration.
* CCA (Seurat v3 style, 30 components) on log-normalised, scaled RNA and gene activity, then
  the same kNN transfer (k = 30).
* scANVI (scvi-tools) trained on RNA + gene activity with modality as batch.
* ATAC-only supervised reference: logistic regression on ATAC LSI with the (normally hidden)
  ATAC labels, 5-fold cross-validated; with ``--splits`` also on the LSI plus 50 components
  of the gene activity (what the transfers read of the ATAC).

Gene activity comes from ``scx.pp.gene_activity`` (gene body + 2 kb upstream, mm10 table).

Run: ``python benchmarks/mop_scjoint.py`` (split 0: configurations and seeds, about 15 minutes
on 2 CPU cores) or ``python benchmarks/mop_scjoint.py --splits 0 1 2 3 4`` (every method on
five random splits, mean ± sd and the paired scJoint − CCA difference). With ``--splits``,
``--cell-types L2/3 L4/5 L6 --labels cell_type_fine`` keeps only the excitatory neurons and
transfers their 12 fine types (a second pairing from the same data), and
``--scjoint-variants p=1.0 center_weight=0`` adds one scJoint row per setting (scx defaults
otherwise; values are JSON), each paired with the defaults over the splits, and
``--scjoint-seeds 5`` trains every scJoint row with five seeds per split (split + 100 · r) and
scores the split by their mean, so that a row is not one lucky seed per split.
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings

import numpy as np
import pandas as pd

from _common import cell_type_mask, find_data_dir, print_table, run_isolated

ANNOTATION = "annotations/genes_mm10_GRCm38_ensembl_MAESTRO.tsv.gz"


def _quiet() -> None:
    warnings.simplefilter("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    import mudata

    mudata.set_options(pull_on_update=False)


# ---------------------------------------------------------------------------- methods
def run_scjoint(rna, atac_peaks, annotation: str | None, kwargs: dict) -> np.ndarray:
    """scx.tl.scjoint from raw RNA counts and ATAC peaks (gene activity computed inside).

    With ``annotation=None`` the ATAC modality must already be gene-level.
    """
    _quiet()
    import mudata

    import scx

    mdata = mudata.MuData({"rna": rna, "atac": atac_peaks})
    scx.tl.scjoint(
        mdata,
        labels_key="cell_type",
        annotation=annotation,
        trainer_kwargs={"enable_progress_bar": False},
        **kwargs,
    )
    return mdata["atac"].obs["scjoint_label"].astype(str).to_numpy()


def run_cca(rna, gene_activity, n_components: int = 30, n_neighbors: int = 30) -> np.ndarray:
    """CCA embeddings of both halves, then kNN transfer of the RNA labels."""
    _quiet()
    from _baselines import cca_embeddings
    from scx._neighbors import knn_transfer

    keep = np.asarray(gene_activity.X.sum(axis=0)).ravel() > 0
    u, v = cca_embeddings(rna.X[:, keep], gene_activity.X[:, keep], n_components)
    labels = rna.obs["cell_type"].astype(str).to_numpy()
    return knn_transfer(u, labels, v, n_neighbors=n_neighbors)[0]


def run_scanvi(rna, gene_activity, seed: int = 0) -> np.ndarray:
    """scANVI on RNA + gene activity counts (modality as batch), predicting the ATAC cells."""
    _quiet()
    import anndata as ad
    import scvi

    scvi.settings.seed = seed
    rna = rna.copy()
    activity = gene_activity[:, rna.var_names].copy()
    rna.obs = pd.DataFrame({"label": rna.obs["cell_type"].astype(str)}, index=rna.obs_names)
    activity.obs = pd.DataFrame({"label": "Unknown"}, index=activity.obs_names)
    adata = ad.concat({"rna": rna, "atac": activity}, label="modality")
    adata.layers["counts"] = adata.X.copy()
    scvi.model.SCVI.setup_anndata(adata, layer="counts", batch_key="modality")
    vae = scvi.model.SCVI(adata, n_latent=30)
    vae.train(enable_progress_bar=False)  # scvi's default number of epochs for this size
    scanvi = scvi.model.SCANVI.from_scvi_model(
        vae, unlabeled_category="Unknown", labels_key="label"
    )
    scanvi.train(max_epochs=20, n_samples_per_label=100, enable_progress_bar=False)
    prediction = scanvi.predict(adata)
    return np.asarray(prediction)[(adata.obs["modality"] == "atac").to_numpy()]


def atac_lsi(atac_peaks, seed: int = 0, n_components: int = 50) -> np.ndarray:
    """Standardised LSI (TF-IDF, SVD) of the binarised peaks without its first (depth) component."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfTransformer

    binary = (atac_peaks.X > 0).astype(np.float32)
    tfidf = TfidfTransformer(norm="l2", sublinear_tf=True).fit_transform(binary)
    lsi = TruncatedSVD(n_components + 1, random_state=seed).fit_transform(tfidf)[:, 1:]
    return (lsi - lsi.mean(0)) / lsi.std(0)


def run_atac_supervised(
    atac_peaks, truth: np.ndarray, seed: int = 0, gene_activity=None, n_components: int = 50
) -> np.ndarray:
    """Cross-validated logistic regression on ATAC LSI with the ATAC labels (upper reference).

    With ``gene_activity`` the features also hold its ``n_components`` leading components
    (log-normalised, truncated SVD, standardised): what the transfers read of the ATAC.
    """
    _quiet()
    from sklearn.decomposition import TruncatedSVD
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    lsi = atac_lsi(atac_peaks, seed)
    if gene_activity is not None:
        import scx  # only here: importing it (and torch) would count in the LSI row's cost

        svd = TruncatedSVD(n_components, random_state=seed)
        activity = svd.fit_transform(scx.pp.log_normalize(gene_activity.X))
        activity = (activity - activity.mean(0)) / activity.std(0)
        lsi = np.hstack([lsi, activity])
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    classifier = LogisticRegression(max_iter=2000)
    return cross_val_predict(classifier, lsi, truth, cv=folds)


# ---------------------------------------------------------------------------- main
def load_mop():
    """The MOp SNARE-seq2 MuData and the path of the mm10 gene annotation."""
    import mudata

    data = find_data_dir()
    mdata = mudata.read_h5mu(data / "mop_snareseq2" / "mop_snareseq2.h5mu")
    return mdata, str(data / ANNOTATION)


def split_halves(mdata, annotation: str, split: int):
    """RNA half (labelled), ATAC half (labels hidden), its gene activity and the hidden truth."""
    import scx

    rng = np.random.default_rng(split)
    perm = rng.permutation(mdata.n_obs)
    half = mdata.n_obs // 2
    rna_idx, atac_idx = np.sort(perm[:half]), np.sort(perm[half:])
    rna = mdata["rna"][rna_idx].copy()
    if "gene_region" in rna.varm:
        del rna.varm["gene_region"]
    rna.obs = rna.obs[["cell_type"]]
    atac = mdata["atac"][atac_idx].copy()
    truth = atac.obs["cell_type"].astype(str).to_numpy()
    atac.obs = pd.DataFrame(index=atac.obs_names)  # labels hidden from every method
    activity = scx.pp.gene_activity(atac, annotation, genes=rna.var_names)
    return rna, atac, activity, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--splits",
        type=int,
        nargs="+",
        default=None,
        help="random RNA/ATAC splits: scJoint (defaults and reference settings, seed = split), "
        "CCA and the ATAC-only ceiling on each, then mean ± sd over splits (no ablations)",
    )
    parser.add_argument("--skip-scanvi", action="store_true")
    parser.add_argument(
        "--cell-types",
        nargs="+",
        default=None,
        help="keep only the nuclei of these cell_type values, e.g. the excitatory neurons "
        "L2/3 L4/5 L6 (with --splits)",
    )
    parser.add_argument(
        "--labels",
        default="cell_type",
        help="the labels transferred and scored, e.g. cell_type_fine (with --splits)",
    )
    parser.add_argument(
        "--scjoint-variants",
        nargs="+",
        default=[],
        metavar="SETTING=VALUE",
        help="with --splits: one extra scJoint row per setting, e.g. p=1.0 (JSON values)",
    )
    parser.add_argument(
        "--scjoint-seeds",
        type=int,
        default=1,
        help="with --splits: scJoint seeds per split (split + 100 * r); a split's score is "
        "their mean",
    )
    args = parser.parse_args()
    variants = {}
    for spec in args.scjoint_variants:
        name, _, value = spec.partition("=")
        try:
            variants[f"scJoint {spec}"] = {name: json.loads(value)}
        except json.JSONDecodeError:
            parser.error(f"--scjoint-variants {spec!r}: the value must be JSON, e.g. p=1.0")
    if (variants or args.scjoint_seeds != 1) and args.splits is None:
        parser.error("--scjoint-variants and --scjoint-seeds need --splits")
    if args.scjoint_seeds < 1:
        parser.error("--scjoint-seeds must be a positive integer")
    _quiet()
    mdata, annotation = load_mop()
    if args.splits is not None:
        mdata, description = select_nuclei(mdata, args.cell_types, args.labels)
        over_splits(mdata, annotation, args.splits, description, variants, args.scjoint_seeds)
        return
    if args.cell_types is not None or args.labels != "cell_type":
        parser.error("--cell-types and --labels apply to --splits only")
    ablations(mdata, annotation, args)


def _scores(truth, result, reference_labels) -> dict:
    import scx

    scores = scx.metrics.label_transfer_accuracy(truth, result, reference_labels=reference_labels)
    return {
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "balanced_acc": scores["balanced_accuracy"],
    }


def select_nuclei(mdata, cell_types: list[str] | None, labels: str):
    """The nuclei of ``cell_types`` (all: ``None``), with ``labels`` as their ``cell_type``."""
    import mudata

    obs = mdata["rna"].obs
    if labels not in obs:
        raise SystemExit(f"--labels {labels!r} is not a column of the RNA obs: {list(obs)}")
    keep = cell_type_mask(obs, cell_types)
    description = "all nuclei" if cell_types is None else f"cell types {', '.join(cell_types)}"
    modalities = {}
    for m in ("rna", "atac"):
        adata = mdata[m][keep].copy()
        adata.obs["cell_type"] = adata.obs[labels].astype(str).to_numpy()
        modalities[m] = adata
    return mudata.MuData(modalities), f"{description}; labels {labels}"


def over_splits(
    mdata,
    annotation: str,
    splits: list[int],
    description: str = "all nuclei",
    variants: dict[str, dict] | None = None,
    scjoint_seeds: int = 1,
) -> None:
    """Every method on each random split; mean ± sd over splits (the honest comparison).

    ``variants`` maps a row name to scJoint settings that replace the defaults; each row is
    also compared with the defaults split by split. Each scJoint row trains with
    ``scjoint_seeds`` seeds per split (split + 100 · r); the split scores their mean.
    """
    from scx.scjoint import REFERENCE_SETTINGS

    def scjoint_with(settings: dict):
        def run(rna, atac, activity, truth, split):
            seeds = [split + 100 * r for r in range(scjoint_seeds)]
            runs = [
                run_isolated(run_scjoint, rna, atac, annotation, {**settings, "seed": seed})
                for seed in seeds
            ]
            return {"runs": runs}

        return run

    variants = variants or {}
    methods = {
        "scJoint scx defaults": scjoint_with({}),
        "scJoint reference settings": scjoint_with(dict(REFERENCE_SETTINGS)),
        "CCA (30 comps) + kNN(30)": lambda rna, atac, activity, truth, split: run_isolated(
            run_cca, rna, activity
        ),
        "ATAC-only supervised LR on LSI (5-fold CV, ceiling)": (
            lambda rna, atac, activity, truth, split: run_isolated(
                run_atac_supervised, atac, truth, split
            )
        ),
        "ATAC-only supervised LR on LSI + gene activity (5-fold CV, ceiling)": (
            lambda rna, atac, activity, truth, split: run_isolated(
                run_atac_supervised, atac, truth, split, activity
            )
        ),
        **{name: scjoint_with(settings) for name, settings in variants.items()},
    }
    rows = []
    for split in splits:
        rna, atac, activity, truth = split_halves(mdata, annotation, split)
        reference_labels = set(rna.obs["cell_type"].astype(str))
        print(f"split {split}: {rna.n_obs} RNA / {atac.n_obs} ATAC cells", flush=True)
        for name, method in methods.items():
            run = method(rna, atac, activity, truth, split)
            runs = run.get("runs", [run])
            scores = pd.DataFrame([_scores(truth, r["result"], reference_labels) for r in runs])
            row = {"method": name, "split": split, **scores.mean().to_dict()}
            row.update(
                time_s=np.mean([r["time_s"] for r in runs]),
                delta_mb=np.mean([r["delta_mb"] for r in runs]),
            )
            rows.append(row)
            spread = ""
            if len(runs) > 1:
                spread = (
                    f"  (mean of {len(runs)} seeds; seed sd {scores['accuracy'].std():.3f} / "
                    f"{scores['macro_f1'].std():.3f})"
                )
            print(
                f"  {name:<52} acc {row['accuracy']:.3f}  macro-F1 {row['macro_f1']:.3f}{spread}",
                flush=True,
            )
    frame = pd.DataFrame(rows)
    summary = frame.drop(columns="split").groupby("method", sort=False).agg(["mean", "std"])
    print_table(
        summary,
        f"RNA → ATAC label transfer on MOp ({description}) over {len(splits)} random splits"
        + (
            f", scJoint rows the mean of {scjoint_seeds} seeds per split"
            if scjoint_seeds > 1
            else ""
        ),
    )
    wins = frame.pivot(index="split", columns="method", values=["accuracy", "macro_f1"])
    pairs = [("scJoint scx defaults", "CCA (30 comps) + kNN(30)")]
    pairs += [(name, "scJoint scx defaults") for name in variants]
    for method, baseline in pairs:
        for metric in ("accuracy", "macro_f1"):
            diff = wins[metric][method] - wins[metric][baseline]
            print(
                f"{method} − {baseline}, {metric}: {diff.mean():+.3f} ± {diff.std():.3f} "
                f"(paired over splits; per split {np.round(diff.to_numpy(), 3).tolist()})"
            )


def ablations(mdata, annotation: str, args) -> None:
    """Split 0: scJoint configurations (seeds), CCA, scANVI and the ATAC-only ceiling."""
    from scx.scjoint import REFERENCE_SETTINGS

    rna, atac, activity, truth = split_halves(mdata, annotation, 0)
    reference_labels = set(rna.obs["cell_type"].astype(str))
    print(
        f"MOp SNARE-seq2: {rna.n_obs} RNA cells (labelled) / {atac.n_obs} ATAC cells (query), "
        f"{rna.n_vars} genes, {atac.n_vars} peaks; gene activity: "
        f"{activity.X.nnz / activity.n_obs:.0f} non-zero genes per ATAC cell."
    )

    rows: dict[str, dict] = {}

    def record(name: str, run: dict) -> None:
        rows[name] = {
            **_scores(truth, run["result"], reference_labels),
            "time_s": run["time_s"],
            "peak_mb": run["peak_mb"],
            "delta_mb": run["delta_mb"],
        }
        print(
            f"  {name:<48} acc {rows[name]['accuracy']:.3f}  macro-F1 {rows[name]['macro_f1']:.3f}"
        )

    configurations = {
        "scJoint scx defaults": {},
        "scJoint reference settings": dict(REFERENCE_SETTINGS),
        "scJoint reference + shared PCA input": {**REFERENCE_SETTINGS, "n_pcs": 30},
        "scJoint reference + modality norm": {**REFERENCE_SETTINGS, "modality_norm": True},
        "scJoint defaults, unfiltered pseudo-labels": {"pseudo_label_min_confidence": 0.0},
        "scJoint reference, MOp config (10/10 ep, lr3 1e-3, cw 20)": {
            **REFERENCE_SETTINGS,
            "max_epochs": 10,
            "lr_stage3": 0.001,
            "center_weight": 20.0,
        },
    }
    seeded = {"scJoint scx defaults", "scJoint reference settings"}
    print("\nRunning (each method in its own process):")
    for name, kwargs in configurations.items():
        seeds = args.seeds if name in seeded else args.seeds[:1]
        runs = []
        for seed in seeds:
            run = run_isolated(run_scjoint, rna, atac, annotation, {**kwargs, "seed": seed})
            label = f"{name} (seed {seed})" if len(seeds) > 1 else name
            record(label, run)
            runs.append(rows[label])
        if len(seeds) > 1:
            frame = pd.DataFrame(runs)
            rows[f"{name}: mean of {len(seeds)} seeds"] = frame.mean().to_dict()
            rows[f"{name}: sd"] = frame.std().to_dict()
    record("CCA (30 comps) + kNN(30)", run_isolated(run_cca, rna, activity))
    if not args.skip_scanvi:
        record("scANVI (RNA + gene activity)", run_isolated(run_scanvi, rna, activity))
    record(
        "ATAC-only supervised LR on LSI (5-fold CV)",
        run_isolated(run_atac_supervised, atac, truth),
    )
    table = pd.DataFrame(rows).T
    print_table(
        table,
        f"RNA → ATAC label transfer on MOp ({int((np.isin(truth, list(reference_labels))).sum())} "
        "scored ATAC cells; time and memory per method process)",
    )


if __name__ == "__main__":
    main()
