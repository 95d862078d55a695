"""scMODAL on CITE-seq RNA + 10 ADT treated as unpaired, side by side with its peers.

Data: ``cite_pbmc_inhouse`` (``$SCX_DATA_DIR``): 1,372 PBMC, RNA (33,538 genes) and 10 ADT,
7 labels (190 "unknown"). The cells are renamed per modality so nothing can use the pairing;
the hidden pairing only scores. Links: the 10 protein → gene pairs of the data README.

Scores:

* ``foscttm``: fraction of cells closer than the true partner (both directions averaged; lower
  is better, random 0.5);
* ``acc_k20`` / ``acc_1nn`` / ``f1_k20``: kNN label transfer RNA → protein in the shared space
  (k = 20 as Portal's notebooks, and 1-NN as scMODAL's tutorial), cells labelled "unknown"
  excluded from reference and query;
* ``pearson_mean`` and one column per marker: Pearson correlation, over cells, of the
  predicted protein of each RNA cell and its measured protein (log1p of ADT counts normalised
  to the common linked library size, the model's own input scale);
* ``pearson_knn30``: the same for one imputation applied to every method's shared space, the
  mean measured protein of each RNA cell's 30 nearest protein cells (what
  ``scx.tl.impute``'s default does in scMODAL's latent), so the spaces compare on equal terms;
  ``pearson_generator``: scMODAL's generator (``strategy="generator"``, the reference's).

Peers, all in this run and each in its own process (time and peak memory are its own):

* ``linked``: the 10 linked genes (log-normalised, z-scored) against the 10 ADT (same) as the
  shared space; the linked gene's expression as the protein prediction;
* ``linked_smooth15``: the same with every cell's linked genes averaged over its 15 nearest RNA
  neighbours (30-PC RNA PCA);
* ``portal``: scx Portal (``scx.tl.portal``, ``use_rep``) on the z-scored linked features of
  both modalities, the shared space it can use; prediction = RNA cells translated into the
  protein dataset's space (``get_translated``);
* ``scmodal``: ``scx.tl.scmodal`` from counts with default settings except ``max_steps``;
  prediction = ``scx.tl.impute(..., to="obsm")`` (its default, the kNN average);
  ``--score-anchors off on`` adds the run with ``score_anchors=True`` beside it.

Run: ``python benchmarks/scmodal_cite.py [--steps 2000] [--seeds 0 1] [--threads 2]
[--matmul-precision medium] [--trainer-precision 32-true] [--score-anchors off on]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import warnings

import numpy as np
import pandas as pd

from _common import add_anchor_variants, anchor_variants, find_data_dir, print_table, run_isolated

LINKS = {
    "CD3": "CD3E",
    "CD56": "NCAM1",
    "CD11c": "ITGAX",
    "CD8a": "CD8A",
    "CD16": "FCGR3A",
    "CD127": "IL7R",
    "CD154": "CD40LG",
    "CD4": "CD4",
    "CD19": "CD19",
    "CD14": "CD14",
}
EXCLUDE = "unknown"
#: How the parent process hands ``--matmul-precision`` to the runs (each in its own process).
PRECISION_ENV = "SCX_BENCH_MATMUL_PRECISION"
#: How it hands ``--trainer-precision`` to the scMODAL runs ("" or unset: scx's default).
TRAINER_PRECISION_ENV = "SCX_BENCH_TRAINER_PRECISION"
QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


def _quiet() -> None:
    import torch

    import scx

    # on a shared 2-core machine, two spinning intra-op threads per process are much slower
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    scx.settings.matmul_precision = os.environ.get(PRECISION_ENV) or None
    warnings.simplefilter("ignore")
    for name in ("lightning", "lightning.pytorch", "scvi", "scx"):
        logging.getLogger(name).setLevel(logging.ERROR)


def load(data_dir):
    """Unpaired MuData (cells renamed per modality), labels and measured protein (log scale)."""
    import mudata as md

    from scx.scmodal import MIN_LINKED_TARGET

    mdata = md.read_h5mu(f"{data_dir}/cite_pbmc_inhouse/cite_pbmc_inhouse.h5mu")
    rna, prot = mdata["rna"].copy(), mdata["prot"].copy()
    labels = rna.obs["cell_type"].astype(str).to_numpy()
    rna.obs_names = [f"rna_{c}" for c in rna.obs_names]
    prot.obs_names = [f"prot_{c}" for c in prot.obs_names]
    # measured protein on the scale scMODAL's preprocessing gives it
    genes = rna[:, list(LINKS.values())].X
    target = max(float(np.median(np.asarray(genes.sum(axis=1)).ravel())), MIN_LINKED_TARGET)
    measured = pd.DataFrame(
        _normalize_log(prot.X, target).toarray(), index=prot.obs_names, columns=prot.var_names
    )
    return md.MuData({"rna": rna, "prot": prot}), labels, measured, target


def _normalize_log(X, target_sum: float):
    """Library-size normalisation of a count block to ``target_sum`` and log1p (sparse)."""
    from scipy import sparse

    from scx.pp import log_normalize

    return log_normalize(sparse.csr_matrix(X, dtype=np.float32), target_sum)


def scores(z_rna, z_prot, labels, prediction, measured) -> dict:
    """FOSCTTM, label transfer RNA → protein and per-marker Pearson of the prediction."""
    import scx
    from scx._neighbors import knn_average, knn_transfer

    out = {"foscttm": scx.metrics.foscttm(z_rna, z_prot)}
    keep = labels != EXCLUDE
    for k, name in [(20, "k20"), (1, "1nn")]:
        pred, _, _ = knn_transfer(z_rna[keep], labels[keep], z_prot, n_neighbors=k)
        result = scx.metrics.label_transfer_accuracy(
            labels, pred, reference_labels=labels[keep], exclude=[EXCLUDE]
        )
        out[f"acc_{name}"] = result["accuracy"]
        if k == 20:
            out["f1_k20"] = result["macro_f1"]
    if prediction is not None:
        r = _pearson(prediction, measured)
        out["pearson_mean"] = float(np.mean(list(r.values())))
        out.update(r)
    averaged = knn_average(z_prot, measured.to_numpy(), z_rna, n_neighbors=30)
    r = _pearson(pd.DataFrame(averaged, columns=measured.columns), measured)
    out["pearson_knn30"] = float(np.mean(list(r.values())))
    return out


def _pearson(prediction: pd.DataFrame, measured: pd.DataFrame) -> dict:
    """Per marker, the Pearson correlation over cells of prediction and measurement."""
    return {
        p: float(np.corrcoef(prediction[p].to_numpy(), measured[p].to_numpy())[0, 1])
        for p in measured.columns
    }


def _linked_blocks(mdata, target):
    """Log-normalised linked genes (RNA cells) and ADT (protein cells), same protein order."""
    proteins = list(LINKS)
    genes = mdata["rna"][:, [LINKS[p] for p in proteins]].X
    rna_linked = _normalize_log(genes, target).toarray()
    prot_linked = _normalize_log(mdata["prot"][:, proteins].X, target).toarray()
    return proteins, rna_linked, prot_linked


def _zscore(x):
    return (x - x.mean(0)) / np.maximum(x.std(0), 1e-8)


def run_linked(data_dir, smooth: int) -> dict:
    _quiet()
    import scanpy as sc

    from scx._neighbors import knn

    mdata, labels, measured, target = load(data_dir)
    proteins, rna_linked, prot_linked = _linked_blocks(mdata, target)
    if smooth:
        rna = mdata["rna"].copy()
        sc.pp.normalize_total(rna)
        sc.pp.log1p(rna)
        sc.pp.highly_variable_genes(rna, n_top_genes=2000)
        sc.pp.pca(rna, n_comps=30, mask_var="highly_variable", random_state=0)
        index, _ = knn(rna.obsm["X_pca"], rna.obsm["X_pca"], smooth)
        rna_linked = rna_linked[index].mean(axis=1)
    prediction = pd.DataFrame(rna_linked, columns=proteins)
    prediction = prediction[measured.columns]
    return scores(
        _zscore(rna_linked),
        _zscore(prot_linked),
        labels,
        prediction,
        measured.reset_index(drop=True),
    )


def run_portal(data_dir, seed: int) -> dict:
    _quiet()
    import anndata as ad

    import scx

    mdata, labels, measured, target = load(data_dir)
    proteins, rna_linked, prot_linked = _linked_blocks(mdata, target)
    n = rna_linked.shape[0]
    adata = ad.AnnData(
        X=np.zeros((2 * n, 1), dtype=np.float32),
        obs=pd.DataFrame(
            {"dataset": pd.Categorical(["rna"] * n + ["prot"] * n)},
            index=[f"c{i}" for i in range(2 * n)],
        ),
    )
    adata.obsm["X_linked"] = np.vstack([_zscore(rna_linked), _zscore(prot_linked)]).astype(
        np.float32
    )
    model = scx.tl.portal(
        adata,
        batch_key="dataset",
        reference="prot",
        use_rep="X_linked",
        seed=seed,
        trainer_kwargs=QUIET,
    )
    z = adata.obsm["X_portal"]
    prediction = pd.DataFrame(model.get_translated("rna", "prot"), columns=proteins)
    prediction = prediction[measured.columns]
    return scores(z[:n], z[n:], labels, prediction, measured.reset_index(drop=True))


def run_scmodal(data_dir, seed: int, steps: int, score_anchors: bool = False) -> dict:
    _quiet()
    import scx

    mdata, labels, measured, _ = load(data_dir)
    precision = os.environ.get(TRAINER_PRECISION_ENV)
    model = scx.tl.scmodal(
        mdata,
        modalities=("rna", "prot"),
        links=LINKS,
        max_steps=steps,
        score_anchors=score_anchors,
        seed=seed,
        trainer_kwargs={**QUIET, **({"precision": precision} if precision else {})},
    )
    scx.tl.impute(mdata, model, source="rna", target="prot", to="obsm")
    prediction = mdata["rna"].obsm["scmodal_prot"]
    measured = measured.reset_index(drop=True)
    out = scores(
        mdata["rna"].obsm["X_scmodal"],
        mdata["prot"].obsm["X_scmodal"],
        labels,
        prediction[measured.columns].reset_index(drop=True),
        measured,
    )
    generator = model.get_imputed("rna", "prot", strategy="generator")
    r = _pearson(generator[measured.columns].reset_index(drop=True), measured)
    out["pearson_generator"] = float(np.mean(list(r.values())))
    out["precision"] = str(model.trainer.precision)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="scMODAL training steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--skip", nargs="*", default=[], help="peers to leave out")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument(
        "--matmul-precision",
        choices=["highest", "high", "medium"],
        default="highest",
        help="scx.settings.matmul_precision of the scx runs",
    )
    parser.add_argument(
        "--trainer-precision",
        choices=["default", "32-true", "bf16-mixed"],
        default="default",
        help="Lightning precision of the scMODAL runs (default: scx's, bf16-mixed on CPUs "
        "with bfloat16 units, else 32-true)",
    )
    add_anchor_variants(parser)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ[PRECISION_ENV] = args.matmul_precision
    os.environ[TRAINER_PRECISION_ENV] = (
        "" if args.trainer_precision == "default" else args.trainer_precision
    )
    print(
        f"torch threads per run: {args.threads}; matmul precision: {args.matmul_precision}; "
        f"scMODAL trainer precision: {args.trainer_precision} (each run prints the one it used)"
    )
    data_dir = find_data_dir()
    runs = {
        "linked": (run_linked, (data_dir, 0)),
        "linked_smooth15": (run_linked, (data_dir, 15)),
    }
    for seed in args.seeds:
        runs[f"portal (seed {seed})"] = (run_portal, (data_dir, seed))
        for label, score_anchors in anchor_variants(args):
            runs[f"scmodal{label} {args.steps} steps (seed {seed})"] = (
                run_scmodal,
                (data_dir, seed, args.steps, score_anchors),
            )
    rows = {}
    for name, (fn, fn_args) in runs.items():
        if any(name.startswith(s) for s in args.skip):
            continue
        out = run_isolated(fn, *fn_args)
        precision = out["result"].pop("precision", None)
        rows[name] = {**out["result"], "time_s": out["time_s"], "peak_mb": out["peak_mb"]}
        trained_in = f" [trainer precision {precision}]" if precision else ""
        print(name + trained_in, {k: round(v, 3) for k, v in rows[name].items()}, flush=True)
    table = pd.DataFrame(rows).T
    main_cols = ["foscttm", "acc_k20", "acc_1nn", "f1_k20", "pearson_mean", "pearson_knn30"]
    main_cols += ["pearson_generator", "time_s", "peak_mb"]
    print_table(
        table.reindex(columns=main_cols), "cite_pbmc_inhouse: RNA ↔ 10 ADT, unpaired (2-core CPU)"
    )
    print_table(table[list(LINKS)], "Pearson of predicted vs measured protein, per marker")


if __name__ == "__main__":
    main()
