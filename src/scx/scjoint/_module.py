"""scJoint networks and losses (pure torch).

Lin et al., *scJoint integrates atlas-scale single-cell RNA-seq and ATAC-seq data with transfer
learning*, Nat Biotechnol 40, 703–710 (2022). One encoder and one classifier are shared by all
modalities; the inputs are gene-level matrices over the same genes (RNA expression and ATAC gene
activity).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from scx.nn import MLP

InputTransform = Literal["binary", "log1p", "none"]
NNDRVariant = Literal["code", "paper"]


def transform_matrix(X, input_transform: InputTransform):
    """The module's input transform applied to a whole (sparse or dense) matrix, kept sparse."""
    if input_transform == "none":
        return X
    if sparse.issparse(X):
        X = X.tocsr()
        if input_transform == "binary":
            data = (X.data > 0).astype(np.float32)
        else:
            data = np.log1p(np.maximum(X.data, 0), dtype=np.float32)
        # new values, shared index arrays: no copy of the sparsity pattern
        return sparse.csr_matrix((data, X.indices, X.indptr), shape=X.shape)
    X = np.asarray(X, dtype=np.float32)
    return (X > 0).astype(np.float32) if input_transform == "binary" else np.log1p(X.clip(0))


def nndr_loss(z: torch.Tensor, variant: NNDRVariant = "code") -> torch.Tensor:
    """Neural-network dimension-reduction loss of one batch of embeddings.

    Decorrelates the latent dimensions, keeps their spread up and their values small.

    ``"code"`` (the reference implementation): mean of ``|triu(C, 1)|`` over all D² entries of
    the covariance C, plus the inverse mean absolute deviation, plus the mean ``|z|``.
    ``"paper"``: the correlation matrix averaged over its off-diagonal entries, the same spread
    term, and the mean absolute column mean.
    """
    n, d = z.shape
    centred = z - z.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / max(n - 1, 1)
    spread = 1.0 / centred.abs().mean().clamp_min(1e-8)
    if variant == "code":
        decorrelation = torch.triu(cov, diagonal=1).abs().sum() / d**2
        magnitude = z.abs().mean()
    elif variant == "paper":
        std = cov.diagonal().clamp_min(1e-12).sqrt()
        corr = cov / (std[:, None] * std[None, :])
        off_diagonal = corr - torch.diag_embed(corr.diagonal())
        decorrelation = off_diagonal.abs().sum() / max(d * (d - 1), 1)
        magnitude = z.mean(dim=0).abs().mean()
    else:
        raise ValueError(f"`nndr` must be 'code' or 'paper', got {variant!r}.")
    return decorrelation + spread + magnitude


def cosine_top_p_loss(query: torch.Tensor, reference: torch.Tensor, p: float) -> torch.Tensor:
    """Minus the mean of the top ``p`` fraction of each query cell's best cosine to the reference.

    The ``1 - p`` query cells with the worst match are left out, so cell types missing from the
    reference are not forced onto it.
    """
    similarity = F.normalize(query, dim=1) @ F.normalize(reference, dim=1).T
    best = similarity.max(dim=1).values
    n_top = max(1, int(p * query.shape[0]))
    return -best.topk(n_top).values.mean()


def center_loss(z: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Mean distance of each cell to its class centre, divided by the number of classes.

    Plain (not squared) Euclidean distance normalised by ``B·K`` as in the reference, so its
    ``center_weight`` values carry over. Computed as a direct difference, which cannot go
    negative under the square root (the reference's expanded form produced NaN).
    """
    distance = torch.linalg.vector_norm(z - centers[labels], dim=1)
    return distance.sum() / (z.shape[0] * centers.shape[0])


def l1_penalty(*modules: nn.Module) -> torch.Tensor:
    """Sum over parameter tensors of their mean absolute value."""
    terms = [p.abs().mean() for module in modules for p in module.parameters()]
    return torch.stack(terms).sum()


class SCJOINTModule(BaseModuleClass):
    """scJoint: shared encoder + classifier trained with NNDR, cosine and label losses.

    Parameters
    ----------
    n_input
        Number of genes (shared by all modalities).
    n_labels
        Number of reference cell types.
    modalities
        Modality names, in the order used by the per-modality input statistics and latent
        normalisation.
    n_latent
        Embedding width (64 in the reference).
    n_hidden
        Hidden layer widths of the encoder; empty (the reference) gives one ``Linear`` layer.
    input_transform
        ``"binary"`` (the reference: ``x > 0``), ``"log1p"`` or ``"none"``.
    n_pcs
        When set, the transformed genes are standardised per modality and projected onto a
        fixed shared PCA with this many components before the encoder (see
        :meth:`set_input_projection`); ``None`` feeds the genes directly (the reference).
    modality_norm
        Standardise the embedding per modality (batch statistics in training, running
        statistics at inference; AdaBN-style) before the classifier and the losses. ``False``
        is the reference.
    nndr
        NNDR variant, see :func:`nndr_loss`.
    p
        Fraction of query cells aligned by the cosine loss.
    center_weight
        Weight of the stage-3 center loss.
    learn_centers
        Learn the class centres with the network (the reference draws them once and never
        updates them, which ``False`` reproduces).
    l1_weight
        Weight of the L1 penalty on encoder and classifier parameters.
    dropout
        Dropout between hidden encoder layers.
    """

    def __init__(
        self,
        n_input: int,
        n_labels: int,
        *,
        modalities: Sequence[str],
        n_latent: int = 64,
        n_hidden: Sequence[int] = (),
        input_transform: InputTransform = "binary",
        n_pcs: int | None = None,
        modality_norm: bool = False,
        nndr: NNDRVariant = "code",
        p: float = 0.8,
        center_weight: float = 1.0,
        learn_centers: bool = True,
        l1_weight: float = 0.1,
        dropout: float = 0.0,
    ):
        super().__init__()
        if input_transform not in ("binary", "log1p", "none"):
            raise ValueError(
                f"`input_transform` must be 'binary', 'log1p' or 'none', got {input_transform!r}."
            )
        self.n_input = n_input
        self.n_labels = n_labels
        self.modalities = list(modalities)
        self.n_latent = n_latent
        self.input_transform = input_transform
        self.n_pcs = n_pcs
        self.nndr = nndr
        self.p = p
        self.center_weight = center_weight
        self.learn_centers = learn_centers
        self.l1_weight = l1_weight
        n_modalities = len(self.modalities)
        if n_pcs is not None:
            self.register_buffer("input_mean", torch.zeros(n_modalities, n_input))
            self.register_buffer("input_scale", torch.ones(n_modalities, n_input))
            self.register_buffer("input_loadings", torch.zeros(n_input, n_pcs))
            self.register_buffer("input_fitted", torch.zeros((), dtype=torch.bool))
        self.encoder = MLP(n_pcs or n_input, n_latent, n_hidden, activation="relu", dropout=dropout)
        self.latent_norm = (
            nn.ModuleList(nn.BatchNorm1d(n_latent, affine=False) for _ in range(n_modalities))
            if modality_norm
            else None
        )
        self.classifier = nn.Linear(n_latent, n_labels)
        centers = torch.randn(n_labels, n_latent)
        if learn_centers:
            self.centers = nn.Parameter(centers)
        else:
            self.register_buffer("centers", centers)

    @property
    def needs_input_projection(self) -> bool:
        """Whether the shared input PCA still has to be fitted."""
        return self.n_pcs is not None and not bool(self.input_fitted)

    def set_input_projection(
        self, mean: torch.Tensor, scale: torch.Tensor, loadings: torch.Tensor
    ) -> None:
        """Store the per-modality feature statistics and the shared PCA loadings."""
        self.input_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.input_scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
        self.input_loadings.copy_(torch.as_tensor(loadings, dtype=torch.float32))
        self.input_fitted.fill_(True)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise every weight (scJoint's stage 3 starts from a fresh network).

        The fitted input projection is data preprocessing, not a weight, and is kept.
        """
        with torch.random.fork_rng(devices=[]):
            if generator is not None:
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    module.reset_parameters()
                elif isinstance(module, nn.BatchNorm1d):
                    module.reset_running_stats()
            self.centers.data.copy_(torch.randn(self.n_labels, self.n_latent))

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Input transform applied to every mini-batch."""
        if self.input_transform == "binary":
            # sign is several times cheaper than a comparison plus cast on dense batches
            return torch.sign(x).clamp_(min=0)
        if self.input_transform == "log1p":
            return torch.log1p(x.clamp_min(0))
        return x

    def folded_projection(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, b)`` with ``standardise_k(h) @ loadings == h @ W - b`` for modality ``k``.

        Folding the per-modality standardisation into the loadings avoids centring (and thus
        densifying) the input: a sparse chunk is projected with one sparse matrix product.
        """
        weight = self.input_loadings / self.input_scale[k][:, None]
        offset = (self.input_mean[k] / self.input_scale[k]) @ self.input_loadings
        return weight, offset

    def embed(self, h: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        """Encoder, per-modality normalisation and classifier on projected inputs ``h``."""
        z = self.encoder(h)
        if self.latent_norm is not None:
            z = self.latent_norm[k](z)
        return {"z": z, "logits": self.classifier(z)}

    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        return {"x": tensors[REGISTRY_KEYS.X_KEY]}

    @auto_move_data
    def inference(self, x: torch.Tensor, modality: str) -> dict[str, torch.Tensor]:
        """Embedding ``z`` and class logits of a batch of cells of ``modality``."""
        k = self.modalities.index(modality)
        h = self.transform(x)
        if self.n_pcs is not None:
            weight, offset = self.folded_projection(k)
            h = h @ weight - offset
        return self.embed(h, k)

    def _get_generative_input(self, tensors, inference_outputs, **kwargs) -> dict:
        return {}

    def generative(self) -> dict:
        """ScJoint has no generative part."""
        return {}

    def loss(
        self,
        outputs: dict[str, dict[str, torch.Tensor]],
        reference_labels: torch.Tensor,
        *,
        reference: str,
        pseudo_labels: dict[str, torch.Tensor] | None = None,
    ) -> LossOutput:
        """Joint loss of one step (one batch per modality).

        Parameters
        ----------
        outputs
            ``{modality: inference outputs}``.
        reference_labels
            Label codes of the reference batch.
        reference
            Name of the labelled (RNA) modality; the others are queries.
        pseudo_labels
            Stage 3: ``{query modality: pseudo-label codes}``, −1 for cells left out.
            ``None`` in stage 1.
        """
        queries = [m for m in outputs if m != reference]
        z_ref, logits_ref = outputs[reference]["z"], outputs[reference]["logits"]
        nndr_ref = nndr_loss(z_ref, self.nndr)
        nndr_query = torch.stack([nndr_loss(outputs[m]["z"], self.nndr) for m in queries]).mean()
        cosine = torch.stack(
            [cosine_top_p_loss(outputs[m]["z"], z_ref, self.p) for m in queries]
        ).mean()
        ce_reference = F.cross_entropy(logits_ref, reference_labels)
        l1 = self.l1_weight * l1_penalty(self.encoder, self.classifier)
        total = nndr_ref + nndr_query + cosine + ce_reference + l1
        metrics = {
            "nndr": (nndr_ref + nndr_query).detach(),
            "cosine": cosine.detach(),
            "ce_reference": ce_reference.detach(),
            "l1": l1.detach(),
        }
        if pseudo_labels is not None:
            ce_terms, center_terms = [], []
            for m in queries:
                keep = pseudo_labels[m] >= 0
                if keep.any():
                    z, logits = outputs[m]["z"][keep], outputs[m]["logits"][keep]
                    y = pseudo_labels[m][keep]
                    ce_terms.append(F.cross_entropy(logits, y))
                    center_terms.append(center_loss(z, y, self.centers))
            zero = z_ref.new_zeros(())
            ce_query = torch.stack(ce_terms).mean() if ce_terms else zero
            center_query = torch.stack(center_terms).mean() if center_terms else zero
            center = center_query + center_loss(z_ref, reference_labels, self.centers)
            total = total + ce_query + self.center_weight * center
            metrics["ce_query"] = ce_query.detach()
            metrics["center"] = center.detach()
        n_obs = sum(out["z"].shape[0] for out in outputs.values())
        return LossOutput(
            loss=total,
            n_obs_minibatch=n_obs,
            extra_metrics={"loss": total.detach(), **metrics},
        )

    def sample(self, *args, **kwargs):
        """Not available: scJoint is a discriminative model with no generative part."""
        raise NotImplementedError("scJoint has no generative model to sample from.")
