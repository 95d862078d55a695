"""scDART model: registration, training, joint latent and learned gene activity."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.data.fields import ObsmField
from scvi.train import TrainingPlan

from scx import _validation as v
from scx.data import MultiModalDataModule
from scx.base import MultiModalModelBase
from scx.train import EpochMeanLoggingMixin

from ._diffusion import post_align
from ._module import DIFFUSION_KEY, ModalityBatchNorm, SCDARTModule

logger = logging.getLogger(__name__)

#: ``.obsm`` key of each modality holding the per-cell diffusion coordinates the model trains on.
DIFFUSION_OBSM = "scdart_diffusion"
#: Optimisation steps of the reference (500 epochs of ~4 full mini-batches).
REFERENCE_STEPS = 2000
#: Largest default mini-batch (the reference uses a quarter of the smaller modality).
MAX_DEFAULT_BATCH = 1024


class _SparseBatchDataModule(MultiModalDataModule):
    """Mini-batches whose sparse matrices stay sparse CSR tensors up to the first layer."""

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Keep sparse tensors: the gene-activity network multiplies them sparsely."""
        return batch


class SCDARTTrainingPlan(EpochMeanLoggingMixin, TrainingPlan):
    """One Adam step per pair of RNA/ATAC mini-batches on the sum of scDART's losses.

    The reference's two Adam optimisers (gene activity, encoder) have identical settings and
    step after one backward pass, so one Adam over all parameters is the same update.

    Parameters
    ----------
    module
        The scDART module.
    rna, atac
        Modality names.
    anchors
        ``{modality: bool array}`` over the rows of each registered AnnData, or ``None``.
    lr
        Adam learning rate (3e-4).
    """

    def __init__(
        self,
        module: SCDARTModule,
        *,
        rna: str,
        atac: str,
        anchors: dict[str, np.ndarray] | None = None,
        lr: float = 3e-4,
    ):
        super().__init__(module, lr=lr, weight_decay=0.0, n_epochs_kl_warmup=None)
        self.rna, self.atac = rna, atac
        self.use_anchors = anchors is not None
        if anchors is not None:
            # buffers follow the plan to the training device
            self.register_buffer("anchor_rna", torch.as_tensor(anchors[rna]), persistent=False)
            self.register_buffer("anchor_atac", torch.as_tensor(anchors[atac]), persistent=False)
        self._n_skipped = 0

    def _step(self, batch):
        anchors = None
        if self.use_anchors:
            rows_rna = batch[self.rna][REGISTRY_KEYS.INDICES_KEY].long().view(-1)
            rows_atac = batch[self.atac][REGISTRY_KEYS.INDICES_KEY].long().view(-1)
            anchors = (self.anchor_rna[rows_rna], self.anchor_atac[rows_atac])
        return self.module.training_loss(batch, self.rna, self.atac, anchors=anchors)

    def training_step(self, batch, batch_idx):
        """One Adam step on an RNA and an ATAC mini-batch."""
        loss_output = self._step(batch)
        if not torch.isfinite(loss_output.loss):
            self._n_skipped += 1
            logger.warning(
                "Non-finite scDART loss at epoch %d step %d; step skipped (%d so far).",
                self.current_epoch,
                batch_idx,
                self._n_skipped,
            )
            return None
        self.accumulate(loss_output.extra_metrics, loss_output.n_obs_minibatch, "train")
        return loss_output.loss

    def validation_step(self, batch, batch_idx):
        """Losses on held-out cells."""
        loss_output = self._step(batch)
        self.accumulate(loss_output.extra_metrics, loss_output.n_obs_minibatch, "validation")

    def configure_optimizers(self):
        """Adam with PyTorch's default betas and eps, no weight decay, no schedule."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.lr)


def _to_torch(X, device) -> torch.Tensor:
    """A chunk of a scipy/numpy matrix as a float32 tensor (sparse CSR stays sparse)."""
    if sparse.issparse(X):
        X = sparse.csr_matrix(X, dtype=np.float32)
        return torch.sparse_csr_tensor(
            torch.from_numpy(X.indptr.astype(np.int64)),
            torch.from_numpy(X.indices.astype(np.int64)),
            torch.from_numpy(X.data),
            size=X.shape,
            device=device,
        )
    return torch.as_tensor(np.asarray(X, dtype=np.float32), device=device)


def prior_links(prior, n_genes: int, n_peaks: int) -> tuple[np.ndarray, np.ndarray]:
    """Row (gene) and column (peak) indices of the non-zero entries of a genes × peaks prior."""
    prior = sparse.coo_matrix(prior)
    if prior.shape != (n_genes, n_peaks):
        raise ValueError(
            f"`prior` has shape {prior.shape}; the model needs genes × peaks = "
            f"({n_genes}, {n_peaks})."
        )
    keep = prior.data != 0
    if not keep.any():
        raise ValueError(
            "`prior` links no peak to any gene (all entries are zero); pass a peak–gene prior "
            "with links, e.g. from `scx.pp.peak_gene_prior`."
        )
    order = np.lexsort((prior.col[keep], prior.row[keep]))
    return prior.row[keep][order].astype(np.int64), prior.col[keep][order].astype(np.int64)


class SCDART(MultiModalModelBase):
    """scDART: unpaired scRNA-seq + scATAC-seq integration with a learned gene-activity function.

    A gene-activity network (peaks → genes, nonlinear) turns ATAC cells into pseudo-RNA; a
    shared encoder embeds RNA and pseudo-RNA into one latent space. The losses keep each
    modality's latent distances close to its diffusion distances, align the two latent
    distributions (MMD), keep the end-to-end linear peak → gene weight of the gene-activity
    network on the links of a genomic prior, and optionally pull anchor cells together.

    Register the data with :meth:`setup_mudata`; every modality needs its per-cell diffusion
    coordinates in ``.obsm["scdart_diffusion"]`` (see
    :func:`scx.scdart.diffusion_coordinates`). :func:`scx.tl.scdart` does all of this.

    Parameters
    ----------
    mdata
        MuData registered with :meth:`setup_mudata` holding an RNA and an ATAC modality.
    prior
        Genes × peaks matrix (rows in the RNA modality's gene order, columns in the ATAC
        modality's peak order); non-zero entries are links.
    rna, atac
        Names of the RNA and ATAC modalities (the first two registered by default).
    n_latent
        Latent dimensions (8, the reference class default; its scripts use 4).
    n_hidden_gene_activity, n_hidden_encoder
        Hidden widths (1024, 512) and (512, 128): the reference's ``fit`` sizes, used for
        every path here (the reference's ``fit_transform`` builds smaller networks).
    lambda_dist, lambda_prior, lambda_mmd, lambda_anchor
        Loss weights (1 each, as in the reference).
    prior_penalty
        ``"l1"`` (the reference default), ``"l2"``, or ``"relative_l1"``: the share of the
        end-to-end weight off the prior's links, which, unlike the other two, cannot be
        lowered by shrinking layers that a BatchNorm follows (see
        :class:`~scx.scdart.SCDARTModule`).
    prior_penalty_peaks
        Peaks drawn per step for an unbiased estimate of the prior penalty (2048); ``None``
        computes it over all peaks every step (the reference; costs genes × peaks × 1024 per
        step).
    rna_transform
        ``"log_normalize"`` (library size 100, log1p per cell) or ``"none"`` (data already
        normalised).
    atac_transform
        ``"binary"`` or ``"none"``.
    n_diffusion_blocks
        Diffusion times whose coordinate blocks make up ``.obsm["scdart_diffusion"]`` (3).
    init_from_prior
        Start the gene-activity network with every gene positively linked to its own peaks
        (a positive-semidefinite gene mix of the prior); ``False`` initialises at random, as
        the reference.
    anchors
        ``{modality: cell names}`` of anchor cells (cells believed to match across the
        modalities, e.g. the earliest cells of a trajectory) for the anchor loss.
    """

    _module_cls = SCDARTModule
    _training_plan_cls = SCDARTTrainingPlan

    @classmethod
    def _modality_fields(
        cls,
        modality: str,
        layer: str | None,
        labels_key: str | None,
        batch_key: str | None,
        use_rep: str | None = None,
    ) -> list:
        """Input, batch and labels, plus the per-cell diffusion coordinates."""
        if use_rep is not None:
            raise ValueError(
                "scDART reads the RNA counts and the ATAC peaks themselves; pass `layer`, not "
                f"`use_rep` ({use_rep!r})."
            )
        return [
            *super()._modality_fields(modality, layer, labels_key, batch_key, None),
            ObsmField(DIFFUSION_KEY, DIFFUSION_OBSM),
        ]

    def __init__(
        self,
        mdata: MuData,
        prior,
        *,
        rna: str | None = None,
        atac: str | None = None,
        n_latent: int = 8,
        n_hidden_gene_activity: Sequence[int] = (1024, 512),
        n_hidden_encoder: Sequence[int] = (512, 128),
        lambda_dist: float = 1.0,
        lambda_prior: float = 1.0,
        lambda_mmd: float = 1.0,
        lambda_anchor: float = 1.0,
        prior_penalty: str = "l1",
        prior_penalty_peaks: int | None = 2048,
        rna_transform: str = "log_normalize",
        atac_transform: str = "binary",
        n_diffusion_blocks: int = 3,
        anchors: dict[str, Sequence[str]] | None = None,
        init_from_prior: bool = True,
    ):
        super().__init__(mdata)
        names = self.modalities
        if len(names) != 2:
            raise ValueError(f"scDART needs exactly two modalities (RNA, ATAC), got {names}.")
        rna = names[0] if rna is None else rna
        atac = names[1] if atac is None else atac
        if {rna, atac} != set(names):
            raise ValueError(
                f"`rna={rna!r}` and `atac={atac!r}` must be the two registered modalities {names}."
            )
        self.rna, self.atac = rna, atac
        v.check_positive_int(n_latent, argname="n_latent")
        if prior_penalty not in ("l1", "l2", "relative_l1"):
            raise ValueError(
                f"`prior_penalty` must be 'l1', 'l2' or 'relative_l1', got {prior_penalty!r}."
            )
        if rna_transform not in ("log_normalize", "none"):
            raise ValueError(
                f"`rna_transform` must be 'log_normalize' or 'none', got {rna_transform!r}."
            )
        if atac_transform not in ("binary", "none"):
            raise ValueError(
                f"`atac_transform` must be 'binary' or 'none', got {atac_transform!r}."
            )
        if prior_penalty_peaks is not None:
            v.check_positive_int(prior_penalty_peaks, argname="prior_penalty_peaks")
        n_genes = self.modality_adata(rna).n_vars
        n_peaks = self.modality_adata(atac).n_vars
        rows, cols = prior_links(prior, n_genes, n_peaks)
        self.anchors_ = self._anchor_masks(anchors)
        self.module = self._module_cls(
            n_genes,
            n_peaks,
            torch.from_numpy(rows),
            torch.from_numpy(cols),
            n_latent=n_latent,
            n_hidden_gene_activity=list(n_hidden_gene_activity),
            n_hidden_encoder=list(n_hidden_encoder),
            lambda_dist=lambda_dist,
            lambda_prior=lambda_prior,
            lambda_mmd=lambda_mmd,
            lambda_anchor=lambda_anchor,
            prior_penalty=prior_penalty,
            prior_penalty_peaks=prior_penalty_peaks,
            rna_transform=rna_transform,
            atac_transform=atac_transform,
            n_diffusion_blocks=n_diffusion_blocks,
            init_from_prior=init_from_prior,
        )
        self._model_summary_string = (
            f"scDART: RNA {rna!r} ({n_genes} genes), ATAC {atac!r} ({n_peaks} peaks, "
            f"{rows.size} prior links), n_latent {n_latent}"
        )
        self.init_params_ = self._get_init_params(locals())

    def _anchor_masks(self, anchors) -> dict[str, np.ndarray] | None:
        if anchors is None:
            return None
        if not isinstance(anchors, dict) or set(anchors) != {self.rna, self.atac}:
            raise ValueError(
                f"`anchors` must be a dict with cell names for both modalities "
                f"{[self.rna, self.atac]}, got {type(anchors).__name__}"
                f"{'' if not isinstance(anchors, dict) else ' with keys ' + str(list(anchors))}."
            )
        masks = {}
        for m in (self.rna, self.atac):
            names = self.modality_adata(m).obs_names
            cells = pd.Index(np.asarray(list(anchors[m]), dtype=str))
            missing = cells.difference(names)
            if len(missing):
                raise ValueError(
                    f"`anchors[{m!r}]` names {len(missing)} cells that are not in modality {m!r} "
                    f"(e.g. {list(missing[:3])})."
                )
            if len(cells) < 2:
                raise ValueError(
                    f"`anchors[{m!r}]` has {len(cells)} cell; the anchor loss needs at least 2 "
                    "anchor cells per modality."
                )
            masks[m] = np.asarray(names.isin(cells))
        return masks

    # ------------------------------------------------------------------ training
    def default_batch_size(self) -> int:
        """A quarter of the smaller modality (the reference's ``fit``), at most 1,024 cells."""
        smallest = min(s.n_obs for s in self.sources.values())
        return int(max(2, min(smallest // 4, MAX_DEFAULT_BATCH)))

    def train(
        self,
        max_epochs: int | None = None,
        *,
        batch_size: int | dict[str, int] | None = None,
        lr: float = 3e-4,
        steps_per_epoch: int | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        datamodule_kwargs: dict | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train the gene-activity network and the encoder jointly.

        Parameters
        ----------
        max_epochs
            Epochs; by default as many as give the reference's ~2,000 optimisation steps
            (500 epochs of four mini-batches of a quarter of the cells).
        batch_size
            Cells per modality per step (an int or ``{modality: int}``), honoured as given;
            default: :meth:`default_batch_size`. Every step draws a full batch of both
            modalities; the smaller modality cycles.
        lr
            Adam learning rate (3e-4).
        steps_per_epoch
            Steps per epoch; by default the larger modality is covered once per epoch.
        accelerator, devices
            Lightning accelerator and devices.
        datamodule_kwargs
            Extra arguments of :class:`~scx.data.MultiModalDataModule`.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer`.
        """
        if batch_size is None:
            batch_size = self.default_batch_size()
        sizes = batch_size.values() if isinstance(batch_size, dict) else [batch_size]
        for size in sizes:
            v.check_positive_int(size, argname="batch_size", minimum=2)
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
            raise ValueError(f"`lr` must be a positive number, got {lr!r}.")
        datamodule = _SparseBatchDataModule(
            self.sources,
            batch_size=batch_size,
            steps_per_epoch=steps_per_epoch,
            seed=self._seed(),
            load_sparse_tensor=True,
            **(datamodule_kwargs or {}),
        )
        if max_epochs is None:
            max_epochs = max(1, -(-REFERENCE_STEPS // datamodule.n_batches()))
        v.check_positive_int(max_epochs, argname="max_epochs")
        plan = self._training_plan_cls(
            self.module, rna=self.rna, atac=self.atac, anchors=self.anchors_, lr=lr
        )
        history = self.history_ if self.is_trained_ else None
        self._run_training(
            plan,
            datamodule,
            max_epochs,
            accelerator=accelerator,
            devices=devices,
            **trainer_kwargs,
        )
        self.history_ = self._concat_history(history, self.history_)
        self.is_trained_ = True
        self.recalibrate_batch_norm(datamodule.batch_size)
        self.module.eval()

    @torch.no_grad()
    def recalibrate_batch_norm(self, batch_size: int | dict[str, int] = 1024) -> None:
        """Set every BatchNorm's running statistics to the population mean over mini-batches.

        The reference never leaves training mode, so its latents depend on which cells are
        embedded together. Here inference uses evaluation-mode BatchNorm; with the reference's
        momentum of 0.01 the running statistics trail the weights by ~100 steps, so after
        training they are recomputed exactly: one pass over every modality's cells in
        training-mode mini-batches of the training size, averaging the batch statistics.
        """
        sizes = (
            batch_size
            if isinstance(batch_size, dict)
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
        rng = np.random.default_rng(self._seed())
        try:
            for modality in self.modalities:
                X = self._input_matrix(modality, None)
                n = X.shape[0]
                size = min(int(sizes[modality]), n)
                order = rng.permutation(n)
                encode = self.module.encode_rna if modality == self.rna else self.module.encode_atac
                # full batches only, so every batch has the statistics of a training batch
                for start in range(0, max(n - size, 0) + 1, size):
                    rows = np.sort(order[start : start + size])
                    encode(_to_torch(X[rows], device))
        finally:
            for m, momentum in zip(norms, saved):
                m.momentum = momentum
            self.module.eval()

    @staticmethod
    def _seed() -> int:
        from scvi import settings

        return settings.seed if settings.seed is not None else 0

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def _apply(self, modality: str, adata: AnnData | None, fn, batch_size: int) -> np.ndarray:
        self.module.eval()
        X = self._input_matrix(modality, adata)
        device = self.module.device
        out = []
        for start in range(0, X.shape[0], batch_size):
            out.append(fn(_to_torch(X[start : start + batch_size], device)).cpu())
        return torch.cat(out).numpy()

    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        modality: str | None = None,
        *,
        batch_size: int = 4096,
    ) -> np.ndarray | dict[str, np.ndarray]:
        """Raw joint latent (before post-alignment) of cells.

        BatchNorm uses its running statistics, so a cell's latent does not depend on which
        cells are embedded with it (the reference keeps BatchNorm in training mode).

        Parameters
        ----------
        adata
            New cells of ``modality`` over the registered features; ``None`` for the
            registered cells.
        modality
            ``None`` (all registered cells, as ``{modality: latent}``), or one modality.
        batch_size
            Cells per forward pass.
        """
        self._check_if_trained(warn=True)
        if modality is None:
            return self._for_each_modality(self.get_latent_representation, adata)
        if modality not in self.modalities:
            raise ValueError(f"`modality={modality!r}` is not one of {self.modalities}.")
        fn = self.module.encode_rna if modality == self.rna else self.module.encode_atac
        return self._apply(modality, adata, fn, batch_size)

    def get_aligned_latent(self, n_neighbors: int = 10) -> dict[str, np.ndarray]:
        """Latent after the reference's kNN post-alignment (see :func:`scx.scdart.post_align`)."""
        v.check_positive_int(n_neighbors, argname="n_neighbors")
        z = self.get_latent_representation()
        z_rna, z_atac = post_align(z[self.rna], z[self.atac], n_neighbors, seed=self._seed())
        return {self.rna: z_rna, self.atac: z_atac}

    def get_gene_activity(
        self, adata: AnnData | None = None, *, batch_size: int = 4096
    ) -> pd.DataFrame | np.ndarray:
        """Predicted RNA (gene-activity network output) of ATAC cells.

        Returns a cells × genes DataFrame (registered ATAC cells, or the cells of ``adata``)
        on the scale of the transformed RNA input (log-normalised to 100 by default).
        """
        self._check_if_trained(warn=True)
        values = self._apply(self.atac, adata, self.module.gene_activity_of, batch_size)
        cells = (self.modality_adata(self.atac) if adata is None else adata).obs_names
        return pd.DataFrame(values, index=cells, columns=self.var_names_of(self.rna))

    @torch.inference_mode()
    def get_peak_gene_weights(self, *, linked_only: bool = True, chunk_peaks: int = 4096):
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
        rows, cols = self.module.prior_rows.cpu().numpy(), self.module.prior_cols.cpu().numpy()
        n_genes, n_peaks = self.module.n_genes, self.module.n_peaks
        dense = None if linked_only else np.empty((n_genes, n_peaks), dtype=np.float32)
        linked = np.empty(rows.size, dtype=np.float32)
        device = self.module.device
        for start in range(0, n_peaks, chunk_peaks):
            peaks = torch.arange(start, min(start + chunk_peaks, n_peaks), device=device)
            w = self.module.end_to_end_weight(peaks).cpu().numpy()
            if dense is not None:
                dense[:, start : start + w.shape[1]] = w
            hit = (cols >= start) & (cols < start + w.shape[1])
            linked[hit] = w[rows[hit], cols[hit] - start]
        if dense is not None:
            return dense
        return sparse.csr_matrix((linked, (rows, cols)), shape=(n_genes, n_peaks))
