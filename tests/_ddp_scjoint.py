"""Run scx.tl.scjoint with Lightning DDP on CPU (gloo) and write the result on rank 0.

Called by tests/test_ddp.py in a subprocess: Lightning's DDP launcher re-executes this script
once per extra device, so it must not run inside pytest's own process.
"""

import sys
import warnings

import mudata

import scx

warnings.simplefilter("ignore")
mudata.set_options(pull_on_update=False)


def main(out_path: str) -> None:
    mdata = scx.datasets.synthetic_multiome(n_rna=400, n_atac=400, n_genes=120, seed=0)
    truth = mdata["atac"].obs.pop("cell_type")
    model = scx.tl.scjoint(
        mdata,
        labels_key="cell_type",
        max_epochs=3,
        batch_size=64,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        enable_progress_bar=False,
    )
    if model.trainer.global_rank == 0:
        mdata["atac"].obs["truth"] = truth.astype(str).to_numpy()
        mdata.uns["world_size"] = int(model.trainer.world_size)
        mdata.write(out_path)


if __name__ == "__main__":
    main(sys.argv[1])
