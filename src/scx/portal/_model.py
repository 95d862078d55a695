"""Portal model: inputs, incremental adversarial training, latents, translations, scores."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scvi import REGISTRY_KEYS

from scx import _validation as v
from scx.base import MultiModalModelBase, global_rows, train_docs
from scx.data import ModalitySource
from scx.metrics import mixing_metric
from scx.pp import apply_transform, joint_pca
from scx.train import AdversarialTrainingPlan

from ._module import QUERY, REFERENCE, PORTALModule

logger = logging.getLogger(__name__)

#: Column of the view's ``obs`` naming each cell's dataset.
DATASET_KEY = "_scx_dataset"
#: Cells at which the default schedule doubles (the reference's rule).
LONG_SCHEDULE_CELLS = 20_000
#: The reference's λ_cos candidates of ``search_lambda_cos=True`` (15, 20, …, 50).
LAMBDA_COS_GRID = tuple(float(w) for w in range(15, 55, 5))
#: Cells per dataset per step (the reference's), lowered for a smaller dataset.
DEFAULT_BATCH_SIZE = 500


def domain_order(names: Sequence[str], reference: Any, order: Any) -> list[str]:
    """Datasets in integration order: the reference first, then ``order``.

    Raises a ``ValueError`` naming the argument when ``reference`` or ``order`` do not match the
    datasets.
    """
    names = [str(n) for n in names]
    if len(names) < 2:
        raise ValueError(f"Portal needs at least two datasets, got {names}.")
    reference = names[0] if reference is None else reference
    if not isinstance(reference, str) or reference not in names:
        raise ValueError(
            f"`reference={reference!r}` is not one of the datasets {names}; pass one of them."
        )
    others = [m for m in names if m != reference]
    if order is not None:
        if isinstance(order, str) or not isinstance(order, Sequence):
            raise ValueError(
                f"`order` must be a list of dataset names, a permutation of {others}; got "
                f"{order!r}."
            )
        if sorted(str(m) for m in order) != sorted(others) or not all(
            isinstance(m, str) for m in order
        ):
            raise ValueError(
                f"`order` must list every dataset except the reference once, i.e. a "
                f"permutation of {others}; got {list(order)}."
            )
        others = list(order)
    return [reference, *others]


def _check_search(value: Any, argname: str) -> None:
    """``search_lambda_cos``: True/False, or a non-empty list of distinct loss weights."""
    if isinstance(value, bool | np.bool_):
        return
    if not isinstance(value, list | tuple | np.ndarray):
        raise ValueError(
            f"`{argname}` must be True (the reference's grid 15, 20, …, 50), False (no search) "
            f"or a list of candidate `lambda_cos` weights, got {value!r}."
        )
    v.sequence_of(v.weight, min_length=1)(value, argname)
    if len({float(w) for w in value}) != len(value):
        raise ValueError(
            f"`{argname}` lists a candidate twice ({list(value)}); pass distinct weights."
        )


def _check_lambda_cos(lambda_cos: Any, n_stages: int) -> None:
    if isinstance(lambda_cos, list | tuple) and len(lambda_cos) != n_stages:
        raise ValueError(
            f"`lambda_cos` is a list of {len(lambda_cos)} weights but there are {n_stages} "
            "integration stages (datasets − 1); pass one number or one weight per stage."
        )


class PORTAL(MultiModalModelBase):
    """Portal: adversarial domain translation for batch and atlas integration.

    The inputs are cells of two or more datasets in one shared low-dimensional space (the joint
    PCA of :func:`scx.pp.joint_pca`, or any shared embedding). Dataset 1 (``reference``) is the
    reference space; the others are integrated into it one by one, in ``order``: stage ``s``
    trains encoders, generators and discriminators between all cells integrated so far (mapped
    into the reference's space) and dataset ``s + 1``. This is the reference's incremental
    scheme; the result depends on the order.

    Build it with :func:`scx.tl.portal`, or register an AnnData yourself with
    :meth:`setup_anndata` (the datasets told apart by ``modality_key``) and call the class.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`, the datasets told apart by
        ``modality_key``.
    reference
        Dataset whose space all others are integrated into; the first one by default.
    order
        Order in which the other datasets are integrated (with three or more); registration
        order by default.
    n_latent
        Latent width (20).
    n_hidden
        Hidden width of every network (512).
    lambda_cos
        Weight of the cosine similarity between a cell and its translation (20); one number, or
        one weight per integration stage (or chosen from the data by ``search_lambda_cos``).
    lambda_ae
        Weight of the autoencoder reconstruction (10).
    lambda_la
        Weight of the latent-cycle alignment (10).
    lambda_gan
        Weight of the adversarial term (1).
    boundary
        Discriminator logits are clamped to ±``boundary`` (5): a translated cell scored beyond
        it gets no adversarial push (cell types present in one dataset only stay apart).
    warmup_steps
        Steps of each stage before the boundary applies (6).
    init_std
        N(0, σ²) initialisation of all weights (0.1, the reference); ``None`` for PyTorch's.
    seed
        Seed of the weight initialisation.

    Examples
    --------
    >>> scx.model.PORTAL.setup_anndata(adata, modality_key="batch", use_rep="X_pca")
    >>> model = scx.model.PORTAL(adata)
    >>> model.train()
    >>> latent = model.get_latent_representation()  # {dataset: cells × 20}
    """

    _method_name = "Portal"
    _module_cls = PORTALModule
    _training_plan_cls = AdversarialTrainingPlan
    _setting_checks: ClassVar[dict[str, Any]] = {
        "n_hidden": v.positive_int(),
        "lambda_cos": v.one_or_sequence_of(v.weight),
        "search_lambda_cos": _check_search,
        "ema_decay": v.optional(v.decay),
        "lambda_ae": v.weight,
        "lambda_la": v.weight,
        "lambda_gan": v.weight,
        "boundary": v.positive,
        "warmup_steps": v.positive_int(minimum=0),
        "steps_per_epoch": v.positive_int(),
    }
    # one layer / one embedding / one batch column for all datasets (no per-dataset dict)
    _data_checks: ClassVar[dict[str, Any]] = {
        "layer": v.optional(v.name("one layer name for all datasets, or None for `.X`")),
        "use_rep": v.optional(v.name("one `.obsm` key shared by all datasets")),
        "batch_key": v.optional(v.name("the `.obs` column naming each cell's dataset")),
    }

    # ------------------------------------------------------------------ inputs
    @classmethod
    def _check_inputs(
        cls,
        data,
        *,
        settings: Mapping[str, Any],
        modalities,
        batch_key,
        use_rep,
        layer,
        n_top_genes,
        genes,
        n_pcs,
    ) -> None:
        """Every check of the data and data arguments, before any work."""
        if settings.get("max_epochs") is not None and settings.get("max_steps") is not None:
            raise ValueError(
                f"Pass either `max_epochs` ({settings['max_epochs']}) or `max_steps` "
                f"({settings['max_steps']}), not both."
            )
        datasets = _datasets(data, modalities, batch_key)
        names = list(datasets)
        domain_order(names, settings.get("reference"), settings.get("order"))
        _check_lambda_cos(settings.get("lambda_cos"), len(names) - 1)
        v.check_positive_int(n_pcs, argname="n_pcs", minimum=2)
        v.check_positive_int(n_top_genes, argname="n_top_genes")
        if use_rep is not None:
            if layer is not None or genes is not None:
                raise ValueError(
                    "`use_rep` replaces Portal's preprocessing of counts; drop `layer` and "
                    "`genes`, or drop `use_rep`."
                )
            if isinstance(data, MuData):
                widths = {name: _rep(data, name, use_rep).shape[1] for name in names}
                if len(set(widths.values())) != 1:
                    raise ValueError(
                        f"`.obsm[{use_rep!r}]` has different widths in the datasets ({widths}); "
                        "pass an embedding shared by all of them."
                    )
            else:
                v.check_rep(data, use_rep)
        else:
            # an AnnData is checked once as a whole, a MuData modality by modality
            parts = datasets if isinstance(data, MuData) else {"data": data}
            for name, adata in parts.items():
                where = f"Dataset {name!r}" if isinstance(data, MuData) else "`data`"
                v.check_unique_names(adata, where=where)
                X = v.get_matrix(adata, layer, argname="layer")
                v.check_counts(X, argname=f"{where} (layer={layer!r})")
            _check_genes(datasets, genes)
        v.check_batch_size_fits(
            settings["batch_size"],
            {name: a.n_obs for name, a in datasets.items()},
            train_size=settings["train_size"],
        )

    @classmethod
    def _fit_inputs(
        cls,
        data: AnnData | MuData,
        *,
        seed: int,
        modalities: Sequence[str] | None = None,
        batch_key: str | None = None,
        use_rep: str | None = None,
        layer: str | None = None,
        n_top_genes: int = 4000,
        genes: Sequence[str] | None = None,
        n_pcs: int = 30,
    ) -> dict:
        """Portal's joint PCA of the datasets' counts (nothing is fitted with ``use_rep``).

        Parameters
        ----------
        data
            AnnData whose ``obs[batch_key]`` names the datasets, or MuData with one modality per
            dataset (over largely the same genes).
        modalities
            The modalities (datasets) of a MuData to integrate, in registration order; all of
            them by default. Not used with an AnnData.
        batch_key
            Column of an AnnData's ``.obs`` naming each cell's dataset (its categories, in
            order, for a categorical column; else in order of appearance). Not used with a
            MuData.
        use_rep
            Start from this ``.obsm`` embedding (e.g. ``"X_pca"`` or ``"X_scVI"``, shared by all
            datasets; for a MuData in each modality or in the global ``.obsm``) instead of
            Portal's preprocessing of counts.
        layer
            Layer with raw counts (``None``: ``.X``).
        n_top_genes
            Highly variable genes selected per dataset (seurat_v3 on counts) and intersected
            (4,000).
        genes
            Use these genes instead of selecting highly variable ones.
        n_pcs
            Components of the joint PCA (30).
        """
        datasets = _datasets(data, modalities, batch_key)
        names = list(datasets)
        state = {
            "args": {
                "modalities": names if isinstance(data, MuData) else None,
                "batch_key": batch_key,
                "use_rep": use_rep,
                "layer": layer,
                "n_top_genes": n_top_genes,
                "genes": None if genes is None else [str(g) for g in genes],
                "n_pcs": n_pcs,
            },
            "datasets": names,
            "transforms": {},
            "n_genes": None,
        }
        if use_rep is None:
            pca = joint_pca(
                datasets,
                n_top_genes=n_top_genes,
                n_comps=n_pcs,
                layer=layer,
                genes=genes,
                seed=seed,
            )
            state["transforms"] = pca.transforms(layer=layer)
            state["n_genes"] = len(pca.genes)
        return state

    @classmethod
    def _build_view(cls, data: AnnData | MuData, state: Mapping) -> AnnData:
        """One AnnData of the datasets' joint-PCA (or ``use_rep``) inputs with their names.

        An AnnData keeps its cells' order and names; a MuData's datasets follow one another,
        their cell names prefixed with ``"<dataset>::"`` (datasets may share barcodes).
        """
        args = state["args"]
        names = [str(n) for n in state["datasets"]]
        datasets = _datasets(data, args["modalities"], args["batch_key"])
        if list(datasets) != names:
            raise ValueError(
                f"The data hold the datasets {list(datasets)}; the model was trained on {names}. "
                "Pass the data the model was trained on."
            )
        if isinstance(data, MuData):
            labels = np.repeat(names, [datasets[n].n_obs for n in names])
            index = pd.Index([f"{n}::{cell}" for n in names for cell in datasets[n].obs_names])
        else:
            labels = _dataset_labels(data, args["batch_key"])
            index = data.obs_names.copy()
        use_rep = args["use_rep"]
        if isinstance(data, AnnData) and use_rep is not None:
            # the user's embedding as it is (no copy when it is float32 already)
            X = v.check_rep(data, use_rep).astype(np.float32, copy=False)
        else:
            inputs = {
                name: (
                    _rep(data, name, use_rep).astype(np.float32, copy=False)
                    if use_rep is not None
                    else apply_transform(
                        state["transforms"][name], datasets[name], where=f"dataset {name!r}"
                    )
                )
                for name in names
            }
            if isinstance(data, MuData):
                X = np.concatenate([inputs[name] for name in names]).astype(np.float32, copy=False)
            else:
                X = np.empty((data.n_obs, inputs[names[0]].shape[1]), dtype=np.float32)
                for name in names:
                    X[labels == name] = inputs[name]
        obs = pd.DataFrame(
            {DATASET_KEY: pd.Categorical(labels, categories=names)}, index=index, copy=False
        )
        if use_rep is not None:
            return AnnData(obs=obs, obsm={use_rep: X})
        var = pd.DataFrame(index=pd.Index([f"PC{k + 1}" for k in range(X.shape[1])]))
        return AnnData(X=X, obs=obs, var=var)

    @classmethod
    def _register_view(cls, view: AnnData, state: Mapping) -> None:
        cls.setup_anndata(view, modality_key=DATASET_KEY, use_rep=state["args"]["use_rep"])

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

    # ------------------------------------------------------------------ construction
    def __init__(
        self,
        adata: AnnData,
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
        seed: int = 0,
    ):
        super().__init__(adata)
        self._settings(locals())
        #: datasets in integration order (the reference first)
        self.domains_ = domain_order(self.modalities, reference, order)
        n_stages = len(self.domains_) - 1
        _check_lambda_cos(lambda_cos, n_stages)
        # the settings as used, recorded by ``_get_init_params`` below
        reference, order = self.domains_[0], self.domains_[1:]
        if isinstance(lambda_cos, list | tuple):
            lambda_cos = [float(w) for w in lambda_cos]
        else:
            lambda_cos = [float(lambda_cos)] * n_stages
        self.seed = seed
        #: the last ``train(search_lambda_cos=...)``: candidates, their mixing metric per stage
        #: (stages × candidates), the chosen weight of each stage and the dataset it integrated;
        #: None without a search
        self.lambda_cos_search_: dict | None = None
        n_input = int(self._registered_inputs().shape[1])
        with self._seeded(seed):
            self.module = self._module_cls(
                n_input=n_input,
                n_latent=n_latent,
                n_hidden=n_hidden,
                n_stages=n_stages,
                order=[self.modalities.index(d) for d in self.domains_],
                lambda_gan=lambda_gan,
                lambda_ae=lambda_ae,
                lambda_la=lambda_la,
                lambda_cos=lambda_cos,
                boundary=boundary,
                warmup_steps=warmup_steps,
                init_std=init_std,
            )
        self._model_summary_string = (
            f"Portal: datasets {self.domains_} (reference {reference!r}), {n_input} input dims, "
            f"n_latent {n_latent}, n_hidden {n_hidden}, lambda_cos {lambda_cos}, boundary "
            f"{boundary}"
        )
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------ training
    @train_docs
    def train(
        self,
        max_epochs: int | None = None,
        max_steps: int | None = None,
        *,
        batch_size: int | None = None,
        steps_per_epoch: int = 100,
        lr: float = 1e-3,
        replacement: bool = True,
        ema_decay: float | None = 0.99,
        search_lambda_cos: bool | Sequence[float] = False,
        train_size: float = 1.0,
        validation_size: float | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        seed: int | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train every integration stage (one discriminator and one generator update per step).

        Parameters
        ----------
        max_epochs
            Length of each stage in blocks of ``steps_per_epoch`` steps.
        max_steps
            Steps of each stage instead of ``max_epochs``; defaults to the reference's 2,000, or
            1,000 when the datasets have fewer than 20,000 cells together. A length that is not
            a multiple of ``steps_per_epoch`` is rounded up to whole blocks.
        batch_size
            Cells per dataset per step on each device; default 500 (the reference's), or the
            smallest dataset's cells when it has fewer.
        steps_per_epoch
            Steps logged together as one "epoch" of the history (100; at most ``max_steps``),
            on each device.
        lr
            Adam learning rate of both sides (1e-3).
        replacement
            Sample cells with replacement, as the reference does.
        ema_decay
            Keep, for each stage, the exponential moving average of the encoder and generator
            weights over its training steps (decay per step, 0.99: the last ~100 steps weigh
            most; ramped up over the first steps so short runs average their recent steps)
            instead of the last step's weights; the discriminators keep their last weights.
            The adversarial game circles around its balance point and the last iterate lands
            anywhere on that circle; the average sits near its centre (Yazıcı et al., ICLR
            2019). On ifnb and ASAP/CITE this raised the batch mixing from below Harmony's to
            Harmony's level or above and cut the seed-to-seed spread several-fold, with the
            same label transfer (``docs/benchmarks.md``). ``None``: the last step's weights,
            as the reference.
        search_lambda_cos
            Choose ``lambda_cos`` per stage from the data, as the reference's
            ``search_cos=True``: ``True`` tries its grid 15, 20, …, 50, a list tries those
            weights. Each stage trains one candidate per weight from the same starting weights
            and seed, scores the stage's latent with :func:`scx.metrics.mixing_metric` (lower:
            the two sides mix better) and keeps the best candidate before the next stage, so
            training costs one stage per candidate. The chosen weights replace ``lambda_cos``
            (and are what ``params`` records); the candidates, their scores and the choice are
            in ``model.lambda_cos_search_`` and, from :func:`scx.tl.portal`, in
            ``uns[key_added]["lambda_cos_search"]``. ``False`` (default): train once with
            ``lambda_cos``.
        train_size, validation_size
            Split of each dataset's cells into training and validation (validation losses
            appear in ``history``). The latent and the boundary scores cover every cell.
        """
        settings = self._settings(locals())
        seed = self.seed if seed is None else seed
        batch_size = self._resolve_batch_size(batch_size, DEFAULT_BATCH_SIZE, train_size=train_size)
        n_cells = sum(s.n_obs for s in self.sources.values())
        default = ("steps", 1000 if n_cells < LONG_SCHEDULE_CELLS else 2000)
        if max_steps is not None:
            # a short run is one block: max_steps=30 trains 30 steps, not 100
            steps_per_epoch = min(steps_per_epoch, max_steps)
        n_stages = self.module.n_stages
        if isinstance(search_lambda_cos, bool | np.bool_):
            candidates = list(LAMBDA_COS_GRID) if search_lambda_cos else None
        else:
            candidates = [float(w) for w in search_lambda_cos]
        common = {"accelerator": accelerator, "devices": devices, "trainer_kwargs": trainer_kwargs}
        self.lambda_cos_search_ = None
        scores = []
        # every dataset integrated so far in the reference space: needed from stage 2 on only
        # (with two datasets the reference trains on its own inputs, no copy)
        reference_space = None
        for stage in range(n_stages):
            self.module.set_active_stage(stage)

            def train_stage(detail: str | None = None, stage=stage, space=reference_space):
                plan = self._training_plan_cls(self.module, lr=lr, ema_decay=ema_decay)
                datamodule = self._make_datamodule(
                    batch_size,
                    seed=seed,
                    sampler_seed=seed + stage,
                    sources=self._stage_sources(stage, space),
                    steps_per_epoch=steps_per_epoch,
                    steps_per_device=True,
                    replacement=replacement,
                    train_size=train_size,
                    validation_size=validation_size,
                )
                return self._fit(
                    plan,
                    datamodule,
                    max_epochs=max_epochs,
                    max_steps=max_steps,
                    default=default,
                    seed=seed + stage,
                    stage=stage + 1,
                    n_stages=n_stages,
                    detail=detail,
                    **common,
                )

            if candidates is None:
                epochs, steps = train_stage()
            else:
                (epochs, steps), stage_scores = self._search_stage(
                    stage, candidates, train_stage, reference_space, seed
                )
                scores.append(stage_scores)
            if stage + 1 < n_stages:
                reference_space = self._integrate(stage, reference_space)
        self.module.set_active_stage(n_stages - 1)
        self.module.requires_grad_(True)
        self.module.eval()
        resolved = {}
        if candidates is not None:
            chosen = list(self.module.lambda_cos)
            #: the search: candidates, their mixing metric per stage, the chosen weights
            self.lambda_cos_search_ = {
                "candidates": candidates,
                "mixing_metric": np.asarray(scores, dtype=np.float64),
                "chosen": chosen,
                "integrated": list(self.domains_[1:]),
            }
            # the model is now the one built with the chosen weights (also for save/load)
            self.init_params_["non_kwargs"]["lambda_cos"] = chosen
            resolved["lambda_cos"] = chosen
        self._record_train(
            settings,
            max_epochs=epochs,
            max_steps=steps,
            batch_size=batch_size,
            steps_per_epoch=steps_per_epoch,
            search_lambda_cos=candidates,
            seed=seed,
            **resolved,
        )

    def _search_stage(
        self,
        stage: int,
        candidates: list[float],
        train_stage,
        reference_space: np.ndarray | None,
        seed: int,
    ) -> tuple[tuple[int, int], list[float]]:
        """Train ``stage`` once per ``lambda_cos`` candidate and keep the best-mixed one.

        Every candidate starts from the stage's weights as they are now, with the same seed, so
        the kept candidate is exactly what a run with that ``lambda_cos`` trains. Returns the
        (epochs, steps) trained and the mixing metric of each candidate.
        """
        nets = (self.module.stages[stage], self.module.discriminators[stage])
        start = [_state_copy(net) for net in nets]
        before = (self.history_, self.is_trained_)
        n_stages = self.module.n_stages
        scores, results = [], []
        for k, weight in enumerate(candidates):
            for net, state in zip(nets, start):
                net.load_state_dict(state)
            self.history_, self.is_trained_ = before
            self.module.lambda_cos[stage] = weight
            length = train_stage(f"lambda_cos {weight:g} ({k + 1}/{len(candidates)})")
            score = mixing_metric(*self._stage_latent(stage, reference_space), seed=seed)
            logger.info(
                "Portal stage %d/%d: lambda_cos %g gives mixing metric %.2f (lower is better).",
                stage + 1,
                n_stages,
                weight,
                score,
            )
            scores.append(score)
            results.append(
                ([_state_copy(net) for net in nets], self.history_, self.trainer, length)
            )
        best = int(np.argmin(scores))
        states, self.history_, self.trainer, length = results[best]
        for net, state in zip(nets, states):
            net.load_state_dict(state)
        self.module.lambda_cos[stage] = candidates[best]
        self.is_trained_ = True
        logger.info(
            "Portal stage %d/%d: chose lambda_cos %g (mixing metric %.2f; candidates %s).",
            stage + 1,
            n_stages,
            candidates[best],
            scores[best],
            ", ".join(f"{w:g}: {m:.2f}" for w, m in zip(candidates, scores)),
        )
        return length, scores

    def _stage_latent(
        self, stage: int, reference_space: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The latent of a stage's two sides and each cell's side (``"A"``, ``"B"``).

        Side A holds every dataset integrated so far (in the reference space), B the dataset
        the stage integrates, as the stage trained on them.
        """
        registered = np.asarray(self._registered_inputs())
        space = registered if reference_space is None else reference_space
        integrated = np.sort(
            np.concatenate([self.sources[m].indices for m in self.domains_[: stage + 1]])
        )
        query = self.sources[self.domains_[stage + 1]].indices
        sides = []
        for side, X in ((0, space[integrated]), (1, registered[query])):
            sides.append(
                self._apply_in_chunks(
                    X, lambda x, side=side: self.module.encode(x, stage, side), self.module.n_latent
                )
            )
        labels = np.repeat(["A", "B"], [len(integrated), len(query)])
        return np.concatenate(sides), labels

    def _stage_sources(
        self, stage: int, reference_space: np.ndarray | None
    ) -> dict[str, ModalitySource]:
        """Domain A: the datasets integrated so far (in the reference space); B: the next one."""
        integrated = np.concatenate([self.sources[m].indices for m in self.domains_[: stage + 1]])
        query = self.sources[self.domains_[stage + 1]]
        return {
            REFERENCE: ModalitySource(query.manager, np.sort(integrated), features=reference_space),
            QUERY: ModalitySource(query.manager, query.indices),
        }

    def _integrate(self, stage: int, reference_space: np.ndarray | None) -> np.ndarray:
        """Translate the dataset integrated at ``stage`` into the reference space."""
        if reference_space is None:
            registered = self._registered_inputs()
            reference_space = np.array(registered, dtype=np.float32, copy=True)
        dataset = self.domains_[stage + 1]
        rows = self.sources[dataset].indices
        reference_space[rows] = self._apply_in_chunks(
            reference_space[rows],
            lambda x: self.module.translate(x, stage, 1, 0),
            self.module.n_input,
        )
        return reference_space

    def _registered_inputs(self) -> np.ndarray:
        """The registered inputs of all cells (rows of the registered AnnData)."""
        return self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)

    # ------------------------------------------------------------------ inference
    def _position(self, modality: str) -> int:
        return self.modalities.index(self._check_modality(modality))

    def _embed(self, X, modality: str, batch_size: int) -> np.ndarray:
        k = self._position(modality)
        return self._apply_in_chunks(
            X, lambda x: self.module.embed(x, k), self.module.n_latent, batch_size=batch_size
        )

    def _per_dataset(self, compute, adata: AnnData | None, modality: str | None, **kwargs):
        """``compute(dataset, adata)`` for one dataset, or ``{dataset: …}`` for all of them."""
        self._check_if_trained(warn=True)
        if modality is None:
            if adata is not None:
                raise ValueError("Pass `modality=` with `adata` to say which dataset it holds.")
            return {m: compute(m, None, **kwargs) for m in self.modalities}
        self._check_modality(modality)
        return compute(modality, adata, **kwargs)

    def get_reference_space(
        self, adata: AnnData | None = None, modality: str | None = None, *, batch_size: int = 4096
    ) -> np.ndarray | dict[str, np.ndarray]:
        """Cells in the reference dataset's input (joint PCA) space.

        The reference's own cells are unchanged; the others are translated by the generator of
        the stage that integrated them.

        Parameters
        ----------
        adata
            New cells of dataset ``modality`` (counts, or the model's inputs); ``None`` for the
            registered cells.
        modality
            The dataset; ``None`` (with ``adata=None``) gives ``{dataset: array}``.
        batch_size
            Cells per forward pass.
        """

        def compute(m: str, new: AnnData | None) -> np.ndarray:
            k = self._position(m)
            return self._apply_in_chunks(
                self._input_matrix(m, new),
                lambda x: self.module.to_reference(x, k),
                self.module.n_input,
                batch_size=batch_size,
            )

        return self._per_dataset(compute, adata, modality)

    def get_boundary_scores(
        self, adata: AnnData | None = None, modality: str | None = None, *, batch_size: int = 4096
    ) -> np.ndarray | dict[str, np.ndarray]:
        """Clamped reference-discriminator logit of each non-reference cell's translation.

        Each dataset's cells are translated into the reference space and scored by the
        discriminator of the stage that integrated them. A score at ``-boundary`` marks a cell
        the discriminator is sure does not look like the reference (e.g. a dataset-specific
        type); reference cells get NaN.

        Parameters
        ----------
        adata, modality, batch_size
            As in :meth:`get_reference_space`.
        """

        def compute(m: str, new: AnnData | None) -> np.ndarray:
            X = self._input_matrix(m, new)
            if m == self.domains_[0]:
                return np.full(X.shape[0], np.nan, dtype=np.float32)
            k = self._position(m)
            scores = self._apply_in_chunks(
                X, lambda x: self.module.boundary_score(x, k)[:, None], 1, batch_size=batch_size
            )
            return scores[:, 0]

        return self._per_dataset(compute, adata, modality)

    def get_translated(
        self,
        source: str,
        target: str,
        adata: AnnData | None = None,
        *,
        batch_size: int = 4096,
    ) -> np.ndarray:
        """Cells of dataset ``source`` translated into dataset ``target``'s input space.

        Translation goes through the reference: ``source`` is mapped into the reference space,
        then into ``target`` with the generator of the stage that integrated ``target``.

        Parameters
        ----------
        source, target
            Datasets.
        adata
            New cells of ``source`` (counts, or the model's inputs); ``None`` for the registered
            cells of ``source``.
        batch_size
            Cells per forward pass.

        Returns
        -------
        ``(cells, n_input)`` array in the order of ``source``'s cells.
        """
        self._check_if_trained(warn=True)
        s, t = self._position_of(source, "source"), self._position_of(target, "target")
        X = self._input_matrix(source, adata)
        return self._apply_in_chunks(
            X,
            lambda x: (
                x if s == t else self.module.from_reference(self.module.to_reference(x, s), t)
            ),
            self.module.n_input,
            batch_size=batch_size,
        )

    def _position_of(self, dataset: str, argname: str) -> int:
        self._check_modality(dataset, argname)
        return self.modalities.index(dataset)

    def get_translated_expression(
        self,
        source: str,
        target: str,
        adata: AnnData | None = None,
        *,
        batch_size: int = 4096,
    ) -> pd.DataFrame:
        """Cells of ``source`` as log-normalised expression of ``target`` (joint-PCA genes).

        Inverts the joint PCA and ``target``'s per-gene standardisation with ``target``'s stored
        transform, as the reference's expression recovery does.

        Parameters
        ----------
        source, target, adata, batch_size
            As in :meth:`get_translated`.

        Returns
        -------
        DataFrame of cells × genes, indexed by ``source``'s cell names.
        """
        self._check_if_trained(warn=True)
        s, t = self._position_of(source, "source"), self._position_of(target, "target")
        transform = ((self.input_state_ or {}).get("transforms") or {}).get(target)
        if transform is None:
            raise ValueError(
                "The model was trained on an embedding without a stored gene-space transform; "
                "translations into expression need `scx.tl.portal` on counts (no `use_rep`)."
            )
        device = self.module.device
        loadings = torch.as_tensor(transform["loadings"].T, dtype=torch.float32, device=device)
        mean = torch.as_tensor(transform["mean"], dtype=torch.float32, device=device)
        scale = torch.as_tensor(transform["scale"], dtype=torch.float32, device=device)

        def expression(x: torch.Tensor) -> torch.Tensor:
            translated = self.module.from_reference(self.module.to_reference(x, s), t)
            return (translated @ loadings) * scale + mean

        values = self._apply_in_chunks(
            self._input_matrix(source, adata),
            expression,
            len(transform["features"]),
            batch_size=batch_size,
        )
        cells = adata.obs_names if adata is not None else self._user_names(source)
        return pd.DataFrame(values, index=cells, columns=list(transform["features"]))

    def _user_names(self, dataset: str) -> pd.Index:
        """Names of ``dataset``'s cells as the user holds them (MuData prefixes removed)."""
        names = self.obs_names_of(dataset)
        prefix = f"{dataset}::"
        if (self.input_state_ or {}).get("args", {}).get("modalities") is not None:
            names = pd.Index([n[len(prefix) :] if n.startswith(prefix) else n for n in names])
        return names


# ---------------------------------------------------------------------------- helpers
def _state_copy(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of a network's weights."""
    return {name: value.detach().clone() for name, value in net.state_dict().items()}


def _datasets(
    data: Any, modalities: Sequence[str] | None, batch_key: str | None
) -> dict[str, AnnData]:
    """``{dataset: AnnData}`` of an AnnData split by ``batch_key`` or of a MuData's modalities."""
    if isinstance(data, MuData):
        if batch_key is not None:
            raise ValueError(
                "`batch_key` is for an AnnData; for a MuData every modality is one dataset. "
                "Pass `batch_key=None` (and `modalities=` to choose the datasets)."
            )
        if modalities is None:
            modalities = list(data.mod.keys())
        if isinstance(modalities, str) or not isinstance(modalities, Sequence):
            raise ValueError(
                f"`modalities` must be a list of the MuData's modalities (datasets), got "
                f"{modalities!r}."
            )
        if len(set(modalities)) != len(modalities):
            raise ValueError(f"`modalities` names a dataset twice: {list(modalities)}.")
        if len(modalities) < 2:
            raise ValueError(
                f"Portal integrates two or more datasets, one per modality; got "
                f"{list(modalities)}. Pass a MuData (or `modalities=`) with at least two."
            )
        return {m: v.check_modality(data, m, argname="modalities") for m in modalities}
    if not isinstance(data, AnnData):
        raise ValueError(
            f"`data` must be an AnnData with `batch_key` or a MuData with one modality per "
            f"dataset, got {type(data).__name__}."
        )
    if modalities is not None:
        raise ValueError(
            "`modalities` selects the datasets of a MuData; for an AnnData the datasets are the "
            "values of `batch_key` (use `reference=`/`order=` to order them). Drop `modalities`."
        )
    if data.n_obs == 0:
        raise ValueError("`data` has no cells.")
    labels = _dataset_labels(data, batch_key)
    names = _dataset_names(data.obs[batch_key], labels)
    if len(names) < 2:
        raise ValueError(
            f"`batch_key={batch_key!r}` has a single value ({names[0]!r}); Portal integrates "
            "two or more datasets. Pass the column that separates them."
        )
    return {name: data[labels == name] for name in names}


def _dataset_labels(data: AnnData, batch_key: Any) -> np.ndarray:
    """Each cell's dataset name (a string)."""
    batches = v.check_obs_key(data, batch_key, argname="batch_key")
    if batches.isna().any():
        raise ValueError(
            f"`batch_key={batch_key!r}` has {int(batches.isna().sum())} missing values; every "
            "cell needs a dataset."
        )
    return batches.astype(str).to_numpy()


def _dataset_names(batches: pd.Series, labels: np.ndarray) -> list[str]:
    """Categories in order (the used ones) for a categorical column, else order of appearance."""
    present = pd.unique(labels)
    if isinstance(batches.dtype, pd.CategoricalDtype):
        categories = [str(c) for c in batches.cat.categories]
        return [c for c in categories if c in set(present)]
    return [str(b) for b in present]


def _rep(data: AnnData | MuData, name: str, rep_key: str) -> np.ndarray:
    """Dataset ``name``'s rows of ``.obsm[rep_key]``.

    For a MuData from the modality's or the global ``.obsm``; for an AnnData the whole embedding.
    """
    if not isinstance(data, MuData):
        return v.check_rep(data, rep_key)
    adata = data.mod[name]
    if rep_key in adata.obsm:
        return v.check_rep(adata, rep_key, argname="use_rep")
    if rep_key in data.obsm:
        return v.check_rep(data, rep_key)[global_rows(data, name)]
    raise ValueError(
        f"`use_rep={rep_key!r}` is neither in `.obsm` of modality {name!r} "
        f"({list(adata.obsm.keys())}) nor in the MuData's `.obsm` ({list(data.obsm.keys())}); "
        "pass a key of one of them."
    )


def _check_genes(datasets: Mapping[str, AnnData], genes: Sequence[str] | None) -> None:
    """The datasets share genes; given ``genes`` are in every dataset."""
    names = list(datasets)
    if genes is None:
        shared = datasets[names[0]].var_names
        for name in names[1:]:
            shared = shared.intersection(datasets[name].var_names, sort=False)
        if len(shared) == 0:
            raise ValueError(
                f"The datasets {names} share no feature names; integrate datasets measured over "
                "the same genes (map them to common gene names first)."
            )
        return
    if isinstance(genes, str) or not isinstance(genes, Sequence | pd.Index | np.ndarray):
        raise ValueError(f"`genes` must be a list of gene names, got {genes!r}.")
    genes = pd.Index([str(g) for g in genes])
    if len(genes) < 2 or not genes.is_unique:
        raise ValueError(
            f"`genes` must list at least two distinct gene names, got {len(genes)} "
            f"({'with duplicates' if not genes.is_unique else 'too few'})."
        )
    for name, adata in datasets.items():
        missing = genes.difference(adata.var_names)
        if len(missing):
            raise ValueError(
                f"`genes` lists {len(missing)} genes missing from dataset {name!r} (e.g. "
                f"{list(missing[:5])}); pass genes measured in every dataset."
            )
