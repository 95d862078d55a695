"""Portal on ifnb: the original, scx, and scx started from the original's initial weights.

The peer harness (``peers/compare.py --mode quality --methods portal``) found scx's kNN label
transfer on ifnb below the original's with the last step's weights. This script asks whether
that is code or chance: in one process, per seed, it trains

* the original (``portal-sc`` 1.0.4: its own ``Model.train()`` / ``Model.eval()`` on the joint
  PCA, as ``peers/run_portal.py`` calls it, ``seed=1234 + seed``),
* ``scx.model.PORTAL`` with the last step's weights (``ema_decay=None``, ``seed=seed``), and
* the same scx model with every weight and bias first set to the original's initial values
  (the original's networks constructed under its seed, as its ``train()`` does, and copied in),

all on the same inputs and budget (1,000 steps, 500 cells per dataset per step), scored by
``portal_integration.score``. With equal starting weights the remaining differences are the
mini-batch draws and the order of floating-point operations.

Needs ``portal-sc`` importable next to scx (it is imported, never copied): ``pip install
--no-deps portal-sc==1.0.4 tables`` into scx's environment.

Run: ``python benchmarks/portal_matched_init.py --seeds 0 1 2 3 4 5 --threads 2``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time

import anndata as ad
import numpy as np
import pandas as pd
import torch

from _common import find_data_dir, print_table
from portal_integration import DATASETS, load, score

N_PCS, STEPS, BATCH_SIZE = 30, 1000, 500


def run_original(pcs, first, seed: int) -> np.ndarray:
    import portal

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        model = portal.model.Model(
            batch_size=BATCH_SIZE,
            training_steps=STEPS,
            seed=1234 + seed,
            model_path=f"{tmp}/models",
            data_path=f"{tmp}/data",
            result_path=f"{tmp}/results",
        )
        model.emb_A, model.emb_B = pcs[first], pcs[~first]
        model.train()
        model.eval()
    return np.asarray(model.latent)


def original_initial_networks(seed: int) -> list[torch.nn.Module]:
    """The original's six networks as its ``train()`` builds them right after seeding."""
    from portal.networks import discriminator, encoder, generator

    torch.manual_seed(1234 + seed)
    n_latent = 20
    return [
        encoder(N_PCS, n_latent),  # E_A
        encoder(N_PCS, n_latent),  # E_B
        generator(N_PCS, n_latent),  # G_A
        generator(N_PCS, n_latent),  # G_B
        discriminator(N_PCS),  # D_A
        discriminator(N_PCS),  # D_B
    ]


def copy_initial_weights(module, networks: list[torch.nn.Module]) -> None:
    """Set scx's Linear layers (in order) to the original networks' (W_i, b_i)."""
    stage = module.stages[0]
    targets = [
        stage.encoders[0],
        stage.encoders[1],
        stage.generators[0],
        stage.generators[1],
        module.discriminators[0][0],
        module.discriminators[0][1],
    ]
    with torch.no_grad():
        for source, target in zip(networks, targets, strict=True):
            pairs = [
                (getattr(source, f"W_{i}"), getattr(source, f"b_{i}"))
                for i in (1, 2, 3)
                if hasattr(source, f"W_{i}")
            ]
            layers = [m for m in target.modules() if isinstance(m, torch.nn.Linear)]
            for (weight, bias), layer in zip(pairs, layers, strict=True):
                layer.weight.copy_(weight)
                layer.bias.copy_(bias)


def run_scx(pcs, batches, reference: str, seed: int, initial=None) -> np.ndarray:
    import scx

    adata = ad.AnnData(
        X=np.zeros((len(pcs), 0), np.float32),
        obs=pd.DataFrame({"batch": batches}),
        obsm={"X_jpca": pcs},
    )
    view = scx.model.PORTAL.prepare_inputs(adata, batch_key="batch", use_rep="X_jpca", seed=seed)
    model = scx.model.PORTAL(view, reference=reference, seed=seed)
    if initial is not None:
        copy_initial_weights(model.module, initial)
    model.train(
        max_steps=STEPS,
        batch_size=BATCH_SIZE,
        ema_decay=None,
        seed=seed,
        enable_progress_bar=False,
    )
    latent = model.get_latent_representation()
    return np.concatenate([latent[b] for b in pd.unique(batches)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")

    file, batch_key, label_key, _ = DATASETS["ifnb"]
    # rows grouped by dataset, CTRL first (the reference, the original's dataset A)
    pcs, _, batches, labels = load(find_data_dir() / file, batch_key, label_key, N_PCS, 0)
    pcs = pcs.astype(np.float32)
    first = batches == batches[0]
    variants = {
        "original (portal-sc)": lambda s: run_original(pcs, first, s),
        "scx, last step's weights": lambda s: run_scx(pcs, batches, batches[0], s),
        "scx, original's initial weights": lambda s: run_scx(
            pcs, batches, batches[0], s, original_initial_networks(s)
        ),
    }
    rows = []
    for seed in args.seeds:
        for name, run in variants.items():
            start = time.perf_counter()
            latent = run(seed)
            elapsed = time.perf_counter() - start
            rows.append({"variant": name, "seed": seed, **score(latent, batches, labels)})
            rows[-1]["time_s"] = elapsed
            print(
                f"seed {seed}  {name:<34} kNN acc {rows[-1]['kNN acc']:.3f}  "
                f"overall {rows[-1]['overall']:.3f}",
                flush=True,
            )
    frame = pd.DataFrame(rows)
    summary = frame.drop(columns="seed").groupby("variant", sort=False).agg(["mean", "std"])
    print_table(summary, f"Portal on ifnb, {STEPS} steps, seeds {args.seeds}")
    knn = frame.pivot(index="seed", columns="variant", values="kNN acc")
    for name in list(variants)[1:]:
        diff = knn[name] - knn["original (portal-sc)"]
        print(
            f"{name} − original, kNN acc: {diff.mean():+.4f} ± {diff.std():.4f} "
            f"(paired by seed: {np.round(diff.to_numpy(), 3).tolist()})"
        )


if __name__ == "__main__":
    main()
