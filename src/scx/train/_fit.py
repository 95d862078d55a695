"""Running one training stage: trainer options, progress bar, interrupts, global state.

Every model trains through :func:`fit`, so all five share one way to pass trainer options (one
validated dict), one progress bar (labelled with the method and stage, counting the unit the
user asked for, showing the running loss), one handling of Ctrl-C (a ``KeyboardInterrupt``,
not Lightning's ``SystemExit``) and one isolation of global state (seeded random generators,
threads and flush-denormal mode restored afterwards).
"""

from __future__ import annotations

import difflib
import inspect
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ProgressBar as ProgressBarBase
from scvi.model._utils import parse_device_args
from scvi.train import Trainer

from scx._settings import isolated_state, quiet_lightning, retained_heap

logger = logging.getLogger(__name__)

Unit = Literal["epochs", "steps"]

#: Trainer arguments that scx sets from the model's own arguments.
_CONTROLLED = {
    "max_epochs": "pass `max_epochs=` to the tool or to `train` itself",
    "max_steps": "pass `max_steps=` to the tool or to `train` itself",
    "min_epochs": "training length is set by `max_epochs`/`max_steps`",
    "min_steps": "training length is set by `max_epochs`/`max_steps`",
    "accelerator": "pass `accelerator=` to the tool or to `train` itself",
    "devices": "pass `devices=` to the tool or to `train` itself",
    "use_distributed_sampler": "scx's samplers shard every batch across devices themselves",
}


def _trainer_options() -> set[str]:
    names = set()
    for cls in (pl.Trainer, Trainer):
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self":
                names.add(p.name)
    return names - set(_CONTROLLED)


TRAINER_OPTIONS = frozenset(_trainer_options())


#: Names other libraries use for scx's arguments (scanpy, scikit-learn, scvi-tools, Lightning).
ALIASES = {
    "random_state": "seed",
    "random_seed": "seed",
    "n_epochs": "max_epochs",
    "epochs": "max_epochs",
    "n_steps": "max_steps",
    "steps": "max_steps",
    "learning_rate": "lr",
    "inplace": "copy",
    "use_gpu": "accelerator",
    "key": "key_added",
}


def unknown_name_message(name: str, accepted, where: str) -> str:
    """``"`name` is not an argument of <where>; did you mean …? Accepted: …"``."""
    accepted = sorted(accepted)
    close = difflib.get_close_matches(name, accepted, n=3, cutoff=0.6)
    if ALIASES.get(name) in accepted:
        close = [ALIASES[name], *[c for c in close if c != ALIASES[name]]]
    hint = f" Did you mean {' or '.join(f'`{c}`' for c in close)}?" if close else ""
    return f"`{name}` is not an argument of {where}.{hint} Accepted: {', '.join(accepted)}."


def check_trainer_kwargs(trainer_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate Lightning/scvi trainer options (``strategy``, ``precision``, …) by name."""
    if trainer_kwargs is None:
        return {}
    if not isinstance(trainer_kwargs, Mapping):
        raise ValueError(
            "`trainer_kwargs` must be a dict of Lightning trainer options, e.g. "
            "{'strategy': 'ddp', 'precision': 'bf16-mixed'}; got "
            f"{type(trainer_kwargs).__name__}."
        )
    for name in trainer_kwargs:
        if name in _CONTROLLED:
            raise ValueError(f"`trainer_kwargs[{name!r}]` is not accepted: {_CONTROLLED[name]}.")
        if name not in TRAINER_OPTIONS:
            raise ValueError(
                "`trainer_kwargs`: "
                + unknown_name_message(name, TRAINER_OPTIONS, "the Lightning/scvi-tools Trainer")
            )
    return dict(trainer_kwargs)


def check_devices(accelerator: Any, devices: Any) -> None:
    """Check ``accelerator`` and ``devices`` as the trainer will read them, before any work.

    Lightning would only refuse them when the trainer is built, after the preprocessing; the
    same parsing runs here (it only looks up the available devices).
    """
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.accelerators import Accelerator

    if not isinstance(accelerator, Accelerator) and (
        not isinstance(accelerator, str) or not accelerator
    ):
        raise ValueError(
            f"`accelerator` must be a name such as 'auto', 'cpu', 'gpu' or 'mps', got "
            f"{accelerator!r}."
        )
    is_int = isinstance(devices, int) and not isinstance(devices, bool)
    is_int = is_int and (devices >= 1 or devices == -1)
    is_list = (
        isinstance(devices, list | tuple)
        and len(devices) > 0
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices)
    )
    if not (is_int or is_list or (isinstance(devices, str) and devices)):
        raise ValueError(
            f"`devices` must be 'auto', a number of devices (e.g. 1), a list of device indices "
            f"(e.g. [0, 1]) or -1 for all; got {devices!r}."
        )
    try:
        parse_device_args(accelerator=accelerator, devices=devices, return_device="torch")
    except (ValueError, TypeError, RuntimeError, MisconfigurationException) as err:
        raise ValueError(
            f"`accelerator={accelerator!r}` with `devices={devices!r}` cannot be used on this "
            f"machine: {err} Pass an accelerator it has ('auto' picks one) and a number of "
            "devices it provides (e.g. `devices=1`)."
        ) from err


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` is a CPU with bfloat16 matrix units (AVX512-BF16 or AMX).

    On such a CPU a bfloat16 product with float32 accumulation runs about twice as fast as
    float32 inputs converted product by product (``set_float32_matmul_precision("medium")``);
    without the units bfloat16 is emulated and no faster.
    """
    if device.type != "cpu":
        return False
    capabilities = getattr(torch.cpu, "get_capabilities", dict)()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def training_length(
    max_epochs: int | None,
    max_steps: int | None,
    steps_per_epoch: int,
    *,
    default: tuple[Unit, int],
) -> tuple[int, Unit, int]:
    """Epochs to run, the unit the user counts in, and the total in that unit.

    ``max_epochs`` and ``max_steps`` are alternatives; with neither, ``default`` (the method's
    schedule in its natural unit) applies. Steps are rounded up to whole epochs.
    """
    if max_epochs is not None and max_steps is not None:
        raise ValueError(
            f"Pass either `max_epochs` ({max_epochs}) or `max_steps` ({max_steps}), not both."
        )
    if max_epochs is None and max_steps is None:
        unit, total = default
    elif max_epochs is not None:
        unit, total = "epochs", int(max_epochs)
    else:
        unit, total = "steps", int(max_steps)
    n_epochs = total if unit == "epochs" else max(1, -(-total // steps_per_epoch))
    return n_epochs, unit, total


#: Lightning's DDP strategies by name; each has a ``*_find_unused_parameters_true`` variant.
_DDP_STRATEGIES = ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook")


def _interactive() -> bool:
    """Whether a live progress bar can be drawn (terminal or Jupyter)."""
    shell = sys.modules.get("IPython")
    if shell is not None:
        ipython = shell.get_ipython() if hasattr(shell, "get_ipython") else None
        if ipython is not None and type(ipython).__name__ == "ZMQInteractiveShell":
            return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class ProgressBar(ProgressBarBase):
    """A labelled progress bar over the whole stage, in epochs or steps, with the running loss.

    In a terminal or notebook it draws a tqdm bar; elsewhere (logs, CI) it writes a line at
    every tenth of the stage through scx's logger instead of carriage-return updates.
    """

    def __init__(self, label: str, unit: Unit, total: int, steps_per_epoch: int):
        super().__init__()
        self.label, self.unit, self.total = label, unit, int(total)
        self.steps_per_epoch = int(steps_per_epoch)
        self._enabled = True
        self._bar = None
        self._done = 0
        self._next_report = 0.1

    @property
    def is_enabled(self) -> bool:
        """Whether the bar (or its log lines) is shown."""
        return self._enabled

    def disable(self) -> None:
        """Hide the bar (Lightning calls this on non-zero ranks)."""
        self._enabled = False

    def enable(self) -> None:
        """Show the bar."""
        self._enabled = True

    def __getstate__(self):
        return {**self.__dict__, "_bar": None}

    def on_train_start(self, trainer, pl_module) -> None:
        """Open the bar (terminal or notebook only)."""
        if not self._enabled or trainer.global_rank != 0:
            return
        if _interactive():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=self.label, unit=self.unit[:-1], leave=True)

    def _running_loss(self, pl_module) -> float | None:
        means = getattr(pl_module, "running_means", None)
        values = means("train") if means is not None else {}
        loss = values.get("loss")
        return None if loss is None else float(loss)

    def _advance(self, trainer, pl_module, n: int = 1) -> None:
        if not self._enabled or trainer.global_rank != 0:
            return
        self._done = min(self._done + n, self.total)
        loss = None
        if self._bar is not None:
            self._bar.update(n)
            if self._done == self.total or self._done % max(1, self.total // 50) == 0:
                loss = self._running_loss(pl_module)
                if loss is not None:
                    self._bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        elif self._done >= self._next_report * self.total:
            loss = self._running_loss(pl_module)
            logger.info(
                "%s: %d/%d %s%s",
                self.label,
                self._done,
                self.total,
                self.unit,
                "" if loss is None else f", loss {loss:.4g}",
            )
            while self._next_report * self.total <= self._done:
                self._next_report += 0.1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Count a step."""
        if self.unit == "steps":
            self._advance(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Count an epoch."""
        if self.unit == "epochs":
            self._advance(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    on_exception = on_train_end  # type: ignore[assignment]


def fit(
    model,
    plan: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    *,
    n_epochs: int,
    label: str,
    unit: Unit,
    total: int,
    seed: int,
    accelerator: str = "auto",
    devices: int | list[int] | str = "auto",
    trainer_kwargs: Mapping[str, Any] | None = None,
    bfloat16_on_cpu: bool = False,
) -> None:
    """Train ``plan`` on ``datamodule`` for ``n_epochs`` and set ``model``'s training state.

    Replaces scvi's ``TrainRunner`` (which prints on failure and cannot tell an interrupt from
    an error): builds scvi's :class:`~scvi.train.Trainer` with scx's defaults, fits, stores the
    history, leaves the module in evaluation mode on the training device, and restores the
    caller's global state. A Ctrl-C raises ``KeyboardInterrupt`` (Lightning would exit).

    ``bfloat16_on_cpu``: train in Lightning's ``"bf16-mixed"`` precision when
    ``trainer_kwargs`` names no ``precision`` and the training device is a CPU with bfloat16
    units (:func:`native_bfloat16`); for models whose step is bound by dense matrix products.
    """
    options = check_trainer_kwargs(trainer_kwargs)
    strategy = options.get("strategy")
    if getattr(plan, "find_unused_parameters", False) and strategy in _DDP_STRATEGIES:
        options["strategy"] = f"{strategy}_find_unused_parameters_true"
    steps_per_epoch = datamodule.n_batches()
    callbacks = list(options.pop("callbacks", []) or [])
    if options.get("enable_progress_bar", True) and not any(
        isinstance(c, ProgressBarBase) for c in callbacks
    ):
        callbacks.append(ProgressBar(label, unit, total, steps_per_epoch))
    options.setdefault("enable_progress_bar", True)
    options["simple_progress_bar"] = False
    options.setdefault("enable_model_summary", False)
    options.setdefault("benchmark", False)
    options.setdefault("enable_checkpointing", False)
    # only epoch-level metrics are logged; this silences Lightning's short-epoch warning
    options.setdefault("log_every_n_steps", min(10, steps_per_epoch))
    if datamodule.n_val > 0:
        options.setdefault("check_val_every_n_epoch", 1)
    accelerator, lightning_devices, device = parse_device_args(
        accelerator=accelerator, devices=devices, return_device="torch"
    )
    if bfloat16_on_cpu and "precision" not in options and native_bfloat16(device):
        options["precision"] = "bf16-mixed"
        logger.info(
            "%s: training in bfloat16 mixed precision (this CPU has bfloat16 units); pass "
            "`trainer_kwargs={'precision': '32-true'}` for float32.",
            label,
        )
    main_thread = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main_thread else None
    with (
        isolated_state(seed, flush_denormal=True),
        retained_heap(),
        quiet_lightning(),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message="The dataloader,")
        # Lightning's own use of a torch API that torch deprecated after it was released
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`")
        trainer = Trainer(
            max_epochs=n_epochs,
            accelerator=accelerator,
            devices=lightning_devices,
            use_distributed_sampler=False,
            callbacks=callbacks,
            **options,
        )
        plan.n_obs_training = datamodule.n_train
        plan.n_obs_validation = datamodule.n_val
        model.module.train()
        try:
            trainer.fit(plan, datamodule)
        except SystemExit as exc:
            if trainer.interrupted:
                raise KeyboardInterrupt(f"{label} interrupted") from exc
            raise
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, sigint)
    model.history_ = _history(trainer)
    _check_skipped(plan, label)
    model.module.eval()
    model.to_device(device)
    model.trainer = trainer
    if trainer.interrupted:  # an interrupt Lightning swallowed without exiting
        raise KeyboardInterrupt(f"{label} interrupted")


def _check_skipped(plan, label: str) -> None:
    """Fail when no step had a finite loss; warn when some were skipped."""
    n_steps, n_skipped = getattr(plan, "n_steps", 0), getattr(plan, "n_skipped", 0)
    if n_steps and n_skipped == n_steps:
        raise RuntimeError(
            f"{label}: the loss was not finite at any of the {n_steps} steps, so nothing was "
            "learned and no result is written. Lower the learning rate `lr`, check the inputs "
            "for extreme values, or change the loss weights."
        )
    if n_skipped:
        warnings.warn(
            f"{label}: {n_skipped} of {n_steps} steps had a non-finite loss and were skipped; "
            "consider a lower learning rate `lr`.",
            RuntimeWarning,
            stacklevel=4,
        )


def _history(trainer) -> dict:
    # only rank 0's logger keeps a history; other ranks get a dummy logger
    history = getattr(trainer.logger, "history", None)
    return dict(history) if isinstance(history, dict) else {}
