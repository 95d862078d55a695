"""scJoint model: registration, the three-stage training, embeddings and label transfer."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from scvi import REGISTRY_KEYS, settings

from scx._neighbors import knn, vote
from scx.model._base import MultiModalModelBase
from scx.pp._shared_pca import fit_shared_pca

from ._module import InputTransform, NNDRVariant, SCJOINTModule, transform_matrix
from ._training_plan import SCJOINTTrainingPlan

logger = logging.getLogger(__name__)


class SCJOINT(MultiModalModelBase):
    """scJoint: transfer learning from labelled scRNA-seq to unlabelled scATAC-seq.

    A shared encoder maps RNA expression and ATAC gene activity (over the same genes) into one
    embedding. Training follows the reference's three stages:

    1. encoder and classifier trained with NNDR on both modalities, the cosine top-``p``
       alignment of ATAC onto RNA, cross-entropy on RNA labels and an L1 penalty;
    2. kNN label transfer (``n_neighbors`` = 30) from RNA to ATAC in the normalised embedding;
    3. a fresh network trained again with the stage-2 pseudo-labels as ATAC targets plus a
       center loss on both modalities; the final labels are the kNN transfer of this embedding.

    Parameters
    ----------
    mdata
        MuData registered with :meth:`setup_mudata` (or an AnnData registered with
        :meth:`setup_anndata`); the reference modality must have labels.
    reference
        The labelled modality (RNA); every other registered modality is a query.
    n_latent
        Embedding width (64).
    n_hidden
        Hidden encoder layers; ``None`` is the reference's single linear layer.
    input_transform
        ``"binary"`` (reference), ``"log1p"`` or ``"none"`` applied to each mini-batch.
    n_pcs
        Standardise the transformed genes per modality and project them onto a shared PCA with
        this many components (fitted once, on all cells, at the start of training) before the
        encoder. The projection keeps the structure both modalities share and denoises very
        sparse inputs, so the RNA-supervised encoder cannot latch onto RNA-only gene patterns.
        ``None`` feeds the genes directly, as the reference does.
    modality_norm
        Standardise the embedding per modality (AdaBN-style batch normalisation without affine
        parameters), which removes modality offsets before alignment and kNN transfer.
        ``False`` is the reference.
    nndr
        ``"code"`` (reference implementation) or ``"paper"`` NNDR variant.
    p
        Fraction of query cells aligned by the cosine loss (0.8).
    center_weight
        Weight of the stage-3 center loss (1; the reference used 10 for the mouse atlas and 20
        for MOp).
    learn_centers
        Learn the class centres (``False`` keeps the reference's fixed random centres).
    l1_weight
        L1 penalty weight (0.1).
    dropout
        Dropout between hidden layers (only with ``n_hidden``).

    Examples
    --------
    >>> scx.model.SCJOINT.setup_mudata(mdata, modalities=["rna", "atac"],
    ...                                labels_key={"rna": "cell_type"})
    >>> model = scx.model.SCJOINT(mdata, reference="rna")
    >>> model.train()
    >>> z = model.get_latent_representation()
    >>> predictions = model.predict()
    """

    _module_cls = SCJOINTModule
    _training_plan_cls = SCJOINTTrainingPlan

    def __init__(
        self,
        mdata: MuData | AnnData,
        reference: str = "rna",
        n_latent: int = 64,
        n_hidden: Sequence[int] | None = None,
        input_transform: InputTransform = "binary",
        n_pcs: int | None = 30,
        modality_norm: bool = True,
        nndr: NNDRVariant = "code",
        p: float = 0.8,
        center_weight: float = 1.0,
        learn_centers: bool = True,
        l1_weight: float = 0.1,
        dropout: float = 0.0,
    ):
        super().__init__(mdata)
        if reference not in self.sources:
            raise ValueError(
                f"`reference={reference!r}` is not a registered modality; registered: "
                f"{self.modalities}."
            )
        self.reference = reference
        self.queries = [m for m in self.modalities if m != reference]
        if not self.queries:
            raise ValueError("scJoint needs at least one query modality besides the reference.")
        genes = self.var_names_of(reference)
        for m in self.queries:
            if not self.var_names_of(m).equals(genes):
                raise ValueError(
                    f"Modality {m!r} must have the same genes, in the same order, as the "
                    f"reference {reference!r}; subset both to their shared genes first (or use "
                    "`scx.tl.scjoint`, which does it)."
                )
        self.labels_ = [str(c) for c in self.categorical_mapping(reference, "labels")]
        if len(self.labels_) < 2:
            raise ValueError(
                f"The reference {reference!r} has {len(self.labels_)} label class; scJoint needs "
                "at least two."
            )
        if n_pcs is not None and n_pcs < 1:
            raise ValueError(f"`n_pcs` must be None or a positive integer, got {n_pcs}.")
        if n_pcs is not None and n_pcs >= len(genes):
            warnings.warn(
                f"`n_pcs={n_pcs}` is not below the number of genes ({len(genes)}); using "
                f"{len(genes) - 1} components.",
                UserWarning,
                stacklevel=2,
            )
            n_pcs = len(genes) - 1
        self.module = self._module_cls(
            n_input=len(genes),
            n_labels=len(self.labels_),
            modalities=self.modalities,
            n_latent=n_latent,
            n_hidden=list(n_hidden or []),
            input_transform=input_transform,
            n_pcs=n_pcs,
            modality_norm=modality_norm,
            nndr=nndr,
            p=p,
            center_weight=center_weight,
            learn_centers=learn_centers,
            l1_weight=l1_weight,
            dropout=dropout,
        )
        self._model_summary_string = (
            f"scJoint: reference {reference!r} ({len(self.labels_)} labels), queries "
            f"{self.queries}, {len(genes)} genes, n_latent {n_latent}, input {input_transform}, "
            f"shared PCs {n_pcs}, modality norm {modality_norm}, hidden {list(n_hidden or [])}, "
            f"p {p}, center_weight {center_weight}"
        )
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_epochs: int = 20,
        stage3_epochs: int | None = None,
        *,
        lr: float = 0.01,
        lr_stage3: float | None = None,
        lr_decay_epochs: int = 20,
        batch_size: int = 256,
        steps_per_epoch: int | None = None,
        n_neighbors: int = 30,
        stage3_init: Literal["fresh", "warm"] = "fresh",
        pseudo_label_min_confidence: float = 0.5,
        replacement: bool = True,
        train_size: float = 1.0,
        validation_size: float | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        datamodule_kwargs: dict | None = None,
        **trainer_kwargs,
    ) -> None:
        """Run stage 1, the kNN pseudo-labelling and stage 3.

        Parameters
        ----------
        max_epochs
            Epochs of stage 1 (20 in the reference).
        stage3_epochs
            Epochs of stage 3; defaults to ``max_epochs``; 0 stops after stage 1.
        lr
            SGD learning rate of stage 1 (0.01).
        lr_stage3
            Learning rate of stage 3; defaults to ``lr`` (the reference used 0.001 for MOp).
        lr_decay_epochs
            Step decay of the learning rate by 0.1 every this many epochs.
        batch_size
            Cells per modality per step on each device (256).
        steps_per_epoch
            Steps per epoch; defaults to the reference's ⌊query cells / batch_size⌋.
        n_neighbors
            Neighbours of the stage-2 kNN pseudo-labelling.
        stage3_init
            ``"fresh"`` re-initialises the network for stage 3 (reference), ``"warm"`` continues
            from stage 1.
        pseudo_label_min_confidence
            Query cells whose stage-2 neighbour agreement is below this are left out of the
            stage-3 label losses. The default 0.5 keeps a pseudo-label only where most of the
            neighbours agree; 0 keeps every cell, as the reference does.
        replacement
            Draw cells with replacement (reference) instead of cycling permutations.
        train_size, validation_size
            Split of each modality's cells into training and validation (validation losses
            appear in ``history``).
        accelerator, devices
            Lightning accelerator and devices, e.g. ``accelerator="gpu", devices=4,
            strategy="ddp"`` for several GPUs.
        datamodule_kwargs
            Extra arguments of :class:`~scx.data.MultiModalDataModule`.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (e.g. ``strategy``, ``gradient_clip_val``,
            ``enable_progress_bar``).
        """
        stage3_epochs = max_epochs if stage3_epochs is None else stage3_epochs
        if max_epochs < 1 or stage3_epochs < 0:
            raise ValueError(
                f"`max_epochs` must be ≥ 1 and `stage3_epochs` ≥ 0, got {max_epochs} and "
                f"{stage3_epochs}."
            )
        if stage3_init not in ("fresh", "warm"):
            raise ValueError(f"`stage3_init` must be 'fresh' or 'warm', got {stage3_init!r}.")
        if steps_per_epoch is None:
            n_query = sum(self.sources[m].n_obs for m in self.queries)
            steps_per_epoch = max(1, n_query // batch_size)
        seed = settings.seed if settings.seed is not None else 0

        def fit(plan: SCJOINTTrainingPlan, epochs: int, stage_seed: int) -> None:
            datamodule = self._make_datamodule(
                batch_size,
                train_size=train_size,
                validation_size=validation_size,
                steps_per_epoch=steps_per_epoch,
                replacement=replacement,
                sampler_seed=stage_seed,
                **(datamodule_kwargs or {}),
            )
            self._run_training(
                plan,
                datamodule,
                epochs,
                accelerator=accelerator,
                devices=devices,
                **trainer_kwargs,
            )

        if self.module.needs_input_projection:
            self._fit_input_projection(seed)
        previous_history = self.history_ if self.is_trained_ else None
        self.is_trained_ = False
        plan = SCJOINTTrainingPlan(
            self.module, reference=self.reference, lr=lr, lr_decay_epochs=lr_decay_epochs
        )
        fit(plan, max_epochs, seed)
        history = self._concat_history(previous_history, self.history_)
        if stage3_epochs > 0:
            pseudo = self._pseudo_labels(n_neighbors, pseudo_label_min_confidence)
            if stage3_init == "fresh":
                self.module.reset_parameters(torch.Generator().manual_seed(seed + 1))
            self.is_trained_ = False
            plan = SCJOINTTrainingPlan(
                self.module,
                reference=self.reference,
                pseudo_labels=pseudo,
                lr=lr if lr_stage3 is None else lr_stage3,
                lr_decay_epochs=lr_decay_epochs,
            )
            fit(plan, stage3_epochs, seed + 1)
            history = self._concat_history(history, self.history_)
        self.history_ = history
        self.is_trained_ = True
        self.module.eval()

    def _fit_input_projection(self, seed: int) -> None:
        """Fit the shared PCA of the transformed, per-modality standardised genes."""
        matrices = [
            transform_matrix(self._input_matrix(m, None), self.module.input_transform)
            for m in self.modalities
        ]
        fitted = fit_shared_pca(matrices, self.module.n_pcs, random_state=seed)
        self.module.set_input_projection(
            torch.as_tensor(fitted.means),
            torch.as_tensor(fitted.scales),
            torch.as_tensor(fitted.loadings),
        )
        logger.info(
            "scJoint: shared input PCA with %d components explains %.1f%% of the variance.",
            self.module.n_pcs,
            100 * fitted.variance_ratio.sum(),
        )

    def _pseudo_labels(self, n_neighbors: int, min_confidence: float) -> dict[str, np.ndarray]:
        """Stage 2: kNN label codes for every query cell, indexed by AnnData row."""
        reference = self.get_latent_representation(modality=self.reference)
        codes = self.registered_values(self.reference, REGISTRY_KEYS.LABELS_KEY).ravel()
        pseudo = {}
        for m in self.queries:
            idx, _ = knn(reference, self.get_latent_representation(modality=m), n_neighbors)
            winner, agreement = vote(codes[idx].astype(np.int64), len(self.labels_))
            winner[agreement < min_confidence] = -1
            source = self.sources[m]
            per_row = np.full(source.manager.adata.n_obs, -1, dtype=np.int64)
            per_row[source.indices] = winner
            pseudo[m] = per_row
            logger.info(
                "scJoint stage 2: %d %s cells pseudo-labelled (median agreement %.2f).",
                int((winner >= 0).sum()),
                m,
                float(np.median(agreement)),
            )
        return pseudo

    # ------------------------------------------------------------------ outputs
    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        modality: str | None = None,
        *,
        normalize: bool = True,
        batch_size: int = 4096,
    ) -> np.ndarray | dict[str, np.ndarray]:
        """Embedding of cells.

        Parameters
        ----------
        adata
            New cells of ``modality`` (same genes); ``None`` for the registered cells.
        modality
            Modality to embed. ``None`` (with ``adata=None``) returns ``{modality: array}`` for
            all registered modalities.
        normalize
            L2-normalise each cell's embedding, as the reference writes it.
        batch_size
            Cells per forward pass.

        Returns
        -------
        ``(n_cells, n_latent)`` array, or a dict of them.
        """
        self._check_if_trained(warn=True)
        if modality is None:
            return self._for_each_modality(
                self.get_latent_representation, adata, normalize=normalize
            )
        X = self._input_matrix(modality, adata)
        self.module.eval()
        k = self.module.modalities.index(modality)
        folded = None
        if self.module.n_pcs is not None:
            weight, offset = self.module.folded_projection(k)
            folded = (weight.cpu().numpy(), offset.cpu().numpy())
        device = self.module.device
        # one preallocated output: a list of chunks plus a concatenation would hold the
        # embedding twice and fragment the heap with the dense chunk temporaries
        z = torch.empty(X.shape[0], self.module.n_latent)
        for start in range(0, X.shape[0], batch_size):
            chunk = X[start : start + batch_size]
            if folded is not None:
                # project the (sparse) chunk first, so it is never densified
                h = transform_matrix(chunk, self.module.input_transform) @ folded[0] - folded[1]
                h = torch.as_tensor(np.asarray(h), dtype=torch.float32, device=device)
                out = self.module.embed(h, k)
            else:
                chunk = chunk.toarray() if sparse.issparse(chunk) else np.asarray(chunk)
                x = torch.as_tensor(chunk, dtype=torch.float32, device=device)
                out = self.module.inference(x, modality=modality)
            z[start : start + chunk.shape[0]] = out["z"].cpu()
        if normalize:
            _normalize_rows_(z)
        return z.numpy()

    def predict(
        self,
        adata: AnnData | None = None,
        modality: str | None = None,
        *,
        n_neighbors: int = 30,
        min_confidence: float | None = None,
        max_reference: int | None = None,
        method: Literal["auto", "exact", "pynndescent"] = "auto",
    ) -> pd.DataFrame:
        """Transfer reference labels to query cells by kNN vote in the embedding.

        Parameters
        ----------
        adata
            New query cells (same genes); ``None`` for the registered query cells.
        modality
            Query modality; defaults to the only query (required when there are several).
        n_neighbors
            Voting neighbours among reference cells (30).
        min_confidence
            Cells whose neighbour agreement is below this get the label ``"unassigned"``.
        max_reference
            Use at most this many evenly spaced reference cells (the reference capped at
            20,000); ``None`` uses all of them.
        method
            kNN search: exact, pynndescent, or chosen by size.

        Returns
        -------
        DataFrame indexed by cell with ``label`` (categorical) and ``confidence``: the fraction
        of the ``n_neighbors`` nearest reference cells whose label is the predicted one.
        """
        if modality is None:
            if len(self.queries) > 1:
                raise ValueError(f"Pass `modality=`, one of the queries {self.queries}.")
            modality = self.queries[0]
        reference = self.get_latent_representation(modality=self.reference)
        codes = self.registered_values(self.reference, REGISTRY_KEYS.LABELS_KEY).ravel()
        codes = codes.astype(np.int64)
        if max_reference is not None and reference.shape[0] > max_reference:
            keep = np.floor(np.arange(max_reference) * reference.shape[0] / max_reference)
            reference, codes = reference[keep.astype(int)], codes[keep.astype(int)]
        query = self.get_latent_representation(adata, modality=modality)
        idx, _ = knn(reference, query, n_neighbors, method=method)
        winner, agreement = vote(codes[idx], len(self.labels_))
        labels = np.asarray(self.labels_, dtype=object)[winner]
        categories = list(self.labels_)
        if min_confidence is not None:
            labels = np.where(agreement < min_confidence, "unassigned", labels)
            categories.append("unassigned")
        index = adata.obs_names if adata is not None else self._obs_names(modality)
        return pd.DataFrame(
            {
                "label": pd.Categorical(labels, categories=categories),
                "confidence": agreement.astype(np.float32),
            },
            index=index,
        )

    def _obs_names(self, modality: str) -> pd.Index:
        source = self.sources[modality]
        return source.manager.adata.obs_names[source.indices]


def _normalize_rows_(z: torch.Tensor) -> torch.Tensor:
    """L2-normalise the rows of ``z`` in place."""
    return z.div_(torch.linalg.vector_norm(z, dim=1, keepdim=True).clamp_min_(1e-12))
