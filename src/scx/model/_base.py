"""Base class for scvi-tools models trained on several unpaired modalities.

scvi-tools' default registration assumes one AnnData (or a fully paired MuData) per model. For
diagonal integration every modality has its own cells, so this base registers

* one manager per modality (``mdata.mod[m]``: X/layer, batch, labels), which feeds that
  modality's mini-batches and gives its ``summary_stats``;
* one MuData-level manager without fields and with the paired-MuData check switched off, which
  makes ``BaseModelClass.__init__``, ``registry_``, ``save`` and ``load`` work unchanged.

A single AnnData split by an ``.obs`` key (several datasets over the same genes, as Portal
uses) is registered with one manager and one modality per category.
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from scvi import REGISTRY_KEYS, settings
from scvi.data import AnnDataManager
from scvi.data._manager import AnnDataManagerValidationCheck
from scvi.data.fields import CategoricalObsField, LayerField, ObsmField
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner

from scx._validation import check_rep, get_matrix
from scx.data import ModalitySource, MultiModalDataModule

logger = logging.getLogger(__name__)

MODALITY_KEY = "modality"

# Per-modality registries saved with a model; set by ``load`` so that ``setup_mudata`` re-registers
# batches and labels with the training-time category codes.
_LOADING_MODALITY_REGISTRIES: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "_LOADING_MODALITY_REGISTRIES", default=None
)


def _per_modality(value: Any, modalities: Sequence[str], argname: str) -> dict[str, Any]:
    """Expand a setting given once or as ``{modality: value}`` to every modality."""
    if isinstance(value, dict):
        unknown = set(value) - set(modalities)
        if unknown:
            raise ValueError(
                f"`{argname}` names modalities {sorted(unknown)} that are not registered; "
                f"registered modalities: {list(modalities)}."
            )
        return {m: value.get(m) for m in modalities}
    return dict.fromkeys(modalities, value)


class MultiModalModelBase(BaseModelClass):
    """Shared registration, data loading, training and inference for unpaired models.

    Subclasses add fields in ``_modality_fields``, build their module in ``__init__`` (after
    ``super().__init__(data)``) and implement ``train``.
    """

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
        """Fields registered for every modality; extend in subclasses."""
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
        layers = _per_modality(layer, modalities, "layer")
        labels = _per_modality(labels_key, modalities, "labels_key")
        batches = _per_modality(batch_key, modalities, "batch_key")
        reps = _per_modality(use_rep, modalities, "use_rep")
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
        if modality_key not in adata.obs:
            raise ValueError(
                f"`modality_key={modality_key!r}` is not a column of `adata.obs`; available: "
                f"{list(adata.obs.columns)}."
            )
        fields = [
            *cls._modality_fields(modality_key, layer, labels_key, batch_key, use_rep),
            CategoricalObsField(MODALITY_KEY, modality_key),
        ]
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    @classmethod
    def load(cls, dir_path: str, adata: AnnData | MuData | None = None, **kwargs):
        """Load a saved model (see :meth:`scvi.model.base.BaseModelClass.load`).

        The per-modality category codes (labels, batches) of training time are restored.
        """
        prefix = kwargs.get("prefix") or ""
        saved = torch.load(
            os.path.join(dir_path, f"{prefix}model.pt"), map_location="cpu", weights_only=False
        )
        token = _LOADING_MODALITY_REGISTRIES.set(saved["attr_dict"].get("mod_registries_"))
        try:
            return super().load(dir_path, adata=adata, **kwargs)
        finally:
            _LOADING_MODALITY_REGISTRIES.reset(token)

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

    # ------------------------------------------------------------------ helpers
    @property
    def modalities(self) -> list[str]:
        """Registered modality names."""
        return list(self.sources)

    def modality_adata(self, modality: str) -> AnnData:
        """The registered AnnData that holds ``modality``'s cells."""
        return self.sources[modality].manager.adata

    def _for_each_modality(self, method, adata: AnnData | None, **kwargs) -> dict[str, Any]:
        """``{modality: method(modality=modality, **kwargs)}`` over the registered modalities.

        Backs the ``modality=None`` form of per-modality methods, where new cells (``adata``)
        would be ambiguous.
        """
        if adata is not None:
            raise ValueError("Pass `modality=` with `adata` to say which modality it holds.")
        return {m: method(modality=m, **kwargs) for m in self.modalities}

    def categorical_mapping(self, modality: str, registry_key: str) -> np.ndarray:
        """Category codes → values of a registered categorical field of ``modality``."""
        manager = self.sources[modality].manager
        return np.asarray(manager.get_state_registry(registry_key).categorical_mapping)

    def var_names_of(self, modality: str):
        """Feature names of ``modality``."""
        return self.modality_adata(modality).var_names

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

    def _make_datamodule(
        self,
        batch_size: int | dict[str, int],
        *,
        train_size: float = 1.0,
        validation_size: float | None = None,
        steps_per_epoch: int | None = None,
        replacement: bool = False,
        sources: dict[str, ModalitySource] | None = None,
        **kwargs,
    ) -> MultiModalDataModule:
        return MultiModalDataModule(
            self.sources if sources is None else sources,
            batch_size=batch_size,
            train_size=train_size,
            validation_size=validation_size,
            steps_per_epoch=steps_per_epoch,
            replacement=replacement,
            seed=settings.seed if settings.seed is not None else 0,
            **kwargs,
        )

    def _run_training(
        self,
        training_plan,
        datamodule: MultiModalDataModule,
        max_epochs: int,
        *,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        flush_denormal: bool = True,
        **trainer_kwargs,
    ) -> None:
        """Fit ``training_plan`` on ``datamodule`` with scvi's TrainRunner."""
        if flush_denormal:
            # subnormal floats slow CPU matmuls many-fold; flushing them does not change results
            torch.set_flush_denormal(True)
        # our samplers shard by rank themselves; Lightning must not swap them for its own
        trainer_kwargs.setdefault("use_distributed_sampler", False)
        trainer_kwargs.setdefault("benchmark", False)
        trainer_kwargs.setdefault("enable_checkpointing", False)
        # only epoch-level metrics are logged; this silences Lightning's short-epoch warning
        trainer_kwargs.setdefault("log_every_n_steps", min(10, datamodule.n_batches()))
        check_val = trainer_kwargs.pop("check_val_every_n_epoch", None)
        if datamodule.n_val > 0 and check_val is None:
            check_val = 1
        runner = TrainRunner(
            self,
            training_plan=training_plan,
            data_splitter=datamodule,
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            check_val_every_n_epoch=check_val,
            **trainer_kwargs,
        )
        # TrainRunner leaves the module in eval mode; a later fit must train dropout/BatchNorm
        self.module.train()
        runner()

    # ------------------------------------------------------------------ inference input
    def _input_matrix(self, modality: str, adata: AnnData | None):
        """Cells × registered-features matrix of ``modality`` (registered data or new cells)."""
        if adata is None:
            source = self.sources[modality]
            X = source.manager.get_from_registry(REGISTRY_KEYS.X_KEY)
            if source.indices.size == X.shape[0] and np.array_equal(
                source.indices, np.arange(X.shape[0])
            ):
                return X
            return X[source.indices]
        if modality not in self.sources:
            raise ValueError(
                f"`modality={modality!r}` is not one of the model's modalities {self.modalities}."
            )
        entry = self.sources[modality].manager.data_registry[REGISTRY_KEYS.X_KEY]
        if not isinstance(adata, AnnData) or adata.n_obs == 0:
            raise ValueError("`adata` must be a non-empty AnnData.")
        if entry["attr_name"] == "obsm":
            rep = check_rep(adata, entry["attr_key"], argname="adata.obsm key")
            n_dims = self.modality_adata(modality).obsm[entry["attr_key"]].shape[1]
            if rep.shape[1] != n_dims:
                raise ValueError(
                    f"`adata.obsm[{entry['attr_key']!r}]` has {rep.shape[1]} dimensions; the "
                    f"model was trained on {n_dims}."
                )
            return rep
        registered = self.var_names_of(modality)
        layer = entry["attr_key"] if entry["attr_name"] == "layers" else None
        if not adata.var_names.equals(registered):
            missing = registered.difference(adata.var_names)
            if len(missing):
                raise ValueError(
                    f"`adata` lacks {len(missing)} of the {len(registered)} features the model "
                    f"was trained on (e.g. {list(missing[:5])}); pass data with those features."
                )
            return get_matrix(adata[:, registered], layer)
        return get_matrix(adata, layer)
