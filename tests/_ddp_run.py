"""Train one scx tool with Lightning DDP on two CPU processes (gloo); rank 0 writes the result.

Called by tests/test_ddp.py in a subprocess: ``python _ddp_run.py <tool> <out.h5mu>``.
Lightning's DDP launcher re-executes this script once per extra device, so it must not run
inside pytest's own process. Every rank builds the same generated data from the same seed.
"""

import sys
import warnings

import anndata as ad
import mudata
import numpy as np
import pandas as pd

import scx

warnings.simplefilter("ignore")
mudata.set_options(pull_on_update=False)
DDP = {"accelerator": "cpu", "devices": 2}
TRAINER = {"strategy": "ddp", "enable_progress_bar": False}


def scjoint():
    mdata = scx.datasets.synthetic_multiome(n_rna=400, n_atac=400, n_genes=120, seed=0)
    truth = mdata["atac"].obs.pop("cell_type")
    model = scx.tl.scjoint(
        mdata, labels_key="cell_type", max_epochs=3, batch_size=64, trainer_kwargs=TRAINER, **DDP
    )
    mdata["atac"].obs["truth"] = truth.astype(str).to_numpy()
    return mdata, model


def portal():
    adata = scx.datasets.synthetic_batches(n_cells=600, n_types=4, seed=0)
    model = scx.tl.portal(
        adata,
        batch_key="batch",
        n_hidden=128,
        # Portal's own default below 20,000 cells; steps are optimiser steps on every device
        max_steps=1000,
        batch_size=128,
        trainer_kwargs=TRAINER,
        **DDP,
    )
    return mudata.MuData({"all": adata}), model


def scmodal():
    mdata = scx.datasets.synthetic_linked_modalities(
        n_rna=400, n_prot=400, n_genes=200, n_proteins=20, n_types=4, n_links=6, seed=0
    )
    links = dict(zip(mdata.uns["links"]["prot"], mdata.uns["links"]["gene"], strict=True))
    del mdata.uns["links"]
    model = scx.tl.scmodal(
        mdata,
        modalities=("rna", "prot"),
        links=links,
        n_hidden=64,
        max_steps=200,
        batch_size=128,
        trainer_kwargs=TRAINER,
        **DDP,
    )
    return mdata, model


def scpairing():
    rng = np.random.default_rng(0)
    n = 800
    centres = rng.normal(size=(6, 8)) * 2
    state = centres[rng.integers(0, 6, n)] + rng.normal(size=(n, 8))
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(n)])
    x1 = (state @ rng.normal(size=(8, 20)) + 0.5 * rng.normal(size=(n, 20))).astype("f4")
    x2 = (np.tanh(state @ rng.normal(size=(8, 15)) / 3) * 3).astype("f4")
    bridge = mudata.MuData(
        {
            "rna": ad.AnnData(obs=obs.copy(), obsm={"X_pca": x1}),
            "atac": ad.AnnData(obs=obs.copy(), obsm={"X_lsi": x2}),
        }
    )
    model = scx.tl.scpairing(
        bridge,
        use_rep={"rna": "X_pca", "atac": "X_lsi"},
        max_epochs=40,
        batch_size=200,
        trainer_kwargs=TRAINER,
        **DDP,
    )
    return bridge, model


def scdart():
    mdata = scx.datasets.synthetic_trajectory(400, 150, seed=0)
    model = scx.tl.scdart(
        mdata,
        prior="peak_prior",
        n_latent=4,
        n_hidden_gene_activity=(256, 128),
        n_hidden_encoder=(128, 64),
        max_epochs=100,
        trainer_kwargs=TRAINER,
        **DDP,
    )
    return mdata, model


if __name__ == "__main__":
    tool, out = sys.argv[1], sys.argv[2]
    data, model = globals()[tool]()
    if model.trainer.global_rank == 0:
        data.uns["world_size"] = int(model.trainer.world_size)
        data.write(out)
