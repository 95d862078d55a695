"""scDART model: inputs and prior, training on the diffusion geometry, latent and gene activity."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from scx import _validation as v
from scx._neighbors import anchor_scores, knn, mutual_neighbors
from scx.base import MultiModalModelBase, to_tensor, train_docs
from scx.data import ModalitySource, MultiModalDataModule, PartnerSampling
from scx.pp import cca_embeddings, log_normalize
from scx.train import LossTrainingPlan

from ._diffusion import _binarized, diffusion_coordinates, diffusion_embeddings, post_align
from ._module import (
    ANCHOR_KEY,
    DIFFUSION_KEY,
    PARTNER_WEIGHTS_KEY,
    PARTNERS_KEY,
    ModalityBatchNorm,
    SCDARTModule,
)
from ._prior import PriorLike, check_prior_choice, describe_prior, prior_links, resolve_prior

logger = logging.getLogger(__name__)

#: Optimisation steps of the reference (500 epochs of ~4 full mini-batches).
REFERENCE_STEPS = 2000
#: Largest default mini-batch (the reference uses a quarter of the smaller modality).
MAX_DEFAULT_BATCH = 1024
#: Most genes in the CCA of the candidate-pair search (the most variable; Seurat's default
#: number of anchor features).
PAIR_MAX_GENES = 2000
#: Fewest cells per modality the diffusion geometry (kNN graph, eigenvectors) works with.
MIN_CELLS = 4


class _CandidatePairs(NamedTuple):
    """The candidate pairs of one training's settings (see ``SCDART._candidate_partners``)."""

    #: Each ATAC row's candidate RNA partners (RNA row indices, −1 padding), rows × neighbours.
    partners: np.ndarray
    #: Their anchor scores (0 on padding), or ``None`` when the pairs are not scored.
    weights: np.ndarray | None
    #: Counts of pairs and paired cells (and the mean score), as ``uns`` records them.
    record: dict[str, float]


class _SparseBatchDataModule(MultiModalDataModule):
    """Mini-batches whose sparse matrices stay sparse CSR tensors up to the first layer."""

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Keep sparse tensors: the gene-activity network multiplies them sparsely."""
        return batch


def _batch_size_check(value: Any, argname: str) -> None:
    """``None``, an integer ≥ 2 or ``{modality: integer ≥ 2}`` (BatchNorm needs two cells)."""
    if value is None:
        return
    if isinstance(value, Mapping):
        for m, size in value.items():
            v.check_positive_int(size, argname=f"{argname}[{m!r}]", minimum=2)
        return
    v.check_positive_int(value, argname=argname, minimum=2)


def _anchors_check(value: Any, argname: str) -> None:
    """``None`` or ``{modality: cell names}`` (names are checked against the data later)."""
    if value is None:
        return
    if not isinstance(value, Mapping) or not all(
        not isinstance(cells, str) and hasattr(cells, "__len__") for cells in value.values()
    ):
        raise ValueError(
            f"`{argname}` must be a dict {{modality: list of cell names}} with the anchor cells "
            f"of both modalities, got {value!r:.80}."
        )


class SCDART(MultiModalModelBase):
    """scDART: unpaired scRNA-seq + scATAC-seq integration with a learned gene-activity function.

    A gene-activity network (peaks → genes, nonlinear) turns ATAC cells into pseudo-RNA; a
    shared encoder embeds RNA and pseudo-RNA into one latent space. The losses keep each
    modality's latent distances close to its diffusion distances, align the two latent
    distributions (MMD), keep the end-to-end linear peak → gene weight of the gene-activity
    network on the links of a genomic prior, and optionally pull anchor cells together.

    Build it with :func:`scx.tl.scdart`, or register a MuData with :meth:`setup_mudata` (the
    RNA modality first, the ATAC modality second, counts in ``.X`` or a layer) and pass a genes
    × peaks prior. Training computes each modality's diffusion geometry from the registered
    counts (:meth:`train`), so nothing besides the counts needs to be registered.

    Parameters
    ----------
    mdata
        MuData registered with :meth:`setup_mudata` holding the RNA and the ATAC modality, in
        this order.
    prior
        Genes × peaks matrix (rows in the RNA modality's gene order, columns in the ATAC
        modality's peak order); non-zero entries are links.
    n_latent
        Latent dimensions (8, the reference class default; its scripts use 4).
    n_hidden_gene_activity, n_hidden_encoder
        Hidden widths (1024, 512) and (512, 128): the reference's ``fit`` sizes, used for
        every path here (the reference's ``fit_transform`` builds smaller networks).
    lambda_dist, lambda_prior, lambda_mmd, lambda_anchor
        Weights of the diffusion-distance, prior, MMD and anchor losses (1 each, as in the
        reference).
    lambda_pairs
        Weight of the candidate-pair loss (not in the reference; ``0`` turns it off): before
        training, RNA cells and the prior's gene activity of the ATAC cells (binary peaks ×
        prior) are embedded together by CCA, and mutual nearest neighbours across the two
        modalities become candidate pairs (see ``pair_neighbors`` in :meth:`train`); the loss
        is the mean squared latent distance of the candidate pairs in a batch, weighted by
        each pair's Seurat anchor score, over that of all RNA/ATAC pairs of the batch. MMD
        alone matches the two latent distributions, not which ATAC cells land on which RNA
        cells; the pairs supply that correspondence from the prior, the information scDART's
        gene-activity network is meant to carry.
    prior_penalty
        ``"relative_l1"`` (default): the share of the end-to-end weight off the prior's links,
        which, unlike the others, cannot be lowered by shrinking layers that a BatchNorm
        follows (see :class:`~scx.scdart.SCDARTModule`) and, being at most 1, leaves the
        alignment terms a say over the gene-activity network; ``"l1"`` (the reference
        default, the sum of absolute off-link weights, ~10⁴ on real data) or ``"l2"``.
        ``scx.scdart.REFERENCE_SETTINGS`` restores the reference's losses.
    prior_penalty_peaks
        Peaks drawn per step for an unbiased estimate of the prior penalty (2048); ``None``
        computes it over all peaks every step (the reference; costs genes × peaks × 1024 per
        step).
    rna_transform
        ``"log_normalize"`` (library size 100, log1p per cell) or ``"none"`` (data already
        normalised).
    atac_transform
        ``"binary"`` or ``"none"``.
    anchors
        ``{modality: cell names}`` of anchor cells of both modalities (cells believed to match
        across the modalities, e.g. the earliest cells of a trajectory) for the anchor loss;
        at least 2 per modality.
    init_from_prior
        Start the gene-activity network with every gene positively linked to its own peaks
        (a positive-semidefinite gene mix of the prior); ``False`` initialises at random, as
        the reference.
    seed
        Seed of the weight initialisation (and the default seed of :meth:`train`).

    Examples
    --------
    >>> scx.model.SCDART.setup_mudata(mdata, modalities=["rna", "atac"])
    >>> model = scx.model.SCDART(mdata, prior=mdata["rna"].varm["peak_prior"])
    >>> model.train()
    >>> z = model.get_latent_representation()
    """

    _method_name = "scDART"
    _module_cls = SCDARTModule
    _training_plan_cls = LossTrainingPlan
    _data_init_args = ("prior",)
    _setting_checks: ClassVar[dict[str, Callable]] = {
        "n_hidden_gene_activity": v.sequence_of(v.positive_int()),
        "n_hidden_encoder": v.sequence_of(v.positive_int()),
        "lambda_dist": v.weight,
        "lambda_prior": v.weight,
        "lambda_mmd": v.weight,
        "lambda_anchor": v.weight,
        "lambda_pairs": v.weight,
        "prior_penalty": v.choice("l1", "l2", "relative_l1"),
        "prior_penalty_peaks": v.optional(v.positive_int()),
        "rna_transform": v.choice("log_normalize", "none"),
        "atac_transform": v.choice("binary", "none"),
        "anchors": _anchors_check,
        "init_from_prior": v.boolean,
        "batch_size": _batch_size_check,
        "ts": v.sequence_of(v.positive_int(), min_length=1),
        "diffusion_neighbors": v.positive_int(),
        "n_diffusion_components": v.positive_int(),
        "diffusion_n_pcs": v.positive_int(minimum=2),
        "pair_neighbors": v.positive_int(),
        "pair_components": v.positive_int(),
        "pair_filter_neighbors": v.optional(v.positive_int()),
        "pair_score_neighbors": v.optional(v.positive_int()),
        "sample_partners": v.boolean,
        "ema_decay": v.optional(v.decay),
    }

    # ------------------------------------------------------------------ inputs
    @classmethod
    def _modality_fields(
        cls,
        modality: str,
        layer: str | None,
        labels_key: str | None,
        batch_key: str | None,
        use_rep: str | None = None,
    ) -> list:
        """Counts (X or a layer), batch and labels; scDART needs counts, not an embedding."""
        if use_rep is not None:
            raise ValueError(
                "scDART reads the RNA counts and the ATAC peaks themselves; pass `layer`, not "
                f"`use_rep` ({use_rep!r})."
            )
        return super()._modality_fields(modality, layer, labels_key, batch_key, None)

    @classmethod
    def _check_inputs(
        cls,
        data,
        *,
        settings: Mapping[str, Any],
        modalities,
        prior,
        annotation,
        prior_kwargs,
        layer,
    ) -> None:
        """Every check of the data, the data arguments and the data-dependent settings."""
        v.check_mudata(data, argname="data")
        rna, atac = v.check_modality_names(
            modalities, roles="the RNA and the ATAC modality, e.g. ('rna', 'atac')"
        )
        layers = v.check_per_modality(layer, [rna, atac], argname="layer")
        adatas = {
            rna: v.check_modality(data, rna, argname="modalities[0]"),
            atac: v.check_modality(data, atac, argname="modalities[1]"),
        }
        for name, adata in adatas.items():
            v.check_unique_names(adata, where=f"Modality {name!r}")
            X = v.get_matrix(adata, layers[name], argname="layer")
            v.check_counts(X, argname=f"data.mod[{name!r}] (layer={layers[name]!r})")
            if adata.n_obs < MIN_CELLS:
                raise ValueError(
                    f"Modality {name!r} has {adata.n_obs} cells; scDART's diffusion geometry "
                    f"needs at least {MIN_CELLS}."
                )
        check_prior_choice(prior, annotation, prior_kwargs)
        if prior is not None:  # cheap to resolve; an annotation is resolved when fitting
            resolve_prior(prior, None, adatas[rna], adatas[atac], rna_name=rna, atac_name=atac)
        _anchor_masks(settings.get("anchors"), adatas)
        v.check_batch_size_fits(
            settings["batch_size"],
            {m: a.n_obs for m, a in adatas.items()},
            train_size=settings["train_size"],
        )

    @classmethod
    def _fit_inputs(
        cls,
        data: MuData,
        *,
        seed: int,
        modalities: Sequence[str] = ("rna", "atac"),
        prior: PriorLike | None = None,
        annotation: pd.DataFrame | str | os.PathLike | None = None,
        prior_kwargs: dict | None = None,
        layer: str | dict[str, str | None] | None = None,
    ) -> dict:
        """The genes × peaks prior (the model reads the counts as they are).

        Parameters
        ----------
        data
            MuData with an RNA modality (counts) and an ATAC modality (peaks); the cells need
            not match.
        modalities
            The RNA and the ATAC modality, in this order.
        prior
            Peak–gene prior: a ``.varm`` key (genes × peaks in the RNA modality, e.g. from
            :func:`scx.pp.peak_gene_prior`, or peaks × genes in the ATAC modality), a
            DataFrame with gene and peak names on its axes (either orientation), or a genes ×
            peaks / peaks × genes matrix. Non-zero entries are links.
        annotation
            Gene table or GTF instead of ``prior``: the prior is built with
            :func:`scx.pp.peak_gene_prior` (gene body + 2 kb upstream, as the reference).
        prior_kwargs
            Region settings of :func:`scx.pp.peak_gene_prior` (with ``annotation``).
        layer
            Layer with counts, once for both or ``{modality: layer}``; ``None`` uses ``.X``.
        """
        rna, atac = v.check_modality_names(
            modalities, roles="the RNA and the ATAC modality, e.g. ('rna', 'atac')"
        )
        layers = v.check_per_modality(layer, [rna, atac], argname="layer")
        matrix = resolve_prior(
            prior,
            annotation,
            data.mod[rna],
            data.mod[atac],
            rna_name=rna,
            atac_name=atac,
            prior_kwargs=prior_kwargs,
        )
        return {
            "args": {
                "modalities": [rna, atac],
                "prior": describe_prior(prior),
                "annotation": _describe_annotation(annotation),
                "prior_kwargs": dict(prior_kwargs or {}),
                "layer": layers,
            },
            "transforms": {},
            "init": {"prior": matrix},
            "n_genes": int(data.mod[rna].n_vars),
            "n_peaks": int(data.mod[atac].n_vars),
            "n_prior_links": int(matrix.nnz),
            "n_linked_genes": int((np.diff(matrix.indptr) > 0).sum()),
        }

    @classmethod
    def _build_view(cls, data: MuData, state: Mapping) -> MuData:
        """The two modalities' counts, shared with the user's data, and their names only."""
        rna, atac = state["args"]["modalities"]
        layers = state["args"]["layer"]
        v.check_mudata(data, argname="adata")
        views = {}
        for m, n_vars in ((rna, state["n_genes"]), (atac, state["n_peaks"])):
            adata = v.check_modality(data, m, argname="modalities")
            if adata.n_vars != n_vars:
                raise ValueError(
                    f"Modality {m!r} has {adata.n_vars} features; the model was trained on "
                    f"{n_vars}. Pass the data the model was trained on."
                )
            X = v.get_matrix(adata, layers[m])
            obs = pd.DataFrame(index=adata.obs_names.copy())
            var = pd.DataFrame(index=adata.var_names.copy())
            # the matrix keeps its layer name, so new cells are read from the same layer
            views[m] = (
                AnnData(X=X, obs=obs, var=var)
                if layers[m] is None
                else AnnData(obs=obs, var=var, layers={layers[m]: X})
            )
        return MuData(views)

    @classmethod
    def _register_view(cls, view: MuData, state: Mapping) -> None:
        rna, atac = state["args"]["modalities"]
        cls.setup_mudata(view, modalities=[rna, atac], layer=state["args"]["layer"])

    # ------------------------------------------------------------------ construction
    def __init__(
        self,
        mdata: MuData,
        prior,
        n_latent: int = 8,
        n_hidden_gene_activity: Sequence[int] = (1024, 512),
        n_hidden_encoder: Sequence[int] = (512, 128),
        lambda_dist: float = 1.0,
        lambda_prior: float = 1.0,
        lambda_mmd: float = 1.0,
        lambda_anchor: float = 1.0,
        lambda_pairs: float = 1.0,
        prior_penalty: Literal["l1", "l2", "relative_l1"] = "relative_l1",
        prior_penalty_peaks: int | None = 2048,
        rna_transform: Literal["log_normalize", "none"] = "log_normalize",
        atac_transform: Literal["binary", "none"] = "binary",
        anchors: Mapping[str, Sequence[str]] | None = None,
        init_from_prior: bool = True,
        seed: int = 0,
    ):
        super().__init__(mdata)
        self._settings(locals())
        if len(self.modalities) != 2:
            raise ValueError(
                f"scDART needs exactly two modalities (RNA, then ATAC), got {self.modalities}."
            )
        self.rna, self.atac = self.modalities
        n_genes = self.modality_adata(self.rna).n_vars
        n_peaks = self.modality_adata(self.atac).n_vars
        rows, cols = prior_links(prior, n_genes, n_peaks)
        adatas = {m: self.modality_adata(m) for m in self.modalities}
        self.anchors_ = _anchor_masks(anchors, adatas)
        # stored (and recorded) as plain lists of names
        anchors = None if anchors is None else {m: _names(anchors[m]) for m in self.modalities}
        self.seed = seed
        with self._seeded(seed):
            self.module = self._module_cls(
                n_genes,
                n_peaks,
                torch.from_numpy(rows),
                torch.from_numpy(cols),
                modalities=self.modalities,
                n_latent=n_latent,
                n_hidden_gene_activity=list(n_hidden_gene_activity),
                n_hidden_encoder=list(n_hidden_encoder),
                lambda_dist=lambda_dist,
                lambda_prior=lambda_prior,
                lambda_mmd=lambda_mmd,
                lambda_anchor=lambda_anchor,
                lambda_pairs=lambda_pairs,
                prior_penalty=prior_penalty,
                prior_penalty_peaks=prior_penalty_peaks,
                rna_transform=rna_transform,
                atac_transform=atac_transform,
                init_from_prior=init_from_prior,
            )
        self._diffusion_cache: tuple | None = None
        self._pairs_cache: tuple | None = None
        #: Counts of the candidate pairs of the last training (``None`` without the pair loss).
        self.candidate_pairs_: dict[str, float] | None = None
        self._model_summary_string = (
            f"scDART: RNA {self.rna!r} ({n_genes} genes), ATAC {self.atac!r} ({n_peaks} peaks, "
            f"{rows.size} prior links), n_latent {n_latent}, prior penalty {prior_penalty}"
            f"{', anchors' if anchors is not None else ''}"
        )
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------ training
    def default_batch_size(self) -> int:
        """A quarter of the smaller modality (the reference's ``fit``), at most 1,024 cells."""
        smallest = min(s.n_obs for s in self.sources.values())
        return int(max(2, min(smallest // 4, MAX_DEFAULT_BATCH)))

    @train_docs
    def train(
        self,
        max_epochs: int | None = None,
        max_steps: int | None = None,
        *,
        batch_size: int | dict[str, int] | None = None,
        lr: float = 3e-4,
        steps_per_epoch: int | None = None,
        ts: Sequence[int] = (30, 50, 70),
        diffusion_neighbors: int = 5,
        n_diffusion_components: int = 30,
        diffusion_n_pcs: int = 30,
        pair_neighbors: int = 20,
        pair_components: int = 30,
        pair_filter_neighbors: int | None = 200,
        pair_score_neighbors: int | None = 30,
        sample_partners: bool = True,
        ema_decay: float | None = 0.99,
        train_size: float = 1.0,
        validation_size: float | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        seed: int | None = None,
        **trainer_kwargs,
    ) -> None:
        """Compute each modality's diffusion geometry, then train both networks jointly.

        Parameters
        ----------
        max_epochs
            Epochs (an epoch covers the larger modality once).
        max_steps
            Optimisation steps instead of ``max_epochs`` (rounded up to whole epochs). With
            neither, the reference's ~2,000 steps (500 epochs of four mini-batches of a quarter
            of the cells).
        batch_size
            Cells per modality per step on each device (an int or ``{modality: int}``),
            honoured as given;
            default: a quarter of the smaller modality, at most 1,024. Every step draws a full
            batch of both modalities; the smaller modality cycles.
        lr
            Adam learning rate (3e-4).
        steps_per_epoch
            Steps per epoch, shared among the devices; by default the devices together cover
            the larger modality once per epoch.
        ts
            Diffusion times of the diffusion geometry (30, 50, 70).
        diffusion_neighbors
            Neighbours of the diffusion graphs (5, as the reference's graphtools call).
        n_diffusion_components
            Diffusion-map components per diffusion time (30).
        diffusion_n_pcs
            Components of the embeddings the diffusion graphs are built on (30): the PCA of
            the log-normalised RNA and the LSI of the ATAC peaks (one more component, the
            first, depth-driven one, dropped).
        pair_neighbors
            Neighbours of the mutual-nearest-neighbour search for candidate pairs (20; used
            when ``lambda_pairs > 0``). Seurat's anchors use 5; 20 gives nearly every ATAC
            cell a candidate (99 % of MOp's, 80 % at 5), and the scores below weigh the
            pairs.
        pair_components
            CCA components of the candidate-pair search (30).
        pair_filter_neighbors
            Seurat's anchor filter (``k.filter``, 200 as Seurat): a candidate pair is kept only
            when, over the same genes before CCA (cosine of the log-normalised values), the
            ATAC cell's prior gene activity is among the ``pair_filter_neighbors`` nearest of
            the RNA cell's expression. CCA finds correlated directions, not matching cells, and
            mutual neighbours there often join different populations. On MOp the filter keeps
            6 % of the pairs (15 % of the ATAC cells keep a partner) and raises the share
            joining cells of one type from 50 % to 63 % (68 % with the scores); over the full
            schedule RNA → ATAC accuracy rose from 0.503 to 0.550 and FOSCTTM fell from 0.277
            to 0.246 (3 seeds), while macro-F1 fell from 0.311 to 0.279
            (docs/methods/scdart.md). ``None`` keeps every mutual pair. Needs the cells × genes
            values (at most 2,000 genes) dense in memory once.
        pair_score_neighbors
            Neighbours per cell of Seurat's shared-neighbour score of each candidate pair
            (``k.score``, 30; :func:`scx._neighbors.anchor_scores`): the pair term weighs
            each pair by its score, so pairs that bridge two populations count little.
            ``None`` weighs all pairs equally.
        sample_partners
            Draw, for every ATAC cell of a step that has candidate partners, one of them (in
            proportion to its score) into the step's RNA batch, taking at most half of it
            (:class:`scx.data.PartnerBatchSampler`). The pair term acts only on pairs whose
            two cells share a step; with independent batches of ``b`` of ``n`` cells a pair
            meets in ``b / n`` of its ATAC cell's steps (10 % on MOp, less on larger data), so
            the term would weaken as the data grow. ``False`` draws the RNA batches uniformly.
        ema_decay
            Return the weights as the exponential moving average of their iterates (decay per
            step, 0.99: the last ~100 steps weigh most; ramped up over the first steps),
            instead of the last step's weights, as Portal does by default. The last iterate
            carries the noise of its last mini-batches (on MOp FOSCTTM moved by ±0.01 from one
            snapshot to the next); the average sits nearer the point the iterates move
            around. BatchNorm's statistics are recomputed for the averaged weights. ``None``:
            the last step's weights, as the reference.
        train_size, validation_size
            Split of each modality's cells into training and validation (validation losses
            appear in ``history``). The diffusion geometry and the candidate pairs are computed
            on every cell; partners outside the training cells are not drawn.
        """
        settings = self._settings(locals())
        seed = self.seed if seed is None else seed
        batch_size = self._resolve_batch_size(
            batch_size, self.default_batch_size(), train_size=train_size
        )
        diffusion = self._diffusion_geometry(
            list(ts), diffusion_neighbors, n_diffusion_components, diffusion_n_pcs, seed
        )
        sources, partner_sampling = {}, None
        for m, source in self.sources.items():
            extras = {DIFFUSION_KEY: diffusion[m]}
            if self.anchors_ is not None:
                extras[ANCHOR_KEY] = self.anchors_[m]
            if m == self.atac and self.module.lambda_pairs > 0:
                pairs = self._candidate_partners(
                    pair_neighbors,
                    pair_components,
                    pair_filter_neighbors,
                    pair_score_neighbors,
                    seed,
                )
                extras[PARTNERS_KEY] = pairs.partners
                if pairs.weights is not None:
                    extras[PARTNER_WEIGHTS_KEY] = pairs.weights
                if sample_partners:
                    partner_sampling = PartnerSampling(
                        self.rna, self.atac, pairs.partners, pairs.weights
                    )
            sources[m] = ModalitySource(source.manager, source.indices, extras=extras)
        datamodule = self._make_datamodule(
            batch_size,
            seed=seed,
            sources=sources,
            datamodule_cls=_SparseBatchDataModule,
            steps_per_epoch=steps_per_epoch,
            partner_sampling=partner_sampling,
            load_sparse_tensor=True,
            train_size=train_size,
            validation_size=validation_size,
        )
        plan = self._training_plan_cls(self.module, lr=lr, ema_decay=ema_decay)
        with warnings.catch_warnings():
            # scvi builds the sparse mini-batches on purpose; torch's notes about them are noise
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly")
            epochs, steps = self._fit(
                plan,
                datamodule,
                max_epochs=max_epochs,
                max_steps=max_steps,
                default=("steps", REFERENCE_STEPS),
                seed=seed,
                accelerator=accelerator,
                devices=devices,
                trainer_kwargs=trainer_kwargs,
            )
        self.recalibrate_batch_norm(datamodule.batch_size, seed=seed)
        self._record_train(
            settings,
            max_epochs=epochs,
            max_steps=steps,
            batch_size=batch_size,
            steps_per_epoch=datamodule.n_batches(),
            ts=list(ts),
            seed=seed,
        )

    def _diffusion_geometry(
        self, ts: list[int], n_neighbors: int, n_components: int, n_pcs: int, seed: int
    ) -> dict[str, np.ndarray]:
        """Per-row diffusion-map coordinates (rows × times × components) of each modality.

        Training data, not an input: computed from the registered counts (RNA: PCA of the
        counts log-normalised to 100; ATAC: LSI of the binarised peaks, components weighted by
        their singular values, without the first), cached for repeated ``train`` calls with
        the same settings.
        """
        key = (tuple(ts), n_neighbors, n_components, n_pcs, seed)
        if self._diffusion_cache is not None and self._diffusion_cache[0] == key:
            return self._diffusion_cache[1]
        rna_embedding, atac_embedding = diffusion_embeddings(
            self._input_matrix(self.rna, None),
            self.var_names_of(self.rna),
            self._input_matrix(self.atac, None),
            self.var_names_of(self.atac),
            n_pcs=n_pcs,
            log_normalize=self.module.rna_transform == "log_normalize",
            binarize=self.module.atac_transform == "binary",
            seed=seed,
        )
        embeddings = {self.rna: rna_embedding, self.atac: atac_embedding}
        out = {}
        for m, embedding in embeddings.items():
            coords = diffusion_coordinates(
                embedding,
                n_neighbors=n_neighbors,
                ts=ts,
                n_components=n_components,
                seed=seed,
            )
            source = self.sources[m]
            per_row = np.zeros((source.manager.adata.n_obs, len(ts), n_components), np.float32)
            per_row[source.indices] = coords.reshape(coords.shape[0], len(ts), n_components)
            out[m] = per_row
        self._diffusion_cache = (key, out)
        return out

    def _candidate_partners(
        self,
        n_neighbors: int,
        n_components: int,
        n_filter_neighbors: int | None,
        n_score_neighbors: int | None,
        seed: int,
    ) -> _CandidatePairs:
        """Each ATAC row's candidate RNA partners (RNA row indices, −1 padding) and weights.

        CCA (:func:`scx.pp.cca_embeddings`) of the RNA counts and the prior's gene activity
        of the ATAC cells (binarised peaks × prior), both library-normalised and log1p'd, over
        the genes with any activity (at most :data:`PAIR_MAX_GENES`, the most variable in
        RNA), then mutual nearest neighbours (cosine) across them, filtered and weighted as
        Seurat's anchors (Stuart et al., Cell 2019): kept when the two cells are also near in
        the genes' own space (``None``: all kept), weighted by their shared-neighbour scores
        (``None``: no weights). Cached per settings.
        """
        key = (n_neighbors, n_components, n_filter_neighbors, n_score_neighbors, seed)
        if self._pairs_cache is not None and self._pairs_cache[0] == key:
            self.candidate_pairs_ = self._pairs_cache[1].record
            return self._pairs_cache[1]
        rna_source, atac_source = self.sources[self.rna], self.sources[self.atac]
        X_rna = sparse.csr_matrix(self._input_matrix(self.rna, None), dtype=np.float32)
        X_atac = self._input_matrix(self.atac, None)
        if self.module.atac_transform == "binary":
            X_atac = _binarized(X_atac)
        X_atac = sparse.csr_matrix(X_atac, dtype=np.float32)
        module = self.module
        prior = sparse.csr_matrix(
            (
                np.ones(module.prior_rows.numel(), np.float32),
                (module.prior_cols.cpu().numpy(), module.prior_rows.cpu().numpy()),
            ),
            shape=(module.n_peaks, module.n_genes),
        )
        activity = X_atac @ prior
        genes = np.flatnonzero(
            (np.asarray(activity.sum(0)).ravel() > 0) & (np.asarray(X_rna.sum(0)).ravel() > 0)
        )
        if genes.size < 2:
            raise ValueError(
                f"The candidate pairs of `lambda_pairs` need at least 2 genes with RNA counts "
                f"and linked accessible peaks, found {genes.size}; check the prior's links or "
                "pass `lambda_pairs=0`."
            )
        # both normalised over the same genes: those the prior gives any activity
        log_rna = log_normalize(X_rna[:, genes], 100.0)
        log_activity = log_normalize(activity[:, genes], 100.0)
        if genes.size > PAIR_MAX_GENES:
            # the most variable RNA genes, as Seurat's anchor features
            mean = np.asarray(log_rna.mean(0)).ravel()
            variance = np.asarray(log_rna.power(2).mean(0)).ravel() - mean**2
            keep = np.sort(np.argsort(-variance, kind="stable")[:PAIR_MAX_GENES])
            genes, log_rna, log_activity = genes[keep], log_rna[:, keep], log_activity[:, keep]
        u, w = cca_embeddings(log_rna, log_activity, n_components, seed=seed)
        i_rna, i_atac = mutual_neighbors(u, w, n_neighbors, metric="cosine", random_state=seed)
        n_mutual = int(i_rna.size)
        if n_filter_neighbors is not None and n_mutual:
            # Seurat's FilterAnchors: the ATAC cell among the RNA cell's nearest before CCA
            near, _ = knn(
                log_activity.toarray(),
                log_rna.toarray(),
                n_filter_neighbors,
                metric="cosine",
                random_state=seed,
            )
            kept = (near[i_rna] == i_atac[:, None]).any(axis=1)
            i_rna, i_atac = i_rna[kept], i_atac[kept]
        partners = np.full((atac_source.manager.adata.n_obs, n_neighbors), -1, np.int64)
        # slot of each pair within its ATAC cell's row (pairs come sorted by RNA cell)
        order = np.argsort(i_atac, kind="stable")
        i_rna, i_atac = i_rna[order], i_atac[order]
        first = np.searchsorted(i_atac, i_atac)
        slot = np.arange(i_atac.size) - first
        partners[atac_source.indices[i_atac], slot] = rna_source.indices[i_rna]
        record = {
            "n_mutual_neighbors": n_mutual,
            "n_pairs": int(i_rna.size),
            "n_atac_cells_paired": int(np.unique(i_atac).size),
            "n_rna_cells_paired": int(np.unique(i_rna).size),
            "n_genes": int(genes.size),
        }
        weights = None
        if n_score_neighbors is not None:
            scores = anchor_scores(
                u, w, i_rna, i_atac, n_score_neighbors, metric="cosine", random_state=seed
            )
            weights = np.zeros(partners.shape, np.float32)
            weights[atac_source.indices[i_atac], slot] = scores
            record["mean_score"] = float(scores.mean()) if scores.size else 0.0
        logger.info(
            "scDART candidate pairs: %d mutual neighbours (CCA of RNA and prior gene activity "
            "over %d genes), %d kept by the anchor filter; %d of %d ATAC cells have a partner",
            n_mutual,
            record["n_genes"],
            record["n_pairs"],
            record["n_atac_cells_paired"],
            atac_source.n_obs,
        )
        pairs = _CandidatePairs(partners, weights, record)
        self.candidate_pairs_ = record
        self._pairs_cache = (key, pairs)
        return pairs

    @torch.no_grad()
    def recalibrate_batch_norm(
        self, batch_size: int | dict[str, int] = 1024, *, seed: int | None = None
    ) -> None:
        """Set every BatchNorm's running statistics to the population mean over mini-batches.

        The reference never leaves training mode, so its latents depend on which cells are
        embedded together. Here inference uses evaluation-mode BatchNorm; with the reference's
        momentum of 0.01 the running statistics trail the weights by ~100 steps, so after
        training they are recomputed exactly: one pass over every modality's cells in
        training-mode mini-batches of the training size, averaging the batch statistics.
        """
        sizes = (
            batch_size
            if isinstance(batch_size, Mapping)
            else dict.fromkeys(self.modalities, batch_size)
        )
        norms = [
            m
            for m in self.module.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm | ModalityBatchNorm)
        ]
        saved = [m.momentum for m in norms]
        for m in norms:
            m.momentum = None  # cumulative average of the batch statistics
            m.reset_running_stats()
        self.module.train()
        device = self.module.device
        rng = np.random.default_rng(self.seed if seed is None else seed)
        try:
            for k, modality in enumerate(self.modalities):
                X = self._input_matrix(modality, None)
                n = X.shape[0]
                size = min(int(sizes[modality]), n)
                order = rng.permutation(n)
                # full batches only, so every batch has the statistics of a training batch
                for start in range(0, max(n - size, 0) + 1, size):
                    rows = np.sort(order[start : start + size])
                    self.module.embed(to_tensor(X[rows], device, keep_sparse=True), k)
        finally:
            for m, momentum in zip(norms, saved):
                m.momentum = momentum
            self.module.eval()

    # ------------------------------------------------------------------ inference
    def _embed(self, X, modality: str, batch_size: int) -> np.ndarray:
        k = self.modalities.index(modality)
        return self._apply_in_chunks(
            X,
            lambda x: self.module.embed(x, k),
            self.module.n_latent,
            batch_size=batch_size,
            sparse_input=True,
        )

    def get_aligned_latent(self, n_neighbors: int = 10) -> dict[str, np.ndarray]:
        """Latent after the reference's kNN post-alignment (see :func:`scx.scdart.post_align`)."""
        v.check_positive_int(n_neighbors, argname="n_neighbors")
        z = self.get_latent_representation()
        z_rna, z_atac = post_align(z[self.rna], z[self.atac], n_neighbors, seed=self.seed)
        return {self.rna: z_rna, self.atac: z_atac}

    def get_gene_activity(
        self, adata: AnnData | None = None, *, batch_size: int = 4096
    ) -> pd.DataFrame:
        """Predicted RNA (gene-activity network output) of ATAC cells.

        Returns a cells × genes DataFrame (registered ATAC cells, or the cells of ``adata``
        over the registered peaks) on the scale of the transformed RNA input (log-normalised
        to 100 by default).
        """
        self._check_if_trained(warn=True)
        X = self._input_matrix(self.atac, adata)
        values = self._apply_in_chunks(
            X,
            self.module.gene_activity_of,
            self.module.n_genes,
            batch_size=batch_size,
            sparse_input=True,
        )
        cells = self.obs_names_of(self.atac) if adata is None else adata.obs_names
        return pd.DataFrame(values, index=cells, columns=self.var_names_of(self.rna))

    def get_peak_gene_weights(
        self, *, linked_only: bool = True, chunk_peaks: int = 4096
    ) -> sparse.csr_matrix | np.ndarray:
        """The learned end-to-end linear peak → gene weights (product of the Linear layers).

        Parameters
        ----------
        linked_only
            Return only the prior's links, as a sparse genes × peaks CSR matrix; with
            ``False`` a dense genes × peaks array of every weight.
        chunk_peaks
            Peaks per product (bounds memory).

        Returns
        -------
        Matrix with rows in the RNA gene order and columns in the ATAC peak order.
        """
        v.boolean(linked_only, "linked_only")
        v.check_positive_int(chunk_peaks, argname="chunk_peaks")
        n_genes, n_peaks = self.module.n_genes, self.module.n_peaks

        def columns(peaks: torch.Tensor) -> torch.Tensor:
            # the chunk's rows are peak positions: peaks × genes block of the weight
            return self.module.end_to_end_weight(peaks.view(-1).long()).T

        def block(start: int, stop: int) -> np.ndarray:
            positions = np.arange(start, stop, dtype=np.float32)[:, None]
            return self._apply_in_chunks(positions, columns, n_genes, batch_size=chunk_peaks)

        if not linked_only:
            return np.ascontiguousarray(block(0, n_peaks).T)
        rows = self.module.prior_rows.cpu().numpy()
        cols = self.module.prior_cols.cpu().numpy()
        linked = np.empty(rows.size, dtype=np.float32)
        for start in range(0, n_peaks, chunk_peaks):
            stop = min(start + chunk_peaks, n_peaks)
            hit = (cols >= start) & (cols < stop)
            if hit.any():
                linked[hit] = block(start, stop)[cols[hit] - start, rows[hit]]
        return sparse.csr_matrix((linked, (rows, cols)), shape=(n_genes, n_peaks))


# ---------------------------------------------------------------------------- helpers
def _names(cells) -> list[str]:
    return [str(c) for c in np.asarray(list(cells), dtype=object)]


def _anchor_masks(anchors, adatas: Mapping[str, AnnData]) -> dict[str, np.ndarray] | None:
    """Row masks of the anchor cells of each modality; errors name what is wrong."""
    if anchors is None:
        return None
    _anchors_check(anchors, "anchors")
    if set(anchors) != set(adatas):
        raise ValueError(
            f"`anchors` must be a dict with cell names for both modalities {list(adatas)}, got "
            f"keys {list(anchors)}."
        )
    masks = {}
    for m, adata in adatas.items():
        cells = pd.Index(_names(anchors[m]))
        missing = cells.difference(adata.obs_names)
        if len(missing):
            raise ValueError(
                f"`anchors[{m!r}]` names {len(missing)} cells that are not in modality {m!r} "
                f"(e.g. {list(missing[:3])}); pass names of its cells."
            )
        if cells.nunique() < 2:
            raise ValueError(
                f"`anchors[{m!r}]` holds {cells.nunique()} cell; the anchor loss needs at least "
                "2 anchor cells per modality."
            )
        masks[m] = np.asarray(adata.obs_names.isin(cells))
    return masks


def _describe_annotation(annotation: Any) -> str | None:
    if annotation is None:
        return None
    return "DataFrame" if isinstance(annotation, pd.DataFrame) else os.fspath(annotation)
