"""Portal model: registration, incremental adversarial training, latents and translations."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scvi import REGISTRY_KEYS, settings

from scx import _validation as v
from scx.data import ModalitySource
from scx.base import MultiModalModelBase
from scx.train import AdversarialTrainingPlan

from ._module import QUERY, REFERENCE, PORTALModule

logger = logging.getLogger(__name__)


def domain_order(names: Sequence[str], reference: str | None, order: Sequence[str] | None) -> list:
    """Datasets in integration order: the reference first, then ``order``.

    Raises a ``ValueError`` naming the argument when ``reference`` or ``order`` do not match the
    datasets.
    """
    names = [str(n) for n in names]
    if len(names) < 2:
        raise ValueError(f"Portal needs at least two datasets, got {names}.")
    reference = names[0] if reference is None else str(reference)
    if reference not in names:
        raise ValueError(f"`reference={reference!r}` is not one of the datasets {names}.")
    others = [m for m in names if m != reference]
    if order is not None:
        order = [str(m) for m in order]
        if sorted(order) != sorted(others):
            raise ValueError(
                f"`order` must list every dataset except the reference once, i.e. a "
                f"permutation of {others}; got {order}."
            )
        others = order
    return [reference, *others]


def check_batch_size(sizes: dict[str, int], batch_size: int) -> None:
    """Every dataset must fill one mini-batch (cells are drawn per dataset per step)."""
    v.check_positive_int(batch_size, argname="batch_size")
    small = {name: n for name, n in sizes.items() if n < batch_size}
    if small:
        raise ValueError(
            f"Datasets {small} have fewer cells than the mini-batch `batch_size={batch_size}`; "
            f"pass `batch_size` ≤ {min(small.values())} (or leave those datasets out)."
        )


def check_settings(
    *,
    n_latent: int,
    n_hidden: int,
    lambda_cos: float | Sequence[float],
    lambda_ae: float,
    lambda_la: float,
    lambda_gan: float,
    boundary: float,
    n_stages: int,
) -> None:
    """Validate Portal's hyper-parameters before any work is done."""
    v.check_positive_int(n_latent, argname="n_latent")
    v.check_positive_int(n_hidden, argname="n_hidden")
    weights = [lambda_cos] if isinstance(lambda_cos, int | float) else list(lambda_cos)
    if not isinstance(lambda_cos, int | float) and len(weights) != n_stages:
        raise ValueError(
            f"`lambda_cos` is a list of {len(weights)} weights but there are {n_stages} "
            "integration stages (datasets − 1); pass one number or one weight per stage."
        )
    for name, values in [
        ("lambda_cos", weights),
        ("lambda_ae", [lambda_ae]),
        ("lambda_la", [lambda_la]),
        ("lambda_gan", [lambda_gan]),
    ]:
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise ValueError(f"`{name}` must be a number ≥ 0, got {value!r}.")
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` must be a finite weight ≥ 0, got {value!r}.")
    if (
        isinstance(boundary, bool)
        or not isinstance(boundary, int | float | np.number)
        or not np.isfinite(boundary)
        or boundary <= 0
    ):
        raise ValueError(
            f"`boundary` must be a positive number (the reference uses 5), got {boundary!r}."
        )


class PORTAL(MultiModalModelBase):
    """Portal: adversarial domain translation for batch and atlas integration.

    The inputs are cells of two or more datasets in one shared low-dimensional space (the joint
    PCA of :func:`scx.pp.shared_pca`, or any shared embedding). Dataset 1 (``reference``) is the
    reference space; the others are integrated into it one by one, in ``order``: stage ``s``
    trains encoders, generators and discriminators between all cells integrated so far (mapped
    into the reference's space) and dataset ``s + 1``. This is the reference's incremental
    scheme; the result depends on the order.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`, the datasets told apart by
        ``modality_key`` (:func:`scx.tl.portal` also accepts a MuData with one modality per
        dataset and builds that AnnData).
    reference
        Dataset whose space all others are integrated into; the first one by default.
    order
        Order in which the other datasets are integrated; registration order by default.
    n_latent, n_hidden
        Latent and hidden widths (20, 512).
    lambda_cos, lambda_ae, lambda_la, lambda_gan
        Loss weights (20, 10, 10, 1); ``lambda_cos`` can be one value per stage.
    boundary
        Discriminator logit boundary (5).
    warmup_steps
        Steps before the boundary applies (6).
    init_std
        N(0, σ²) initialisation of all weights (0.1, the reference); ``None`` for PyTorch's.

    Examples
    --------
    >>> scx.model.PORTAL.setup_anndata(adata, modality_key="batch", use_rep="X_pca")
    >>> model = scx.model.PORTAL(adata)
    >>> model.train()
    >>> adata.obsm["X_portal"] = model.get_latent_representation()
    """

    _module_cls = PORTALModule
    _training_plan_cls = AdversarialTrainingPlan

    @classmethod
    def setup_mudata(cls, mdata: MuData, *args, **kwargs) -> None:
        """Not supported: Portal maps datasets into each other's space within one AnnData.

        Register an AnnData with the datasets in an ``.obs`` column via :meth:`setup_anndata`,
        or call :func:`scx.tl.portal`, which accepts a MuData.
        """
        raise ValueError(
            "PORTAL registers one AnnData whose datasets are told apart by an .obs column: use "
            "`PORTAL.setup_anndata(adata, modality_key=...)`, or `scx.tl.portal(mdata)` for a "
            "MuData with one modality per dataset."
        )

    def __init__(
        self,
        adata: AnnData | MuData,
        reference: str | None = None,
        order: Sequence[str] | None = None,
        n_latent: int = 20,
        n_hidden: int = 512,
        lambda_cos: float | Sequence[float] = 20.0,
        lambda_ae: float = 10.0,
        lambda_la: float = 10.0,
        lambda_gan: float = 1.0,
        boundary: float = 5.0,
        warmup_steps: int = 6,
        init_std: float | None = 0.1,
    ):
        super().__init__(adata)
        self.domains_ = domain_order(self.modalities, reference, order)
        reference = self.domains_[0]
        check_settings(
            n_latent=n_latent,
            n_hidden=n_hidden,
            lambda_cos=lambda_cos,
            lambda_ae=lambda_ae,
            lambda_la=lambda_la,
            lambda_gan=lambda_gan,
            boundary=boundary,
            n_stages=len(self.domains_) - 1,
        )
        self.module = self._module_cls(
            n_input=int(self._inputs(slice(0, 1)).shape[1]),
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_stages=len(self.domains_) - 1,
            lambda_gan=lambda_gan,
            lambda_ae=lambda_ae,
            lambda_la=lambda_la,
            lambda_cos=list(lambda_cos) if not isinstance(lambda_cos, int | float) else lambda_cos,
            boundary=boundary,
            warmup_steps=warmup_steps,
            init_std=init_std,
        )
        # set by scx.tl.portal when the inputs are a joint PCA of genes, for translations back
        # into expression: {"genes", "loadings", "means", "scales"} (per dataset)
        self.expression_transform_: dict | None = None
        self.trained_steps_: int | None = None
        self._model_summary_string = (
            f"Portal: datasets {self.domains_} (reference {reference!r}), "
            f"{self.module.n_input} input dims, n_latent {n_latent}, lambda_cos {lambda_cos}, "
            f"boundary {boundary}"
        )
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_steps: int | None = None,
        *,
        batch_size: int = 500,
        steps_per_epoch: int = 100,
        lr: float = 1e-3,
        replacement: bool = True,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        datamodule_kwargs: dict | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train every stage for ``max_steps`` steps (one D and one G update per step).

        Parameters
        ----------
        max_steps
            Training steps per stage; defaults to the reference's 2,000, or 1,000 when the
            datasets have fewer than 20,000 cells together.
        batch_size
            Cells per dataset per step (500).
        steps_per_epoch
            Steps logged together as one "epoch" of the history.
        lr
            Adam learning rate of both sides (1e-3).
        replacement
            Sample cells with replacement, as the reference does.
        accelerator, devices
            Lightning accelerator and devices (``strategy=`` goes in ``trainer_kwargs``).
        datamodule_kwargs
            Extra arguments of :class:`~scx.data.MultiModalDataModule`.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer`.
        """
        n_cells = sum(s.n_obs for s in self.sources.values())
        if max_steps is None:
            max_steps = 1000 if n_cells < 20_000 else 2000
        v.check_positive_int(max_steps, argname="max_steps")
        v.check_positive_int(steps_per_epoch, argname="steps_per_epoch")
        check_batch_size({m: s.n_obs for m, s in self.sources.items()}, batch_size)
        n_epochs = -(-max_steps // steps_per_epoch)
        seed = settings.seed if settings.seed is not None else 0
        manager = self.sources[self.domains_[0]].manager
        # inputs with every integrated dataset in the reference space: needed from the second
        # stage on only (with two datasets the reference trains on its own inputs, no copy)
        reference_space = None
        history = self.history_ if self.is_trained_ else None
        for stage in range(self.module.n_stages):
            integrated = np.concatenate(
                [self.sources[m].indices for m in self.domains_[: stage + 1]]
            )
            query = self.domains_[stage + 1]
            sources = {
                REFERENCE: ModalitySource(manager, np.sort(integrated), features=reference_space),
                QUERY: ModalitySource(self.sources[query].manager, self.sources[query].indices),
            }
            self.module.set_active_stage(stage)
            plan = AdversarialTrainingPlan(self.module, lr=lr)
            datamodule = self._make_datamodule(
                batch_size,
                steps_per_epoch=steps_per_epoch,
                replacement=replacement,
                sampler_seed=seed + stage,
                sources=sources,
                **(datamodule_kwargs or {}),
            )
            self.is_trained_ = False
            self._run_training(
                plan,
                datamodule,
                n_epochs,
                accelerator=accelerator,
                devices=devices,
                **trainer_kwargs,
            )
            stage_history = dict(self.history_ or {})
            if stage_history:
                n = len(next(iter(stage_history.values())))
                stage_history["stage"] = pd.DataFrame({"stage": np.full(n, stage + 1.0)})
            history = self._concat_history(history, stage_history)
            if stage + 1 < self.module.n_stages:
                # the newly integrated dataset now lives in the reference space too
                if reference_space is None:
                    reference_space = self._inputs(slice(None))
                rows = self.sources[query].indices
                reference_space[rows] = self._map(reference_space[rows], stage, 1, 0)
        self.module.set_active_stage(self.module.n_stages - 1)
        self.module.requires_grad_(True)
        self.trained_steps_ = max_steps
        self.history_ = history
        self.is_trained_ = True
        self.module.eval()

    # ------------------------------------------------------------------ inference
    #: Cells mapped at a time: memory of inference stays flat in the number of cells.
    _chunk_size = 65_536

    def _inputs(self, rows: np.ndarray | slice) -> np.ndarray:
        """Inputs (float32 copy) of registered rows ``rows``."""
        manager = self.sources[self.domains_[0]].manager
        X = manager.get_from_registry(REGISTRY_KEYS.X_KEY)[rows]
        X = X.toarray() if hasattr(X, "toarray") else X
        return np.array(X, dtype=np.float32, copy=True)

    def _chunks(self, dataset: str):
        """Registered rows of ``dataset`` in chunks."""
        rows = self.sources[dataset].indices
        for start in range(0, rows.size, self._chunk_size):
            yield rows[start : start + self._chunk_size]

    @torch.inference_mode()
    def _map(
        self, x: np.ndarray, stage: int, source: int, target: int | None, batch_size: int = 8192
    ) -> np.ndarray:
        """Encode (``target=None``) or translate rows of ``x`` with one stage's networks."""
        self.module.eval()
        device = self.module.device
        out = []
        for start in range(0, x.shape[0], batch_size):
            chunk = torch.as_tensor(x[start : start + batch_size], device=device)
            z = self.module.encode(chunk, stage, source)
            out.append((z if target is None else self.module.generate(z, stage, target)).cpu())
        width = self.module.n_latent if target is None else self.module.n_input
        return torch.cat(out).numpy() if out else np.empty((0, width), dtype=np.float32)

    def _to_reference(self, x: np.ndarray, dataset: str) -> np.ndarray:
        """Cells of ``dataset`` mapped into the reference's input space."""
        stage = self._stage_of(dataset)
        return x if stage < 0 else self._map(x, stage, 1, 0)

    def get_reference_space(self) -> np.ndarray:
        """Every registered cell in the reference dataset's input (PCA) space.

        Rows follow the registered AnnData; the reference's own cells are unchanged, the others
        are translated by the generator of the stage that integrated them.
        """
        self._check_if_trained(warn=True)
        out = np.empty((self._n_registered, self.module.n_input), dtype=np.float32)
        for dataset in self.domains_:
            for rows in self._chunks(dataset):
                out[rows] = self._to_reference(self._inputs(rows), dataset)
        return out

    def get_latent_representation(self) -> np.ndarray:
        """Harmonised latent of every registered cell (rows of the registered AnnData).

        The last stage's encoders embed the last dataset (its own inputs, domain B) and every
        dataset integrated before it (in the reference space, domain A), as the reference does.
        """
        self._check_if_trained(warn=True)
        last = self.module.n_stages - 1
        out = np.empty((self._n_registered, self.module.n_latent), dtype=np.float32)
        for dataset in self.domains_:
            for rows in self._chunks(dataset):
                x = self._inputs(rows)
                if dataset == self.domains_[-1]:
                    out[rows] = self._map(x, last, 1, None)
                else:
                    out[rows] = self._map(self._to_reference(x, dataset), last, 0, None)
        return out

    @property
    def _n_registered(self) -> int:
        return self.sources[self.domains_[0]].manager.adata.n_obs

    def _stage_of(self, dataset: str) -> int:
        if dataset not in self.domains_:
            raise ValueError(f"Unknown dataset {dataset!r}; datasets: {self.domains_}.")
        return self.domains_.index(dataset) - 1

    def get_translated(self, source: str, target: str) -> np.ndarray:
        """Cells of dataset ``source`` translated into dataset ``target``'s input space.

        Translation goes through the reference: ``source`` is mapped into the reference space,
        then into ``target`` with the generator of the stage that integrated ``target``.

        Returns
        -------
        ``(cells of source, n_input)`` array in the order of ``source``'s cells.
        """
        self._check_if_trained(warn=True)
        s_stage, t_stage = self._stage_of(source), self._stage_of(target)
        x = self._inputs(self.sources[source].indices)
        if source == target:
            return x
        if s_stage >= 0:
            x = self._map(x, s_stage, 1, 0)
        if t_stage >= 0:
            x = self._map(x, t_stage, 0, 1)
        return x

    def get_translated_expression(self, source: str, target: str) -> pd.DataFrame:
        """Cells of ``source`` as log-normalised expression of ``target`` (joint-PCA genes).

        Inverts the joint PCA and ``target``'s per-gene standardisation, as the reference's
        expression recovery does. Needs the transform recorded by :func:`scx.tl.portal`.
        """
        transform = self.expression_transform_
        if transform is None:
            raise ValueError(
                "The model was trained on an embedding without a recorded gene-space transform; "
                "translations into expression need `scx.tl.portal` on gene expression (no "
                "`use_rep`)."
            )
        translated = self.get_translated(source, target)
        k = transform["datasets"].index(target)
        standardised = translated @ np.asarray(transform["loadings"]).T
        expression = standardised * transform["scales"][k] + transform["means"][k]
        cells = self.modality_adata(source).obs_names[self.sources[source].indices]
        return pd.DataFrame(expression, index=cells, columns=transform["genes"])

    @torch.inference_mode()
    def get_boundary_scores(self) -> np.ndarray:
        """Clamped reference-discriminator logit of every non-reference cell, translated.

        Each dataset's cells are translated into the reference space and scored by the
        discriminator of the stage that integrated them. A score at ``-boundary`` marks a cell
        the discriminator is sure does not look like the reference (e.g. a dataset-specific
        type); reference cells get NaN.
        """
        self._check_if_trained(warn=True)
        scores = np.full(self._n_registered, np.nan, dtype=np.float32)
        device = self.module.device
        for stage, dataset in enumerate(self.domains_[1:]):
            for rows in self._chunks(dataset):
                translated = torch.as_tensor(self._map(self._inputs(rows), stage, 1, 0))
                scores[rows] = self.module.critic(translated.to(device), stage, 0).cpu().numpy()
        return scores
