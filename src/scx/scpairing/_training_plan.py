"""scPairing's optimisation: main step first, then one discriminator step on fresh embeddings."""

from __future__ import annotations

import math

import torch

from scx.train import AdversarialTrainingPlan, adam, mixed_precision


class SCPairingTrainingPlan(AdversarialTrainingPlan):
    """The reference's schedule on the shared adversarial plan.

    The shared plan updates the discriminators first; scPairing's reference updates the main
    networks first. Each step (1) updates everything but the discriminators on the main
    objective (gradient norm clipped at ``clip_norm`` over those parameters only; the reference
    also counted the discriminators' gradients), with the learning rate decayed by
    ``exp(-lr_decay)`` per step, then (2) recomputes the embeddings of the same batch with the
    updated encoders and updates the discriminators once. Decoder parameters get
    ``weight_decay``.

    Parameters
    ----------
    module
        A :class:`~scx.scpairing.SCPAIRINGModule`.
    lr
        Initial learning rate of the main Adam (5e-3).
    lr_decay
        Per-step exponential decay rate of ``lr`` (6e-5).
    weight_decay
        Weight decay of the decoders (0).
    lr_discriminator
        Learning rate of the discriminators' Adam (1e-3, torch's default).
    clip_norm
        Gradient-norm clipping of the main step (50).
    """

    def __init__(
        self,
        module,
        *,
        lr: float = 5e-3,
        lr_decay: float = 6e-5,
        weight_decay: float = 0.0,
        lr_discriminator: float = 1e-3,
        clip_norm: float | None = 50.0,
    ):
        super().__init__(
            module,
            lr=lr,
            weight_decay=weight_decay,
            lr_discriminator=lr_discriminator,
            weight_decay_discriminator=0.0,
            clip_norm=clip_norm,
        )
        self.lr_decay = float(lr_decay)

    def configure_optimizers(self):
        """Main Adam (weight decay on decoders only) and, if any, the discriminators' Adam."""
        prefix = self.module.discriminator_prefix
        decoders, others, discriminators = [], [], []
        for name, parameter in self.module.named_parameters():
            if not parameter.requires_grad:
                continue
            if name.startswith(prefix):
                discriminators.append(parameter)
            elif "decoder" in name:
                decoders.append(parameter)
            else:
                others.append(parameter)
        opt_g = adam(
            [
                {"params": others, "weight_decay": 0.0},
                {"params": decoders, "weight_decay": self.weight_decay},
            ],
            allow_fused=self.clip_norm is None or not mixed_precision(self),
            lr=self.lr,
            betas=self.betas,
            eps=self.adam_eps,
        )
        if not discriminators:
            return opt_g
        opt_d = adam(discriminators, lr=self.lr_discriminator, betas=self.betas, eps=self.adam_eps)
        return [opt_g, opt_d]

    def training_step(self, batch, batch_idx):
        """Main update, then one discriminator update on re-embedded cells."""
        optimizers = self.optimizers()
        opt_g, opt_d = (
            (optimizers[0], optimizers[1])
            if isinstance(optimizers, list | tuple)
            else (optimizers, None)
        )
        lr = self.lr * math.exp(-self.lr_decay * self.step)
        for group in opt_g.param_groups:
            group["lr"] = lr

        if opt_d is not None:
            self.toggle_optimizer(opt_g)
        outputs = self.module.forward_step(batch, self.step)
        loss_g, terms = self.module.training_loss(outputs, self.step)
        self._generator_update(opt_g, loss_g)
        metrics = {"loss": loss_g.detach(), **terms}
        if opt_d is not None:
            self.untoggle_optimizer(opt_g)
            # the reference trains the discriminators on the embeddings of the updated encoders
            with torch.no_grad():
                fresh = {**outputs, "fs": self.module.embed_all(outputs["xs"])}
            self.toggle_optimizer(opt_d)
            loss_d, d_terms = self.module.discriminator_loss_and_terms(fresh, self.step)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d)
            opt_d.step()
            self.untoggle_optimizer(opt_d)
            metrics["discriminator"] = loss_d.detach()
            metrics.update(d_terms)
        self.step += 1
        self.accumulate(metrics, outputs["xs"][0].shape[0], "train")

    def validation_step(self, batch, batch_idx):
        """Main objective on held-out pairs (no update)."""
        outputs = self.module.forward_step(batch, self.step)
        loss_g, terms = self.module.training_loss(outputs, self.step)
        self.accumulate({"loss": loss_g, **terms}, outputs["xs"][0].shape[0], "validation")
