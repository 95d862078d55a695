"""Portal batch integration on real data, side by side with its peers.

Datasets (``$SCX_DATA_DIR``):

* ``ifnb``: Kang 2018 IFN-β PBMC, 1,000 CTRL + 1,000 STIM cells, 13 cell types;
* ``asap``: PBMC surface proteins (216 ADTs) measured by CITE-seq and by ASAP-seq, 17,055 cells,
  4 coarse types; the technology is the batch.

Every method starts from the same inputs: Portal's preprocessing (:func:`scx.pp.joint_pca`:
highly variable genes per dataset intersected, per-dataset normalise / log1p / standardise,
one 30-component PCA of all cells), except scVI, which models the counts of the same features.
Each method runs in its own process, so its wall time and peak memory are its own.

Methods: unintegrated joint PCA, harmonypy (on the joint PCA), scVI (``batch_key``), the
original Portal (``portal-sc`` from PyPI, run through its own training loop on the joint PCA:
``model.emb_A/emb_B``, ``train()``, ``eval()``), and scx Portal (``scx.tl.portal`` with
``use_rep`` on the same joint PCA): its default (the encoders' and generators' weights averaged
over the steps, ``ema_decay=0.99``), the last step's weights as the original keeps them
(``ema_decay=None``), bfloat16 mixed precision, and the reference's λ_cos search.

Scores: iLISI and kBET (batch mixing), cell-type silhouette (ASW, rescaled) and kNN (k = 20)
label transfer from the first batch to the second (biology); ``batch`` and ``bio`` are the means
of each pair and ``overall`` their mean. A second run removes one lineage from the second batch
and reports, for that lineage's cells in the first batch, the fraction of their 20 nearest
neighbours that are other-batch cells of another type (``heldout_merged``: high means the
method forced a batch-specific population onto something else).

Run: ``python benchmarks/portal_integration.py [--datasets ifnb asap]``
(ifnb about 5 minutes on 2 CPU cores, asap about 15).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings

import numpy as np
import pandas as pd

from _common import find_data_dir, print_table, run_isolated

DATASETS = {
    # name: (file, batch key, label key, lineage removed from the second batch)
    "ifnb": ("ifnb_kang2018_sub/ifnb_sub.h5ad", "batch", "cell_type", ["B", "B Activated"]),
    "asap": (
        "asap_cite_pbmc_protein/asap_cite_pbmc_protein.h5ad",
        "technology",
        "cell_type",
        ["Bcell"],
    ),
}
N_NEIGHBORS = 20


def _quiet() -> None:
    import torch

    # each method runs in its own process with the thread count `main` put in the environment
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    warnings.simplefilter("ignore")
    for name in ("lightning", "lightning.pytorch", "scvi", "scx"):
        logging.getLogger(name).setLevel(logging.ERROR)


# ---------------------------------------------------------------------------- methods
def run_unintegrated(pcs: np.ndarray, batches: np.ndarray, seed: int) -> dict:
    return {"embedding": pcs}


def run_harmony(pcs: np.ndarray, batches: np.ndarray, seed: int) -> dict:
    """harmonypy on the joint PCA (its defaults)."""
    _quiet()
    import harmonypy

    meta = pd.DataFrame({"batch": batches})
    result = harmonypy.run_harmony(pcs, meta, ["batch"], random_state=seed, verbose=False)
    Z = np.asarray(result.Z_corr)
    return {"embedding": Z.T if Z.shape[0] != pcs.shape[0] else Z}


def run_scvi(counts, batches: np.ndarray, seed: int, max_epochs: int | None = None) -> dict:
    """scVI with the batch as ``batch_key`` on the counts (scvi-tools defaults)."""
    _quiet()
    import anndata as ad
    import scvi
    import torch

    torch.set_flush_denormal(True)
    scvi.settings.seed = seed
    adata = ad.AnnData(X=counts, obs=pd.DataFrame({"batch": batches}))
    scvi.model.SCVI.setup_anndata(adata, batch_key="batch")
    model = scvi.model.SCVI(adata)
    model.train(max_epochs=max_epochs, enable_progress_bar=False, accelerator="cpu")
    return {"embedding": model.get_latent_representation()}


def run_portal_sc(pcs: np.ndarray, batches: np.ndarray, seed: int, steps: int) -> dict:
    """The original Portal (portal-sc) through its own training loop, on the same PCA."""
    _quiet()
    import os
    import tempfile

    import portal

    first = batches == batches[0]
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # it writes its checkpoint relative to the working directory
        model = portal.model.Model(
            training_steps=steps,
            seed=1234 + seed,
            model_path=os.path.join(tmp, "models"),
            data_path=os.path.join(tmp, "data"),
            result_path=os.path.join(tmp, "results"),
        )
        model.emb_A = pcs[first].astype(np.float32)
        model.emb_B = pcs[~first].astype(np.float32)
        start = time.perf_counter()
        model.train()
        train_s = time.perf_counter() - start
        model.eval()
        latent = np.empty((pcs.shape[0], model.latent.shape[1]), dtype=np.float32)
        latent[first] = model.latent[: first.sum()]
        latent[~first] = model.latent[first.sum() :]
    return {"embedding": latent, "ms_per_step": 1000 * train_s / steps}


def run_scx_portal(
    pcs: np.ndarray,
    batches: np.ndarray,
    seed: int,
    steps: int,
    kwargs: dict,
    tool_kwargs: dict | None = None,
) -> dict:
    """scx.tl.portal on the same joint PCA (``use_rep``), timing every training step.

    ``kwargs`` go to the trainer (``trainer_kwargs``), ``tool_kwargs`` to the tool.
    """
    _quiet()
    import anndata as ad
    from lightning.pytorch.callbacks import Callback

    import scx

    class StepTimer(Callback):
        def __init__(self):
            self.times: list[float] = []

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self._start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.times.append(time.perf_counter() - self._start)

    timer = StepTimer()
    adata = ad.AnnData(
        X=pcs,
        obs=pd.DataFrame({"batch": batches}),
        obsm={"X_jpca": pcs},
    )
    start = time.perf_counter()
    scx.tl.portal(
        adata,
        batch_key="batch",
        use_rep="X_jpca",
        max_steps=steps,
        seed=seed,
        trainer_kwargs={"enable_progress_bar": False, "callbacks": [timer], **kwargs},
        **(tool_kwargs or {}),
    )
    train_s = time.perf_counter() - start
    search = adata.uns["portal"].get("lambda_cos_search")
    if search is not None:
        print(
            f"    λ_cos search (seed {seed}): chosen {search['chosen']}, mixing metric "
            f"{np.round(np.asarray(search['mixing_metric']), 1).tolist()}",
            flush=True,
        )
    return {
        "embedding": adata.obsm["X_portal"],
        # whole training loop (data loading included) per step, as for the original
        "ms_per_step": 1000
        * train_s
        / (steps * (1 if search is None else len(search["candidates"]))),
        "ms_per_step_compute": 1000 * float(np.median(timer.times)),
    }


# ---------------------------------------------------------------------------- scores
def score(embedding: np.ndarray, batches: np.ndarray, labels: np.ndarray) -> dict:
    import scx
    from scx._neighbors import knn_transfer

    first = batches == batches[0]
    predicted = knn_transfer(
        embedding[first], labels[first], embedding[~first], n_neighbors=N_NEIGHBORS
    )[0]
    out = {
        "iLISI": scx.metrics.ilisi(embedding, batches),
        "kBET": scx.metrics.kbet(embedding, batches),
        "ASW": scx.metrics.silhouette_label(embedding, labels),
        "kNN acc": float(np.mean(predicted == labels[~first])),
    }
    out["batch"] = (out["iLISI"] + out["kBET"]) / 2
    out["bio"] = (out["ASW"] + out["kNN acc"]) / 2
    out["overall"] = (out["batch"] + out["bio"]) / 2
    return out


def heldout_merged(
    embedding: np.ndarray, batches: np.ndarray, labels: np.ndarray, lineage: list[str]
) -> float:
    """Fraction of the held-out lineage's neighbours that are other-batch cells of other types."""
    from scx._neighbors import knn

    held = np.flatnonzero(np.isin(labels, lineage))
    index, _ = knn(embedding, embedding[held], N_NEIGHBORS + 1)
    index = index[:, 1:]
    foreign = (batches[index] != batches[held][:, None]) & (~np.isin(labels[index], lineage))
    return float(foreign.mean())


# ---------------------------------------------------------------------------- main
def load(path, batch_key: str, label_key: str, n_pcs: int, seed: int):
    import anndata as ad

    import scx

    adata = ad.read_h5ad(path)
    batches = adata.obs[batch_key].astype(str).to_numpy()
    order = pd.unique(batches)
    datasets = {b: adata[batches == b] for b in order}
    pca = scx.pp.joint_pca(datasets, n_comps=n_pcs, seed=seed)
    # rows grouped by batch, in the order of the datasets
    rows = np.concatenate([np.flatnonzero(batches == b) for b in order])
    adata = adata[rows].copy()
    pcs = np.concatenate([pca.embeddings[b] for b in order])
    counts = adata[:, pca.genes].X
    return (
        pcs,
        counts,
        adata.obs[batch_key].astype(str).to_numpy(),
        adata.obs[label_key].astype(str).to_numpy(),
    )


def methods(
    pcs, counts, batches, steps: int, seed: int, keep=None, scvi_epochs: int | None = None
) -> dict:
    """Every method with its arguments; ``keep`` subsets the cells."""
    if keep is not None:
        pcs, counts, batches = pcs[keep], counts[keep], batches[keep]
    return {
        "unintegrated PCA": (run_unintegrated, (pcs, batches, seed)),
        "harmonypy": (run_harmony, (pcs, batches, seed)),
        "scVI": (run_scvi, (counts, batches, seed, scvi_epochs)),
        "Portal (portal-sc)": (run_portal_sc, (pcs, batches, seed, steps)),
        "scx Portal": (run_scx_portal, (pcs, batches, seed, steps, {})),
        "scx Portal, last iterate": (
            run_scx_portal,
            (pcs, batches, seed, steps, {}, {"ema_decay": None}),
        ),
        "scx Portal bf16": (
            run_scx_portal,
            (pcs, batches, seed, steps, {"precision": "bf16-mixed"}),
        ),
        "scx Portal, λ_cos search": (
            run_scx_portal,
            (pcs, batches, seed, steps, {}, {"search_lambda_cos": True}),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="Portal steps (reference rule)")
    parser.add_argument("--skip", nargs="*", default=[], help="methods to leave out")
    parser.add_argument(
        "--scvi-epochs", type=int, default=None, help="scVI epochs (default: its heuristic)"
    )
    parser.add_argument("--no-heldout", action="store_true", help="skip the held-out lineage run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    print(f"torch threads per run: {args.threads}", flush=True)
    _quiet()
    data_dir = find_data_dir()

    for name in args.datasets:
        file, batch_key, label_key, lineage = DATASETS[name]
        pcs, counts, batches, labels = load(data_dir / file, batch_key, label_key, 30, 0)
        steps = args.steps or (1000 if len(batches) < 20_000 else 2000)
        sizes = dict(pd.Series(batches).value_counts())
        print(f"\n=== {name}: {len(batches)} cells, batches {sizes}", flush=True)

        rows = []
        for seed in args.seeds:
            for method, (fn, fn_args) in methods(
                pcs, counts, batches, steps, seed, scvi_epochs=args.scvi_epochs
            ).items():
                # harmonypy's k-means initialisation follows its random_state: seeded like Portal
                deterministic = method == "unintegrated PCA"
                if method in args.skip or (deterministic and seed != args.seeds[0]):
                    continue
                run = run_isolated(fn, *fn_args)
                result = run["result"]
                rows.append(
                    {
                        "method": method,
                        "seed": seed,
                        **score(result["embedding"], batches, labels),
                        "time_s": run["time_s"],
                        "peak_MB": run["peak_mb"],
                        "delta_MB": run["delta_mb"],
                        "ms/step": result.get("ms_per_step", np.nan),
                    }
                )
                print(
                    {k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()},
                    flush=True,
                )
        table = pd.DataFrame(rows)
        order = list(dict.fromkeys(table["method"]))
        grouped = table.drop(columns="seed").groupby("method", sort=False)
        print_table(
            grouped.mean().loc[order],
            f"{name}: {batch_key} as batch, {steps} Portal steps, mean over seeds {args.seeds}",
        )
        print_table(grouped.std().loc[order].fillna(0.0), f"{name}: standard deviation over seeds")
        if args.no_heldout:
            continue

        # a lineage present in the first batch only
        keep = ~((batches != batches[0]) & np.isin(labels, lineage))
        held = {}
        for method, (fn, fn_args) in methods(
            pcs, counts, batches, steps, args.seeds[0], keep
        ).items():
            if method in args.skip or method in ("scVI", "scx Portal bf16"):
                continue
            embedding = run_isolated(fn, *fn_args)["result"]["embedding"]
            held[method] = {
                "heldout_merged": heldout_merged(embedding, batches[keep], labels[keep], lineage),
                **score(embedding, batches[keep], labels[keep]),
            }
            print(method, {k: round(v, 3) for k, v in held[method].items()}, flush=True)
        print_table(
            pd.DataFrame(held).T,
            f"{name}: {lineage} removed from the second batch; heldout_merged = fraction of "
            "their neighbours that are other-batch cells of other types",
        )


if __name__ == "__main__":
    main()
