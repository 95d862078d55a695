import copy
import os
import warnings

import mudata
import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from lightning.pytorch.callbacks import Callback
from scipy import sparse

import scx

mudata.set_options(pull_on_update=False)
scvi.settings.verbosity = 30
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", category=FutureWarning, module="mudata")
# The test networks are tiny: one intra-op thread is fastest, and on a busy machine spinning
# OpenMP threads make each step many times slower. SCX_TEST_THREADS=2 checks that the tests of
# learned structure do not depend on the thread count.
torch.set_num_threads(int(os.environ.get("SCX_TEST_THREADS", "1")))

#: Trainer settings that keep the tests quiet.
QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


@pytest.fixture(scope="session", autouse=True)
def float32_training_on_every_cpu():
    """Train in float32 whatever the CPU.

    scMODAL trains in bfloat16 by default on CPUs with bfloat16 units; the suite checks the
    same arithmetic on every machine, and the tests of that default ask for such a CPU
    (``cpu_with_bfloat16_units``).
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scx.train._fit, "native_bfloat16", lambda device: False)
        yield


@pytest.fixture
def cpu_with_bfloat16_units(monkeypatch):
    """Make every CPU count as one with bfloat16 units (``scx.train.native_bfloat16``)."""
    monkeypatch.setattr(scx.train._fit, "native_bfloat16", lambda device: device.type == "cpu")


class RecordIterates(Callback):
    """The trained module's parameters after every training step (``trainer_kwargs`` callback)."""

    def __init__(self):
        self.iterates: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.iterates.append(
            {k: p.detach().clone() for k, p in pl_module.module.named_parameters()}
        )

    def of(self, prefix: str) -> list[dict[str, torch.Tensor]]:
        """The iterates of the submodule ``prefix`` (e.g. ``"stages.0."``), keyed as its own."""
        return [
            {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
            for state in self.iterates
        ]


def moving_average(
    iterates: list[dict[str, torch.Tensor]], ema_decay: float | None
) -> dict[str, torch.Tensor]:
    """What the training plans' ``ema_decay`` should return for these per-step weights: the
    running average with decay ``min(ema_decay, (1 + t) / (10 + t))`` at step ``t``, or the
    last iterate for ``None``."""
    expected = iterates[0]
    for t, state in enumerate(iterates[1:], start=1):
        decay = 0.0 if ema_decay is None else min(ema_decay, (1 + t) / (10 + t))
        expected = {k: decay * expected[k] + (1 - decay) * state[k] for k in state}
    return expected


def make_unpaired(seed: int = 0, **kwargs) -> tuple[mudata.MuData, pd.Series]:
    """Synthetic unpaired RNA + ATAC gene activity; ATAC labels removed and returned."""
    params = {"n_rna": 500, "n_atac": 500, "n_genes": 200, "n_types": 4, "seed": seed}
    params.update(kwargs)
    mdata = scx.datasets.synthetic_multiome(**params)
    truth = mdata["atac"].obs.pop("cell_type").astype(str)
    return mdata, truth


@pytest.fixture
def unpaired():
    return make_unpaired()


@pytest.fixture(scope="session")
def trained_scjoint():
    """One scJoint run shared by the read-only tests."""
    mdata, truth = make_unpaired(seed=1)
    model = scx.tl.scjoint(
        mdata, labels_key="cell_type", max_epochs=8, batch_size=128, trainer_kwargs=QUIET
    )
    return mdata, truth, model


def snapshot(mdata: mudata.MuData) -> dict:
    """Everything a tool could change, deep-copied for a before/after comparison."""

    def adata_state(adata):
        X = adata.X.copy() if adata.X is not None else None
        return {
            "X": X,
            "obs": adata.obs.copy(),
            "var": adata.var.copy(),
            "obsm": {k: copy.deepcopy(v) for k, v in adata.obsm.items()},
            "layers": {k: v.copy() for k, v in adata.layers.items()},
            "uns": copy.deepcopy(dict(adata.uns)),
        }

    return {
        "global": {
            "obs": mdata.obs.copy(),
            "obsm": {k: np.asarray(v).copy() for k, v in mdata.obsm.items()},
            "uns": copy.deepcopy(dict(mdata.uns)),
        },
        "mods": {m: adata_state(a) for m, a in mdata.mod.items()},
    }


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, pd.DataFrame):
        return isinstance(b, pd.DataFrame) and a.equals(b) and list(a.columns) == list(b.columns)
    if sparse.issparse(a):
        a, b = sparse.csr_matrix(a), sparse.csr_matrix(b) if sparse.issparse(b) else None
        return (
            b is not None
            and a.shape == b.shape
            and np.array_equal(a.indptr, b.indptr)
            and np.array_equal(a.indices, b.indices)
            and np.array_equal(a.data, b.data, equal_nan=True)
        )
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b, equal_nan=True)
    return a == b


def assert_unchanged(before: dict, mdata: mudata.MuData) -> None:
    after = snapshot(mdata)
    assert _equal(before, after), "the tool changed its input"
