"""Run the original scPairing (Ding-Group/scPairing @ 65b73be) on the harness inputs.

As its basic tutorial: ``scPairing(rna, atac, transformed_obsm=["X_pca", "X_lsi"],
use_decoder=False, seed=seed)`` on the paired bridge, ``model.train(epochs=300)`` with its
defaults (batch 2,000, Adam lr 5e-3 with per-step decay exp(−6e-5), discriminator Adam,
KL weight 1e-3, modality discriminator and cosine terms weighted 1), then
``model.get_latent_representation(...)`` for the bridge and for the held-out cells.

Inputs. The harness gives the 10-d PCA (RNA) and LSI (ATAC) of the bridge and of the held-out
cells. They become the AnnData's ``obsm["X_pca"]`` / ``obsm["X_lsi"]``, the keys of the
tutorial. ``.X`` holds the same 10 columns: without the count decoder (``use_decoder=False``,
the API's default and the tutorial's setting) the counts are never used (only their row sums
are read as library sizes), so they are not shipped.

Held-out cells. ``get_latent_representation(adata1, adata2)`` embeds each modality with its own
encoder (in eval mode, BatchNorm uses its running statistics, so a cell's embedding does not
depend on the other cells or on the other modality). The held-out RNA and ATAC halves are passed
together only because the API takes both; row i of one is not used for row i of the other.

Differences from the tutorial, none in the method: the seed and thread count are the harness's,
the device is ``--device`` (the original picks CUDA whenever it is available; passed through
its ``device`` model argument), and ``--epochs`` / ``--batch-size`` default to the tutorial's.

Shims: none needed (its pin ``scipy<=1.12`` is met in its environment).
"""

from __future__ import annotations

import _runner_common as common

#: Optimiser steps per training step: the main Adam, then the discriminator's Adam.
OPTIMIZERS_PER_STEP = 2


def options(parser) -> None:
    """scPairing's settings (defaults: the tutorial's)."""
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")


def anndata_pair(inputs: dict, part: str):
    """The RNA and ATAC AnnData of ``part`` (``bridge`` or ``held``) with their 10-d inputs."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    out = []
    for modality, key in (("rna", "X_pca"), ("atac", "X_lsi")):
        X = np.asarray(inputs[f"{part}_{modality}"], dtype=np.float32)
        obs = pd.DataFrame(index=[f"{part}{i}" for i in range(X.shape[0])])
        out.append(ad.AnnData(X=X.copy(), obs=obs, obsm={key: X}))
    return out


def main() -> None:
    args = common.parse_args(options)
    common.set_threads(args.threads)
    common.add_checkout(args.checkout)

    import torch
    from scPairing import scPairing

    inputs = common.load_inputs(args.inputs)
    rna, atac = anndata_pair(inputs, "bridge")
    base = common.reset_peak_memory()
    timer = common.StepTimer(OPTIMIZERS_PER_STEP, stop_after=args.steps)
    model = scPairing(
        rna,
        atac,
        mod1_type="rna",
        mod2_type="atac",
        transformed_obsm=["X_pca", "X_lsi"],
        use_decoder=False,
        seed=args.seed,
        device=torch.device(args.device),
    )
    arrays = {}
    try:
        model.train(epochs=args.epochs, batch_size=args.batch_size)
    except common.StopTraining:
        stopped = True
    else:
        stopped = False
        z_rna, z_atac = model.get_latent_representation()
        arrays.update(bridge_rna_embedding=z_rna, bridge_atac_embedding=z_atac)
        if "held_rna" in inputs:
            held_rna, held_atac = anndata_pair(inputs, "held")
            z_rna, z_atac = model.get_latent_representation(held_rna, held_atac)
            arrays.update(held_rna_embedding=z_rna, held_atac_embedding=z_atac)
    timer.remove()
    meta = {
        "side": "scpairing",
        "stopped_after_steps": args.steps if stopped else None,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "steps": args.steps if stopped else int(model.trainer.step),
        "temperature": float(model.model.logit_scale.exp().detach().cpu()),
        "seed": args.seed,
        "threads": args.threads,
        "device": args.device,
        "n_bridge": rna.n_obs,
        "base_mb": base,
        "peak_mb": common.peak_memory_mb(),
    }
    common.save(args.out, meta, step_seconds=timer.step_seconds(), **arrays)


if __name__ == "__main__":
    main()
