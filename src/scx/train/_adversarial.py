"""A reusable training plan for modules with discriminators (Portal, scMODAL).

scvi-tools' own ``AdversarialTrainingPlan`` keeps its classifier on the plan (so ``save`` loses
it), hard-codes the discriminator optimiser and scales both losses by a KL-derived factor. Here
the discriminators live in the module under a ``discriminator_prefix`` (saved with the model);
the plan only owns the optimisation:

1. one forward pass of the module (:meth:`AdversarialModule.adversarial_forward`);
2. ``n_discriminator_steps`` updates of the discriminators on detached samples;
3. one update of everything else with the adversarial term recomputed by the updated
   discriminators, plus the module's other losses.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import torch
from scvi.train import TrainingPlan

from ._logging import EpochMeanLoggingMixin

logger = logging.getLogger(__name__)


class AdversarialModule(Protocol):
    """What :class:`AdversarialTrainingPlan` needs from a module."""

    discriminator_prefix: str

    def adversarial_forward(self, batch: dict, step: int) -> dict[str, Any]:
        """All tensors of one step (translations, reconstructions, latents…)."""

    def discriminator_loss(self, outputs: dict[str, Any], step: int) -> torch.Tensor:
        """Discriminator loss; must only use detached generator outputs."""

    def generator_loss(
        self, outputs: dict[str, Any], step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total encoder/generator loss and its named terms."""


class AdversarialTrainingPlan(EpochMeanLoggingMixin, TrainingPlan):
    """Alternating discriminator / generator updates with manual optimisation.

    Parameters
    ----------
    module
        A module following :class:`AdversarialModule`.
    lr, weight_decay, betas, eps
        Adam settings of the generator side (encoders, generators, …).
    lr_discriminator, weight_decay_discriminator
        Adam settings of the discriminators (default: the generator's).
    n_discriminator_steps
        Discriminator updates per generator update (1 for Portal, 5 for scMODAL).
    clip_norm, clip_norm_discriminator
        Gradient-norm clipping of each side (``None``: none).
    """

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
        # generator updates so far; trainer.global_step counts every optimiser's steps
        self.generator_step = 0

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
        opt_g = torch.optim.Adam(
            generator,
            lr=self.lr,
            betas=self.betas,
            eps=self.adam_eps,
            weight_decay=self.weight_decay,
        )
        opt_d = torch.optim.Adam(
            discriminator,
            lr=self.lr_discriminator,
            betas=self.betas,
            eps=self.adam_eps,
            weight_decay=self.weight_decay_discriminator,
        )
        return [opt_g, opt_d]

    def _n_obs(self, batch: dict) -> int:
        return sum(next(iter(tensors.values())).shape[0] for tensors in batch.values())

    def _generator_update(self, opt_g, loss_g: torch.Tensor, step: int) -> None:
        """Back-propagate and apply the generator loss; skip a non-finite one with a warning."""
        if not torch.isfinite(loss_g):
            logger.warning("Non-finite generator loss at step %d; update skipped.", step)
            return
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        if self.clip_norm is not None:
            self.clip_gradients(opt_g, self.clip_norm, "norm")
        opt_g.step()

    def training_step(self, batch, batch_idx):
        """Discriminator step(s), then one generator step, on the same forward pass."""
        opt_g, opt_d = self.optimizers()
        step = self.generator_step
        outputs = self.module.adversarial_forward(batch, step)

        self.toggle_optimizer(opt_d)
        for _ in range(self.n_discriminator_steps):
            loss_d = self.module.discriminator_loss(outputs, step)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d)
            if self.clip_norm_discriminator is not None:
                self.clip_gradients(opt_d, self.clip_norm_discriminator, "norm")
            opt_d.step()
        self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)
        loss_g, terms = self.module.generator_loss(outputs, step)
        self._generator_update(opt_g, loss_g, step)
        self.untoggle_optimizer(opt_g)
        self.generator_step += 1
        self.accumulate(
            {"loss": loss_g.detach(), "discriminator": loss_d.detach(), **terms},
            self._n_obs(batch),
            "train",
        )

    def validation_step(self, batch, batch_idx):
        """Generator and discriminator losses on held-out cells (no update)."""
        outputs = self.module.adversarial_forward(batch, self.generator_step)
        loss_d = self.module.discriminator_loss(outputs, self.generator_step)
        loss_g, terms = self.module.generator_loss(outputs, self.generator_step)
        self.accumulate(
            {"loss": loss_g, "discriminator": loss_d, **terms}, self._n_obs(batch), "validation"
        )
