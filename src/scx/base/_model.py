"""Base class of the five scvi-tools models: registration, the input view, training, inference.

scvi-tools' default registration assumes one AnnData (or a fully paired MuData) per model. For
diagonal integration every modality has its own cells, so this base registers

* one manager per modality (``mdata.mod[m]``: X/layer, batch, labels), which feeds that
  modality's mini-batches and gives its ``summary_stats``;
* one MuData-level manager without fields and with the paired-MuData check switched off, which
  makes ``BaseModelClass.__init__``, ``registry_``, ``save`` and ``load`` work unchanged.

A single AnnData split by an ``.obs`` key (several datasets over the same genes, as Portal
uses) is registered with one manager and one modality per category.

**The input view.** A model trains on what its method makes of the user's data (gene activity
over shared genes, a joint PCA, selected and normalised features). :meth:`prepare_inputs`
fits that preprocessing once, keeps it as plain arrays in ``input_state_`` and returns the
registered *view*, a new lightweight object that shares the user's matrices where it can. The
same state rebuilds the view from the user's data in :meth:`load` and maps new cells in
:meth:`get_latent_representation`, so the user never has to repeat the preprocessing.

**The contract** a method fills in:

* ``_setting_checks``: one checker per setting of ``__init__`` and ``train``
  (:meth:`check_settings`, called by the tools before any work and by the model itself);
* ``_fit_inputs`` / ``_build_view`` / ``_register_view``: fit the preprocessing, apply it,
  register the view (defaults: the data as it is);
* ``train``, which resolves its settings, records them with :meth:`_record_train` and runs each
  stage through :meth:`_fit`;
* ``_embed(X, modality, batch_size)``: the embedding of registered-feature rows.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data._manager import AnnDataManagerValidationCheck
from scvi.data.fields import CategoricalObsField, LayerField, ObsmField
from scvi.model.base import BaseModelClass

from scx import _validation as v
from scx._settings import isolated_state
from scx.data import ModalitySource, MultiModalDataModule
from scx.pp import apply_transform
from scx.train import check_devices, fit, training_length

logger = logging.getLogger(__name__)

MODALITY_KEY = "modality"
#: Documentation of the ``train`` arguments every method shares (see :func:`train_docs`).
_TRAIN_COMMON_DOC = """
        accelerator, devices
            Lightning accelerator and devices, e.g. ``accelerator="gpu", devices=4`` with
            ``strategy="ddp"`` in the trainer options.
        seed
            Seed of sampling and dropout; defaults to the model's ``seed``.
        **trainer_kwargs
            Lightning/scvi-tools trainer options (``strategy``, ``precision``, …), e.g.
            ``precision="bf16-mixed"`` on CPUs and GPUs with bfloat16 units.
"""


def train_docs(train: Callable) -> Callable:
    """Append the documentation of the shared ``train`` arguments to a ``train`` docstring."""
    doc = (train.__doc__ or "").rstrip()
    train.__doc__ = doc + _TRAIN_COMMON_DOC
    return train


#: Checks of the settings that several methods share, declared once.
COMMON_SETTING_CHECKS: dict[str, Callable] = {
    "n_latent": v.positive_int(),
    "max_epochs": v.optional(v.positive_int()),
    "max_steps": v.optional(v.positive_int()),
    "batch_size": v.optional(v.positive_int(minimum=2)),
    "steps_per_epoch": v.optional(v.positive_int()),
    "lr": v.positive,
    "weight_decay": v.weight,
    "clip_norm": v.optional(v.positive),
    "replacement": v.boolean,
    "train_size": v.fraction(),
    "validation_size": v.optional(v.fraction(low_open=False)),
    "init_std": v.optional(v.positive),
    "seed": v.optional(v.positive_int(minimum=0)),
}
#: Checks of the data arguments (of ``_fit_inputs``) that several methods share: their types
#: only; the names are looked up in the data by each method's ``_check_inputs``.
COMMON_DATA_CHECKS: dict[str, Callable] = {
    "layer": v.per_modality(v.optional(v.name("a layer name, or None for `.X`"))),
    "use_rep": v.per_modality(v.optional(v.name("an `.obsm` key"))),
    "labels_key": v.per_modality(v.optional(v.name("an `.obs` column"))),
    "batch_key": v.per_modality(v.optional(v.name("an `.obs` column"))),
}
#: ``locals()`` of ``__init__``/``train`` that are not settings.
_NOT_SETTINGS = {"self", "__class__", "trainer_kwargs", "data", "adata", "mdata"}
#: ``uns`` key of a view that holds the fitted input state (internal objects only).
INPUT_STATE_KEY = "_scx_input_state"

# Per-modality registries saved with a model; set by ``load`` so that ``setup_mudata`` re-registers
# batches and labels with the training-time category codes.
_LOADING_MODALITY_REGISTRIES: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "_LOADING_MODALITY_REGISTRIES", default=None
)


class MultiModalModelBase(BaseModelClass):
    """Shared registration, input view, training and inference of the unpaired models."""

    #: Name used in logs and progress bars.
    _method_name: ClassVar[str] = "model"
    #: ``{setting: checker}`` for the settings of ``__init__`` and ``train`` (added to and
    #: overriding :data:`COMMON_SETTING_CHECKS`).
    _setting_checks: ClassVar[dict[str, Callable]] = {}
    #: ``{data argument: checker}`` for the arguments of ``_fit_inputs`` (added to and
    #: overriding :data:`COMMON_DATA_CHECKS`).
    _data_checks: ClassVar[dict[str, Callable]] = {}
    #: ``__init__`` arguments that :meth:`prepare_inputs` derives from the data (not settings).
    _data_init_args: ClassVar[tuple[str, ...]] = ()
    #: Train in bfloat16 mixed precision on CPUs with bfloat16 units unless the trainer options
    #: name a precision (see :func:`scx.train.fit`).
    _bfloat16_on_cpu: ClassVar[bool] = False

    # ------------------------------------------------------------------ settings
    @classmethod
    def check_settings(cls, **settings: Any) -> None:
        """Check settings of ``__init__`` and ``train`` by name (unknown names are ignored).

        ``max_epochs`` and ``max_steps`` are alternatives in every method; ``train_size`` and
        ``validation_size`` add up to at most 1; ``accelerator`` and ``devices`` must be
        available on this machine.
        """
        v.run_checks({**COMMON_SETTING_CHECKS, **cls._setting_checks}, settings)
        epochs, steps = settings.get("max_epochs"), settings.get("max_steps")
        if epochs is not None and steps is not None:
            raise ValueError(
                f"Pass either `max_epochs` ({epochs}) or `max_steps` ({steps}), not both."
            )
        train_size, validation_size = settings.get("train_size"), settings.get("validation_size")
        if train_size is not None and validation_size is not None:
            if train_size + validation_size > 1 + 1e-9:
                raise ValueError(
                    f"`train_size={train_size}` and `validation_size={validation_size}` add up to "
                    f"more than 1; pass `validation_size` ≤ {1 - train_size:.4g} (or None for "
                    "the remaining cells)."
                )
        if "accelerator" in settings or "devices" in settings:
            check_devices(settings.get("accelerator", "auto"), settings.get("devices", "auto"))

    @classmethod
    def check_data_arguments(cls, **data_args: Any) -> None:
        """Check the types of the data arguments by name.

        Their values are checked against the data by :meth:`_check_inputs`.
        """
        v.run_checks({**COMMON_DATA_CHECKS, **cls._data_checks}, data_args)

    # ------------------------------------------------------------------ registration
    @classmethod
    def _modality_fields(
        cls,
        modality: str,
        layer: str | None,
        labels_key: str | None,
        batch_key: str | None,
        use_rep: str | None = None,
    ) -> list:
        """Fields registered for every modality."""
        if use_rep is not None and layer is not None:
            raise ValueError(
                f"Modality {modality!r}: pass either `layer` ({layer!r}) or `use_rep` "
                f"({use_rep!r}) as the input, not both."
            )
        x_field = (
            ObsmField(REGISTRY_KEYS.X_KEY, use_rep)
            if use_rep is not None
            else LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False)
        )
        return [
            x_field,
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
            CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key),
        ]

    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        modalities: Sequence[str] | None = None,
        layer: str | dict[str, str | None] | None = None,
        labels_key: str | dict[str, str | None] | None = None,
        batch_key: str | dict[str, str | None] | None = None,
        use_rep: str | dict[str, str | None] | None = None,
        **kwargs,
    ) -> None:
        """Register an unpaired (or paired) MuData, one manager per modality.

        Parameters
        ----------
        mdata
            MuData whose modalities are the data types (or datasets) to integrate. The
            modalities may share no cells.
        modalities
            Modalities to use, in order; all of them by default.
        layer
            Layer holding the input (``None`` for ``.X``), once for all or ``{modality: layer}``.
        labels_key
            ``.obs`` column with cell-type labels, once for all or per modality (``None`` for
            unlabelled modalities).
        batch_key
            ``.obs`` column with batches, once for all or per modality.
        use_rep
            ``.obsm`` key of an embedding to use as the input instead of a layer (e.g.
            ``"X_pca"`` or an scvi-tools latent such as ``"X_scVI"``), once or per modality.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        if not isinstance(mdata, MuData):
            raise ValueError(
                f"`setup_mudata` needs a MuData, got {type(mdata).__name__}; for one AnnData "
                "split by an .obs column use `setup_anndata(adata, modality_key=...)`."
            )
        modalities = list(modalities) if modalities is not None else list(mdata.mod.keys())
        missing = [m for m in modalities if m not in mdata.mod]
        if missing or not modalities:
            raise ValueError(
                f"`modalities={modalities!r}` must name modalities of the MuData; available: "
                f"{list(mdata.mod.keys())}."
            )
        layers = v.check_per_modality(layer, modalities, argname="layer")
        labels = v.check_per_modality(labels_key, modalities, argname="labels_key")
        batches = v.check_per_modality(batch_key, modalities, argname="batch_key")
        reps = v.check_per_modality(use_rep, modalities, argname="use_rep")
        source_registries = _LOADING_MODALITY_REGISTRIES.get() or {}
        for m in modalities:
            manager = AnnDataManager(
                fields=cls._modality_fields(m, layers[m], labels[m], batches[m], reps[m]),
                setup_method_args=setup_method_args,
            )
            manager.register_fields(mdata.mod[m], source_registry=source_registries.get(m))
            cls.register_manager(manager)
        global_manager = AnnDataManager(
            fields=[],
            setup_method_args=setup_method_args,
            validation_checks=AnnDataManagerValidationCheck(check_fully_paired_mudata=False),
        )
        global_manager.register_fields(mdata, **kwargs)
        cls.register_manager(global_manager)

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        modality_key: str,
        layer: str | None = None,
        labels_key: str | None = None,
        batch_key: str | None = None,
        use_rep: str | None = None,
        **kwargs,
    ) -> None:
        """Register one AnnData whose cells are split into modalities by an ``.obs`` column.

        Use this for several datasets over the same features held in one AnnData (e.g. batches
        to integrate); every category of ``modality_key`` becomes one modality.

        Parameters
        ----------
        adata
            AnnData with all cells.
        modality_key
            ``.obs`` column that assigns each cell to a modality/dataset.
        layer
            Layer with the input (``None`` for ``.X``).
        labels_key
            ``.obs`` column with labels.
        batch_key
            ``.obs`` column with batches inside a dataset.
        use_rep
            ``.obsm`` key of an embedding to use as the input instead of a layer.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        v.check_obs_key(adata, modality_key, argname="modality_key")
        fields = [
            *cls._modality_fields(modality_key, layer, labels_key, batch_key, use_rep),
            CategoricalObsField(MODALITY_KEY, modality_key),
        ]
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    # ------------------------------------------------------------------ the input view
    @classmethod
    def prepare_inputs(
        cls, data: AnnData | MuData, *, seed: int = 0, **data_args: Any
    ) -> AnnData | MuData:
        """Fit the method's preprocessing on ``data`` and return the registered view.

        The view is a new object (the user's data is only read); it carries the fitted state,
        which the model built on it keeps as ``input_state_``.
        """
        state = cls._fit_inputs(data, seed=seed, **data_args)
        view = cls._build_view(data, state)
        cls._register_view(view, state)
        view.uns[INPUT_STATE_KEY] = state
        return view

    @classmethod
    def _check_inputs(
        cls, data: AnnData | MuData, *, settings: Mapping[str, Any], **data_args: Any
    ) -> None:
        """Check the data and the data arguments before any work.

        The data arguments are those of :meth:`_fit_inputs`, which declares their defaults and
        documents them; a method's ``_check_inputs`` takes them by name without re-declaring
        them. ``settings`` holds every setting of ``__init__`` and ``train`` (defaults filled
        in), for checks that relate them to the data (e.g. a batch size against the cells).
        """

    @classmethod
    def _fit_inputs(cls, data: AnnData | MuData, *, seed: int, **data_args: Any) -> dict:
        """Fit the preprocessing; returns the input state (``args``, ``transforms``, …)."""
        return {"args": dict(data_args), "transforms": {}}

    @classmethod
    def _build_view(cls, data: AnnData | MuData, state: Mapping) -> AnnData | MuData:
        """Apply a fitted input state to the user's data (no fitting)."""
        return data

    @classmethod
    def _register_view(cls, view: AnnData | MuData, state: Mapping) -> None:
        """Register the view (``setup_mudata`` / ``setup_anndata`` with the state's args)."""
        cls.setup_mudata(view)

    @classmethod
    def load(cls, dir_path: str, adata: AnnData | MuData | None = None, **kwargs):
        """Load a saved model (see :meth:`scvi.model.base.BaseModelClass.load`).

        ``adata`` may be the data the model was trained on as the user holds it (e.g. the
        MuData given to the tool): the model's stored preprocessing rebuilds its inputs from
        it, and ``adata`` itself is left unchanged. Per-modality category codes (labels,
        batches) of training time are restored.
        """
        if adata is not None and not isinstance(adata, AnnData | MuData):
            raise ValueError(
                f"`adata` must be the AnnData or MuData to load the model onto (or None for the "
                f"data saved with it), got {type(adata).__name__}."
            )
        prefix = kwargs.get("prefix") or ""
        saved = torch.load(
            os.path.join(dir_path, f"{prefix}model.pt"), map_location="cpu", weights_only=False
        )
        attrs = saved["attr_dict"]
        state = attrs.get("input_state_")
        target = adata
        if adata is not None and state is not None and INPUT_STATE_KEY not in adata.uns:
            target = cls._build_view(adata, state)
            target.uns[INPUT_STATE_KEY] = state
        token = _LOADING_MODALITY_REGISTRIES.set(attrs.get("mod_registries_"))
        try:
            with _restored_on_failure(target), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The method mod_names is deprecated")
                warnings.filterwarnings("ignore", message="var_names are not unique")
                return super().load(dir_path, adata=target, **kwargs)
        except ValueError as err:
            if adata is None:
                raise
            # scvi-tools' registry checks say what differs, not what to pass
            raise ValueError(
                f"`adata` does not match the data the model was trained on: {err} Pass the data "
                "the model was trained on (or cells with the same features and inputs)."
            ) from err
        finally:
            _LOADING_MODALITY_REGISTRIES.reset(token)

    # ------------------------------------------------------------------ construction
    def __init__(self, data: AnnData | MuData):
        super().__init__(data)
        self.sources: dict[str, ModalitySource] = {}
        if isinstance(data, MuData):
            setup_args = self.registry_["setup_args"]
            modalities = setup_args["modalities"] or list(data.mod.keys())
            for m in modalities:
                manager = self._get_most_recent_anndata_manager(data.mod[m], required=True)
                self._register_manager_for_instance(manager)
                self.sources[m] = ModalitySource(manager, np.arange(data.mod[m].n_obs))
            self.mod_registries_ = {m: s.manager.registry for m, s in self.sources.items()}
        else:
            mapping = self.adata_manager.get_state_registry(MODALITY_KEY).categorical_mapping
            codes = np.asarray(self.adata_manager.get_from_registry(MODALITY_KEY)).ravel()
            for code, name in enumerate(mapping):
                self.sources[str(name)] = ModalitySource(
                    self.adata_manager, np.flatnonzero(codes == code)
                )
            self.mod_registries_ = None
        empty = [m for m, s in self.sources.items() if s.n_obs == 0]
        if empty:
            raise ValueError(f"Modalities {empty} have no cells; pass non-empty modalities.")
        #: the fitted preprocessing from the user's data to the registered view (or None)
        self.input_state_: dict | None = data.uns.get(INPUT_STATE_KEY)
        #: training settings of the last ``train`` call, as used (resolved defaults)
        self.train_params_: dict = {}

    @contextlib.contextmanager
    def _seeded(self, seed: int) -> Iterator[None]:
        """Build networks with this seed without touching the caller's random state."""
        with isolated_state(seed):
            yield

    # ------------------------------------------------------------------ helpers
    @property
    def modalities(self) -> list[str]:
        """Registered modality names."""
        return list(self.sources)

    def _check_modality(self, modality: Any, argname: str = "modality") -> str:
        if not isinstance(modality, str) or modality not in self.sources:
            raise ValueError(
                f"`{argname}={modality!r}` is not one of the model's modalities {self.modalities}."
            )
        return modality

    def modality_adata(self, modality: str) -> AnnData:
        """The registered AnnData that holds ``modality``'s cells."""
        return self.sources[modality].manager.adata

    def categorical_mapping(self, modality: str, registry_key: str) -> np.ndarray:
        """Category codes → values of a registered categorical field of ``modality``."""
        manager = self.sources[modality].manager
        return np.asarray(manager.get_state_registry(registry_key).categorical_mapping)

    def var_names_of(self, modality: str) -> pd.Index:
        """Feature names of ``modality`` as the model sees them."""
        return self.modality_adata(modality).var_names

    def obs_names_of(self, modality: str) -> pd.Index:
        """Names of ``modality``'s registered cells, in the model's order."""
        source = self.sources[modality]
        return source.manager.adata.obs_names[source.indices]

    def registered_values(self, modality: str, registry_key: str) -> np.ndarray:
        """Values of a registered per-cell field for ``modality``'s cells, in cell order."""
        source = self.sources[modality]
        values = source.manager.get_from_registry(registry_key)
        values = np.asarray(values.toarray() if sparse.issparse(values) else values)
        return values[source.indices]

    @staticmethod
    def _concat_history(first: dict | None, second: dict | None) -> dict:
        """Append ``second``'s epochs after ``first``'s, key by key (multi-stage training)."""
        if not first:
            return dict(second or {})
        if not second:
            return dict(first)
        offset = max(len(df) for df in first.values())
        merged = dict(first)
        for key, df in second.items():
            df = df.copy()
            df.index = np.arange(offset, offset + len(df))
            df.index.name = "epoch"
            merged[key] = pd.concat([first[key], df]) if key in first else df
        return merged

    # ------------------------------------------------------------------ training
    def _settings(self, local_vars: Mapping[str, Any]) -> dict[str, Any]:
        """The settings of an ``__init__`` or ``train`` call (its ``locals()``), checked."""
        settings = {k: val for k, val in local_vars.items() if k not in _NOT_SETTINGS}
        self.check_settings(**settings)
        return settings

    def _record_train(self, settings: Mapping[str, Any], **resolved: Any) -> None:
        """Record the settings a ``train`` call used, with the defaults it resolved.

        The trainer's precision is recorded with them (``"32-true"``, ``"bf16-mixed"``, …).
        """
        trainer = getattr(self, "trainer", None)
        precision = {} if trainer is None else {"precision": str(trainer.precision)}
        self.train_params_ = {**settings, **precision, **resolved}

    def recorded_params(self) -> dict[str, Any]:
        """Every setting the model used: its data arguments, ``__init__`` and ``train``."""
        init = dict(self.init_params_.get("non_kwargs", {}))
        for extra in self.init_params_.get("kwargs", {}).values():
            init.update(extra)
        for name in self._data_init_args:
            init.pop(name, None)
        args = dict((self.input_state_ or {}).get("args", {}))
        return {**args, **init, **self.train_params_}

    def _resolve_batch_size(
        self, batch_size: int | dict[str, int] | None, default: int, *, train_size: float = 1.0
    ) -> int | dict[str, int]:
        """The batch size a training uses: one policy for every method.

        A ``batch_size`` the user passes is honoured as given and must fit every modality's
        training cells (an error says what fits). ``None`` takes the method's ``default``,
        lowered to the smallest modality's training cells when that is smaller, so that the
        defaults run on small data as they do on large.
        """
        sizes = {m: s.n_obs for m, s in self.sources.items()}
        if batch_size is not None:
            v.check_batch_size_fits(batch_size, sizes, train_size=train_size)
            return batch_size
        # the data module's split: ceil(train_size · n) training cells per modality
        smallest = min(int(np.ceil(train_size * n)) for n in sizes.values())
        if smallest >= default:
            return default
        resolved = max(2, smallest)
        logger.info(
            "The smallest modality has %d training cells, fewer than the default batch size "
            "of %d; training on batches of %d cells (pass `batch_size` to choose).",
            smallest,
            default,
            resolved,
        )
        return resolved

    def _make_datamodule(
        self,
        batch_size: int | dict[str, int],
        *,
        seed: int,
        sources: dict[str, ModalitySource] | None = None,
        datamodule_cls: type[MultiModalDataModule] = MultiModalDataModule,
        **kwargs,
    ) -> MultiModalDataModule:
        return datamodule_cls(
            self.sources if sources is None else sources,
            batch_size=batch_size,
            seed=seed,
            **kwargs,
        )

    def _fit(
        self,
        plan,
        datamodule: MultiModalDataModule,
        *,
        max_epochs: int | None,
        max_steps: int | None,
        default: tuple[str, int],
        seed: int,
        stage: int | None = None,
        n_stages: int | None = None,
        detail: str | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        trainer_kwargs: Mapping[str, Any] | None = None,
    ) -> tuple[int, int]:
        """Train one stage; returns (epochs, steps) trained.

        ``max_epochs`` / ``max_steps`` (one of them, else ``default`` = (unit, length)) set the
        length; the progress bar counts in that unit and is labelled with the method, the stage
        and ``detail`` (e.g. the candidate of a search). The stage's history is appended to the
        model's (with a ``stage`` column for multi-stage methods), so continued or multi-stage
        training keeps one history.
        """
        steps_per_epoch = datamodule.n_batches()
        n_epochs, unit, total = training_length(
            max_epochs, max_steps, steps_per_epoch, default=default
        )
        label = self._method_name
        if stage is not None:
            label += f" stage {stage}" + (f"/{n_stages}" if n_stages else "")
        if detail:
            label += f", {detail}"
        previous = self.history_ if self.is_trained_ else None
        self.is_trained_ = False
        fit(
            self,
            plan,
            datamodule,
            n_epochs=n_epochs,
            label=label,
            unit=unit,
            total=total,
            seed=seed,
            accelerator=accelerator,
            devices=devices,
            trainer_kwargs=trainer_kwargs,
            bfloat16_on_cpu=self._bfloat16_on_cpu,
        )
        history = dict(self.history_ or {})
        if stage is not None and history:
            n = max(len(frame) for frame in history.values())
            history["stage"] = pd.DataFrame({"stage": np.full(n, float(stage))})
        self.history_ = self._concat_history(previous, history)
        self.is_trained_ = True
        return n_epochs, n_epochs * steps_per_epoch

    # ------------------------------------------------------------------ inference
    def _input_matrix(self, modality: str, adata: AnnData | None):
        """Cells × registered-features matrix of ``modality`` (registered cells or new ones).

        New cells may hold the registered features, or the user-level features the model's
        stored preprocessing starts from (e.g. raw peaks for a model of gene activity); those
        are mapped exactly as the training data were.
        """
        self._check_modality(modality)
        if adata is None:
            source = self.sources[modality]
            X = source.manager.get_from_registry(REGISTRY_KEYS.X_KEY)
            if source.indices.size == X.shape[0] and np.array_equal(
                source.indices, np.arange(X.shape[0])
            ):
                return X
            return X[source.indices]
        if not isinstance(adata, AnnData) or adata.n_obs == 0:
            what = "an AnnData with 0 cells" if isinstance(adata, AnnData) else type(adata).__name__
            raise ValueError(
                f"`adata` must be a non-empty AnnData of modality {modality!r}, got {what}."
            )
        transform = ((self.input_state_ or {}).get("transforms") or {}).get(modality)
        entry = self.sources[modality].manager.data_registry[REGISTRY_KEYS.X_KEY]
        from_obsm = entry["attr_name"] == "obsm"
        if from_obsm and entry["attr_key"] in adata.obsm:
            return self._new_rep(modality, adata, entry["attr_key"])
        registered = self.var_names_of(modality)
        has_registered = not from_obsm and registered.isin(adata.var_names).all()
        if transform is not None and not has_registered:
            return apply_transform(transform, adata, where=f"`adata` ({modality})")
        if from_obsm:
            raise ValueError(
                f"The model embeds {modality!r} cells from `.obsm[{entry['attr_key']!r}]`, which "
                f"`adata` lacks (it has {list(adata.obsm.keys())}); pass cells with that "
                "embedding."
            )
        layer = entry["attr_key"] if entry["attr_name"] == "layers" else None
        v.check_unique_names(adata, where="`adata`")
        missing = registered.difference(adata.var_names)
        if len(missing):
            raise ValueError(
                f"`adata` lacks {len(missing)} of the {len(registered)} features the model "
                f"uses for {modality!r} (e.g. {list(missing[:5])}); pass cells measured on those "
                "features."
            )
        if not adata.var_names.equals(registered):
            adata = adata[:, registered]
        return v.get_matrix(adata, layer)

    def _new_rep(self, modality: str, adata: AnnData, key: str) -> np.ndarray:
        rep = v.check_rep(adata, key, argname="adata.obsm key")
        n_dims = self.modality_adata(modality).obsm[key].shape[1]
        if rep.shape[1] != n_dims:
            raise ValueError(
                f"`adata.obsm[{key!r}]` has {rep.shape[1]} dimensions; the model was trained on "
                f"{n_dims}."
            )
        return rep

    @torch.inference_mode()
    def _apply_in_chunks(
        self,
        X,
        fn: Callable[[torch.Tensor], torch.Tensor],
        width: int,
        *,
        batch_size: int = 4096,
        sparse_input: bool = False,
    ) -> np.ndarray:
        """``fn`` over row chunks of ``X`` (sparse stays sparse until its chunk) in eval mode.

        The output is preallocated: a list of chunks plus a concatenation would hold it twice.
        With ``sparse_input`` a sparse chunk reaches ``fn`` as a CSR tensor.
        """
        v.check_positive_int(batch_size, argname="batch_size")
        self.module.eval()
        device = self.module.device
        out = np.empty((X.shape[0], width), dtype=np.float32)
        for start in range(0, X.shape[0], batch_size):
            chunk = X[start : start + batch_size]
            out[start : start + chunk.shape[0]] = (
                fn(to_tensor(chunk, device, keep_sparse=sparse_input)).float().cpu().numpy()
            )
        return out

    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        modality: str | None = None,
        *,
        batch_size: int = 4096,
    ) -> np.ndarray | dict[str, np.ndarray]:
        """Joint embedding of cells.

        Parameters
        ----------
        adata
            New cells of ``modality`` (with the registered features, or the raw features the
            model's stored preprocessing starts from); ``None`` for the registered cells.
        modality
            The modality to embed. ``None`` (with ``adata=None``) embeds every registered
            modality and returns ``{modality: array}``.
        batch_size
            Cells per forward pass.

        Returns
        -------
        ``(n_cells, n_latent)`` float32 array, or ``{modality: array}``.
        """
        self._check_if_trained(warn=True)
        if modality is None:
            if adata is not None:
                raise ValueError("Pass `modality=` with `adata` to say which modality it holds.")
            return {
                m: self.get_latent_representation(modality=m, batch_size=batch_size)
                for m in self.modalities
            }
        self._check_modality(modality)
        return self._embed(self._input_matrix(modality, adata), modality, batch_size)

    def _embed(self, X, modality: str, batch_size: int) -> np.ndarray:
        raise NotImplementedError


def to_tensor(X, device, *, keep_sparse: bool = False) -> torch.Tensor:
    """A chunk of a scipy/numpy matrix as a float32 tensor on ``device``.

    With ``keep_sparse`` a sparse chunk becomes a CSR tensor; otherwise it is densified.
    """
    if sparse.issparse(X):
        if not keep_sparse:
            return torch.as_tensor(X.toarray(), dtype=torch.float32, device=device)
        X = sparse.csr_matrix(X, dtype=np.float32)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(
                torch.from_numpy(X.indptr.astype(np.int64)),
                torch.from_numpy(X.indices.astype(np.int64)),
                torch.from_numpy(X.data),
                size=X.shape,
                device=device,
                check_invariants=False,
            )
    return torch.as_tensor(np.asarray(X, dtype=np.float32), device=device)


@contextlib.contextmanager
def _restored_on_failure(data: AnnData | MuData | None) -> Iterator[None]:
    """On an exception, drop the ``obs`` columns and ``uns`` keys the block added to ``data``."""
    if data is None:
        yield
        return
    parts = [data, *(data.mod.values() if isinstance(data, MuData) else [])]
    before = [(set(p.obs.columns), set(p.uns.keys())) for p in parts]
    try:
        yield
    except BaseException:
        for part, (columns, keys) in zip(parts, before):
            added = [c for c in part.obs.columns if c not in columns]
            if added:
                part.obs.drop(columns=added, inplace=True)
            for key in [k for k in part.uns.keys() if k not in keys]:
                del part.uns[key]
        raise
