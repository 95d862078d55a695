"""scJoint model: inputs, the three-stage training, embeddings and label transfer."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scvi import REGISTRY_KEYS

from scx import _validation as v
from scx._neighbors import knn, vote
from scx.base import MultiModalModelBase, train_docs
from scx.data import ModalitySource
from scx.pp import apply_transform, gene_activity_transform, peak_coordinates, peak_gene_prior
from scx.pp._genomic import check_annotation
from scx.pp._shared_pca import fit_shared_pca
from scx.train import LossTrainingPlan

from ._module import (
    PSEUDO_LABEL_KEY,
    InputTransform,
    NNDRVariant,
    SCJOINTModule,
    transform_matrix,
)

logger = logging.getLogger(__name__)

#: Fewer shared genes than this between RNA and gene activity triggers a warning.
MIN_SHARED_GENES_WARNING = 200
#: Column of the view's reference ``obs`` holding the labels.
LABEL_COLUMN = "label"
#: Cells per modality per step (the reference's), lowered for a smaller modality.
DEFAULT_BATCH_SIZE = 256


class SCJOINT(MultiModalModelBase):
    """scJoint: transfer learning from labelled scRNA-seq to unlabelled scATAC-seq.

    A shared encoder maps RNA expression and ATAC gene activity (over the same genes) into one
    embedding. Training follows the reference's three stages:

    1. encoder and classifier trained with NNDR on both modalities, the cosine top-``p``
       alignment of ATAC onto RNA, cross-entropy on RNA labels and an L1 penalty;
    2. kNN label transfer (``n_neighbors``) from RNA to ATAC in the normalised embedding;
    3. a fresh network trained again with the stage-2 pseudo-labels as ATAC targets plus a
       center loss on both modalities; the final labels are the kNN transfer of this embedding.

    Build it with :func:`scx.tl.scjoint`, or register gene-level data yourself with
    :meth:`setup_mudata` (``labels_key`` on the reference) and call the class.

    Parameters
    ----------
    mdata
        MuData registered with :meth:`setup_mudata` (or an AnnData registered with
        :meth:`setup_anndata`); the reference modality must have labels, every modality the
        same genes in the same order.
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
    n_neighbors
        Neighbours of the kNN label transfer, for the stage-2 pseudo-labels and for
        :meth:`predict` (30).
    seed
        Seed of the weight initialisation.

    Examples
    --------
    >>> scx.model.SCJOINT.setup_mudata(mdata, modalities=["rna", "atac"],
    ...                                labels_key={"rna": "cell_type"})
    >>> model = scx.model.SCJOINT(mdata, reference="rna")
    >>> model.train()
    >>> z = model.get_latent_representation()
    >>> predictions = model.predict()
    """

    _method_name = "scJoint"
    _module_cls = SCJOINTModule
    _training_plan_cls = LossTrainingPlan
    _data_init_args = ("reference",)
    _setting_checks: ClassVar[dict[str, Any]] = {
        "n_hidden": v.optional(v.sequence_of(v.positive_int())),
        "input_transform": v.choice("binary", "log1p", "none"),
        "n_pcs": v.optional(v.positive_int()),
        "modality_norm": v.boolean,
        "nndr": v.choice("code", "paper"),
        "p": v.fraction(),
        "center_weight": v.weight,
        "learn_centers": v.boolean,
        "l1_weight": v.weight,
        "dropout": v.number(low=0, high=0.95),
        "n_neighbors": v.positive_int(),
        "stage3_epochs": v.optional(v.positive_int(minimum=0)),
        "lr_stage3": v.optional(v.positive),
        "lr_decay_epochs": v.positive_int(),
        "stage3_init": v.choice("fresh", "warm"),
        "pseudo_label_min_confidence": v.fraction(low_open=False),
    }

    # ------------------------------------------------------------------ inputs
    @classmethod
    def _check_inputs(
        cls,
        data,
        *,
        settings: Mapping[str, Any],
        modalities,
        labels_key,
        layer,
        annotation,
        gene_activity_kwargs,
    ) -> None:
        """Every check of the data and data arguments, before any work."""
        v.check_mudata(data, argname="data")
        rna, atac = v.check_modality_names(
            modalities, roles="the RNA (labelled) and ATAC (query) modalities, e.g. ('rna', 'atac')"
        )
        layers = v.check_per_modality(layer, [rna, atac], argname="layer")
        rna_adata = v.check_modality(data, rna, argname="modalities[0]")
        atac_adata = v.check_modality(data, atac, argname="modalities[1]")
        labels = v.check_obs_key(
            rna_adata, labels_key, argname="labels_key", where=f" of modality {rna!r}"
        )
        v.check_labels(labels, argname="labels_key", where=f" in modality {rna!r}")
        for name, adata in ((rna, rna_adata), (atac, atac_adata)):
            v.check_unique_names(adata, where=f"Modality {name!r}")
            X = v.get_matrix(adata, layers[name], argname="layer")
            v.check_counts(X, argname=f"data.mod[{name!r}] (layer={layers[name]!r})")
        if annotation is not None:
            check_annotation(annotation)
        if gene_activity_kwargs is not None and annotation is None:
            raise ValueError(
                "`gene_activity_kwargs` only applies with `annotation=` (peaks → gene activity); "
                "drop it or pass `annotation`."
            )
        if annotation is None and not len(rna_adata.var_names.intersection(atac_adata.var_names)):
            raise ValueError(_no_shared_genes_message(rna, atac, rna_adata, atac_adata))
        v.check_batch_size_fits(
            settings["batch_size"],
            {rna: rna_adata.n_obs, atac: atac_adata.n_obs},
            train_size=settings["train_size"],
        )

    @classmethod
    def _fit_inputs(
        cls,
        data: MuData,
        *,
        seed: int,
        modalities: Sequence[str] = ("rna", "atac"),
        labels_key: str = "cell_type",
        layer: str | dict[str, str | None] | None = None,
        annotation: pd.DataFrame | str | os.PathLike | None = None,
        gene_activity_kwargs: dict | None = None,
    ) -> dict:
        """Genes shared by RNA and ATAC gene activity (computed from peaks when needed).

        Parameters
        ----------
        data
            MuData with an RNA and an ATAC modality whose cells need not match.
        modalities
            The RNA (labelled) and ATAC (query) modalities, in this order.
        labels_key
            Column of the RNA modality's ``.obs`` with the cell types to transfer.
        layer
            Layer with counts, once for both or ``{modality: layer}``; ``None`` uses ``.X``.
        annotation
            Gene annotation (DataFrame, gene table path or GTF) to turn ATAC peaks into gene
            activity: the counts of the peaks overlapping each gene body plus 2 kb upstream
            (:func:`scx.pp.peak_gene_prior`). Leave ``None`` when the ATAC modality already
            holds gene activity over gene names.
        gene_activity_kwargs
            Region settings of :func:`scx.pp.peak_gene_prior` (e.g. ``upstream``).
        """
        rna, atac = v.check_modality_names(
            modalities, roles="the RNA (labelled) and ATAC (query) modalities, e.g. ('rna', 'atac')"
        )
        layers = v.check_per_modality(layer, [rna, atac], argname="layer")
        rna_adata, atac_adata = data.mod[rna], data.mod[atac]
        transforms = {}
        if annotation is not None:
            links = peak_gene_prior(
                atac_adata, rna_adata.var_names, annotation, **(gene_activity_kwargs or {})
            )
            has_peaks = np.diff(links.indptr) > 0
            genes = rna_adata.var_names[has_peaks]
            transforms[atac] = gene_activity_transform(
                links[np.flatnonzero(has_peaks)],
                atac_adata.var_names,
                genes,
                layer=layers[atac],
            )
        else:
            genes = rna_adata.var_names[rna_adata.var_names.isin(atac_adata.var_names)]
        if len(genes) == 0:
            raise ValueError(
                f"No gene of modality {rna!r} has ATAC gene activity; check that the annotation "
                "matches the RNA gene names and the genome build of the peaks."
            )
        if len(genes) < MIN_SHARED_GENES_WARNING:
            warnings.warn(
                f"Only {len(genes)} genes are shared by RNA and ATAC gene activity; scJoint's "
                "embedding will be weak.",
                UserWarning,
                stacklevel=4,
            )
        return {
            "args": {
                "modalities": [rna, atac],
                "labels_key": labels_key,
                "layer": layers,
                "annotation": _describe(annotation),
                "gene_activity_kwargs": dict(gene_activity_kwargs or {}),
            },
            "genes": list(genes),
            "transforms": transforms,
            "init": {"reference": rna},
        }

    @classmethod
    def _build_view(cls, data: MuData, state: Mapping) -> MuData:
        """RNA and ATAC gene activity over the shared genes, labels on the RNA cells."""
        rna, atac = state["args"]["modalities"]
        layers = state["args"]["layer"]
        genes = pd.Index(state["genes"])
        v.check_mudata(data, argname="adata")
        for m in (rna, atac):
            v.check_modality(data, m, argname="modalities")
        labels = v.check_obs_key(
            data.mod[rna], state["args"]["labels_key"], argname="labels_key", where=f" of {rna!r}"
        )
        views = {}
        for m in (rna, atac):
            adata = data.mod[m]
            transform = state["transforms"].get(m)
            if transform is not None:
                X, layer_name = apply_transform(transform, adata, where=f"modality {m!r}"), None
            else:
                layer_name = layers[m]
                X = v.get_matrix(adata, layer_name)
                if not adata.var_names.equals(genes):
                    X = X[:, _positions(adata.var_names, genes, m)]
            obs = pd.DataFrame(index=adata.obs_names.copy())
            if m == rna:
                obs[LABEL_COLUMN] = labels.astype(str).to_numpy()
            var = pd.DataFrame(index=genes.copy())
            # the matrix keeps its layer name, so new cells are read from the same layer
            views[m] = (
                AnnData(X=X, obs=obs, var=var)
                if layer_name is None
                else AnnData(obs=obs, var=var, layers={layer_name: X})
            )
        with warnings.catch_warnings():
            # both modalities carry the same gene names by design
            warnings.filterwarnings("ignore", message="var_names are not unique")
            return MuData(views)

    @classmethod
    def _register_view(cls, view: MuData, state: Mapping) -> None:
        rna, atac = state["args"]["modalities"]
        layers = state["args"]["layer"]
        transforms = state["transforms"]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="var_names are not unique")
            cls.setup_mudata(
                view,
                modalities=[rna, atac],
                layer={m: None if m in transforms else layers[m] for m in (rna, atac)},
                labels_key={rna: LABEL_COLUMN},
            )

    # ------------------------------------------------------------------ construction
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
        n_neighbors: int = 30,
        seed: int = 0,
    ):
        super().__init__(mdata)
        self._settings(locals())
        self._check_modality(reference, "reference")
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
        if n_pcs is not None and n_pcs >= len(genes):
            warnings.warn(
                f"`n_pcs={n_pcs}` is not below the number of genes ({len(genes)}); using "
                f"{len(genes) - 1} components.",
                UserWarning,
                stacklevel=2,
            )
            n_pcs = len(genes) - 1
        self.n_neighbors = n_neighbors
        self.seed = seed
        with self._seeded(seed):
            self.module = self._module_cls(
                n_input=len(genes),
                n_labels=len(self.labels_),
                modalities=self.modalities,
                reference=reference,
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
    @train_docs
    def train(
        self,
        max_epochs: int | None = None,
        max_steps: int | None = None,
        stage3_epochs: int | None = None,
        *,
        lr: float = 0.01,
        lr_stage3: float | None = None,
        lr_decay_epochs: int = 20,
        batch_size: int | None = None,
        steps_per_epoch: int | None = None,
        stage3_init: Literal["fresh", "warm"] = "fresh",
        pseudo_label_min_confidence: float = 0.5,
        replacement: bool = True,
        train_size: float = 1.0,
        validation_size: float | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        seed: int | None = None,
        **trainer_kwargs,
    ) -> None:
        """Run stage 1, the kNN pseudo-labelling and stage 3.

        Parameters
        ----------
        max_epochs
            Epochs of stage 1 (20 in the reference).
        max_steps
            Steps of stage 1 instead of ``max_epochs`` (rounded up to whole epochs).
        stage3_epochs
            Epochs of stage 3; defaults to the length of stage 1; 0 stops after stage 1.
        lr
            SGD learning rate of stage 1 (0.01).
        lr_stage3
            Learning rate of stage 3; defaults to ``lr`` (the reference used 0.001 for MOp).
        lr_decay_epochs
            Step decay of the learning rate by 0.1 every this many epochs.
        batch_size
            Cells per modality per step on each device; default 256, or the smallest
            modality's training cells when it has fewer.
        steps_per_epoch
            Steps per epoch, shared among the devices; defaults to the reference's
            ⌊query cells / batch_size⌋.
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
        """
        settings = self._settings(locals())
        seed = self.seed if seed is None else seed
        batch_size = self._resolve_batch_size(batch_size, DEFAULT_BATCH_SIZE, train_size=train_size)
        if steps_per_epoch is None:
            n_query = sum(self.sources[m].n_obs for m in self.queries)
            steps_per_epoch = max(1, n_query // batch_size)
        lr_stage3 = lr if lr_stage3 is None else lr_stage3
        if self.module.needs_input_projection:
            self._fit_input_projection(seed)

        options = {
            "batch_size": batch_size,
            "train_size": train_size,
            "validation_size": validation_size,
            "steps_per_epoch": steps_per_epoch,
            "replacement": replacement,
            "lr_decay_epochs": lr_decay_epochs,
            "accelerator": accelerator,
            "devices": devices,
            "trainer_kwargs": trainer_kwargs,
        }
        epochs, steps = self._train_stage(
            1,
            None,
            seed,
            lr,
            max_epochs=max_epochs,
            max_steps=max_steps,
            default=("epochs", 20),
            **options,
        )
        stage3_epochs = epochs if stage3_epochs is None else stage3_epochs
        if stage3_epochs > 0:
            pseudo = self._pseudo_labels(pseudo_label_min_confidence, seed)
            if stage3_init == "fresh":
                self.module.reset_parameters(torch.Generator().manual_seed(seed + 1))
            sources = {
                m: ModalitySource(
                    s.manager,
                    s.indices,
                    extras={PSEUDO_LABEL_KEY: pseudo[m]} if m in pseudo else {},
                )
                for m, s in self.sources.items()
            }
            self._train_stage(
                3,
                sources,
                seed + 1,
                lr_stage3,
                max_epochs=stage3_epochs,
                max_steps=None,
                default=("epochs", stage3_epochs),
                **options,
            )
        self._record_train(
            settings,
            max_epochs=epochs,
            max_steps=steps,
            stage3_epochs=stage3_epochs,
            lr_stage3=lr_stage3,
            batch_size=batch_size,
            steps_per_epoch=steps_per_epoch,
            seed=seed,
        )

    def _train_stage(
        self,
        stage: int,
        sources: dict[str, ModalitySource] | None,
        seed: int,
        lr: float,
        *,
        batch_size: int,
        train_size: float,
        validation_size: float | None,
        steps_per_epoch: int,
        replacement: bool,
        lr_decay_epochs: int,
        **fit_options,
    ) -> tuple[int, int]:
        """One SGD stage (1 or 3) on ``sources``; returns the epochs and steps trained."""
        if isinstance(self.module.centers, torch.nn.Parameter):
            # centres only enter the stage-3 loss; a parameter without gradient in stage 1
            # would stall distributed data parallel's gradient reduction
            self.module.centers.requires_grad_(stage == 3)
        plan = self._training_plan_cls(
            self.module, optimizer="sgd", lr=lr, lr_decay_epochs=lr_decay_epochs
        )
        datamodule = self._make_datamodule(
            batch_size,
            seed=seed,
            sources=sources,
            train_size=train_size,
            validation_size=validation_size,
            steps_per_epoch=steps_per_epoch,
            replacement=replacement,
        )
        return self._fit(plan, datamodule, seed=seed, stage=stage, **fit_options)

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

    def _pseudo_labels(self, min_confidence: float, seed: int) -> dict[str, np.ndarray]:
        """Stage 2: kNN label codes for every query cell, indexed by AnnData row."""

        def embedding(m: str) -> np.ndarray:
            return _unit_rows(self._embed(self._input_matrix(m, None), m, 4096))

        reference = embedding(self.reference)
        codes = self.registered_values(self.reference, REGISTRY_KEYS.LABELS_KEY).ravel()
        pseudo = {}
        for m in self.queries:
            idx, _ = knn(
                reference,
                embedding(m),
                self.n_neighbors,
                random_state=seed,
            )
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
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        modality: str | None = None,
        *,
        batch_size: int = 4096,
        normalize: bool = True,
    ) -> np.ndarray | dict[str, np.ndarray]:
        """Joint embedding of cells.

        Parameters
        ----------
        adata
            New cells of ``modality`` (with the registered features, or the raw features the
            model's stored preprocessing starts from); ``None`` for the registered cells. ATAC
            cells may hold raw peaks when the model was built from peaks: they are turned into
            gene activity with the stored links.
        modality
            The modality to embed. ``None`` (with ``adata=None``) embeds every registered
            modality and returns ``{modality: array}``.
        batch_size
            Cells per forward pass.
        normalize
            L2-normalise each cell's embedding, as the reference writes it (``True``).

        Returns
        -------
        ``(n_cells, n_latent)`` float32 array, or ``{modality: array}``.
        """
        v.boolean(normalize, "normalize")
        z = super().get_latent_representation(adata, modality, batch_size=batch_size)
        if not normalize:
            return z
        if isinstance(z, dict):
            return {m: _unit_rows(x) for m, x in z.items()}
        return _unit_rows(z)

    def _embed(self, X, modality: str, batch_size: int) -> np.ndarray:
        k = self.module.modalities.index(modality)
        return self._apply_in_chunks(
            X,
            lambda x: self.module.embed(x, k),
            self.module.n_latent,
            batch_size=batch_size,
            sparse_input=True,
        )

    def predict(
        self,
        adata: AnnData | None = None,
        modality: str | None = None,
        *,
        n_neighbors: int | None = None,
        min_confidence: float | None = None,
        max_reference: int | None = None,
        method: Literal["auto", "exact", "pynndescent"] = "auto",
    ) -> pd.DataFrame:
        """Transfer reference labels to query cells by kNN vote in the embedding.

        Parameters
        ----------
        adata
            New query cells (gene activity over the model's genes, or raw peaks when the model
            was built from peaks); ``None`` for the registered query cells.
        modality
            Query modality; defaults to the only query (required when there are several).
        n_neighbors
            Voting neighbours among reference cells (the model's ``n_neighbors``).
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
        n_neighbors = self.n_neighbors if n_neighbors is None else n_neighbors
        v.check_positive_int(n_neighbors, argname="n_neighbors")
        v.optional(v.fraction(low_open=False))(min_confidence, "min_confidence")
        v.optional(v.positive_int())(max_reference, "max_reference")
        v.choice("auto", "exact", "pynndescent")(method, "method")
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
        idx, _ = knn(reference, query, n_neighbors, method=method, random_state=self.seed)
        winner, agreement = vote(codes[idx], len(self.labels_))
        labels = np.asarray(self.labels_, dtype=object)[winner]
        categories = list(self.labels_)
        if min_confidence is not None:
            labels = np.where(agreement < min_confidence, "unassigned", labels)
            categories.append("unassigned")
        index = adata.obs_names if adata is not None else self.obs_names_of(modality)
        return pd.DataFrame(
            {
                "label": pd.Categorical(labels, categories=categories),
                "confidence": agreement.astype(np.float32),
            },
            index=index,
        )


# ---------------------------------------------------------------------------- helpers
def _no_shared_genes_message(rna: str, atac: str, rna_adata: AnnData, atac_adata: AnnData) -> str:
    try:
        peak_coordinates(atac_adata)
        is_peaks = True
    except ValueError:
        is_peaks = False
    if is_peaks:
        return (
            f"Modality {atac!r} holds peaks (genomic coordinates) and shares no features with "
            f"{rna!r}; pass `annotation=` (a gene table or GTF matching the genome build) to "
            "compute gene activity, or pass a precomputed gene-activity modality."
        )
    return (
        f"Modality {atac!r} shares no genes with {rna!r} and has no peak coordinates (e.g. ATAC "
        f"var names {list(atac_adata.var_names[:3])}, RNA var names "
        f"{list(rna_adata.var_names[:3])}). Pass ATAC gene activity over the RNA gene names, or "
        "peaks with `var` columns chrom/start/end (or names like 'chr1:100-200') together with "
        "`annotation=`."
    )


def _describe(annotation: Any) -> str | None:
    if annotation is None:
        return None
    return "DataFrame" if isinstance(annotation, pd.DataFrame) else os.fspath(annotation)


def _positions(names: pd.Index, genes: pd.Index, modality: str) -> np.ndarray:
    positions = names.get_indexer(genes)
    if (positions < 0).any():
        missing = genes[positions < 0]
        raise ValueError(
            f"Modality {modality!r} lacks {len(missing)} of the model's genes (e.g. "
            f"{list(missing[:5])}); pass the data the model was trained on."
        )
    return positions


def _unit_rows(z: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return (z / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
