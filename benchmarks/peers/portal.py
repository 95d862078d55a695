"""Portal: the original (``portal-sc`` 1.0.4) beside ``scx.tl.portal``, on the same joint PCA.

Inputs (both sides get the same file): the two datasets' 30-component joint PCA, built exactly as
``benchmarks/portal_integration.py`` builds it (its ``load``: :func:`scx.pp.joint_pca`, i.e.
Portal's preprocessing), rows grouped by dataset, the first dataset first. Neither side
preprocesses: the original gets the PCA as ``model.emb_A`` / ``model.emb_B`` and runs its own
``train()`` / ``eval()`` (``run_portal.py``); scx gets it through ``use_rep``.

Cases (quality):

* ``ifnb``: Kang 2018 IFN-β PBMC, 1,000 CTRL + 1,000 STIM cells (CTRL is dataset A / the
  reference), 13 cell types;
* ``asap_cite``: PBMC surface proteins by ASAP-seq and by CITE-seq (216 ADTs, 17,055 cells),
  the technology as the dataset, 4 coarse types.

Scores: ``portal_integration.score`` on each side's latent (iLISI and kBET → ``batch``,
cell-type ASW and kNN (k = 20) label transfer from the first dataset to the second → ``bio``,
their mean → ``overall``), the same function for both sides.

Budgets: one training step is, on both sides, one discriminator and one generator Adam update on
the same batch of 500 cells per dataset drawn with replacement (``SCX_OPTIMIZERS_PER_STEP = 2``;
the original's runner times the same two ``Adam.step`` calls). The number of steps is Portal's
rule (1,000 below 20,000 cells, else 2,000), recorded in the inputs (``meta["steps"]``) so both
sides read the same number; ``--steps`` overrides it (speed runs). lr 1e-3, λ_cos 20, λ_AE 10,
λ_LA 10, λ_GAN 1, boundary 5 after 6 warm-up steps are both sides' defaults. Seeds: the original
is constructed with ``seed=1234 + seed`` (its default is 1234), scx with ``seed=seed``, as in
``portal_integration.py``.

Speed: 2 × 20,000 generated cells × 30 PCs (a Gaussian mixture with a shift between the two
datasets), batch 500, ``SPEED_STEPS`` steps.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

import scx  # imported here, before run_scx.py takes the base memory (as the runners do)

BENCHMARKS = Path(__file__).resolve().parent.parent
if str(BENCHMARKS) not in sys.path:  # run_scx.py puts only benchmarks/peers on the path
    sys.path.insert(0, str(BENCHMARKS))

PEER = "portal"
#: one discriminator and one generator Adam step per training step (as the original)
SCX_OPTIMIZERS_PER_STEP = 2

N_PCS = 30
BATCH_SIZE = 500

# ---------------------------------------------------------------------------- speed
SPEED_DESCRIPTION = "2 × 20k cells × 30 PCs, batch 500"
SPEED_STEPS = 200
#: scx also in bf16 mixed precision (opt-in for users; the default and the headline are float32)
SPEED_OPTIONS = {"original": {}, "scx": {}, "scx bf16-mixed": {"precision": "bf16-mixed"}}


def default_steps(n_cells: int) -> int:
    """Portal's schedule: 1,000 steps below 20,000 cells, else 2,000."""
    return 1000 if n_cells < 20_000 else 2000


def speed_inputs(path: Path) -> None:
    """Two generated datasets of 20,000 cells × 30 PCs (fixed seed)."""
    import harness

    rng = np.random.default_rng(0)
    n_per, n_types = 20_000, 10
    centres = rng.normal(0.0, 4.0, size=(n_types, N_PCS))
    shift = rng.normal(0.0, 1.5, size=N_PCS)
    blocks = []
    for d in range(2):
        types = rng.integers(n_types, size=n_per)
        blocks.append(centres[types] + rng.normal(size=(n_per, N_PCS)) + d * shift)
    pcs = np.concatenate(blocks).astype(np.float32)
    first = np.repeat([True, False], n_per)
    meta = {"case": "speed", "datasets": ["A", "B"], "steps": default_steps(len(pcs))}
    harness.write_inputs(path, meta, pcs=pcs, first=first)


# ---------------------------------------------------------------------------- quality
#: "scx" is the like-for-like row (the last step's weights, as the original); "scx defaults"
#: adds scx's averaging of the generator-side weights (``ema_decay=0.99``)
QUALITY_OPTIONS = {
    "original": {},
    "scx": {"ema_decay": "none"},
    "scx defaults": {},
    "scx bf16-mixed": {"ema_decay": "none", "precision": "bf16-mixed"},
}


def _case(dataset: str, name: str):
    def build(path: Path, seed: int) -> dict:
        """Write the joint PCA of ``dataset`` (as portal_integration.py builds it)."""
        import harness

        from _common import find_data_dir
        from portal_integration import DATASETS, load

        file, batch_key, label_key, _ = DATASETS[dataset]
        # the PCA is seeded 0 in portal_integration.py whatever the training seed
        pcs, _, batches, labels = load(find_data_dir() / file, batch_key, label_key, N_PCS, 0)
        first = batches == batches[0]
        meta = {
            "case": name,
            "datasets": [str(b) for b in pd.unique(batches)],
            "steps": default_steps(len(batches)),
        }
        harness.write_inputs(path, meta, pcs=pcs.astype(np.float32), first=first)
        return {"batches": batches, "labels": labels}

    return build


CASES = {"ifnb": _case("ifnb", "ifnb"), "asap_cite": _case("asap", "asap_cite")}


def score(outputs: dict, truth: dict) -> dict[str, float]:
    """``portal_integration.score`` of the side's latent (rows in the inputs' order)."""
    from portal_integration import score as integration_score

    return integration_score(np.asarray(outputs["latent"]), truth["batches"], truth["labels"])


# ---------------------------------------------------------------------------- scx side
def scx_options(parser) -> None:
    """scx-only options: Lightning precision (default 32-bit) and the weight averaging."""
    parser.add_argument("--precision", default=None, help='e.g. "bf16-mixed"')
    parser.add_argument(
        "--ema-decay",
        default=None,
        help="\"none\": the last step's weights (as the original); default: scx's default",
    )


def run_scx(inputs: dict, args) -> tuple[dict, dict]:
    """``scx.tl.portal`` (``use_rep``) on the inputs' joint PCA, the first dataset as reference."""
    pcs, first = inputs["pcs"], inputs["first"].astype(bool)
    names = inputs["meta"]["datasets"]
    batches = np.where(first, names[0], names[1])
    steps = args.steps or int(inputs["meta"]["steps"])
    adata = ad.AnnData(
        X=np.zeros((len(pcs), 0), dtype=np.float32),
        obs=pd.DataFrame({"batch": batches}),
        obsm={"X_jpca": pcs},
    )
    trainer_kwargs = {"enable_progress_bar": False}
    if args.precision:
        trainer_kwargs["precision"] = args.precision
    averaging = {}
    if args.ema_decay is not None:
        averaging["ema_decay"] = None if args.ema_decay == "none" else float(args.ema_decay)
    scx.tl.portal(
        adata,
        batch_key="batch",
        use_rep="X_jpca",
        reference=names[0],
        max_steps=steps,
        batch_size=BATCH_SIZE,
        seed=args.seed,
        trainer_kwargs=trainer_kwargs,
        **averaging,
    )
    meta = {
        "steps": steps,
        "batch_size": BATCH_SIZE,
        "seed": args.seed,
        "reference": names[0],
        "precision": args.precision,
        "ema_decay": adata.uns["portal"]["params"]["ema_decay"],
    }
    return {"latent": np.asarray(adata.obsm["X_portal"], dtype=np.float32)}, meta
