"""Package settings (threads, verbosity) and the isolation of global state around training.

``scx.settings`` holds the few switches that apply to every method:

* ``num_threads``: torch intra-op threads used while scx trains or embeds (``None`` keeps
  torch's own setting). On a shared machine set it to the cores you may use: spinning OpenMP
  threads of several processes on the same cores make small models many times slower.
* ``matmul_precision``: precision of float32 matrix products while scx trains or embeds (as
  :func:`torch.set_float32_matmul_precision`; ``None`` keeps torch's own setting). ``"medium"``
  lets the CPU's bfloat16 units (AVX512-BF16 / AMX) or a GPU's tensor cores do the products,
  with float32 accumulation: 1.7–1.9× faster training of scMODAL's wide networks on such a
  CPU (measured), at the cost of bfloat16 rounding of each product's inputs. (scMODAL trains in
  Lightning's ``"bf16-mixed"`` precision by default on such CPUs, which is faster still.)
* ``retain_freed_memory``: while scx trains, keep the memory that tensors free in the process
  instead of handing it back to the operating system (glibc's ``malloc`` on Linux only). A
  training step frees and re-allocates the same large tensors (activations, gradients, the
  pairwise matrices of a mini-batch); returned to the system, every re-allocation pays a page
  fault per 4 KiB page before it is written. Measured on scDART's MOp step (two threads): a
  zero-filled 25,734 × 1,024 gradient took 152 ms per step through page faults alone; with the
  setting the median step took 385 instead of 441 ms (interleaved runs, 4 each; same latents);
  scMODAL 5 % and Portal 7 % faster per step (one thread).
* ``verbosity``: scx's log level. ``None`` follows scanpy's ``sc.settings.verbosity`` (warnings
  by default, so scx is quiet); ``"info"`` shows what each tool writes, ``"debug"`` also shows
  Lightning's own messages (GPU/TPU banners), which are silenced otherwise.

:func:`isolated_state` is what keeps a call from changing the caller's world: it saves and
restores the global random number generators (torch, CUDA, numpy, ``random``), torch's thread
count, float32 matrix-product precision and flush-denormal mode, Lightning's seed environment
variables and scvi-tools' seed. :func:`retained_heap` is the memory side of training (see
``retain_freed_memory``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import platform
import random
import sys
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["isolated_state", "retained_heap", "settings"]

_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO}
_LEVELS["debug"] = logging.DEBUG
#: Lightning's informational loggers (device banners, "Tip" lines, fit-loop notices).
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")
#: The values of :func:`torch.set_float32_matmul_precision`.
MATMUL_PRECISIONS = ("highest", "high", "medium")
#: ``mallopt`` parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
#: Environment through which a user tunes glibc's malloc; scx then leaves it alone.
_MALLOC_ENVIRONMENT = (
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_MMAP_MAX_",
    "MALLOC_TOP_PAD_",
    "GLIBC_TUNABLES",
)


class Settings:
    """Settings of scx (``scx.settings``).

    Attributes
    ----------
    num_threads
        Torch intra-op threads while scx trains or embeds; ``None`` keeps torch's setting.
        The caller's setting is restored afterwards.
    matmul_precision
        ``"highest"``, ``"high"`` or ``"medium"``: float32 matrix-product precision while scx
        trains or embeds (:func:`torch.set_float32_matmul_precision`); ``None`` keeps torch's
        setting. The caller's setting is restored afterwards.
    retain_freed_memory
        ``True`` (default): while scx trains, memory freed by tensors stays in the process for
        the next step instead of being returned to the operating system (glibc on Linux; see
        :func:`retained_heap`). ``False`` leaves ``malloc`` as it is.
    verbosity
        ``None`` (follow ``scanpy.settings.verbosity``), ``"error"``, ``"warning"``,
        ``"info"``, ``"debug"`` or the matching :mod:`logging` level.
    """

    def __init__(self) -> None:
        self._num_threads: int | None = None
        self._matmul_precision: str | None = None
        self._retain_freed_memory = True
        self._verbosity: int | None = None

    @property
    def num_threads(self) -> int | None:
        """Torch threads used by scx (``None``: torch's current setting)."""
        return self._num_threads

    @num_threads.setter
    def num_threads(self, value: int | None) -> None:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1
        ):
            raise ValueError(
                f"`scx.settings.num_threads` must be a positive integer or None, got {value!r}."
            )
        self._num_threads = None if value is None else int(value)

    @property
    def matmul_precision(self) -> str | None:
        """Float32 matrix-product precision used by scx (``None``: torch's current setting)."""
        return self._matmul_precision

    @matmul_precision.setter
    def matmul_precision(self, value: str | None) -> None:
        if value is not None and value not in MATMUL_PRECISIONS:
            raise ValueError(
                f"`scx.settings.matmul_precision` must be one of {list(MATMUL_PRECISIONS)} or "
                f"None (torch's setting), got {value!r}."
            )
        self._matmul_precision = value

    @property
    def retain_freed_memory(self) -> bool:
        """Whether training keeps freed memory in the process (glibc on Linux)."""
        return self._retain_freed_memory

    @retain_freed_memory.setter
    def retain_freed_memory(self, value: bool) -> None:
        if not isinstance(value, bool | np.bool_):
            raise ValueError(
                f"`scx.settings.retain_freed_memory` must be True or False, got {value!r}."
            )
        self._retain_freed_memory = bool(value)

    @property
    def verbosity(self) -> int | None:
        """Scx's log level, or ``None`` to follow scanpy."""
        return self._verbosity

    @verbosity.setter
    def verbosity(self, value: int | str | None) -> None:
        if isinstance(value, str):
            if value.lower() not in _LEVELS:
                raise ValueError(
                    f"`scx.settings.verbosity` must be one of {list(_LEVELS)}, a logging level or "
                    f"None, got {value!r}."
                )
            value = _LEVELS[value.lower()]
        elif value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(
                f"`scx.settings.verbosity` must be a level name, a logging level or None, got "
                f"{value!r}."
            )
        self._verbosity = value

    def log_level(self) -> int:
        """The effective :mod:`logging` level of scx's messages."""
        if self._verbosity is not None:
            return self._verbosity
        try:
            import scanpy as sc

            scanpy_level = int(sc.settings.verbosity)
        except Exception:  # scanpy absent or unusual setting: stay quiet
            return logging.WARNING
        # scanpy: 0 error, 1 warning, 2 info, 3 hint, 4 debug
        return {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO}.get(
            scanpy_level, logging.DEBUG
        )


settings = Settings()


class _VerbosityFilter(logging.Filter):
    """Pass records at or above scx's current level (read at every record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= settings.log_level()


def _configure_logger() -> None:
    logger = logging.getLogger("scx")
    if any(isinstance(f, _VerbosityFilter) for h in logger.handlers for f in h.filters):
        return
    logger.setLevel(logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("scx: %(message)s"))
    handler.addFilter(_VerbosityFilter())
    logger.addHandler(handler)
    # like scanpy's and scvi's loggers: the verbosity setting alone decides what is shown
    logger.propagate = False


_configure_logger()


def _flush_denormal_enabled() -> bool:
    """Whether torch currently flushes denormal floats to zero (there is no getter)."""
    tiny = torch.tensor([1e-39], dtype=torch.float32)
    return bool((tiny * 1.0).item() == 0.0)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (with ``mallopt``), else ``None``."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextlib.contextmanager
def retained_heap() -> Iterator[None]:
    """Keep freed memory in the process inside the block (``settings.retain_freed_memory``).

    glibc serves large allocations (from 128 KiB, adaptively up to 32 MiB) by ``mmap`` and
    returns them, and free memory above its trim threshold, to the system when freed, so a
    training loop that frees and re-allocates the same tensors every step pays a page fault
    for every page it writes, every step. Inside the block nothing is ``mmap``-ed and nothing
    is trimmed; on exit the free memory is returned (``malloc_trim``) and the thresholds are
    set to the values glibc's own adaptation settles at in a process that has freed large
    arrays (``mmap`` from 32 MiB, trim above 64 MiB): a ``mallopt`` call ends that adaptation
    and glibc has no getter to restore the exact previous values. Does nothing where the C
    library is not glibc, when the user tunes malloc through the environment
    (``MALLOC_*_``, ``GLIBC_TUNABLES``) or with the setting off.
    """
    libc = _glibc()
    if (
        libc is None
        or not settings.retain_freed_memory
        or any(key in os.environ for key in _MALLOC_ENVIRONMENT)
    ):
        yield
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_MAX, 65536)  # glibc's default
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)
        libc.malloc_trim(0)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's informational loggers unless scx's verbosity is ``debug``."""
    if settings.log_level() <= logging.DEBUG:
        yield
        return
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved):
            lg.setLevel(level)


@contextlib.contextmanager
def isolated_state(seed: int | None = None, *, flush_denormal: bool = False) -> Iterator[None]:
    """Run a block with its own random state and settings; restore the caller's afterwards.

    Parameters
    ----------
    seed
        Seed the global generators of torch (CPU and CUDA), numpy and ``random`` with this value
        inside the block (weight initialisation, dropout and the like draw from them); ``None``
        leaves them as they are. Either way they are restored on exit.
    flush_denormal
        Flush denormal floats to zero inside the block: subnormal values make CPU matrix
        products many times slower and do not change results measurably.
    """
    import scvi

    torch_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    # the legacy global generator is what the caller's code may use: save and restore it
    numpy_state = np.random.get_state()  # noqa: NPY002
    python_state = random.getstate()
    threads = torch.get_num_threads()
    matmul_precision = torch.get_float32_matmul_precision()
    denormal = _flush_denormal_enabled()
    env = {key: os.environ.get(key) for key in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    scvi_seed = scvi.settings._seed
    try:
        if seed is not None:
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)  # noqa: NPY002
            random.seed(seed)
        if settings.num_threads is not None:
            torch.set_num_threads(settings.num_threads)
        if settings.matmul_precision is not None:
            torch.set_float32_matmul_precision(settings.matmul_precision)
        if flush_denormal:
            torch.set_flush_denormal(True)
        yield
    finally:
        torch.random.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        np.random.set_state(numpy_state)  # noqa: NPY002
        random.setstate(python_state)
        torch.set_num_threads(threads)
        torch.set_float32_matmul_precision(matmul_precision)
        torch.set_flush_denormal(denormal)
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        scvi.settings._seed = scvi_seed
