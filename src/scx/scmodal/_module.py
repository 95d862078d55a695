"""scMODAL networks and losses (pure torch).

Wang et al., *Integrating single-cell multimodal data with weakly linked features using scMODAL*,
Nat Commun 16, 4994 (2025). Two modalities A and B with different features, of which only a few
are linked (protein ↔ gene, shared markers, gene ↔ gene activity). Each modality has an encoder
into a common latent space and a generator back into its own feature space; one discriminator
in the latent space tells A's latents from B's. Besides the adversarial game the encoders are
pulled together by mutual nearest neighbours found in each mini-batch on the linked features
(anchors), and kept faithful to each modality's own geometry by a kernel-row similarity term.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from torch import nn

from scx.base import ModuleBase
from scx.nn import MLP, apply_jointly


def _reference_init(module: nn.Module, std: float) -> None:
    """Initialise every weight and bias from N(0, std²), as the reference does."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, std)
            nn.init.normal_(layer.bias, 0.0, std)


def _top_k_mask(scores: torch.Tensor, k: int, dim: int = 1) -> torch.Tensor:
    """Boolean mask of the ``k`` largest entries of ``scores`` along ``dim`` (all if fewer)."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    indices = scores.topk(min(k, scores.shape[dim]), dim=dim).indices
    return mask.scatter_(dim, indices, True)


def mutual_nearest_neighbors(x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Mutual ``k``-nearest-neighbour pairs between the rows of ``x`` and ``y`` (cosine).

    Exact and vectorised: one ``(n_x, n_y)`` similarity matrix and two ``topk`` calls. Meant
    for mini-batches (hundreds of cells); for whole datasets use
    :func:`scx._neighbors.mutual_neighbors`.

    Returns
    -------
    ``(n_x, n_y)`` boolean matrix, ``True`` where ``y[j]`` is among the ``k`` nearest of
    ``x[i]`` and ``x[i]`` among the ``k`` nearest of ``y[j]``.
    """
    similarity = F.normalize(x, dim=1) @ F.normalize(y, dim=1).T
    return _top_k_mask(similarity, k, dim=1) & _top_k_mask(similarity, k, dim=0)


def kernel_rows(x: torch.Tensor) -> torch.Tensor:
    """Gaussian kernel of a batch, ``exp(-‖x_i − x_j‖² / (2d))`` (σ² = 1 per feature)."""
    return torch.exp(-torch.cdist(x, x).pow(2) / (2 * x.shape[1]))


def geometry_loss(input_kernel: torch.Tensor, z: torch.Tensor, cap: float) -> torch.Tensor:
    """Minus the mean row-wise cosine of the input's and the latent's kernels, capped at ``cap``.

    ``input_kernel`` is :func:`kernel_rows` of the mini-batch's inputs (computed once per step:
    it also gives the neighbourhoods that score the anchors).
    """
    similarity = F.cosine_similarity(input_kernel, kernel_rows(z), dim=1)
    return -similarity.clamp(max=cap).mean()


def shared_neighbor_scores(
    anchors: torch.Tensor, kernel_a: torch.Tensor, kernel_b: torch.Tensor, k: int
) -> torch.Tensor:
    """Each anchor pair weighted by how much the two cells' own neighbourhoods agree.

    The score of a pair ``(i, j)`` is the fraction of (neighbour of ``i`` in A, neighbour of
    ``j`` in B) combinations that are themselves anchors, with neighbourhoods (``k`` nearest,
    the cell included) taken in each modality's full feature space — the anchor scoring of
    Stuart et al. (Cell 2019). A pair found by chance on a few weak links sits among cells
    that are anchored elsewhere and scores near 0; a pair inside a consistently matched
    population scores high.

    Returns
    -------
    ``(n_a, n_b)`` float matrix, 0 off the anchors, in ``[0, 1]`` on them.
    """
    pairs = anchors.to(kernel_a.dtype)
    near_a = _top_k_mask(kernel_a, k).to(pairs.dtype)
    near_b = _top_k_mask(kernel_b, k).to(pairs.dtype)
    # every cell has min(k, n) neighbours, so the combinations per pair are a constant
    n_combinations = min(k, kernel_a.shape[1]) * min(k, kernel_b.shape[1])
    return pairs * (near_a @ pairs @ near_b.T) / n_combinations


def anchor_loss(z_a: torch.Tensor, z_b: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Mean squared latent distance over anchor pairs; 0 (with gradient) when there are none.

    ``anchors`` is the ``(n_a, n_b)`` boolean pair matrix, or pair weights (the mean is then
    weighted, e.g. by :func:`shared_neighbor_scores`).

    The reference divides by the number of pairs and returns NaN for a mini-batch without any
    mutual pair; here such a batch simply contributes nothing.
    """
    # float32 under mixed precision: anchored cells are close, and the expansion below cancels
    with torch.autocast(z_a.device.type, enabled=False):
        z_a, z_b = z_a.float(), z_b.float()
        weights = anchors.to(z_a.dtype)
        # ‖z_a,i − z_b,j‖² / n_latent for all pairs, without forming an (n, n, d) tensor
        sq = (
            z_a.pow(2).sum(1, keepdim=True) + z_b.pow(2).sum(1)[None, :] - 2 * z_a @ z_b.T
        ).clamp_min(0) / z_a.shape[1]
        total = weights.sum()
        return (weights * sq).sum() / torch.where(total > 0, total, torch.ones_like(total))


class SCMODALModule(ModuleBase):
    """scMODAL's encoders, generators and latent discriminator.

    Parameters
    ----------
    n_input_a, n_input_b
        Feature counts of modality A and B (the full preprocessed feature sets).
    link_a, link_b
        Column indices of the linked features: link ``l`` pairs column ``link_a[l]`` of A with
        column ``link_b[l]`` of B. These ``L`` columns are the space in which anchors (mutual
        nearest neighbours) are searched.
    modalities
        Names of A and B: the keys of their mini-batches in a training batch.
    n_latent, n_hidden
        Latent (20) and hidden (512) widths, as the reference.
    lambda_gan, lambda_ae, lambda_la, lambda_mnn, lambda_geo
        Weights of the adversarial term, the autoencoder reconstruction, the latent cycle, the
        anchor term and the geometry term (1, 10, 10, 1, 10: the reference's defaults).
    n_neighbors
        Neighbours per direction of the mini-batch mutual-neighbour search (30), and the
        neighbourhood size of the anchor scores.
    score_anchors
        Weight the anchor pairs by :func:`shared_neighbor_scores` (``False``: all pairs
        weigh 1, as the reference).
    geo_cap
        Kernel-row cosines above this value give no gradient (0.975).
    logit_clip
        Clamp of the discriminator logits (±50, as the reference).
    init_std
        Standard deviation of the N(0, σ²) initialisation of every weight and bias (0.1, as in
        the reference); ``None`` keeps PyTorch's default initialisation.
    means_a, stds_a, means_b, stds_b
        Per-feature standardisation applied to the registered inputs inside the module
        (``(x − mean) / std``, clipped to ±``clip``), so that sparse inputs stay sparse until
        the mini-batch and imputations come back on the registered scale. ``None``: the
        inputs are used as they are.
    clip
        Clip of the standardised values (10, as the reference's ``scale(max_value=10)``).
    """

    discriminator_prefix = "discriminators."

    def __init__(
        self,
        n_input_a: int,
        n_input_b: int,
        link_a: list[int],
        link_b: list[int],
        *,
        modalities: Sequence[str] = ("A", "B"),
        n_latent: int = 20,
        n_hidden: int = 512,
        lambda_gan: float = 1.0,
        lambda_ae: float = 10.0,
        lambda_la: float = 10.0,
        lambda_mnn: float = 1.0,
        lambda_geo: float = 10.0,
        n_neighbors: int = 30,
        score_anchors: bool = False,
        geo_cap: float = 0.975,
        logit_clip: float = 50.0,
        init_std: float | None = 0.1,
        means_a: list[float] | None = None,
        stds_a: list[float] | None = None,
        means_b: list[float] | None = None,
        stds_b: list[float] | None = None,
        clip: float | None = 10.0,
    ):
        super().__init__()
        self.n_input = (int(n_input_a), int(n_input_b))
        self.modalities = list(modalities)
        self.n_latent = n_latent
        self.lambda_gan = lambda_gan
        self.lambda_ae = lambda_ae
        self.lambda_la = lambda_la
        self.lambda_mnn = lambda_mnn
        self.lambda_geo = lambda_geo
        self.n_neighbors = n_neighbors
        self.score_anchors = score_anchors
        self.geo_cap = geo_cap
        self.logit_clip = logit_clip
        self.clip = clip
        for k, (means, stds) in enumerate([(means_a, stds_a), (means_b, stds_b)]):
            n = self.n_input[k]
            means = torch.zeros(n) if means is None else torch.as_tensor(means).float()
            stds = torch.ones(n) if stds is None else torch.as_tensor(stds).float()
            self.register_buffer(f"means_{k}", means)
            self.register_buffer(f"stds_{k}", stds.clamp_min(1e-8))
        self.register_buffer("link_a", torch.as_tensor(link_a, dtype=torch.long))
        self.register_buffer("link_b", torch.as_tensor(link_b, dtype=torch.long))
        self.encoders = nn.ModuleList(MLP(n, n_latent, [n_hidden]) for n in self.n_input)
        self.generators = nn.ModuleList(MLP(n_latent, n, [n_hidden]) for n in self.n_input)
        # one latent discriminator; a ModuleList under the prefix the training plan looks for
        self.discriminators = nn.ModuleList([MLP(n_latent, 1, [n_hidden, n_hidden])])
        if init_std is not None:
            _reference_init(self, init_std)

    # ------------------------------------------------------------------ networks
    def standardize(self, x: torch.Tensor, modality: int) -> torch.Tensor:
        """Registered values → the standardised, clipped space the networks work in."""
        x = (x - getattr(self, f"means_{modality}")) / getattr(self, f"stds_{modality}")
        return x if self.clip is None else x.clamp(-self.clip, self.clip)

    def unstandardize(self, x: torch.Tensor, modality: int) -> torch.Tensor:
        """Network outputs → the registered scale (e.g. log-normalised expression)."""
        return x * getattr(self, f"stds_{modality}") + getattr(self, f"means_{modality}")

    def encode(self, x: torch.Tensor, modality: int) -> torch.Tensor:
        """Latent of standardised cells of modality number ``modality`` (0: A, 1: B)."""
        return self.encoders[modality](x)

    def generate(self, z: torch.Tensor, modality: int) -> torch.Tensor:
        """Decode latents into the standardised feature space of modality ``modality``."""
        return self.generators[modality](z)

    def critic(self, z: torch.Tensor) -> torch.Tensor:
        """Discriminator logit (A is the "real" class), clamped to ±``logit_clip``."""
        return self.discriminators[0](z).clamp(-self.logit_clip, self.logit_clip).squeeze(-1)

    def embed(self, x: torch.Tensor, modality: int) -> torch.Tensor:
        """Latent of a batch of registered-scale cells of modality number ``modality``."""
        return self.encode(self.standardize(x, modality), modality)

    def translate(self, x: torch.Tensor, source: int, target: int) -> torch.Tensor:
        """Cells of modality ``source`` decoded into ``target``'s features, registered scale."""
        return self.unstandardize(self.generate(self.embed(x, source), target), target)

    # ------------------------------------------------------------------ training
    def forward_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        """Latents, reconstructions, cycles and anchors of one A and one B mini-batch."""
        mod_a, mod_b = self.modalities
        x_a = self.standardize(batch[mod_a][REGISTRY_KEYS.X_KEY], 0)
        x_b = self.standardize(batch[mod_b][REGISTRY_KEYS.X_KEY], 1)
        z_a, z_b = self.encode(x_a, 0), self.encode(x_b, 1)
        # each generator decodes both modalities' latents in one pass (reconstruction + cycle)
        x_aa, x_ba = apply_jointly(self.generators[0], z_a, z_b)
        x_ab, x_bb = apply_jointly(self.generators[1], z_a, z_b)
        # float32 under mixed precision: bfloat16 cosines tie, and the ties would pick anchors
        with torch.no_grad(), torch.autocast(x_a.device.type, enabled=False):
            # the inputs' kernels serve the geometry term and the anchor scores
            kernel_a, kernel_b = kernel_rows(x_a), kernel_rows(x_b)
            anchors = mutual_nearest_neighbors(
                x_a[:, self.link_a], x_b[:, self.link_b], self.n_neighbors
            )
            if self.score_anchors:
                anchors = shared_neighbor_scores(anchors, kernel_a, kernel_b, self.n_neighbors)
        return {
            "x_a": x_a,
            "x_b": x_b,
            "kernel_a": kernel_a,
            "kernel_b": kernel_b,
            "z_a": z_a,
            "z_b": z_b,
            "x_aa": x_aa,
            "x_bb": x_bb,
            # latent cycle: A's latent decoded as B and encoded again, and vice versa
            "z_aba": self.encode(x_ab, 1),
            "z_bab": self.encode(x_ba, 0),
            "anchors": anchors,
        }

    def discriminator_loss(self, outputs: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        """A's latents are "real" (1), B's "fake" (0); the latents are detached.

        Both go through the discriminator as one batch (one product per layer instead of two:
        this runs ``n_discriminator_steps`` times per step).
        """
        logits_a, logits_b = apply_jointly(
            self.critic, outputs["z_a"].detach(), outputs["z_b"].detach()
        )
        return F.softplus(-logits_a).mean() + F.softplus(logits_b).mean()

    def training_loss(
        self, outputs: dict[str, torch.Tensor], step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Saturating adversarial term plus reconstruction, cycle, anchor and geometry terms."""
        z_a, z_b = outputs["z_a"], outputs["z_b"]
        # saturating minimax: the encoders maximise the (updated) discriminator's loss
        gan = -(F.softplus(-self.critic(z_a)).mean() + F.softplus(self.critic(z_b)).mean())
        ae = F.mse_loss(outputs["x_aa"], outputs["x_a"]) + F.mse_loss(
            outputs["x_bb"], outputs["x_b"]
        )
        la = F.mse_loss(outputs["z_aba"], z_a) + F.mse_loss(outputs["z_bab"], z_b)
        mnn = anchor_loss(z_a, z_b, outputs["anchors"])
        geo = geometry_loss(outputs["kernel_a"], z_a, self.geo_cap) + geometry_loss(
            outputs["kernel_b"], z_b, self.geo_cap
        )
        total = (
            self.lambda_gan * gan
            + self.lambda_ae * ae
            + self.lambda_la * la
            + self.lambda_mnn * mnn
            + self.lambda_geo * geo
        )
        return total, {
            "gan": gan.detach(),
            "ae": ae.detach(),
            "la": la.detach(),
            "mnn": mnn.detach(),
            "geo": geo.detach(),
            "n_anchors": (outputs["anchors"] > 0).sum().to(z_a.dtype),
        }

    # ------------------------------------------------------------------ scvi-tools API
    def generative(self, z: torch.Tensor, modality: int = 0) -> dict[str, torch.Tensor]:
        """Decode latents into one modality's feature space (registered scale out)."""
        return {"x": self.unstandardize(self.generate(z, modality), modality)}
