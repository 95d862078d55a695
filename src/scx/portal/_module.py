"""Portal networks and losses (pure torch).

Zhao et al., *Adversarial domain translation networks for integrating large-scale atlas-level
single-cell datasets*, Nat Comput Sci 2, 317–330 (2022). Two domains A (the reference space) and
B share a low-dimensional input space (a joint PCA). Each has an encoder into a common latent
space and a generator back into its input space; a discriminator per domain, in the input
space, tells real cells from cells translated from the other domain. Its logits are clamped to
``[-boundary, boundary]``, so cells a discriminator is sure are foreign (typically cell types
present in one dataset only) give the encoders and generators no adversarial gradient and are
not forced together.

Several datasets are integrated incrementally: stage ``s`` aligns dataset ``s + 1`` (domain B)
with all earlier datasets mapped into the reference's input space (domain A). The module holds
one set of networks per stage; ``active_stage`` selects the one being trained.

Datasets are addressed by their registration position (``modality``, the convention of every
scx module); ``order`` says which dataset each integration position holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from torch import nn

from scx.base import ModuleBase
from scx.nn import MLP, apply_jointly

REFERENCE, QUERY = "reference", "query"


def _reference_init(module: nn.Module, std: float) -> None:
    """Initialise every weight and bias from N(0, std²), as the reference does."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, std)
            nn.init.normal_(layer.bias, 0.0, std)


class PortalStage(nn.Module):
    """Encoders and generators of one A/B translation (index 0: A, 1: B)."""

    def __init__(self, n_input: int, n_latent: int, n_hidden: int):
        super().__init__()
        self.encoders = nn.ModuleList(MLP(n_input, n_latent, [n_hidden]) for _ in range(2))
        self.generators = nn.ModuleList(MLP(n_latent, n_input, [n_hidden]) for _ in range(2))


class PORTALModule(ModuleBase):
    """Portal's encoders, generators and boundary-limited discriminators.

    Parameters
    ----------
    n_input
        Input dimensions (30 joint principal components in the reference).
    n_latent
        Latent dimensions (20).
    n_hidden
        Hidden width of every network (512).
    n_stages
        Number of A/B translations (number of datasets − 1).
    order
        Registration positions of the datasets in integration order (the reference first);
        ``None``: registration order.
    lambda_gan, lambda_ae, lambda_la, lambda_cos
        Weights of the adversarial term, the autoencoder reconstruction, the latent-cycle
        alignment and the cosine similarity between a cell and its translation (1, 10, 10, 20).
        ``lambda_cos`` may be a list with one weight per stage.
    boundary
        Discriminator logits are clamped to ``[-boundary, boundary]`` (5) inside every
        adversarial term, after ``warmup_steps`` steps (6).
    logit_clip
        Hard clamp of the raw logits (±50, as in the reference).
    init_std
        Standard deviation of the N(0, σ²) initialisation of every weight and bias (0.1, as in
        the reference); ``None`` keeps PyTorch's default initialisation.
    """

    discriminator_prefix = "discriminators."

    def __init__(
        self,
        n_input: int,
        *,
        n_latent: int = 20,
        n_hidden: int = 512,
        n_stages: int = 1,
        order: Sequence[int] | None = None,
        lambda_gan: float = 1.0,
        lambda_ae: float = 10.0,
        lambda_la: float = 10.0,
        lambda_cos: float | Sequence[float] = 20.0,
        boundary: float = 5.0,
        warmup_steps: int = 6,
        logit_clip: float = 50.0,
        init_std: float | None = 0.1,
    ):
        super().__init__()
        self.n_input = n_input
        self.n_latent = n_latent
        self.n_stages = n_stages
        self.order = list(range(n_stages + 1)) if order is None else [int(k) for k in order]
        self.lambda_gan = lambda_gan
        self.lambda_ae = lambda_ae
        self.lambda_la = lambda_la
        if isinstance(lambda_cos, int | float):
            lambda_cos = [float(lambda_cos)] * n_stages
        self.lambda_cos = [float(w) for w in lambda_cos]
        self.boundary = boundary
        self.warmup_steps = warmup_steps
        self.logit_clip = logit_clip
        self.stages = nn.ModuleList(
            PortalStage(n_input, n_latent, n_hidden) for _ in range(n_stages)
        )
        self.discriminators = nn.ModuleList(
            nn.ModuleList(MLP(n_input, 1, [n_hidden, n_hidden]) for _ in range(2))
            for _ in range(n_stages)
        )
        if init_std is not None:
            _reference_init(self, init_std)
        self.active_stage = 0

    def set_active_stage(self, stage: int) -> None:
        """Train stage ``stage`` only: the other stages' parameters are frozen."""
        self.active_stage = stage
        for s in range(self.n_stages):
            for net in (self.stages[s], self.discriminators[s]):
                net.requires_grad_(s == stage)

    # ------------------------------------------------------------------ networks
    def encode(self, x: torch.Tensor, stage: int, side: int) -> torch.Tensor:
        """Latent of cells of side ``side`` (0: A, 1: B) of stage ``stage``."""
        return self.stages[stage].encoders[side](x)

    def generate(self, z: torch.Tensor, stage: int, side: int) -> torch.Tensor:
        """Decode latents into the input space of side ``side``."""
        return self.stages[stage].generators[side](z)

    def translate(self, x: torch.Tensor, stage: int, source: int, target: int) -> torch.Tensor:
        """Map cells of side ``source`` into the input space of side ``target``."""
        return self.generate(self.encode(x, stage, source), stage, target)

    def position(self, modality: int) -> int:
        """Integration position of the dataset registered at ``modality`` (0: reference)."""
        return self.order.index(modality)

    def to_reference(self, x: torch.Tensor, modality: int) -> torch.Tensor:
        """Cells of dataset ``modality`` in the reference's input space.

        A dataset integrated at stage ``s`` is translated by that stage's generator (B → A);
        the reference's own cells are returned as they are.
        """
        k = self.position(modality)
        return x if k == 0 else self.translate(x, k - 1, 1, 0)

    def from_reference(self, x: torch.Tensor, modality: int) -> torch.Tensor:
        """Cells in the reference space translated into dataset ``modality``'s input space."""
        k = self.position(modality)
        return x if k == 0 else self.translate(x, k - 1, 0, 1)

    def embed(self, x: torch.Tensor, modality: int) -> torch.Tensor:
        """Harmonised latent of cells of dataset ``modality`` (registration position).

        The last stage's encoders embed the last dataset (its own inputs, domain B) and every
        dataset integrated before it (in the reference space, domain A), as the reference does.
        """
        last = self.n_stages - 1
        if self.position(modality) == self.n_stages:
            return self.encode(x, last, 1)
        return self.encode(self.to_reference(x, modality), last, 0)

    def boundary_score(self, x: torch.Tensor, modality: int) -> torch.Tensor:
        """Clamped reference-discriminator logit of a non-reference dataset's translations.

        Scored by the discriminator of the stage that integrated ``modality``.
        """
        k = self.position(modality)
        if k == 0:
            raise ValueError("The reference dataset has no boundary score.")
        return self.critic(self.translate(x, k - 1, 1, 0), k - 1, 0)

    def critic(
        self, x: torch.Tensor, stage: int, side: int, step: int | None = None
    ) -> torch.Tensor:
        """Discriminator logit of side ``side``, with the boundary clamp after the warm-up.

        ``step=None`` (evaluation) always applies the boundary.
        """
        logit = self.discriminators[stage][side](x).clamp(-self.logit_clip, self.logit_clip)
        if step is None or step >= self.warmup_steps:
            logit = logit.clamp(-self.boundary, self.boundary)
        return logit.squeeze(-1)

    # ------------------------------------------------------------------ training
    def forward_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        """One forward pass of the active stage.

        ``batch`` holds a batch of domain A (``"reference"``: every dataset integrated so far,
        in the reference space) and of domain B (``"query"``: the dataset being integrated).
        """
        s = self.active_stage
        x_a = batch[REFERENCE][REGISTRY_KEYS.X_KEY]
        x_b = batch[QUERY][REGISTRY_KEYS.X_KEY]
        z_a, z_b = self.encode(x_a, s, 0), self.encode(x_b, s, 1)
        # each generator decodes both domains' latents in one pass (translation + reconstruction)
        x_aa, x_ba = apply_jointly(self.stages[s].generators[0], z_a, z_b)
        x_ab, x_bb = apply_jointly(self.stages[s].generators[1], z_a, z_b)
        return {
            "x_a": x_a,
            "x_b": x_b,
            "z_a": z_a,
            "z_b": z_b,
            "x_ab": x_ab,
            "x_ba": x_ba,
            "x_aa": x_aa,
            "x_bb": x_bb,
            "z_ab": self.encode(x_ab, s, 1),
            "z_ba": self.encode(x_ba, s, 0),
        }

    def discriminator_loss(self, outputs: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        """Real cells of each domain against detached translations into it.

        Real and translated cells of a domain go through its discriminator as one batch (one
        product per layer instead of two).
        """
        s = self.active_stage
        loss = 0.0
        for side, real, fake in ((0, "x_a", "x_ba"), (1, "x_b", "x_ab")):
            logits_real, logits_fake = apply_jointly(
                partial(self.critic, stage=s, side=side, step=step),
                outputs[real],
                outputs[fake].detach(),
            )
            loss = loss + F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean()
        return loss

    def training_loss(
        self, outputs: dict[str, torch.Tensor], step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Non-saturating adversarial loss plus reconstruction, latent cycle and cosine terms."""
        s = self.active_stage
        gan = (
            F.softplus(-self.critic(outputs["x_ba"], s, 0, step)).mean()
            + F.softplus(-self.critic(outputs["x_ab"], s, 1, step)).mean()
        )
        ae = F.mse_loss(outputs["x_aa"], outputs["x_a"]) + F.mse_loss(
            outputs["x_bb"], outputs["x_b"]
        )
        la = F.mse_loss(outputs["z_ab"], outputs["z_a"]) + F.mse_loss(
            outputs["z_ba"], outputs["z_b"]
        )
        cos = (1 - F.cosine_similarity(outputs["x_ab"], outputs["x_a"], dim=1)).mean() + (
            1 - F.cosine_similarity(outputs["x_ba"], outputs["x_b"], dim=1)
        ).mean()
        total = (
            self.lambda_gan * gan
            + self.lambda_ae * ae
            + self.lambda_la * la
            + self.lambda_cos[s] * cos
        )
        return total, {
            "gan": gan.detach(),
            "ae": ae.detach(),
            "la": la.detach(),
            "cos": cos.detach(),
        }

    # ------------------------------------------------------------------ scvi-tools API
