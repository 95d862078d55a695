"""Run the original scJoint (SydneyBioX/scJoint @ cbbfa5d) on the harness inputs.

The runner does what the original's ``main.py`` does, through its own classes: stage 1
(``util.trainingprocess_stage1.TrainingProcessStage1``, ``epochs`` epochs), ``write_embeddings``,
the kNN transfer (``util.knn.KNN``, k = 30, reference capped at 20,000 cells), stage 3 on a
freshly initialised network (``TrainingProcessStage3``, ``epochs`` epochs), ``write_embeddings``
and the final kNN. The settings are the reference's defaults (``config.py``'s 10x / CITE-ASAP
blocks): batch 256, lr 0.01 in both stages, lr decay ×0.1 every 20 epochs, momentum 0.9,
p = 0.8, center weight 1, cross-entropy on.

Inputs. The original reads each dataset from a cells × genes scipy CSR ``.npz`` file (what its
``process_db.py`` makes from the R ``.h5`` files) and integer labels from a ``.txt`` file (the
RNA labels numbered in the sorted order of their names, as ``process_db.label_parsing`` does),
listed in its ``Config``. The runner writes ``rna.npz``, ``rna_labels.txt`` and ``atac.npz`` from
the harness inputs into a temporary working directory and runs there, because the original also
writes ``./output/*.txt`` (embeddings, predictions) and ``./models/checkpoint.pth.tar`` relative
to the working directory. The ATAC labels are not given (``atac_labels = []``): they only make the
original print an accuracy.

Outputs: the stage-3 kNN labels of the ATAC cells (``atac_label``), the L2-normalised stage-3
embeddings it wrote (``rna_embedding``, ``atac_embedding``) and, when the inputs hold the ATAC
cells' own RNA profiles (``atac_rna_X``, for FOSCTTM), their embedding by the trained stage-3
encoder, read through the original's own test loader (``DataloaderWithoutLabel``: binarised
genes) and L2-normalised as ``write_embeddings`` does. These cells never enter training.

Differences from ``main.py``, none in the method: the seed is the harness's (``torch.manual_seed``
and ``random.seed``, which the original sets to 1), the thread count is the harness's
(``main.py`` forces 1), the device is ``--device`` (``config.use_cuda``), and the stage lengths,
batch size and rates are options whose defaults are the reference's.

Shims (library drift since the original's release, applied at run time):

* ``numpy.float`` is set to ``float``: the alias was removed in NumPy 1.24, and the loaders
  binarise every sample with ``.astype(np.float)`` (float64, as before).
* ``progress_bar`` in ``util.trainingprocess_stage1`` and ``util.trainingprocess_stage3`` is
  replaced by a no-op: ``util.utils.progress_bar`` runs ``stty size``, which fails without a
  terminal (the original's issue #6). It only prints.

Left as is: the positional ``Tensor.addmm_(beta, alpha, …)`` of the center loss still works in
torch 2.13 (with a deprecation warning); the documented quirks (center loss centres never
updated, data drawn with Python ``random`` inside ``__getitem__``, meaningless ``knn_probs``)
are the original's behaviour and are kept.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import _runner_common as common

#: Optimiser steps per training step: the encoder's and the classifier's SGD.
OPTIMIZERS_PER_STEP = 2
#: main.py's kNN call.
KNN_NEIGHBORS, KNN_RNA_SAMPLES = 30, 20000


def options(parser) -> None:
    """scJoint's settings (defaults: the reference configuration)."""
    parser.add_argument("--epochs", type=int, default=20, help="epochs of stage 1 and stage 3")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate of stage 1")
    parser.add_argument("--lr-stage3", type=float, default=None, help="default: --lr")
    parser.add_argument("--center-weight", type=float, default=1.0)
    parser.add_argument("--p", type=float, default=0.8)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")


def _no_progress(*args, **kwargs) -> None:
    """Stand-in for ``util.utils.progress_bar`` (which needs a terminal)."""


def write_original_inputs(inputs: dict, workdir: Path) -> tuple[dict, list[str]]:
    """The original's input files from the harness inputs; returns their paths and the labels."""
    import numpy as np
    import scipy.sparse

    names = sorted({str(label) for label in inputs["rna_labels"]})
    codes = {name: i for i, name in enumerate(names)}
    paths = {
        "rna": str(workdir / "rna.npz"),
        "rna_labels": str(workdir / "rna_labels.txt"),
        "atac": str(workdir / "atac.npz"),
    }
    scipy.sparse.save_npz(paths["rna"], common.csr(inputs, "rna_X"))
    scipy.sparse.save_npz(paths["atac"], common.csr(inputs, "atac_X"))
    np.savetxt(paths["rna_labels"], [codes[str(x)] for x in inputs["rna_labels"]], fmt="%d")
    return paths, names


def make_config(Config, args, paths: dict, n_genes: int, n_classes: int):
    """The original's ``Config`` with the harness's files and settings."""
    import torch

    config = Config()
    config.use_cuda = args.device != "cpu"
    config.device = torch.device(args.device if config.use_cuda else "cpu")
    config.number_of_class = n_classes
    config.input_size = n_genes
    config.rna_paths = [paths["rna"]]
    config.rna_labels = [paths["rna_labels"]]
    config.atac_paths = [paths["atac"]]
    config.atac_labels = []
    config.rna_protein_paths = []
    config.atac_protein_paths = []
    config.batch_size = args.batch_size
    config.lr_stage1 = args.lr
    config.lr_stage3 = args.lr if args.lr_stage3 is None else args.lr_stage3
    config.lr_decay_epoch = 20
    config.epochs_stage1 = config.epochs_stage3 = args.epochs
    config.p = args.p
    config.momentum = 0.9
    config.center_weight = args.center_weight
    config.with_crossentorpy = True
    config.seed = args.seed
    return config


def embed_new_cells(stage, config, X):
    """Embed extra cells with a trained stage's encoder, as ``write_embeddings`` does."""
    import numpy as np
    import torch
    from util.dataloader_stage1 import DataloaderWithoutLabel

    loader = torch.utils.data.DataLoader(
        DataloaderWithoutLabel(False, X), batch_size=config.batch_size, shuffle=False
    )
    stage.model_encoder.eval()
    chunks = []
    with torch.no_grad():
        for data in loader:
            chunks.append(stage.model_encoder(data.to(config.device)).cpu().numpy())
    z = np.concatenate(chunks)
    return (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    args = common.parse_args(options)
    common.set_threads(args.threads)
    common.add_checkout(args.checkout)

    import random

    import numpy as np
    import torch

    np.float = float  # noqa: NPY001 -- shim: the removed alias (see the docstring)
    import util.trainingprocess_stage1 as stage1_module
    import util.trainingprocess_stage3 as stage3_module
    from config import Config
    from util.knn import KNN

    for module in (stage1_module, stage3_module):
        module.progress_bar = _no_progress  # shim: needs a terminal (see the docstring)

    inputs = common.load_inputs(args.inputs)
    out = args.out.resolve()
    workdir = Path(tempfile.mkdtemp(prefix="scjoint_"))
    os.chdir(workdir)  # the original writes ./output and ./models
    paths, label_names = write_original_inputs(inputs, workdir)
    n_genes = int(inputs["atac_X_shape"][1])
    config = make_config(Config, args, paths, n_genes, len(label_names))

    base = common.reset_peak_memory()
    timer = common.StepTimer(OPTIMIZERS_PER_STEP, stop_after=args.steps)
    # main.py: torch.manual_seed(config.seed); the loaders' module-level random.seed(1)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    arrays = {}
    try:
        stage1 = stage1_module.TrainingProcessStage1(config)
        for epoch in range(config.epochs_stage1):
            stage1.train(epoch)
        stage1.write_embeddings()
        KNN(config, neighbors=KNN_NEIGHBORS, knn_rna_samples=KNN_RNA_SAMPLES)
        stage3 = stage3_module.TrainingProcessStage3(config)
        for epoch in range(config.epochs_stage3):
            stage3.train(epoch)
        stage3.write_embeddings()
        KNN(config, neighbors=KNN_NEIGHBORS, knn_rna_samples=KNN_RNA_SAMPLES)
    except common.StopTraining:
        stopped = True
    else:
        stopped = False
        output = workdir / "output"
        codes = np.loadtxt(output / "atac_knn_predictions.txt", ndmin=1).astype(int)
        arrays["atac_label"] = np.asarray(label_names, dtype=str)[codes]
        for name in ("rna", "atac"):
            z = np.loadtxt(output / f"{name}_embeddings.txt", ndmin=2)
            arrays[f"{name}_embedding"] = z.astype(np.float32)
        if "atac_rna_X_data" in inputs:
            held = common.csr(inputs, "atac_rna_X")
            arrays["atac_rna_embedding"] = embed_new_cells(stage3, config, held)
    timer.remove()
    meta = {
        "side": "scjoint",
        "stopped_after_steps": args.steps if stopped else None,
        "epochs_stage1": config.epochs_stage1,
        "epochs_stage3": config.epochs_stage3,
        "batch_size": config.batch_size,
        "lr_stage1": config.lr_stage1,
        "lr_stage3": config.lr_stage3,
        "lr_decay_epoch": config.lr_decay_epoch,
        "momentum": config.momentum,
        "p": config.p,
        "center_weight": config.center_weight,
        "knn": {"neighbors": KNN_NEIGHBORS, "rna_samples": KNN_RNA_SAMPLES},
        "seed": args.seed,
        "threads": args.threads,
        "device": str(config.device),
        "n_genes": n_genes,
        "n_classes": len(label_names),
        "base_mb": base,
        "peak_mb": common.peak_memory_mb(),
    }
    common.save(out, meta, step_seconds=timer.step_seconds(), **arrays)
    os.chdir(out.parent)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
