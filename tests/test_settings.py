"""``scx.settings``: checked values, applied while scx trains, the caller's state restored."""

import lightning.pytorch as pl
import pytest
import torch

import scx
from conftest import QUIET
from scx._settings import isolated_state
from scx.nn import MLP, apply_jointly


@pytest.fixture
def restore_settings():
    saved = (scx.settings.num_threads, scx.settings.matmul_precision, scx.settings.verbosity)
    yield
    scx.settings.num_threads, scx.settings.matmul_precision, scx.settings.verbosity = saved


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("num_threads", 0),
        ("num_threads", 1.5),
        ("num_threads", True),
        ("matmul_precision", "low"),
        ("matmul_precision", "bf16"),
        ("verbosity", "loud"),
    ],
)
def test_bad_settings_name_the_setting(restore_settings, name, value):
    before = getattr(scx.settings, name)
    with pytest.raises(ValueError, match=rf"scx\.settings\.{name}"):
        setattr(scx.settings, name, value)
    assert getattr(scx.settings, name) == before


def test_isolated_state_applies_and_restores_matmul_precision_and_threads(restore_settings):
    caller_precision = torch.get_float32_matmul_precision()
    caller_threads = torch.get_num_threads()
    scx.settings.matmul_precision = "medium"
    scx.settings.num_threads = caller_threads + 1
    with isolated_state():
        assert torch.get_float32_matmul_precision() == "medium"
        assert torch.get_num_threads() == caller_threads + 1
    assert torch.get_float32_matmul_precision() == caller_precision
    assert torch.get_num_threads() == caller_threads
    # None keeps the caller's own setting inside
    scx.settings.matmul_precision = None
    torch.set_float32_matmul_precision("high")
    try:
        with isolated_state():
            assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(caller_precision)


class _RecordPrecision(pl.Callback):
    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append(torch.get_float32_matmul_precision())


def test_training_uses_matmul_precision_setting_and_restores_it(restore_settings):
    adata = scx.datasets.synthetic_batches(n_cells=200, n_types=3, seed=0)
    caller_precision = torch.get_float32_matmul_precision()
    scx.settings.matmul_precision = "medium"
    record = _RecordPrecision()
    scx.tl.portal(
        adata,
        batch_key="batch",
        n_hidden=16,
        max_steps=3,
        batch_size=64,
        trainer_kwargs={**QUIET, "callbacks": [record]},
    )
    assert record.seen and set(record.seen) == {"medium"}
    assert torch.get_float32_matmul_precision() == caller_precision


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_apply_jointly_equals_one_call_per_batch(seed):
    generator = torch.Generator().manual_seed(seed)
    network = MLP(7, 5, [16])
    a = torch.randn(10, 7, generator=generator, requires_grad=True)
    b = torch.randn(4, 7, generator=generator, requires_grad=True)
    joint = apply_jointly(network, a, b)
    assert [t.shape for t in joint] == [(10, 5), (4, 5)]
    (joint[0].pow(2).sum() + joint[1].sum()).backward()
    joint_grads = [p.grad.clone() for p in network.parameters()] + [a.grad.clone(), b.grad.clone()]
    for p in [*network.parameters(), a, b]:
        p.grad = None
    separate = network(a), network(b)
    (separate[0].pow(2).sum() + separate[1].sum()).backward()
    separate_grads = [p.grad for p in network.parameters()] + [a.grad, b.grad]
    for x, y in zip(joint, separate, strict=True):
        torch.testing.assert_close(x, y)
    for x, y in zip(joint_grads, separate_grads, strict=True):
        torch.testing.assert_close(x, y)
