"""scPairing model: the paired bridge and its inputs, training, embeddings of unpaired cells."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from scx import _validation as v
from scx.base import MultiModalModelBase, train_docs
from scx.pp import apply_transform, feature_transform, fit_lsi, fit_pca

from ._module import SCPAIRINGModule
from ._training_plan import SCPairingTrainingPlan

logger = logging.getLogger(__name__)

Preprocess = Literal["pca", "lsi", "none"]
PREPROCESS = ("pca", "lsi", "none")
#: Paired cells per step (the reference's), lowered for a smaller bridge.
DEFAULT_BATCH_SIZE = 2000


def _dropout(value: Any, argname: str) -> None:
    """Checker: a dropout probability in [0, 1)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.number)
        or not 0 <= value < 1
    ):
        raise ValueError(f"`{argname}` must be a number in [0, 1), got {value!r}.")


class SCPAIRING(MultiModalModelBase):
    """scPairing: contrastive hyperspherical embedding of a paired multiomics bridge.

    Each modality of a paired bridge (2 or 3 modalities holding the same cells in the same
    order) has an encoder from its low-dimensional input (PCA, LSI, an scVI latent, …) onto the
    unit sphere. After training each encoder embeds cells of its modality alone, so unpaired
    cells can be compared across modalities and paired (:func:`scx.tl.pair_cells`).

    Build it with :func:`scx.tl.scpairing` (which computes the PCA / LSI inputs and keeps their
    projections), or register the low-dimensional inputs yourself with :meth:`setup_mudata` and
    call the class.

    Parameters
    ----------
    mdata
        Paired MuData registered with :meth:`setup_mudata`.
    n_latent
        Embedding dimension (10); embeddings lie on the unit sphere of this dimension.
    n_hidden
        Hidden width of encoders and decoders (128).
    dropout
        Dropout of encoders, decoders and the concentration network, in [0, 1) (0.1).
    norm
        Normalisation of encoders and decoders: ``"batch"`` (default), ``"layer"`` or ``None``.
    loss_method
        Contrastive loss: ``"clip"`` (default), ``"debiased_clip"`` or ``"sigmoid"`` (SigLIP).
    combine
        How training combines the modalities' embeddings into the posterior mean:
        ``"dropout"`` (default; each coordinate from a random modality) or ``"average"``.
    modality_discriminative
        Train a modality discriminator against the encoders (True).
    batch_discriminative
        Train a batch discriminator (False; needs ``batch_key`` with two or more batches).
    modality_weight, batch_weight, cosine_weight, kl_weight
        Loss weights, each finite and ≥ 0 (1, 1, 1, 1e-3).
    temperature
        Initial inverse temperature of the contrastive logits, > 0 (1/0.07).
    learn_temperature
        Learn the temperature (True).
    cap_temperature
        Upper bound on the inverse temperature, > 0 (``None``: none).
    adversarial
        ``"subtract"`` (the reference: the encoders maximise the discriminators'
        cross-entropy) or ``"confusion"`` (bounded: they minimise the cross-entropy to the
        uniform prediction); see :class:`~scx.scpairing.SCPAIRINGModule`.
    seed
        Seed of the weight initialisation (and, by default, of training).

    Examples
    --------
    >>> scx.model.SCPAIRING.setup_mudata(bridge, use_rep={"rna": "X_pca", "atac": "X_lsi"})
    >>> model = scx.model.SCPAIRING(bridge)
    >>> model.train()
    >>> z_rna = model.get_latent_representation(rna_query, modality="rna")
    """

    _method_name = "scPairing"
    _module_cls = SCPAIRINGModule
    _training_plan_cls = SCPairingTrainingPlan
    _setting_checks: ClassVar[dict[str, Any]] = {
        "n_latent": v.positive_int(minimum=2),
        "n_hidden": v.positive_int(),
        "dropout": _dropout,
        "norm": v.optional(v.choice("batch", "layer")),
        "loss_method": v.choice("clip", "debiased_clip", "sigmoid"),
        "combine": v.choice("dropout", "average"),
        "modality_discriminative": v.boolean,
        "batch_discriminative": v.boolean,
        "modality_weight": v.weight,
        "batch_weight": v.weight,
        "cosine_weight": v.weight,
        "kl_weight": v.weight,
        "temperature": v.positive,
        "learn_temperature": v.boolean,
        "cap_temperature": v.optional(v.positive),
        "adversarial": v.choice("subtract", "confusion"),
        "lr_decay": v.weight,
        "lr_discriminator": v.positive,
    }
    _data_checks: ClassVar[dict[str, Any]] = {
        "preprocess": v.per_modality(v.optional(v.choice(*PREPROCESS))),
        "batch_key": v.optional(v.name("an `.obs` column of the first modality")),
    }

    # ------------------------------------------------------------------ inputs
    @classmethod
    def _check_inputs(
        cls,
        data,
        *,
        settings: Mapping[str, Any],
        modalities,
        use_rep,
        preprocess,
        layer,
        n_comps,
        n_top_genes,
        batch_key,
    ) -> None:
        """Every check of the bridge and the data arguments, before any work."""
        v.check_mudata(data, argname="data")
        names = v.check_modality_names(
            modalities,
            counts=(2, 3),
            roles=_ROLES,
        )
        for m in names:
            v.check_modality(data, m, argname="modalities", require_features=False)
        check_paired(data, names)
        v.check_positive_int(n_comps, argname="n_comps", minimum=2)
        v.check_positive_int(n_top_genes, argname="n_top_genes", minimum=2)
        if data.mod[names[0]].n_obs < 2:
            raise ValueError(
                f"The bridge has {data.mod[names[0]].n_obs} paired cell; scPairing contrasts "
                "cells within a mini-batch and needs at least 2."
            )
        _check_training_cells(data.mod[names[0]].n_obs, settings["train_size"])
        v.check_batch_size_fits(
            settings["batch_size"],
            {m: data.mod[m].n_obs for m in names},
            train_size=settings["train_size"],
        )
        if batch_key is not None:
            v.check_obs_key(
                data.mod[names[0]], batch_key, argname="batch_key", where=f" of {names[0]!r}"
            )
        elif settings.get("batch_discriminative"):
            raise ValueError(
                "`batch_discriminative=True` trains a batch discriminator and needs "
                "`batch_key`, the `.obs` column of the batches; pass it, or leave "
                "`batch_discriminative=False`."
            )
        plan = _resolve_inputs(data, names, use_rep, preprocess, layer)
        for m, (how, arg) in plan.items():
            adata = data.mod[m]
            v.check_unique_names(adata, where=f"Modality {m!r}")
            if how == "rep":
                v.check_rep(adata, arg, argname=f"use_rep[{m!r}]")
                continue
            if adata.n_vars == 0:
                raise ValueError(
                    f"Modality {m!r} has no features to compute its `preprocess={how!r}` input "
                    f"from; pass `use_rep={{{m!r}: '<obsm key>'}}` instead."
                )
            X = v.get_matrix(adata, arg, argname=f"layer[{m!r}]")
            v.check_counts(
                X, argname=f"data.mod[{m!r}] (layer={arg!r})", allow_negative=how == "none"
            )

    @classmethod
    def _fit_inputs(
        cls,
        data: MuData,
        *,
        seed: int,
        modalities: Sequence[str] = ("rna", "atac"),
        use_rep: str | dict[str, str | None] | None = None,
        preprocess: Preprocess | dict[str, Preprocess | None] | None = None,
        layer: str | dict[str, str | None] | None = None,
        n_comps: int = 10,
        n_top_genes: int = 2000,
        batch_key: str | None = None,
    ) -> dict:
        """Fit each modality's low-dimensional input on the bridge.

        Parameters
        ----------
        data
            Paired MuData (the bridge): its modalities hold the same cells in the same order.
        modalities
            The 2 or 3 modalities to embed, in order (e.g. ``("rna", "atac", "prot")``).
        use_rep
            ``.obsm`` key of a modality's low-dimensional input (PCA, LSI, an scVI / PeakVI
            latent, …), once for all or ``{modality: key}``; new cells must then carry the same
            key with the same width.
        preprocess
            Input computed for modalities without ``use_rep`` (once or per modality; inferred
            from the modality name by default: ``rna`` → ``"pca"``, ``atac`` → ``"lsi"``):
            ``"pca"`` (counts normalised to 10⁴, log1p, highly variable genes, PCA, through
            scanpy), ``"lsi"`` (TF-IDF and LSI with muon's formulas) or ``"none"`` (the matrix
            as is, e.g. CLR proteins). The fitted projection is kept, so new cells are mapped
            from their counts exactly like the bridge.
        layer
            Layer with the counts for ``preprocess`` (``None``: ``.X``), once or per modality.
        n_comps
            Components of the computed PCA / LSI (10, as in the reference's tutorial).
        n_top_genes
            Highly variable genes of the PCA (2,000; all genes when there are fewer).
        batch_key
            ``.obs`` column of the first modality with batches, for ``batch_discriminative``.
        """
        names = v.check_modality_names(
            modalities,
            counts=(2, 3),
            roles=_ROLES,
        )
        plan = _resolve_inputs(data, names, use_rep, preprocess, layer)
        transforms = {}
        for m, (how, arg) in plan.items():
            adata = data.mod[m]
            if how == "pca":
                X = v.get_matrix(adata, arg)
                _, transforms[m] = fit_pca(
                    X,
                    adata.var_names,
                    n_comps=n_comps,
                    target_sum=1e4,
                    n_top_genes=n_top_genes,
                    layer=arg,
                    seed=seed,
                )
            elif how == "lsi":
                X = v.get_matrix(adata, arg)
                _, transforms[m] = fit_lsi(
                    X, adata.var_names, n_comps=n_comps, layer=arg, seed=seed
                )
            elif how == "none":
                transforms[m] = feature_transform(adata.var_names, layer=arg)
        return {
            "args": {
                "modalities": names,
                "use_rep": {m: arg if how == "rep" else None for m, (how, arg) in plan.items()},
                "preprocess": {m: None if how == "rep" else how for m, (how, _) in plan.items()},
                "layer": {m: None if how == "rep" else arg for m, (how, arg) in plan.items()},
                "n_comps": n_comps,
                "n_top_genes": n_top_genes,
                "batch_key": batch_key,
            },
            "transforms": transforms,
        }

    @classmethod
    def _build_view(cls, data: MuData, state: Mapping) -> MuData:
        """Each modality's low-dimensional input of the bridge, from the fitted projections.

        ``use_rep`` inputs and ``"none"`` matrices are shared with the user's data; PCA / LSI
        coordinates are computed with the stored projection, so a model loaded onto the user's
        data sees the very inputs it was trained on, and new cells are mapped by the same
        function as the bridge.
        """
        args = state["args"]
        names = list(args["modalities"])
        v.check_mudata(data, argname="adata")
        for m in names:
            v.check_modality(data, m, argname="modalities", require_features=False)
        check_paired(data, names)
        batch_key = args["batch_key"]
        batches = None
        if batch_key is not None:
            batches = v.check_obs_key(
                data.mod[names[0]], batch_key, argname="batch_key", where=f" of {names[0]!r}"
            ).to_numpy()
        views = {}
        for m in names:
            adata = data.mod[m]
            obs = pd.DataFrame(index=adata.obs_names.copy())
            if batches is not None:
                obs[batch_key] = batches
            rep, kind = args["use_rep"][m], args["preprocess"][m]
            if rep is not None:
                rep_matrix = v.check_rep(adata, rep, argname=f"use_rep[{m!r}]")
                views[m] = AnnData(obs=obs, obsm={rep: rep_matrix}, shape=(adata.n_obs, 0))
                continue
            transform = state["transforms"][m]
            if kind == "none":
                views[m] = _shared_features(adata, transform, obs, m)
                continue
            X = apply_transform(transform, adata, where=f"modality {m!r}")
            var = pd.DataFrame(index=[f"scpairing_{kind}_{k + 1}" for k in range(X.shape[1])])
            views[m] = AnnData(X=X, obs=obs, var=var)
        return MuData(views)

    @classmethod
    def _register_view(cls, view: MuData, state: Mapping) -> None:
        args = state["args"]
        names = list(args["modalities"])
        cls.setup_mudata(
            view,
            modalities=names,
            use_rep={m: args["use_rep"][m] for m in names},
            layer={m: args["layer"][m] if args["preprocess"][m] == "none" else None for m in names},
            batch_key=args["batch_key"],
        )

    # ------------------------------------------------------------------ registration
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
        """Register a paired MuData (the bridge) with its low-dimensional inputs.

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
        names = v.check_modality_names(
            list(modalities) if modalities is not None else list(mdata.mod),
            counts=(2, 3),
            roles=_ROLES,
        )
        for m in names:
            v.check_modality(mdata, m, argname="modalities", require_features=False)
        if labels_key is not None and not (
            isinstance(labels_key, dict) and all(x is None for x in labels_key.values())
        ):
            raise ValueError("scPairing is unsupervised: pass `labels_key=None`.")
        check_paired(mdata, names)
        if isinstance(batch_key, dict):  # as recorded by the shared registration (on load)
            batch_key = batch_key.get(names[0])
        reps = v.check_per_modality(use_rep, names, argname="use_rep")
        for m in names:
            if reps[m] is not None:
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

    # ------------------------------------------------------------------ construction
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
        seed: int = 0,
    ):
        super().__init__(mdata)
        self._settings(locals())
        if not isinstance(mdata, MuData):
            raise ValueError("SCPAIRING is registered on a paired MuData (`setup_mudata`).")
        check_paired(mdata, self.modalities)
        first = self.modalities[0]
        n_batches = int(self.sources[first].manager.summary_stats.get("n_batch", 1))
        if batch_discriminative and n_batches < 2:
            logger.warning("One batch only: the batch discriminator is disabled.")
        self.seed = seed
        widths = [self._input_width(m) for m in self.modalities]
        with self._seeded(seed):
            self.module = self._module_cls(
                n_inputs=widths,
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
        self._model_summary_string = (
            f"scPairing: modalities {self.modalities}, inputs {widths} dims, n_latent "
            f"{n_latent}, loss {loss_method}"
        )
        self.init_params_ = self._get_init_params(locals())

    def _input_width(self, modality: str) -> int:
        return int(self._input_matrix(modality, None).shape[1])

    # ------------------------------------------------------------------ training
    @train_docs
    def train(
        self,
        max_epochs: int | None = None,
        max_steps: int | None = None,
        *,
        batch_size: int | None = None,
        lr: float = 5e-3,
        lr_decay: float = 6e-5,
        lr_discriminator: float = 1e-3,
        weight_decay: float = 0.0,
        clip_norm: float | None = 50.0,
        train_size: float = 1.0,
        validation_size: float | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        seed: int | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train on the bridge (the reference's schedule).

        Parameters
        ----------
        max_epochs
            Passes over the bridge (300, as in the reference's tutorials).
        max_steps
            Steps instead of ``max_epochs`` (rounded up to whole epochs).
        batch_size
            Paired cells per step on each device, ≥ 2; default 2,000, or the bridge's training
            cells when it has fewer (one batch per epoch).
        lr
            Initial learning rate of the main Adam (5e-3).
        lr_decay
            Per-step exponential decay rate of ``lr``, ≥ 0 (6e-5).
        lr_discriminator
            Learning rate of the discriminators (1e-3).
        weight_decay
            Weight decay of the decoders (0).
        clip_norm
            Gradient-norm clipping of the main step (50; ``None``: none).
        train_size, validation_size
            Split of the bridge's cells into training and validation (validation losses appear
            in ``history``).
        """
        settings = self._settings(locals())
        seed = self.seed if seed is None else seed
        _check_training_cells(self.sources[self.modalities[0]].n_obs, train_size)
        batch_size = self._resolve_batch_size(batch_size, DEFAULT_BATCH_SIZE, train_size=train_size)
        datamodule = self._make_datamodule(
            batch_size,
            seed=seed,
            paired=True,
            train_size=train_size,
            validation_size=validation_size,
        )
        plan = self._training_plan_cls(
            self.module,
            lr=lr,
            lr_decay=lr_decay,
            lr_discriminator=lr_discriminator,
            weight_decay=weight_decay,
            clip_norm=clip_norm,
        )
        epochs, steps = self._fit(
            plan,
            datamodule,
            max_epochs=max_epochs,
            max_steps=max_steps,
            default=("epochs", 300),
            seed=seed,
            accelerator=accelerator,
            devices=devices,
            trainer_kwargs=trainer_kwargs,
        )
        self._record_train(
            settings, max_epochs=epochs, max_steps=steps, batch_size=batch_size, seed=seed
        )

    # ------------------------------------------------------------------ inference
    def _embed(self, X, modality: str, batch_size: int) -> np.ndarray:
        k = self.modalities.index(modality)
        return self._apply_in_chunks(
            X, lambda x: self.module.embed(x, k), self.module.n_latent, batch_size=batch_size
        )

    def model_inputs(
        self, adata: AnnData | None = None, modality: str | None = None
    ) -> np.ndarray | dict[str, np.ndarray]:
        """The low-dimensional input of ``modality`` for the bridge or for new cells.

        New cells given as counts are mapped with the bridge's fitted PCA / LSI (read from the
        same layer); with ``use_rep`` inputs their ``.obsm`` entry under the registered key is
        used, after checking its width. ``modality=None`` (with ``adata=None``) returns
        ``{modality: array}``.
        """
        if modality is None:
            if adata is not None:
                raise ValueError("Pass `modality=` with `adata` to say which modality it holds.")
            return {m: self.model_inputs(modality=m) for m in self.modalities}
        X = self._input_matrix(modality, adata)
        X = X.toarray() if sparse.issparse(X) else np.asarray(X)
        return np.asarray(X, dtype=np.float32)

    def get_cross_modality_prediction(
        self,
        source: str,
        target: str,
        adata: AnnData | None = None,
        batch_size: int = 4096,
    ) -> np.ndarray:
        """Predict ``target``'s low-dimensional input from ``source``'s cells.

        ``source``'s embedding is decoded by ``target``'s decoder (the reference's prediction
        without count decoders). ``adata``: new cells of ``source`` (``None``: the bridge).
        """
        self._check_if_trained(warn=True)
        self._check_modality(source, "source")
        self._check_modality(target, "target")
        s, t = self.modalities.index(source), self.modalities.index(target)
        return self._apply_in_chunks(
            self._input_matrix(source, adata),
            lambda x: self.module.decoders[t](self.module.embed(x, s)),
            self.module.n_inputs[t],
            batch_size=batch_size,
        )

    def get_temperature(self) -> float:
        """The learned inverse temperature of the contrastive logits."""
        return float(self.module.scale().detach().cpu())


# ---------------------------------------------------------------------------- helpers
#: What ``modalities`` names, for error messages.
_ROLES = "2 or 3 modalities of the bridge, e.g. ('rna', 'atac') or ('rna', 'atac', 'prot')"


def _check_training_cells(n_cells: int, train_size: float) -> int:
    """The bridge's training cells (at least 2: the contrast is between cells of a batch)."""
    n_train = int(np.ceil(train_size * n_cells))
    if n_train < 2:
        raise ValueError(
            f"`train_size={train_size}` leaves {n_train} of the bridge's {n_cells} cells for "
            "training; scPairing contrasts cells within a mini-batch and needs at least 2. Pass "
            "a larger `train_size` or more cells."
        )
    return n_train


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


def _default_preprocess(modality: str) -> str | None:
    name = modality.lower()
    if "atac" in name or "peak" in name or "chrom" in name:
        return "lsi"
    if "rna" in name or "gex" in name or "expr" in name:
        return "pca"
    return None


def _resolve_inputs(
    mdata: MuData,
    modalities: list[str],
    use_rep: str | dict | None,
    preprocess: str | dict | None,
    layer: str | dict | None,
) -> dict[str, tuple[str, str | None]]:
    """``{modality: ("rep", key) | (kind, layer)}``: how each modality's input is obtained."""
    reps = v.check_per_modality(use_rep, modalities, argname="use_rep")
    kinds = v.check_per_modality(preprocess, modalities, argname="preprocess")
    layers = v.check_per_modality(layer, modalities, argname="layer")
    plan = {}
    for m in modalities:
        rep, kind, lay = reps[m], kinds[m], layers[m]
        if rep is not None:
            if kind is not None and isinstance(preprocess, Mapping):
                raise ValueError(
                    f"Modality {m!r} has both `use_rep={rep!r}` and `preprocess={kind!r}`; pass "
                    "one of them."
                )
            if not isinstance(rep, str):
                raise ValueError(
                    f"`use_rep` for modality {m!r} must be an `.obsm` key, got {rep!r}."
                )
            plan[m] = ("rep", rep)
            continue
        kind = kind if kind is not None else _default_preprocess(m)
        if kind is None:
            raise ValueError(
                f"Modality {m!r} has no `use_rep` and its kind cannot be told from its name; pass "
                f"`use_rep={{{m!r}: '<obsm key>'}}` or `preprocess={{{m!r}: 'pca' | 'lsi' | "
                "'none'}`."
            )
        if kind not in PREPROCESS:
            raise ValueError(
                f"`preprocess` for modality {m!r} must be one of {list(PREPROCESS)}, got {kind!r}."
            )
        plan[m] = (kind, lay)
    if all(source == "rep" for source, _ in plan.values()):
        # every modality reads an embedding: a layer or preprocessing would be ignored
        for argname, values in (("layer", layers), ("preprocess", kinds)):
            given = {m: value for m, value in values.items() if value is not None}
            if given:
                raise ValueError(
                    f"`{argname}` ({given}) has no effect: `use_rep` gives every modality its "
                    f"input; pass `{argname}=None`, or `use_rep` only for the modalities that "
                    "have an embedding."
                )
    return plan


def _shared_features(adata: AnnData, transform: Mapping, obs: pd.DataFrame, m: str) -> AnnData:
    """A ``"none"`` input: the user's matrix itself (shared when the features are in order)."""
    features = pd.Index(transform["features"])
    layer = transform["layer"]
    X = v.get_matrix(adata, layer)
    if not adata.var_names.equals(features):
        X = apply_transform(transform, adata, where=f"modality {m!r}")
    var = pd.DataFrame(index=features.copy())
    # the matrix keeps its layer name, so new cells are read from the same layer
    if layer is None:
        return AnnData(X=X, obs=obs, var=var)
    return AnnData(obs=obs, var=var, layers={layer: X})
