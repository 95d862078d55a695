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
from torch import nn

from scx.base import ModuleBase
from scx.nn import MLP

InputTransform = Literal["binary", "log1p", "none"]
NNDRVariant = Literal["code", "paper"]
#: Batch key of the stage-3 pseudo-label codes of query cells (−1: left out).
PSEUDO_LABEL_KEY = "pseudo_label"


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


class SCJOINTModule(ModuleBase):
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
    reference
        The labelled modality; the others are queries.
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
        reference: str,
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
        self.n_input = n_input
        self.n_labels = n_labels
        self.modalities = list(modalities)
        self.reference = reference
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
        """Input transform of a mini-batch (dense, or a sparse CSR tensor kept sparse)."""
        if x.layout == torch.sparse_csr:
            values = x.values()
            if self.input_transform == "binary":
                values = (values > 0).to(values.dtype)
            elif self.input_transform == "log1p":
                values = torch.log1p(values.clamp_min(0))
            return torch.sparse_csr_tensor(
                x.crow_indices(),
                x.col_indices(),
                values,
                size=x.shape,
                device=x.device,
                check_invariants=False,
            )
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

    def _encode(self, x: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        """Embedding ``z`` and class logits of a batch of cells of modality number ``k``."""
        h = self.transform(x)
        if self.n_pcs is not None:
            weight, offset = self.folded_projection(k)
            h = h @ weight - offset
        elif h.layout == torch.sparse_csr:
            h = h.to_dense()
        z = self.encoder(h)
        if self.latent_norm is not None:
            z = self.latent_norm[k](z)
        return {"z": z, "logits": self.classifier(z)}

    def embed(self, x: torch.Tensor, modality: int) -> torch.Tensor:
        """Embedding (before L2 normalisation) of a batch of cells of modality ``modality``."""
        return self._encode(x, modality)["z"]

    # ------------------------------------------------------------------ training
    def forward_step(self, batch: dict, step: int) -> dict:
        """Embeddings and logits of every modality's batch, with its labels / pseudo-labels."""
        outputs = {}
        for m, tensors in batch.items():
            out = self._encode(tensors[REGISTRY_KEYS.X_KEY], self.modalities.index(m))
            if m == self.reference:
                out["labels"] = tensors[REGISTRY_KEYS.LABELS_KEY].long().view(-1)
            elif PSEUDO_LABEL_KEY in tensors:
                out["pseudo_labels"] = tensors[PSEUDO_LABEL_KEY].long().view(-1)
            outputs[m] = out
        return outputs

    def training_loss(self, outputs: dict, step: int) -> tuple[torch.Tensor, dict]:
        """Joint loss of one step (one batch per modality) and its terms.

        Stage 1: NNDR of every batch, the cosine top-``p`` alignment of each query onto the
        reference, cross-entropy on the reference labels and the L1 penalty. Stage 3 (query
        batches carry pseudo-labels, −1 for cells left out) adds cross-entropy on the
        pseudo-labels and the center loss.
        """
        reference = self.reference
        queries = [m for m in outputs if m != reference]
        z_ref, logits_ref = outputs[reference]["z"], outputs[reference]["logits"]
        labels = outputs[reference]["labels"]
        nndr_ref = nndr_loss(z_ref, self.nndr)
        nndr_query = torch.stack([nndr_loss(outputs[m]["z"], self.nndr) for m in queries]).mean()
        cosine = torch.stack(
            [cosine_top_p_loss(outputs[m]["z"], z_ref, self.p) for m in queries]
        ).mean()
        ce_reference = F.cross_entropy(logits_ref, labels)
        l1 = self.l1_weight * l1_penalty(self.encoder, self.classifier)
        total = nndr_ref + nndr_query + cosine + ce_reference + l1
        terms = {
            "nndr": (nndr_ref + nndr_query).detach(),
            "cosine": cosine.detach(),
            "ce_reference": ce_reference.detach(),
            "l1": l1.detach(),
        }
        if any("pseudo_labels" in outputs[m] for m in queries):
            ce_terms, center_terms = [], []
            for m in queries:
                pseudo = outputs[m]["pseudo_labels"]
                keep = pseudo >= 0
                if keep.any():
                    z, logits, y = outputs[m]["z"][keep], outputs[m]["logits"][keep], pseudo[keep]
                    ce_terms.append(F.cross_entropy(logits, y))
                    center_terms.append(center_loss(z, y, self.centers))
            zero = z_ref.new_zeros(())
            ce_query = torch.stack(ce_terms).mean() if ce_terms else zero
            center_query = torch.stack(center_terms).mean() if center_terms else zero
            center = center_query + center_loss(z_ref, labels, self.centers)
            total = total + ce_query + self.center_weight * center
            terms["ce_query"] = ce_query.detach()
            terms["center"] = center.detach()
        return total, terms

    # ------------------------------------------------------------------ scvi-tools API
