"""Run the original scMODAL (gefeiwang/scMODAL @ 7ef67e2) on a harness input file.

Runs in the original's environment (``PEERS["scmodal"]``) with its checkout on ``sys.path``,
following the reference's CITE-seq tutorial:

1. the two preprocessed (log-normalised) matrices become AnnData objects A (RNA) and B
   (protein) with ``var["feature_name"]``; each is standardised with
   ``sc.pp.scale(max_value=10)`` (which stores ``var["mean"]``/``var["std"]`` for un-scaling);
   their first ``n_linked`` columns are the linked features in matching order;
2. ``scmodal.model.Model(batch_size=500, training_steps=..., seed=...)`` with every other
   setting at its default, ``preprocess(A, B, shared_gene_num=n_linked)``, ``train()``,
   ``eval()`` (full-batch forward of the reloaded checkpoint, written to a temporary
   ``model_path``), ``get_imputed_df(scale="log")``;
3. outputs: the latents (``model.latent`` split into A and B) and the protein imputed for the
   RNA cells (``imputed_df_AtoB``), on the log-normalised scale, columns in the input order.

``--train-steps`` (default 2,000) sets ``training_steps``; ``--steps N`` (speed runs) overrides
it, so the original's own loop stops there and still saves its checkpoint. One training step is
5 discriminator + 1 generator Adam steps, so the timer counts 6 optimiser steps per training
step.

Shims: none needed. ``get_imputed_df`` uses ``DataFrame.groupby(axis=1)``, deprecated in
pandas 2.1 (a FutureWarning with pandas 2.3; it would fail on pandas 3, so this environment keeps
pandas < 3). ``eval()``'s ``torch.load`` of the checkpoint (plain state dicts) works with
torch ≥ 2.6's ``weights_only=True`` default. Known behaviour kept as is: the mutual-neighbour
loss is NaN when a mini-batch has no mutual pair (no guard in the original).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import _runner_common as common
import numpy as np


def options(parser) -> None:
    """The budget option shared with the scx side (``scmodal.scx_options``)."""
    parser.add_argument(
        "--train-steps", type=int, default=2000, help="training_steps (reference: 10,000)"
    )


def scaled_adata(X: np.ndarray, names: np.ndarray, prefix: str):
    """AnnData of one modality, standardised and clipped at ±10 as the tutorial does."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    adata = ad.AnnData(
        X=np.array(X, dtype=np.float32),
        obs=pd.DataFrame(index=[f"{prefix}_{i}" for i in range(X.shape[0])]),
        var=pd.DataFrame({"feature_name": names.astype(str)}, index=names.astype(str)),
    )
    sc.pp.scale(adata, max_value=10)
    return adata


def main() -> None:
    args = common.parse_args(options)
    common.set_threads(args.threads)
    common.add_checkout(args.checkout)
    import scmodal

    inputs = common.load_inputs(args.inputs)
    base = common.reset_peak_memory()
    n_linked = int(inputs["meta"]["n_linked"])
    proteins = inputs["proteins"].astype(str)
    adata_a = scaled_adata(inputs["rna"], inputs["genes"], "rna")
    adata_b = scaled_adata(inputs["prot"], proteins, "prot")
    steps = args.steps or args.train_steps
    timer = common.StepTimer(6)
    with tempfile.TemporaryDirectory() as tmp:
        model = scmodal.model.Model(
            batch_size=500,
            training_steps=steps,
            seed=args.seed,
            model_path=str(Path(tmp) / "models"),
        )
        model.preprocess(adata_a, adata_b, shared_gene_num=n_linked)
        start = time.perf_counter()
        model.train()
        train_s = time.perf_counter() - start
        timer.remove()
        model.eval()
    model.get_imputed_df(scale="log")
    n_a = adata_a.n_obs
    prediction = model.imputed_df_AtoB[list(proteins)].to_numpy()
    meta = {
        "steps": len(timer.stamps) // 6,
        "training_steps": steps,
        "batch_size": 500,
        "n_linked": n_linked,
        "seed": args.seed,
        "train_s": train_s,
        "base_mb": base,
        "peak_mb": common.peak_memory_mb(),
        "side": "scmodal",
    }
    common.save(
        args.out,
        meta,
        step_seconds=timer.step_seconds(),
        z_rna=model.latent[:n_a].astype(np.float32),
        z_prot=model.latent[n_a:].astype(np.float32),
        prediction=prediction.astype(np.float32),
    )


if __name__ == "__main__":
    main()
