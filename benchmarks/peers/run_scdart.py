"""Run the original scDART (PeterZZQ/scDART @ b76bad6) on a harness input file.

Runs in the original's environment (``PEERS["scdart"]``) with its checkout on ``sys.path``:

1. the inputs (RNA counts, ATAC peaks, genes × peaks prior) are preprocessed as the reference's
   scripts do before calling the class: RNA library-normalised to 100 then log1p, ATAC
   binarised, both dense (the class takes dense arrays); the prior is passed as the class
   expects it, regions × genes;
2. ``scDART.scDART(...)`` with the class defaults (latent 8, λ_d = λ_g = λ_mmd = 1, lr 3e-4,
   ``ts = [30, 50, 70]``, ``use_potential=False``) except ``n_epochs`` (``--epochs``, 500 as the
   paper scripts) and the post-alignment ``k`` (``--k``, 10 as the scripts; class default 3);
   ``fit()`` (its own batch ⌊min N / 4⌋, its own loop: diffusion distances, then
   ``epochs + 1`` epochs) and ``transform()`` (post-aligned latents);
3. the raw latents and the gene activity (predicted RNA of the ATAC cells) by calling the
   trained modules exactly as ``transform()`` does: the whole data set as one batch, modules
   left in training mode (the original never switches BatchNorm to evaluation mode).

``--steps N`` stops training after N steps (``StopTraining`` from the optimiser hook, caught;
the modules exist by then, so ``transform()`` still runs). One training step is one backward
followed by two Adam steps (gene activity, encoder), so the timer counts 2 optimiser steps per
training step. ``meta["setup_s"]``: seconds from calling ``fit()`` to the end of the first
training step (dominated by the dense diffusion-distance step).

Shims: none needed. The reference pins ``graphtools==1.5.2``; graphtools 2.1 accepts the same
call ``Graph(data, n_pca=None, knn=5)`` with the same defaults (``decay=40``, ``thresh=1e-4``,
``kernel_symm="+"``), so the diffusion operator is unchanged. Its kNN search runs with
graphtools' default ``n_jobs=-1`` (all cores) whatever ``--threads`` says; this touches only the
one-off diffusion step, not the step times.
"""

from __future__ import annotations

import time

import _runner_common as common
import numpy as np


def options(parser) -> None:
    """Settings shared with the scx side (``scdart.scx_options``), plus the potential switch."""
    parser.add_argument("--epochs", type=int, default=500, help="n_epochs of the class")
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--reg-mmd", type=float, default=1.0)
    parser.add_argument("--k", type=int, default=10, help="post-alignment neighbours")
    parser.add_argument(
        "--use-potential", type=int, default=0, help="1: PHATE potential (the paper scripts)"
    )


def preprocess(inputs: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense log-normalised RNA (library size 100), binary ATAC and the regions × genes prior."""
    rna = common.csr(inputs, "rna").toarray().astype(np.float64)
    rna = np.log1p(rna / np.maximum(rna.sum(1, keepdims=True), 1e-12) * 100)
    atac = (common.csr(inputs, "atac").toarray() > 0).astype(np.float32)
    prior = (common.csr(inputs, "prior").T.toarray() != 0).astype(np.float32)
    return rna.astype(np.float32), atac, prior


def main() -> None:
    args = common.parse_args(options)
    common.set_threads(args.threads)
    common.add_checkout(args.checkout)
    import scDART
    import torch

    inputs = common.load_inputs(args.inputs)
    base = common.reset_peak_memory()
    rna, atac, prior = preprocess(inputs)
    timer = common.StepTimer(2, stop_after=args.steps)
    model = scDART.scDART(
        n_epochs=args.epochs,
        latent_dim=args.latent_dim,
        ts=[30, 50, 70],
        use_potential=bool(args.use_potential),
        k=args.k,
        reg_mmd=args.reg_mmd,
        seed=args.seed,
    )
    start = time.perf_counter()
    try:
        model.fit(rna, atac, prior)
    except common.StopTraining:
        pass
    timer.remove()
    fit_s = time.perf_counter() - start
    with torch.no_grad():
        encoder, gene_act = model.model_dict["encoder"], model.model_dict["gene_act"]
        activity = gene_act(torch.from_numpy(atac).to(model.device))
        z_atac_raw = encoder(activity).cpu().numpy()
        z_rna_raw = encoder(torch.from_numpy(rna).to(model.device)).cpu().numpy()
        activity = activity.cpu().numpy()
    z_rna, z_atac = model.transform(rna, atac)
    n_steps = len(timer.stamps) // 2
    meta = {
        "batch_size": min(rna.shape[0], atac.shape[0]) // 4,
        "steps": n_steps,
        "epochs": args.epochs,
        "latent_dim": args.latent_dim,
        "reg_mmd": args.reg_mmd,
        "use_potential": bool(args.use_potential),
        "post_align_k": args.k,
        "ts": [30, 50, 70],
        "seed": args.seed,
        "fit_s": fit_s,
        "setup_s": timer.stamps[1] - start if len(timer.stamps) > 1 else float("nan"),
        "base_mb": base,
        "peak_mb": common.peak_memory_mb(),
        "side": "scdart",
    }
    common.save(
        args.out,
        meta,
        step_seconds=timer.step_seconds(),
        z_rna=np.asarray(z_rna, dtype=np.float32),
        z_atac=np.asarray(z_atac, dtype=np.float32),
        z_rna_raw=z_rna_raw,
        z_atac_raw=z_atac_raw,
        gene_activity=activity.astype(np.float32),
    )


if __name__ == "__main__":
    main()
