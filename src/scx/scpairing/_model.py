"""scPairing model: registration of a paired bridge, training, embeddings of unpaired cells."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from scvi import REGISTRY_KEYS

from scx import _validation as v
from scx.base import MultiModalModelBase

from ._inputs import apply_input
from ._module import SCPAIRINGModule
from ._training_plan import SCPairingTrainingPlan

logger = logging.getLogger(__name__)


def check_modality(mdata: MuData, name, *, argname: str) -> AnnData:
    """``mdata.mod[name]`` with at least one cell (features may be absent: ``use_rep`` inputs)."""
    if not isinstance(name, str) or name not in mdata.mod:
        raise ValueError(
            f"`{argname}={name!r}` is not a modality of the MuData; its modalities are "
            f"{list(mdata.mod.keys())}. Pass one of those names."
        )
    adata = mdata.mod[name]
    if adata.n_obs == 0:
        raise ValueError(
            f"Modality `{argname}={name!r}` has no cells; the bridge needs paired cells."
        )
    return adata


def check_paired(mdata: MuData, modalities: Sequence[str]) -> None:
    """The modalities must hold the same cells in the same order (a paired bridge)."""
    first = mdata.mod[modalities[0]]
    for m in modalities[1:]:
        other = mdata.mod[m]
        if other.n_obs != first.n_obs or not other.obs_names.equals(first.obs_names):
            shared = len(first.obs_names.intersection(other.obs_names))
            raise ValueError(
                f"scPairing trains on a paired bridge: modalities {modalities[0]!r} "
                f"({first.n_obs} cells) and {m!r} ({other.n_obs} cells) must hold the same "
                f"cells in the same order, but their obs_names differ ({shared} shared). Subset "
                f"both to the shared cells in one order, e.g. `cells = "
                f"mdata[{modalities[0]!r}].obs_names.intersection(mdata[{m!r}].obs_names)` and "
                "`mdata.mod[m] = mdata.mod[m][cells]` for every modality."
            )


def check_settings(
    *,
    n_latent: int,
    n_hidden: int,
    dropout: float,
    loss_method: str,
    combine: str,
    adversarial: str,
    weights: dict[str, float],
    temperature: float,
    cap_temperature: float | None,
) -> None:
    """Validate scPairing's hyper-parameters before any work is done."""
    v.check_positive_int(n_latent, argname="n_latent", minimum=2)
    v.check_positive_int(n_hidden, argname="n_hidden")
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be a number in [0, 1), got {dropout!r}.")
    for name, value, allowed in [
        ("loss_method", loss_method, ("clip", "debiased_clip", "sigmoid")),
        ("combine", combine, ("dropout", "average")),
        ("adversarial", adversarial, ("subtract", "confusion")),
    ]:
        if value not in allowed:
            raise ValueError(f"`{name}` must be one of {list(allowed)}, got {value!r}.")
    for name, value in weights.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float | np.number)
            or not np.isfinite(value)
            or value < 0
        ):
            raise ValueError(f"`{name}` must be a finite weight ≥ 0, got {value!r}.")
    for name, value in (("temperature", temperature), ("cap_temperature", cap_temperature)):
        if value is None and name == "cap_temperature":
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError(f"`{name}` must be a positive number, got {value!r}.")


class SCPAIRING(MultiModalModelBase):
    """scPairing: contrastive hyperspherical embedding of a paired multiomics bridge.

    Register a paired MuData (2 or 3 modalities holding the same cells in the same order) with
    :meth:`setup_mudata`, giving each modality's low-dimensional input (``use_rep``: PCA, LSI,
    an scVI latent, …, or a ``layer`` used as is). After training, each modality's encoder embeds
    cells of that modality alone onto the unit sphere, so unpaired cells can be compared across
    modalities and paired (:func:`scx.tl.pair_cells`).

    Parameters
    ----------
    mdata
        Paired MuData registered with :meth:`setup_mudata`.
    n_latent
        Embedding dimension (10).
    n_hidden
        Hidden width of encoders and decoders (128).
    dropout
        Dropout (0.1).
    norm
        Normalisation of encoders and decoders (``"batch"``).
    loss_method
        ``"clip"`` (default), ``"debiased_clip"`` or ``"sigmoid"``.
    combine
        ``"dropout"`` (default) or ``"average"`` combination of the embeddings during training.
    modality_discriminative, batch_discriminative
        Modality (True) and batch (False; needs ``batch_key``) discriminators.
    modality_weight, batch_weight, cosine_weight, kl_weight
        Loss weights (1, 1, 1, 1e-3).
    temperature
        Initial inverse temperature of the contrastive logits (1/0.07).
    learn_temperature
        Learn the temperature (True).
    cap_temperature
        Upper bound on the inverse temperature (``None``).
    adversarial
        ``"subtract"`` (reference) or ``"confusion"`` (bounded); see
        :class:`~scx.scpairing.SCPAIRINGModule`.

    Examples
    --------
    >>> scx.model.SCPAIRING.setup_mudata(mdata, use_rep={"rna": "X_pca", "atac": "X_lsi"})
    >>> model = scx.model.SCPAIRING(mdata)
    >>> model.train()
    >>> z_rna = model.get_latent_representation(rna_query, modality="rna")
    """

    _module_cls = SCPAIRINGModule
    _training_plan_cls = SCPairingTrainingPlan

    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        modalities: Sequence[str] | None = None,
        layer: str | dict[str, str | None] | None = None,
        labels_key: str | dict[str, str | None] | None = None,
        batch_key: str | None = None,
        use_rep: str | dict[str, str | None] | None = None,
        **kwargs,
    ) -> None:
        """Register a paired MuData (the bridge).

        Parameters
        ----------
        mdata
            MuData whose modalities hold the same cells in the same order.
        modalities
            Two or three modalities, in order (all by default).
        layer
            Layer used as the input where no ``use_rep`` is given (``None``: ``.X``).
        labels_key
            Not used by scPairing (accepted for the shared registration); must be ``None``.
        batch_key
            ``.obs`` column of the first modality with batches, for the batch discriminator.
        use_rep
            ``.obsm`` key of each modality's low-dimensional input, once or per modality.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.
        """
        mdata = v.check_mudata(mdata)
        names = list(modalities) if modalities is not None else list(mdata.mod.keys())
        if len(names) not in (2, 3):
            raise ValueError(
                f"scPairing needs 2 or 3 modalities (e.g. RNA + ATAC, or RNA + ATAC + protein), "
                f"got {names}; pass `modalities=[...]`."
            )
        for m in names:
            check_modality(mdata, m, argname="modalities")
        if labels_key is not None:
            raise ValueError("scPairing is unsupervised: pass `labels_key=None`.")
        check_paired(mdata, names)
        if isinstance(batch_key, dict):  # as recorded by the shared registration (on load)
            batch_key = batch_key.get(names[0])
        reps = use_rep if isinstance(use_rep, dict) else dict.fromkeys(names, use_rep)
        for m in names:
            if reps.get(m) is not None:
                v.check_rep(mdata.mod[m], reps[m], argname=f"use_rep[{m!r}]")
        if batch_key is not None:
            v.check_obs_key(mdata.mod[names[0]], batch_key, argname="batch_key")
        super().setup_mudata(
            mdata,
            modalities=names,
            layer=layer,
            labels_key=None,
            batch_key={names[0]: batch_key} if batch_key is not None else None,
            use_rep=use_rep,
            **kwargs,
        )

    def __init__(
        self,
        mdata: MuData,
        n_latent: int = 10,
        n_hidden: int = 128,
        dropout: float = 0.1,
        norm: Literal["batch", "layer"] | None = "batch",
        loss_method: Literal["clip", "debiased_clip", "sigmoid"] = "clip",
        combine: Literal["dropout", "average"] = "dropout",
        modality_discriminative: bool = True,
        batch_discriminative: bool = False,
        modality_weight: float = 1.0,
        batch_weight: float = 1.0,
        cosine_weight: float = 1.0,
        kl_weight: float = 1e-3,
        temperature: float = 1 / 0.07,
        learn_temperature: bool = True,
        cap_temperature: float | None = None,
        adversarial: Literal["subtract", "confusion"] = "subtract",
    ):
        super().__init__(mdata)
        if not isinstance(mdata, MuData):
            raise ValueError("SCPAIRING is registered on a paired MuData (`setup_mudata`).")
        check_paired(mdata, self.modalities)
        check_settings(
            n_latent=n_latent,
            n_hidden=n_hidden,
            dropout=dropout,
            loss_method=loss_method,
            combine=combine,
            adversarial=adversarial,
            weights={
                "modality_weight": modality_weight,
                "batch_weight": batch_weight,
                "cosine_weight": cosine_weight,
                "kl_weight": kl_weight,
            },
            temperature=temperature,
            cap_temperature=cap_temperature,
        )
        first = self.modalities[0]
        n_batches = int(self.sources[first].manager.summary_stats.get("n_batch", 1))
        if batch_discriminative and n_batches < 2:
            logger.info("One batch only: the batch discriminator is disabled.")
        self.module = self._module_cls(
            n_inputs=[self._input_width(m) for m in self.modalities],
            n_latent=n_latent,
            n_hidden=(n_hidden,),
            norm=norm,
            dropout=dropout,
            n_batches=n_batches,
            modality_discriminative=modality_discriminative,
            batch_discriminative=batch_discriminative,
            modality_weight=modality_weight,
            batch_weight=batch_weight,
            cosine_weight=cosine_weight,
            kl_weight=kl_weight,
            loss_method=loss_method,
            combine=combine,
            temperature=temperature,
            learn_temperature=learn_temperature,
            cap_temperature=cap_temperature,
            adversarial=adversarial,
        )
        # {modality: projection dict} when scx.tl.scpairing computed the inputs (PCA / LSI);
        # new cells of that modality are then projected from their counts the same way
        self.input_transforms_: dict[str, dict | None] = dict.fromkeys(self.modalities)
        self._model_summary_string = (
            f"scPairing: modalities {self.modalities}, inputs "
            f"{[self._input_width(m) for m in self.modalities]} dims, n_latent {n_latent}, "
            f"loss {loss_method}"
        )
        self.init_params_ = self._get_init_params(locals())

    def _input_width(self, modality: str) -> int:
        X = self._input_matrix(modality, None)
        return int(X.shape[1])

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_epochs: int = 300,
        *,
        batch_size: int = 2000,
        lr: float = 5e-3,
        lr_decay: float = 6e-5,
        lr_discriminator: float = 1e-3,
        weight_decay: float = 0.0,
        clip_norm: float | None = 50.0,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        datamodule_kwargs: dict | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train on the bridge (the reference's schedule).

        Parameters
        ----------
        max_epochs
            Passes over the bridge (300, as in the reference's tutorials).
        batch_size
            Paired cells per step (2,000); a bridge smaller than that is one batch.
        lr, lr_decay
            Initial learning rate of the main Adam (5e-3) and its per-step exponential decay
            (6e-5).
        lr_discriminator
            Discriminators' learning rate (1e-3).
        weight_decay
            Weight decay of the decoders (0).
        clip_norm
            Gradient-norm clipping of the main step (50).
        accelerator, devices
            Lightning accelerator and devices.
        datamodule_kwargs
            Extra arguments of :class:`~scx.data.MultiModalDataModule`.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer`.
        """
        v.check_positive_int(max_epochs, argname="max_epochs")
        v.check_positive_int(batch_size, argname="batch_size", minimum=2)
        n_obs = self.sources[self.modalities[0]].n_obs
        if n_obs < 2:
            raise ValueError("The bridge needs at least 2 paired cells to contrast.")
        datamodule = self._make_datamodule(
            min(batch_size, n_obs), paired=True, **(datamodule_kwargs or {})
        )
        plan = self._training_plan_cls(
            self.module,
            lr=lr,
            lr_decay=lr_decay,
            lr_discriminator=lr_discriminator,
            weight_decay=weight_decay,
            clip_norm=clip_norm,
        )
        self._run_training(
            plan, datamodule, max_epochs, accelerator=accelerator, devices=devices, **trainer_kwargs
        )
        self.is_trained_ = True
        self.module.eval()

    # ------------------------------------------------------------------ inference
    def _check_modality(self, modality: str | None) -> str:
        if modality is None:
            return self.modalities[0]
        if modality not in self.modalities:
            raise ValueError(
                f"`modality={modality!r}` is not one of the model's modalities {self.modalities}."
            )
        return modality

    def model_inputs(self, adata: AnnData | None = None, modality: str | None = None) -> np.ndarray:
        """The low-dimensional input of ``modality`` for the bridge or for new cells.

        New cells are projected with the bridge's fitted PCA / LSI when scx computed the inputs
        (their counts are read from the same layer); otherwise their ``.obsm`` entry under the
        registered key is used, after checking its dimension.
        """
        modality = self._check_modality(modality)
        transform = self.input_transforms_.get(modality) if self.input_transforms_ else None
        if adata is not None and transform is not None:
            if not isinstance(adata, AnnData) or adata.n_obs == 0:
                raise ValueError("`adata` must be a non-empty AnnData.")
            return apply_input(transform, adata, where=f"`adata` ({modality})")
        X = self._input_matrix(modality, adata)
        X = X.toarray() if sparse.issparse(X) else np.asarray(X)
        return np.asarray(X, dtype=np.float32)

    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        modality: str | None = None,
        batch_size: int = 8192,
    ) -> np.ndarray:
        """Unit-norm embedding of one modality's cells (the bridge's, or new unpaired ones).

        Parameters
        ----------
        adata
            Cells measured in ``modality`` only (``None``: the bridge's cells).
        modality
            Which encoder to use (default: the first modality).
        batch_size
            Cells per forward pass.

        Returns
        -------
        ``(n_cells, n_latent)`` float32 array with unit-length rows.
        """
        self._check_if_trained(warn=True)
        modality = self._check_modality(modality)
        x = self.model_inputs(adata, modality)
        k = self.modalities.index(modality)
        self.module.eval()
        device = self.module.device
        out = [
            self.module.embed_one(torch.as_tensor(x[s : s + batch_size], device=device), k).cpu()
            for s in range(0, x.shape[0], batch_size)
        ]
        return torch.cat(out).numpy() if out else np.empty((0, self.module.n_latent), np.float32)

    @torch.inference_mode()
    def get_cross_modality_prediction(
        self,
        source: str,
        target: str,
        adata: AnnData | None = None,
        batch_size: int = 8192,
    ) -> np.ndarray:
        """Predict ``target``'s low-dimensional input from ``source``'s cells.

        ``source``'s embedding is decoded by ``target``'s decoder (the reference's prediction
        without count decoders).
        """
        source, target = self._check_modality(source), self._check_modality(target)
        z = self.get_latent_representation(adata, source, batch_size)
        k = self.modalities.index(target)
        self.module.eval()
        device = self.module.device
        out = [
            self.module.decoders[k](torch.as_tensor(z[s : s + batch_size], device=device)).cpu()
            for s in range(0, z.shape[0], batch_size)
        ]
        return torch.cat(out).numpy()

    def get_temperature(self) -> float:
        """The learned inverse temperature of the contrastive logits."""
        return float(self.module.scale().detach().cpu())

    def _registered_key(self, modality: str) -> str | None:
        entry = self.sources[modality].manager.data_registry[REGISTRY_KEYS.X_KEY]
        return entry["attr_key"] if entry["attr_name"] == "obsm" else None
