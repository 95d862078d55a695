"""The training plans shared by the five methods, and what they need from a module.

Every module exposes its training the same way (:class:`TrainableModule`): one forward pass of a
step (``forward_step``) and the loss of that pass with its named terms (``training_loss``).
Modules with discriminators add ``discriminator_prefix`` and ``discriminator_loss``
(:class:`AdversarialModule`). Per-cell data that a loss needs besides the inputs (diffusion
coordinates, pseudo-labels, anchor flags) arrives in the batch through the data module's
``extras``, so no plan carries method state.

* :class:`LossTrainingPlan`: one optimiser (Adam or SGD with step decay) on the loss.
* :class:`AdversarialTrainingPlan`: ``n_discriminator_steps`` discriminator updates on
  detached samples, then one update of everything else with the adversarial term recomputed by
  the updated discriminators (Portal, scMODAL); scPairing's plan reorders the two.

Both can return the weights as the exponential moving average of their iterates
(``ema_decay``; scDART's and Portal's default), kept by one mechanism.

scvi-tools' own ``AdversarialTrainingPlan`` keeps its classifier on the plan (so ``save`` loses
it), hard-codes the discriminator optimiser and scales both losses by a KL-derived factor; here
the discriminators live in the module (saved with the model) and the plan only optimises.

A step whose loss is not finite is skipped (the weights stay finite) and counted; :func:`fit`
turns a run in which every step was skipped into an error.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Protocol

import torch
from scvi.train import TrainingPlan

from ._logging import EpochMeanLoggingMixin

logger = logging.getLogger(__name__)


class TrainableModule(Protocol):
    """What every plan needs from a module."""

    def forward_step(self, batch: dict, step: int) -> dict[str, Any]:
        """All tensors of one step, from ``{modality: {key: tensor}}``."""

    def training_loss(
        self, outputs: dict[str, Any], step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The total loss (of everything but discriminators) and its named terms."""

    def embed(self, x: torch.Tensor, modality: int) -> torch.Tensor:
        """Embedding of a mini-batch of modality number ``modality``."""


class AdversarialModule(TrainableModule, Protocol):
    """What :class:`AdversarialTrainingPlan` needs besides :class:`TrainableModule`."""

    discriminator_prefix: str

    def discriminator_loss(self, outputs: dict[str, Any], step: int) -> torch.Tensor:
        """Discriminator loss; must only use detached outputs of the other networks."""


def adam(params, *, allow_fused: bool = True, **kwargs) -> torch.optim.Adam:
    """Adam, with the fused (single-kernel) update where torch has one for the parameters' device.

    The fused update is the same arithmetic as the per-parameter loop, without its ~15 small
    kernels per parameter tensor per step (measured ~5 % of a Portal step on one CPU thread).
    ``allow_fused=False`` keeps the loop (Lightning cannot clip the gradients of a fused
    optimiser under mixed precision).
    """
    groups = list(params)
    tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    devices = {p.device.type for p in tensors}
    fused = (
        allow_fused
        and len(devices) == 1
        and devices <= {"cpu", "cuda"}
        and all(p.dtype.is_floating_point for p in tensors)
    )
    return torch.optim.Adam(groups, fused=fused or None, **kwargs)


def mixed_precision(plan) -> bool:
    """Whether ``plan`` trains under one of Lightning's mixed-precision plugins."""
    try:
        precision = str(plan.trainer.precision)
    except RuntimeError:  # not attached to a trainer
        return False
    return precision.endswith("mixed")


def _n_obs(batch: dict) -> int:
    return sum(next(iter(tensors.values())).shape[0] for tensors in batch.values())


class _StepCountingMixin:
    """Counts steps and skipped (non-finite) steps.

    ``trainer.global_step`` counts every optimiser's steps, so several optimisers would double
    it.
    """

    def _init_counters(self) -> None:
        self.step = 0
        self.n_steps = 0
        self.n_skipped = 0

    def _finite_or_skip(self, loss: torch.Tensor) -> bool:
        self.n_steps += 1
        if torch.isfinite(loss):
            return True
        self.n_skipped += 1
        logger.warning(
            "Non-finite loss at step %d; update skipped (%d so far). Lower `lr` or check the "
            "inputs if this repeats.",
            self.step,
            self.n_skipped,
        )
        return False


class _WeightAveragingMixin:
    """The ``ema_decay`` of both plans (documented on :class:`LossTrainingPlan`).

    A running average of the parameters :meth:`_averaged_parameters` names, updated after every
    optimiser step and left in the module when training ends.
    """

    def _init_averaging(self, ema_decay: float | None) -> None:
        self.ema_decay = ema_decay
        #: (averaged parameters, their running averages) and the updates averaged
        self._ema: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
        self._n_averaged = 0

    def _averaged_parameters(self) -> list[torch.Tensor]:
        """The parameters whose average the module keeps."""
        raise NotImplementedError

    @torch.no_grad()
    def _update_average(self) -> None:
        """Move the running average towards the parameters' current values."""
        if self.ema_decay is None:
            return
        if self._ema is None:
            params = self._averaged_parameters()
            self._ema = (params, [p.detach().clone() for p in params])
            self._n_averaged = 1
            return
        decay = min(self.ema_decay, (1 + self._n_averaged) / (10 + self._n_averaged))
        torch._foreach_lerp_(self._ema[1], self._ema[0], 1.0 - decay)
        self._n_averaged += 1

    @torch.no_grad()
    def on_train_end(self) -> None:
        """Leave the averaged weights in the module."""
        if self._ema is not None:
            torch._foreach_copy_(self._ema[0], self._ema[1])
            self._ema = None


class LossTrainingPlan(
    _StepCountingMixin, _WeightAveragingMixin, EpochMeanLoggingMixin, TrainingPlan
):
    """One optimiser on the module's loss (automatic optimisation).

    Parameters
    ----------
    module
        A :class:`TrainableModule`.
    lr
        Learning rate.
    weight_decay
        Weight decay (coupled, as torch's Adam/SGD).
    optimizer
        ``"adam"`` (torch defaults otherwise) or ``"sgd"`` (with ``momentum``).
    momentum
        SGD momentum.
    lr_decay_epochs, lr_decay_factor
        Multiply the learning rate by ``lr_decay_factor`` every ``lr_decay_epochs`` epochs
        (``None``: constant).
    ema_decay
        Return the weights as the exponential moving average of their iterates: the decay at
        update ``t`` is ``min(ema_decay, (1 + t) / (10 + t))`` (horizon about
        ``1 / (1 - ema_decay)`` updates once ramped up). The last iterate of stochastic
        training carries the noise of its last mini-batches; the average sits nearer the point
        the iterates move around (Polyak & Juditsky, 1992). Buffers such as BatchNorm's
        running statistics are not averaged. ``None``: the last iterate.
    """

    def __init__(
        self,
        module,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Literal["adam", "sgd"] = "adam",
        momentum: float = 0.9,
        lr_decay_epochs: int | None = None,
        lr_decay_factor: float = 0.1,
        ema_decay: float | None = None,
    ):
        super().__init__(module, lr=lr, weight_decay=weight_decay, n_epochs_kl_warmup=None)
        self.optimizer_name = optimizer
        self.momentum = momentum
        self.lr_decay_epochs = lr_decay_epochs
        self.lr_decay_factor = lr_decay_factor
        self._init_counters()
        self._init_averaging(ema_decay)
        self._stepped = False

    def training_step(self, batch, batch_idx):
        """One update on a batch of every modality."""
        outputs = self.module.forward_step(batch, self.step)
        loss, terms = self.module.training_loss(outputs, self.step)
        self.step += 1
        self._stepped = self._finite_or_skip(loss)
        if not self._stepped:
            return None
        self.accumulate({"loss": loss.detach(), **terms}, _n_obs(batch), "train")
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """Average the weights the optimiser has just updated (a skipped step adds nothing)."""
        if self._stepped:
            self._update_average()

    def _averaged_parameters(self) -> list[torch.Tensor]:
        return [p for p in self.module.parameters() if p.requires_grad]

    def validation_step(self, batch, batch_idx):
        """Losses on held-out cells."""
        outputs = self.module.forward_step(batch, self.step)
        loss, terms = self.module.training_loss(outputs, self.step)
        self.accumulate({"loss": loss, **terms}, _n_obs(batch), "validation")

    def configure_optimizers(self):
        """Adam, or SGD with momentum; optional step decay of the learning rate per epoch."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        if self.optimizer_name == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        else:
            optimizer = adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.lr_decay_epochs is None:
            return optimizer
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=self.lr_decay_epochs, gamma=self.lr_decay_factor
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }


class AdversarialTrainingPlan(
    _StepCountingMixin, _WeightAveragingMixin, EpochMeanLoggingMixin, TrainingPlan
):
    """Alternating discriminator / generator updates with manual optimisation.

    Each discriminator update back-propagates through the discriminators only and the
    generator update leaves the (toggled-off) discriminators without gradients, so under
    distributed data parallel every backward pass leaves parameters unused:
    ``find_unused_parameters`` tells :func:`~scx.train.fit` to use Lightning's DDP variant
    that tolerates it.

    Parameters
    ----------
    module
        An :class:`AdversarialModule`.
    lr, weight_decay, betas, eps
        Adam settings of the generator side (encoders, generators, …).
    lr_discriminator, weight_decay_discriminator
        Adam settings of the discriminators (default: the generator's).
    n_discriminator_steps
        Discriminator updates per generator update (1 for Portal, 5 for scMODAL).
    clip_norm, clip_norm_discriminator
        Gradient-norm clipping of each side (``None``: none).
    ema_decay
        Return the generator side's weights as the exponential moving average of their
        iterates (decay ``min(ema_decay, (1 + t) / (10 + t))`` at update ``t``, as
        :class:`LossTrainingPlan`): adversarial training circles around its equilibrium rather
        than settling on it, and averaging the iterates lands nearer to it (Yazıcı et al.,
        *The unusual effectiveness of averaging in GAN training*, ICLR 2019). The
        discriminators are not averaged. ``None``: the last iterate.
    """

    find_unused_parameters = True

    def __init__(
        self,
        module,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        lr_discriminator: float | None = None,
        weight_decay_discriminator: float | None = None,
        n_discriminator_steps: int = 1,
        clip_norm: float | None = None,
        clip_norm_discriminator: float | None = None,
        ema_decay: float | None = None,
    ):
        super().__init__(module, lr=lr, weight_decay=weight_decay, n_epochs_kl_warmup=None)
        self.automatic_optimization = False
        self.betas = tuple(betas)
        self.adam_eps = eps
        self.lr_discriminator = lr if lr_discriminator is None else lr_discriminator
        self.weight_decay_discriminator = (
            weight_decay if weight_decay_discriminator is None else weight_decay_discriminator
        )
        self.n_discriminator_steps = int(n_discriminator_steps)
        self.clip_norm = clip_norm
        self.clip_norm_discriminator = clip_norm_discriminator
        self._init_counters()
        self._init_averaging(ema_decay)

    def _parameter_groups(self) -> tuple[list, list]:
        prefix = self.module.discriminator_prefix
        generator, discriminator = [], []
        for name, parameter in self.module.named_parameters():
            if parameter.requires_grad:
                (discriminator if name.startswith(prefix) else generator).append(parameter)
        if not discriminator:
            raise ValueError(f"The module has no parameters under {prefix!r}.")
        return generator, discriminator

    def configure_optimizers(self):
        """One Adam for the generator side, one for the discriminators."""
        generator, discriminator = self._parameter_groups()
        mixed = mixed_precision(self)
        opt_g = adam(
            generator,
            allow_fused=self.clip_norm is None or not mixed,
            lr=self.lr,
            betas=self.betas,
            eps=self.adam_eps,
            weight_decay=self.weight_decay,
        )
        opt_d = adam(
            discriminator,
            allow_fused=self.clip_norm_discriminator is None or not mixed,
            lr=self.lr_discriminator,
            betas=self.betas,
            eps=self.adam_eps,
            weight_decay=self.weight_decay_discriminator,
        )
        return [opt_g, opt_d]

    def _generator_update(self, opt_g, loss_g: torch.Tensor) -> None:
        """Back-propagate and apply the generator loss; skip a non-finite one."""
        if not self._finite_or_skip(loss_g):
            return
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        if self.clip_norm is not None:
            self.clip_gradients(opt_g, self.clip_norm, "norm")
        opt_g.step()
        self._update_average()

    def _averaged_parameters(self) -> list[torch.Tensor]:
        opt_g = self.optimizers()[0]
        return [p for group in opt_g.param_groups for p in group["params"]]

    def _discriminator_update(self, opt_d, outputs: dict) -> torch.Tensor:
        loss_d = self.module.discriminator_loss(outputs, self.step)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        if self.clip_norm_discriminator is not None:
            self.clip_gradients(opt_d, self.clip_norm_discriminator, "norm")
        opt_d.step()
        return loss_d

    def training_step(self, batch, batch_idx):
        """Discriminator step(s), then one generator step, on the same forward pass."""
        opt_g, opt_d = self.optimizers()
        outputs = self.module.forward_step(batch, self.step)

        self.toggle_optimizer(opt_d)
        for _ in range(self.n_discriminator_steps):
            loss_d = self._discriminator_update(opt_d, outputs)
        self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)
        loss_g, terms = self.module.training_loss(outputs, self.step)
        self._generator_update(opt_g, loss_g)
        self.untoggle_optimizer(opt_g)
        self.step += 1
        self.accumulate(
            {"loss": loss_g.detach(), "discriminator": loss_d.detach(), **terms},
            _n_obs(batch),
            "train",
        )

    def validation_step(self, batch, batch_idx):
        """Generator and discriminator losses on held-out cells (no update)."""
        outputs = self.module.forward_step(batch, self.step)
        loss_d = self.module.discriminator_loss(outputs, self.step)
        loss_g, terms = self.module.training_loss(outputs, self.step)
        self.accumulate(
            {"loss": loss_g, "discriminator": loss_d, **terms}, _n_obs(batch), "validation"
        )
