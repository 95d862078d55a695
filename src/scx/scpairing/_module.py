"""scPairing networks and losses (pure torch).

Niu et al., *scPairing: generating artificial multiomics data with contrastive hyperspherical
embeddings*, Cell Reports Methods (2025). Each modality of a paired bridge (2 or 3 modalities, the
same cells) has an encoder from its low-dimensional input (PCA, LSI, scVI latent, …) onto the unit
hypersphere. A symmetric CLIP loss with a learnable temperature pulls a cell's embeddings together
and pushes other cells' apart; a modality discriminator (subtracted from the objective) and a
cosine term align the modalities further. The embeddings are combined into the mean direction of
a Power Spherical posterior whose concentration is predicted per cell from all inputs; samples of
it are decoded back into every modality's input (MSE), with a small KL to the uniform
distribution on the sphere.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from power_spherical import HypersphericalUniform, PowerSpherical
from scvi import REGISTRY_KEYS
from scvi.module.base import LossOutput
from torch import nn

from scx.base import ModuleBase
from scx.nn import MLP

LossMethod = Literal["clip", "debiased_clip", "sigmoid"]
Combine = Literal["dropout", "average"]
Adversarial = Literal["subtract", "confusion"]


def fc_block(
    n_input: int,
    n_output: int,
    n_hidden: Sequence[int],
    *,
    norm: Literal["batch", "layer"] | None = "batch",
    dropout: float = 0.1,
) -> nn.Sequential:
    """The fully connected block of scPairing: ``Linear → ELU → norm → Dropout`` per hidden layer.

    The activation comes before the normalisation (unlike :class:`scx.nn.MLP`); the output layer
    is a plain ``Linear``. ELU and dropout work in place where autograd allows it (ELU on the
    Linear's output; dropout on a normalisation's output, not on the ELU's, whose backward
    needs it), which saves an activation-sized allocation per layer and step.
    """
    layers: list[nn.Module] = []
    widths = [n_input, *n_hidden]
    for d_in, d_out in itertools.pairwise(widths):
        layers += [nn.Linear(d_in, d_out), nn.ELU(inplace=True)]
        if norm == "batch":
            layers.append(nn.BatchNorm1d(d_out))
        elif norm == "layer":
            layers.append(nn.LayerNorm(d_out))
        elif norm is not None:
            raise ValueError(f"Unknown norm {norm!r}; use 'batch', 'layer' or None.")
        if dropout > 0:
            layers.append(nn.Dropout(dropout, inplace=norm is not None))
    layers.append(nn.Linear(widths[-1], n_output))
    return nn.Sequential(*layers)


def clip_loss(f1: torch.Tensor, f2: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): each cell must pick its partner among the batch's cells.

    ``(CE(L, I) + CE(Lᵀ, I)) / 2`` with logits ``L = scale · f1 f2ᵀ`` of unit-norm embeddings,
    computed by :class:`_SymmetricClip`: both directions share one exponential of the batch ×
    batch logits and one buffer, instead of two log-softmaxes forward and backward.
    """
    if f1.dtype != f2.dtype or f1.dtype in (torch.float16, torch.bfloat16):
        # mixed precision: the n × n exponential and its sums stay in float32
        f1, f2 = f1.float(), f2.float()
    with torch.autocast(f1.device.type, enabled=False):
        return _SymmetricClip.apply(f1, f2, scale.to(f1.dtype))


#: Largest logit bound ``b`` for the single shifted exponential: logits lie in ``[-b, b]``, so
#: ``exp(logits - b) ≥ exp(-2 b)`` stays a normal float32.
_ONE_SHIFT_MAX_BOUND = 40.0


class _SymmetricClip(torch.autograd.Function):
    """Both directions of the CLIP loss with one ``n × n`` exponential, forward and backward.

    With ``E = exp(L - m)`` the row and column log-sum-exps are ``log E.sum(1) + m`` and
    ``log E.sum(0) + m``, and the gradient with respect to ``L`` is
    ``(E / rowsum + E / colsum) / (2n) - I / n``. By Cauchy–Schwarz ``|L| ≤ m = scale ·
    max‖f1‖ · max‖f2‖`` (``scale`` for unit-norm embeddings), so one shift by ``m`` keeps every
    entry representable while ``m ≤ _ONE_SHIFT_MAX_BOUND``; beyond it the row- and
    column-stable log-softmaxes of autograd are used.
    """

    @staticmethod
    def forward(ctx, f1: torch.Tensor, f2: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        n = f1.shape[0]
        s = float(scale.detach())
        m = s * float(f1.detach().norm(dim=1).max() * f2.detach().norm(dim=1).max())
        diagonal = (f1 * f2).sum(1)
        if m > _ONE_SHIFT_MAX_BOUND:
            logits = (f1 @ f2.T).mul_(scale)
            target = torch.arange(n, device=f1.device)
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            ctx.fallback = True
            ctx.save_for_backward(f1, f2, scale)
            return loss
        ctx.fallback = False
        # E = exp(s · f1 f2ᵀ − m): the scale and the shift ride on the product (one pass less)
        shift = torch.full((1, 1), -m, dtype=f1.dtype, device=f1.device)
        exp = torch.addmm(shift, f1, f2.T, alpha=s).exp_()
        rowsum, colsum = exp.sum(1), exp.sum(0)
        lse = (rowsum.log().mean() + colsum.log().mean()) / 2 + m
        loss = lse - s * diagonal.mean()
        ctx.save_for_backward(f1, f2, scale, exp, rowsum, colsum)
        return loss

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        if ctx.fallback:
            f1, f2, scale = ctx.saved_tensors
            with torch.enable_grad():
                f1_, f2_, s_ = (t.detach().requires_grad_() for t in (f1, f2, scale))
                logits = s_ * f1_ @ f2_.T
                target = torch.arange(f1.shape[0], device=f1.device)
                loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
                return torch.autograd.grad(loss, (f1_, f2_, s_), grad_output)
        f1, f2, scale, exp, rowsum, colsum = ctx.saved_tensors
        n, d = f1.shape
        weight = grad_output / (2 * n)
        row, col = (weight / rowsum)[:, None], (weight / colsum)[:, None]
        # dL/dL = G = E∘(row 1ᵀ + 1 colᵀ) − (2·weight) I, never formed: G f2 and Gᵀ f1 are
        # two products of E with two stacked d-column blocks each (E is read twice, no n × n
        # tensor is written).
        e_f2 = exp @ torch.cat([f2, col * f2], dim=1)
        e_t_f1 = exp.T @ torch.cat([row * f1, f1], dim=1)
        g_f2 = row * e_f2[:, :d] + e_f2[:, d:] - 2 * weight * f2
        g_t_f1 = e_t_f1[:, :d] + col * e_t_f1[:, d:] - 2 * weight * f1
        grad_scale = (f1 * g_f2).sum()
        return g_f2 * scale, g_t_f1 * scale, grad_scale.reshape(scale.shape)


def debiased_clip_loss(
    f1: torch.Tensor, f2: torch.Tensor, scale: torch.Tensor, tau_plus: float = 0.3
) -> torch.Tensor:
    """Debiased contrastive loss (Chuang et al. 2020) in both directions, in log space."""

    def one_way(logits: torch.Tensor) -> torch.Tensor:
        n = logits.shape[0]
        shift = logits.max(dim=1, keepdim=True).values.detach()
        e = torch.exp(logits - shift)
        pos = e.diagonal()
        neg = e.sum(dim=1) - pos
        n_neg = n - 1
        ng = (neg - tau_plus * n_neg * pos) / (1 - tau_plus)
        floor = n_neg * torch.exp(-scale - shift.squeeze(1))
        ng = torch.maximum(ng, floor)
        return (torch.log(pos + ng) - torch.log(pos)).mean()

    logits = scale * f1 @ f2.T
    return (one_way(logits) + one_way(logits.T)) / 2


def sigmoid_loss(
    f1: torch.Tensor, f2: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """SigLIP: every (cell, cell) pair is a binary partner / not-partner decision."""
    logits = scale * f1 @ f2.T + bias
    labels = 2 * torch.eye(f1.shape[0], device=f1.device) - 1
    return -F.logsigmoid(labels * logits).sum() / f1.shape[0]


class SCPAIRINGModule(ModuleBase):
    """scPairing's encoders, decoders, concentration network, temperature and discriminators.

    Parameters
    ----------
    n_inputs
        Input dimensions of each modality (2 or 3 modalities).
    n_latent
        Dimension of the embedding space (10); embeddings lie on the unit sphere S^(n_latent-1).
    n_hidden
        Hidden widths of encoders and decoders (``(128,)``).
    norm
        Normalisation in encoders and decoders (``"batch"``).
    dropout
        Dropout in encoders, decoders and the concentration network (0.1).
    n_batches
        Batches of the batch discriminator (only used with ``batch_discriminative``).
    modality_discriminative, batch_discriminative
        Use the modality (True) and batch (False) discriminators; a single batch disables the
        batch discriminator.
    modality_weight, batch_weight, cosine_weight, kl_weight
        Weights of the adversarial modality and batch terms, the cosine alignment and the KL
        (1, 1, 1, 1e-3).
    loss_method
        ``"clip"`` (default), ``"debiased_clip"`` (τ⁺ = ``tau_plus``) or ``"sigmoid"`` (SigLIP).
    combine
        How training combines the modalities' embeddings into the posterior mean:
        ``"dropout"`` picks every coordinate from a random modality and renormalises;
        ``"average"`` normalises the mean. Evaluation always uses the (deterministic) average.
    temperature
        Initial inverse temperature ``s`` of the contrastive logits (1/0.07).
    learn_temperature
        Learn ``log s`` (True) or keep it fixed.
    cap_temperature
        Upper bound on ``s`` (``None``: none).
    adversarial
        ``"subtract"``: the encoders maximise the discriminators' cross-entropy (the reference's
        unbounded objective). ``"confusion"``: they minimise the cross-entropy to the uniform
        distribution over modalities/batches (bounded, optimal at chance).
    tau_plus
        Class prior of the debiased loss (0.3).
    """

    discriminator_prefix = "discriminators."

    def __init__(
        self,
        n_inputs: Sequence[int],
        *,
        n_latent: int = 10,
        n_hidden: Sequence[int] = (128,),
        norm: Literal["batch", "layer"] | None = "batch",
        dropout: float = 0.1,
        n_batches: int = 1,
        modality_discriminative: bool = True,
        batch_discriminative: bool = False,
        modality_weight: float = 1.0,
        batch_weight: float = 1.0,
        cosine_weight: float = 1.0,
        kl_weight: float = 1e-3,
        loss_method: LossMethod = "clip",
        combine: Combine = "dropout",
        temperature: float = 1 / 0.07,
        learn_temperature: bool = True,
        cap_temperature: float | None = None,
        adversarial: Adversarial = "subtract",
        tau_plus: float = 0.3,
    ):
        super().__init__()
        self.n_inputs = [int(n) for n in n_inputs]
        if len(self.n_inputs) not in (2, 3):
            raise ValueError(f"scPairing needs 2 or 3 modalities, got {len(self.n_inputs)}.")
        self.n_modalities = len(self.n_inputs)
        self.n_latent = int(n_latent)
        self.n_batches = int(n_batches)
        self.modality_discriminative = bool(modality_discriminative)
        self.batch_discriminative = bool(batch_discriminative) and self.n_batches > 1
        self.modality_weight = float(modality_weight)
        self.batch_weight = float(batch_weight)
        self.cosine_weight = float(cosine_weight)
        self.kl_weight = float(kl_weight)
        self.loss_method = loss_method
        self.combine_method = combine
        self.cap_temperature = cap_temperature
        self.adversarial = adversarial
        self.tau_plus = float(tau_plus)
        hidden = list(n_hidden)
        self.encoders = nn.ModuleList(
            fc_block(n, n_latent, hidden, norm=norm, dropout=dropout) for n in self.n_inputs
        )
        self.decoders = nn.ModuleList(
            fc_block(n_latent, n, hidden, norm=norm, dropout=dropout) for n in self.n_inputs
        )
        # per-cell concentration from all inputs: each modality → 32 → 5, concatenated → 32 → 1
        self.concentration_encoders = nn.ModuleList(
            fc_block(n, 5, [32], norm="layer", dropout=dropout) for n in self.n_inputs
        )
        self.concentration_head = fc_block(
            5 * self.n_modalities, 1, [32], norm="layer", dropout=dropout
        )
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(temperature)), requires_grad=learn_temperature
        )
        self.sigmoid_bias = nn.Parameter(torch.zeros(()), requires_grad=loss_method == "sigmoid")
        discriminators = {}
        n_mod_out = 1 if self.n_modalities == 2 else self.n_modalities
        if self.modality_discriminative:
            discriminators["modality"] = MLP(
                n_latent, n_mod_out, [128], activation="elu", norm="layer"
            )
        if self.batch_discriminative:
            discriminators["batch"] = MLP(
                n_latent, self.n_batches, [128], activation="elu", norm="layer"
            )
        self.discriminators = nn.ModuleDict(discriminators)

    # ------------------------------------------------------------------ networks
    def embed(self, x: torch.Tensor, modality: int) -> torch.Tensor:
        """Unit-norm embedding of a batch of modality number ``modality`` alone (unpaired cells)."""
        return F.normalize(self.encoders[modality](x), dim=-1)

    def embed_all(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Unit-norm embedding of each modality's input (``xs`` in modality order)."""
        return [self.embed(x, k) for k, x in enumerate(xs)]

    def concentration(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-cell concentration κ > 0 of the Power Spherical posterior."""
        h = torch.cat([enc(x) for enc, x in zip(self.concentration_encoders, xs)], dim=-1)
        return F.softplus(self.concentration_head(h)).squeeze(-1) + 1e-5

    def combine(self, fs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Posterior mean direction from the modalities' embeddings.

        Training with ``combine="dropout"``: each coordinate comes from a modality drawn
        uniformly at random (on the module's device), then the vector is renormalised. In
        evaluation, or with ``"average"``: the normalised mean.
        """
        if self.training and self.combine_method == "dropout":
            stacked = torch.stack(list(fs))  # (M, B, d)
            pick = torch.randint(0, len(fs), stacked.shape[1:], device=stacked.device)
            mixed = torch.gather(stacked, 0, pick.unsqueeze(0)).squeeze(0)
            return F.normalize(mixed, dim=-1)
        return F.normalize(torch.stack(list(fs)).mean(0), dim=-1)

    def scale(self) -> torch.Tensor:
        """Inverse temperature ``s = exp(logit_scale)`` (capped when asked)."""
        s = self.logit_scale.exp()
        if self.cap_temperature is not None:
            s = s.clamp(max=self.cap_temperature)
        return s

    def contrastive(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        """The selected contrastive loss between two modalities' embeddings of the same cells."""
        s = self.scale()
        if self.loss_method == "clip":
            return clip_loss(f1, f2, s)
        if self.loss_method == "debiased_clip":
            return debiased_clip_loss(f1, f2, s, self.tau_plus)
        return sigmoid_loss(f1, f2, s, self.sigmoid_bias)

    def posterior(self, mu: torch.Tensor, kappa: torch.Tensor) -> PowerSpherical:
        """Power Spherical posterior ``q(z | x)`` (in float32: its Beta sampler has no bf16)."""
        return PowerSpherical(mu.float(), kappa.float())

    def kl_uniform(self, q: PowerSpherical) -> torch.Tensor:
        """Per-cell KL divergence from ``q`` to the uniform distribution on the sphere."""
        prior = HypersphericalUniform(self.n_latent, device=q.loc.device)
        return torch.distributions.kl_divergence(q, prior)

    # ------------------------------------------------------------------ discriminators
    def _modality_targets(self, fs: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat([torch.full((f.shape[0],), k, device=f.device) for k, f in enumerate(fs)])

    def _modality_logits(self, fs: Sequence[torch.Tensor]) -> torch.Tensor:
        logits = self.discriminators["modality"](torch.cat(list(fs)))
        return logits.squeeze(-1) if self.n_modalities == 2 else logits

    def _modality_ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.n_modalities == 2:
            return F.binary_cross_entropy_with_logits(logits, target.float())
        return F.cross_entropy(logits, target)

    def _modality_confusion(self, logits: torch.Tensor) -> torch.Tensor:
        if self.n_modalities == 2:
            return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 0.5))
        return -F.log_softmax(logits, dim=-1).mean(dim=-1).mean()

    def discriminator_terms(
        self, fs: Sequence[torch.Tensor], batch_index: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """Cross-entropies (and the modality discriminator's accuracy) on embeddings ``fs``."""
        out = {}
        if self.modality_discriminative:
            logits = self._modality_logits(fs)
            target = self._modality_targets(fs)
            out["modality"] = self._modality_ce(logits, target)
            pred = (logits > 0).long() if self.n_modalities == 2 else logits.argmax(-1)
            out["modality_accuracy"] = (pred == target).float().mean()
            out["modality_logits"] = logits
        if self.batch_discriminative and batch_index is not None:
            logits = self.discriminators["batch"](torch.cat(list(fs)))
            target = batch_index.long().view(-1).repeat(len(fs))
            out["batch"] = F.cross_entropy(logits, target)
            out["batch_logits"] = logits
        return out

    # ------------------------------------------------------------------ training
    def _inputs(self, batch: dict) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        tensors = list(batch.values())
        xs = [t[REGISTRY_KEYS.X_KEY].float() for t in tensors]
        batch_index = tensors[0].get(REGISTRY_KEYS.BATCH_KEY)
        return xs, batch_index

    def forward_step(self, batch: dict, step: int) -> dict:
        """Embeddings, posterior sample and reconstructions of one paired mini-batch.

        ``batch`` is ``{modality: {registry key: tensor}}`` in the model's modality order; row
        ``i`` of every modality is the same cell.
        """
        xs, batch_index = self._inputs(batch)
        fs = self.embed_all(xs)
        kappa = self.concentration(xs)
        q = self.posterior(self.combine(fs), kappa)
        z = q.rsample() if self.training else q.loc
        return {
            "xs": xs,
            "fs": fs,
            "batch_index": batch_index,
            "q": q,
            "kappa": kappa,
            "recon": [dec(z) for dec in self.decoders],
        }

    def training_loss(self, outputs: dict, step: int) -> tuple[torch.Tensor, dict]:
        """Reconstruction + contrastive − adversarial − cosine + KL (the reference's objective)."""
        xs, fs = outputs["xs"], outputs["fs"]
        nll = sum(F.mse_loss(r, x) for r, x in zip(outputs["recon"], xs))
        pairs = [(a, b) for a in range(len(fs)) for b in range(a + 1, len(fs))]
        contrastive = sum(self.contrastive(fs[a], fs[b]) for a, b in pairs)
        cosine = sum((fs[a] * fs[b]).sum(-1).mean() for a, b in pairs) / len(pairs)
        kl = self.kl_uniform(outputs["q"]).mean()
        total = nll + contrastive - self.cosine_weight * cosine + self.kl_weight * kl
        terms = {
            "reconstruction": nll.detach(),
            "contrastive": contrastive.detach(),
            "cosine": cosine.detach(),
            "kl": kl.detach(),
            "temperature": self.scale().detach(),
            "concentration": outputs["kappa"].detach().mean(),
        }
        disc = self.discriminator_terms(fs, outputs["batch_index"])
        if "modality" in disc:
            if self.adversarial == "subtract":
                total = total - self.modality_weight * disc["modality"]
            else:
                total = total + self.modality_weight * self._modality_confusion(
                    disc["modality_logits"]
                )
            terms["modality_ce"] = disc["modality"].detach()
        if "batch" in disc:
            if self.adversarial == "subtract":
                total = total - self.batch_weight * disc["batch"]
            else:
                confusion = -F.log_softmax(disc["batch_logits"], -1).mean(-1).mean()
                total = total + self.batch_weight * confusion
            terms["batch_ce"] = disc["batch"].detach()
        return total, terms

    def discriminator_loss_and_terms(
        self, outputs: dict, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Discriminator cross-entropy on detached embeddings, and the modality accuracy."""
        fs = [f.detach() for f in outputs["fs"]]
        disc = self.discriminator_terms(fs, outputs["batch_index"])
        loss = disc.get("modality", torch.zeros((), device=fs[0].device))
        if "batch" in disc:
            loss = loss + disc["batch"]
        terms = {}
        if "modality_accuracy" in disc:
            terms["discriminator_accuracy"] = disc["modality_accuracy"].detach()
        return loss, terms

    def discriminator_loss(self, outputs: dict, step: int) -> torch.Tensor:
        """Modality (and batch) discriminator cross-entropy on detached embeddings."""
        return self.discriminator_loss_and_terms(outputs, step)[0]

    # ------------------------------------------------------------------ scvi interface
    # ------------------------------------------------------------------ scvi-tools API
    def generative(self, z: torch.Tensor, modality: int = 0) -> dict[str, torch.Tensor]:
        """Decode embeddings into one modality's input space."""
        return {"x": self.decoders[modality](z)}

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Input reconstruction of a single-modality pass (training: :meth:`training_loss`)."""
        x = tensors[REGISTRY_KEYS.X_KEY]
        error = ((generative_outputs["x"] - x) ** 2).mean(dim=1)
        return LossOutput(loss=error.mean(), reconstruction_loss=error)
