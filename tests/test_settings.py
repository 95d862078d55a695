"""``scx.settings``: checked values, applied while scx trains, the caller's state restored."""

import lightning.pytorch as pl
import pytest
import torch

import scx
import scx._settings as settings_module
from conftest import QUIET
from scx._settings import isolated_state, retained_heap
from scx.nn import MLP, apply_jointly, clamped_exp


@pytest.fixture
def restore_settings():
    names = ("num_threads", "matmul_precision", "retain_freed_memory", "verbosity")
    saved = {name: getattr(scx.settings, name) for name in names}
    yield
    for name, value in saved.items():
        setattr(scx.settings, name, value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("num_threads", 0),
        ("num_threads", 1.5),
        ("num_threads", True),
        ("matmul_precision", "low"),
        ("matmul_precision", "bf16"),
        ("retain_freed_memory", 1),
        ("retain_freed_memory", "yes"),
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


class _FakeGlibc:
    """Records ``mallopt`` / ``malloc_trim`` calls and the state they leave malloc in."""

    def __init__(self):
        self.calls = []
        self.state = {}

    def mallopt(self, parameter, value):
        self.calls.append(("mallopt", parameter, value))
        self.state[parameter] = value
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1

    def retaining(self) -> bool:
        return self.state.get(-4) == 0 and self.state.get(-1, 0) >= 2**30


@pytest.fixture
def fake_glibc(monkeypatch):
    fake = _FakeGlibc()
    monkeypatch.setattr(settings_module, "_glibc", lambda: fake)
    for key in settings_module._MALLOC_ENVIRONMENT:
        monkeypatch.delenv(key, raising=False)
    return fake


def test_retained_heap_keeps_memory_inside_and_gives_it_back(restore_settings, fake_glibc):
    with retained_heap():
        # no mmap-ed chunks, no trimming while inside
        assert fake_glibc.retaining()
    assert not fake_glibc.retaining()
    assert fake_glibc.state == {-4: 65536, -3: 32 << 20, -1: 64 << 20}
    assert fake_glibc.calls[-1] == ("malloc_trim", 0)
    # restored on an error inside too, and the error comes through
    fake_glibc.calls.clear()
    with pytest.raises(RuntimeError, match="inside"), retained_heap():
        assert fake_glibc.retaining()
        raise RuntimeError("inside")
    assert not fake_glibc.retaining() and fake_glibc.calls[-1] == ("malloc_trim", 0)


def test_retained_heap_leaves_malloc_alone_when_asked(restore_settings, fake_glibc, monkeypatch):
    scx.settings.retain_freed_memory = False
    with retained_heap():
        pass
    assert fake_glibc.calls == []
    # a user who tunes malloc through the environment keeps their settings
    scx.settings.retain_freed_memory = True
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "100000")
    with retained_heap():
        pass
    assert fake_glibc.calls == []
    # no glibc (macOS, Windows, musl): nothing to do
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setattr(settings_module, "_glibc", lambda: None)
    with retained_heap():
        pass
    assert fake_glibc.calls == []


def test_retained_heap_runs_on_this_c_library(restore_settings):
    # the real call: glibc accepts both parameters (mallopt returns 1), elsewhere a no-op
    libc = settings_module._glibc()
    with retained_heap():
        x = torch.ones(1 << 22)
        del x
    if libc is not None:
        assert libc.mallopt(-4, 65536) == 1


def _train_briefly(callback: pl.Callback) -> None:
    """Three Portal steps on small generated batches, with ``callback`` watching."""
    adata = scx.datasets.synthetic_batches(n_cells=200, n_types=3, seed=0)
    scx.tl.portal(
        adata,
        batch_key="batch",
        n_hidden=16,
        max_steps=3,
        batch_size=64,
        trainer_kwargs={**QUIET, "callbacks": [callback]},
    )


class _RecordMalloc(pl.Callback):
    def __init__(self, fake):
        self.fake, self.seen = fake, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append(self.fake.retaining())


def test_training_retains_freed_memory_only_while_it_trains(restore_settings, fake_glibc):
    record = _RecordMalloc(fake_glibc)
    # on: retained at every step and handed back after; off: malloc left alone
    for retain in (True, False):
        scx.settings.retain_freed_memory = retain
        fake_glibc.calls.clear()
        record.seen.clear()
        _train_briefly(record)
        assert record.seen and set(record.seen) == {retain}
        assert not fake_glibc.retaining()
        assert bool(fake_glibc.calls) == retain


class _RecordPrecision(pl.Callback):
    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append(torch.get_float32_matmul_precision())


def test_training_uses_matmul_precision_setting_and_restores_it(restore_settings):
    caller_precision = torch.get_float32_matmul_precision()
    scx.settings.matmul_precision = "medium"
    record = _RecordPrecision()
    _train_briefly(record)
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clamped_exp_is_exp_except_below_the_normal_range(dtype):
    tiny = torch.finfo(dtype).tiny
    inside = torch.linspace(-80.0, 80.0, 1001, dtype=dtype)
    # identical to exp wherever exp is a normal number
    assert torch.equal(clamped_exp(inside), inside.exp())
    log_tiny = float(torch.tensor(tiny, dtype=torch.float64).log())
    below = torch.tensor([log_tiny - 0.1, log_tiny - 100, -1e4, -float("inf")], dtype=dtype)
    low = clamped_exp(below)
    # below it: positive and within a factor of 2 of the smallest normal number, never 0
    assert bool((low > 0).all()) and bool((low < 2 * tiny).all())
    # in place: the argument tensor holds the result
    values = torch.cat([inside, below])
    expected = clamped_exp(values)
    assert clamped_exp(values, inplace=True) is values and torch.equal(values, expected)
    # the gradient is exp's inside the range and 0 where the argument was raised
    x = torch.tensor([-1.0, 2.0, -1e4], dtype=dtype, requires_grad=True)
    clamped_exp(x).sum().backward()
    torch.testing.assert_close(x.grad[:2], x.detach()[:2].exp())
    assert float(x.grad[2]) == 0.0


def test_clamped_exp_leaves_half_precision_alone():
    x = torch.tensor([-1.0, -20.0, -200.0], dtype=torch.bfloat16)
    assert torch.equal(clamped_exp(x), x.exp())
