"""scMODAL model: inputs, adversarial training with anchors, latents and imputation."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from scx import _validation as v
from scx._neighbors import knn_average
from scx.base import MultiModalModelBase, train_docs
from scx.pp import apply_transform, feature_transform
from scx.train import AdversarialTrainingPlan

from ._links import MIN_LINKS, Links, resolve_links
from ._module import SCMODALModule
from ._preprocess import fit_log_blocks

logger = logging.getLogger(__name__)

ImputeStrategy = Literal["neighbors", "generator"]
#: Target cells averaged per cell by ``get_imputed(strategy="neighbors")`` (as many as vote in
#: scx's kNN label transfer).
IMPUTE_NEIGHBORS = 30
#: Cells per modality per step (the reference's), lowered for a smaller modality.
DEFAULT_BATCH_SIZE = 500


def column_stats(X, chunk_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation (ddof 1, as scanpy's scale), sparse-friendly."""
    n = X.shape[0]
    total = np.zeros(X.shape[1])
    total_sq = np.zeros(X.shape[1])
    for start in range(0, n, chunk_size):
        chunk = X[start : start + chunk_size]
        if sparse.issparse(chunk):
            chunk = sparse.csr_matrix(chunk, dtype=np.float64)
            total += np.asarray(chunk.sum(axis=0)).ravel()
            total_sq += np.asarray(chunk.multiply(chunk).sum(axis=0)).ravel()
        else:
            chunk = np.asarray(chunk, dtype=np.float64)
            total += chunk.sum(axis=0)
            total_sq += (chunk**2).sum(axis=0)
    mean = total / n
    var = np.maximum(total_sq - n * mean**2, 0) / max(n - 1, 1)
    std = np.sqrt(var)
    std[std == 0] = 1.0  # constant features stay at 0 after centring
    return mean, std


class SCMODAL(MultiModalModelBase):
    """scMODAL: adversarial alignment of two modalities with weakly linked features.

    Each modality (e.g. RNA and surface protein) has an encoder into a shared latent space and a
    generator back into its own features. A latent discriminator, trained
    ``n_discriminator_steps`` times per step, makes the two modalities' latents
    indistinguishable; mutual nearest neighbours found in every mini-batch on the linked
    features (``links``) are pulled together; reconstruction, a latent cycle through the other
    modality's generator and a kernel-geometry term keep each modality's own structure. The
    registered inputs are standardised per feature inside the model, so sparse inputs stay
    sparse until the mini-batch and imputations come back on the registered scale.

    Build it with :func:`scx.tl.scmodal` (from counts), or register two modalities of
    preprocessed values yourself with :meth:`setup_mudata` and call the class.

    Parameters
    ----------
    mdata
        MuData registered with :meth:`setup_mudata` with exactly two ``modalities`` (A, B), each
        holding preprocessed (e.g. log-normalised) values in ``X`` or ``layer``.
    links
        Links between the two modalities' features: a two-column DataFrame, a list of
        ``(feature, feature)`` pairs or a dict ``{feature: feature or [features]}`` (see
        :func:`scx.scmodal.resolve_links`). At least three usable links are needed.
    drop_missing_links
        Ignore links naming features that a modality lacks instead of raising.
    n_latent
        Width of the shared latent space (20).
    n_hidden
        Hidden width of the encoders, generators and discriminator (512).
    lambda_gan, lambda_ae, lambda_la, lambda_mnn, lambda_geo
        Weights of the adversarial term, the autoencoder reconstruction, the latent cycle, the
        anchor (mutual-neighbour) term and the geometry term (1, 10, 10, 1, 10; the
        reference's defaults).
    n_neighbors
        Neighbours per direction of the mini-batch mutual-neighbour search (30), also the size
        of the neighbourhoods that score the anchors with ``score_anchors``.
    score_anchors
        Weight each anchor pair by how far the two cells' own neighbourhoods (in each
        modality's full feature space) are anchored to each other, the anchor scoring of
        Seurat (:func:`scx.scmodal.shared_neighbor_scores`), instead of weighting all pairs
        equally (``False``, the reference). It raises the share of anchor pairs within one
        cell type when the links are few and weak, but pulls on fewer pairs; on ASAP ↔ CITE
        protein it did not improve label transfer beyond seed noise (see the method page).
    standardize
        Standardise each feature (mean 0, variance 1, clipped at ±10) inside the model, as the
        reference's ``scale(max_value=10)``; ``False`` uses the registered values as they are.
    init_std
        Standard deviation of the N(0, σ²) initialisation of every weight and bias (0.1, the
        reference); ``None`` keeps PyTorch's default initialisation.
    seed
        Seed of the weight initialisation.

    Examples
    --------
    >>> scx.model.SCMODAL.setup_mudata(mdata, modalities=["rna", "prot"], layer="lognorm")
    >>> model = scx.model.SCMODAL(mdata, links={"CD3": "CD3E", "CD4": "CD4", "CD19": "CD19"})
    >>> model.train()
    >>> z = model.get_latent_representation()  # {"rna": ..., "prot": ...}
    >>> prot_from_rna = model.get_imputed("rna", "prot")
    """

    _method_name = "scMODAL"
    _module_cls = SCMODALModule
    _training_plan_cls = AdversarialTrainingPlan
    _data_init_args = ("links", "drop_missing_links")
    # the step is bound by the products of the full-feature encoders and generators: bfloat16
    # tensors make it 2.6× faster with unchanged scores (docs/benchmarks.md, "The 10,000-step
    # default on this CPU")
    _bfloat16_on_cpu = True
    _setting_checks: ClassVar[dict[str, Callable]] = {
        "drop_missing_links": v.boolean,
        "n_hidden": v.positive_int(),
        "lambda_gan": v.weight,
        "lambda_ae": v.weight,
        "lambda_la": v.weight,
        "lambda_mnn": v.weight,
        "lambda_geo": v.weight,
        "n_neighbors": v.positive_int(),
        "score_anchors": v.boolean,
        "standardize": v.boolean,
        "steps_per_epoch": v.positive_int(),
        "n_discriminator_steps": v.positive_int(),
        "ema_decay": v.optional(v.decay),
    }

    @classmethod
    def setup_anndata(cls, *args, **kwargs) -> None:
        """Not supported: scMODAL's two modalities have different features.

        Register a MuData with two modalities via :meth:`setup_mudata`.
        """
        raise ValueError(
            "SCMODAL aligns two modalities with different features: register a MuData with "
            "`SCMODAL.setup_mudata(mdata, modalities=[mod1, mod2])`, or call `scx.tl.scmodal`."
        )

    # ------------------------------------------------------------------ inputs
    @classmethod
    def _check_inputs(
        cls,
        data,
        *,
        settings: Mapping[str, Any],
        modalities,
        links,
        layer,
        preprocess,
        n_top_features,
        drop_missing_links,
    ) -> None:
        """Every check of the data and data arguments, before any work."""
        v.check_mudata(data, argname="data")
        names = v.check_modality_names(
            modalities, roles="the two modalities to align, e.g. ('rna', 'prot')"
        )
        adatas = {
            m: v.check_modality(data, m, argname=f"modalities[{k}]") for k, m in enumerate(names)
        }
        v.boolean(preprocess, "preprocess")
        v.boolean(drop_missing_links, "drop_missing_links")
        v.check_positive_int(n_top_features, argname="n_top_features", minimum=0)
        layers = v.check_per_modality(layer, names, argname="layer")
        for m, adata in adatas.items():
            v.check_unique_names(adata, where=f"Modality {m!r}")
            X = v.get_matrix(adata, layers[m], argname="layer")
            v.check_counts(
                X, argname=f"data.mod[{m!r}] (layer={layers[m]!r})", allow_negative=not preprocess
            )
        if links is None:
            raise ValueError(
                "`links` is required: the features of the two modalities that measure the same "
                "thing, e.g. {'CD3': 'CD3E', 'CD19': 'CD19', ...} (protein → gene)."
            )
        resolve_links(
            links,
            {m: adata.var_names for m, adata in adatas.items()},
            drop_missing=drop_missing_links,
            min_links=MIN_LINKS,
        )
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
        modalities: Sequence[str] = ("rna", "prot"),
        links: Links | None = None,
        layer: str | dict[str, str | None] | None = None,
        preprocess: bool = True,
        n_top_features: int = 3000,
        drop_missing_links: bool = False,
    ) -> dict:
        """The links checked against both modalities and the preprocessing fitted on counts.

        Parameters
        ----------
        data
            MuData holding both modalities (their cells may be the same, different or partly
            shared; they are treated as unpaired).
        modalities
            The two modalities, in role order: the first plays the reference's "A" (its
            latents are the discriminator's "real" class and its linked total sets the common
            library size).
        links
            Feature links (required): a two-column DataFrame (columns named after the two
            modalities say which is which), a list of ``(feature, feature)`` pairs or a dict
            ``{feature: feature or [features]}``; one-to-many allowed, either orientation (e.g.
            a protein → gene dict for ``modalities=("rna", "prot")``). At least three usable
            links are needed.
        layer
            Layer with the input (``None``: ``.X``), once or ``{modality: layer}``.
        preprocess
            Treat the inputs as counts and preprocess them as the reference does: the linked
            features of both modalities normalised to one common library size (median linked
            total of the first modality, at least 20) and log1p; the other features, reduced to
            the ``n_top_features`` most variable (seurat_v3), to their own median library size
            and log1p. The fitted library sizes are stored with the model, so new cells and a
            reloaded model are mapped from counts the same way. ``False``: use the values as
            they are (e.g. log-normalised data or gene activity); they are still standardised
            per feature in the model.
        n_top_features
            Unlinked features kept per modality (3,000 highly variable, as the reference).
        drop_missing_links
            Ignore links naming features a modality lacks (counted in ``uns[key_added]``)
            instead of raising an error.
        """
        names = v.check_modality_names(
            modalities, roles="the two modalities to align, e.g. ('rna', 'prot')"
        )
        layers = v.check_per_modality(layer, names, argname="layer")
        adatas = {m: data.mod[m] for m in names}
        resolved = resolve_links(
            links,
            {m: adatas[m].var_names for m in names},
            drop_missing=drop_missing_links,
            min_links=MIN_LINKS,
        )
        linked = {m: pd.Index(pd.unique(resolved.pairs[m])) for m in names}
        if preprocess:
            transforms = fit_log_blocks(adatas, layers, linked, n_top_features)
        else:
            transforms = {m: feature_transform(adatas[m].var_names, layer=layers[m]) for m in names}
        return {
            "args": {
                "modalities": list(names),
                "links": {m: resolved.pairs[m].tolist() for m in names},
                "layer": layers,
                "preprocess": preprocess,
                "n_top_features": n_top_features,
                "drop_missing_links": drop_missing_links,
            },
            "transforms": transforms,
            "linked": {m: list(linked[m]) for m in names},
            "link_counts": {**resolved.counts(), "links_swapped": resolved.swapped},
            "init": {"links": resolved.pairs, "drop_missing_links": drop_missing_links},
        }

    @classmethod
    def _build_view(cls, data: MuData, state: Mapping) -> MuData:
        """Both modalities over the model's features (``[linked | unlinked]`` when preprocessed)."""
        v.check_mudata(data, argname="adata")
        views = {}
        for m in state["args"]["modalities"]:
            adata = v.check_modality(data, m, argname="modalities")
            transform = state["transforms"][m]
            features = pd.Index([str(f) for f in transform["features"]])
            if transform["kind"] != "features":
                X, layer_name = apply_transform(transform, adata, where=f"modality {m!r}"), None
            elif adata.var_names.equals(features):  # the user's matrix itself, no copy
                X, layer_name = v.get_matrix(adata, transform["layer"]), transform["layer"]
            else:
                X = apply_transform(transform, adata, where=f"modality {m!r}")
                layer_name = transform["layer"]
            obs = pd.DataFrame(index=adata.obs_names.copy())
            var = pd.DataFrame({"linked": features.isin(state["linked"][m])}, index=features)
            # the matrix keeps its layer name, so new cells are read from the same layer
            views[m] = (
                AnnData(X=X, obs=obs, var=var)
                if layer_name is None
                else AnnData(obs=obs, var=var, layers={layer_name: X})
            )
        with warnings.catch_warnings():
            # two protein panels may name their features alike
            warnings.filterwarnings("ignore", message="var_names are not unique")
            return MuData(views)

    @classmethod
    def _register_view(cls, view: MuData, state: Mapping) -> None:
        names = state["args"]["modalities"]
        transforms = state["transforms"]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="var_names are not unique")
            cls.setup_mudata(
                view,
                modalities=list(names),
                layer={
                    m: transforms[m]["layer"] if transforms[m]["kind"] == "features" else None
                    for m in names
                },
            )

    # ------------------------------------------------------------------ construction
    def __init__(
        self,
        mdata: MuData,
        links: Links,
        drop_missing_links: bool = False,
        n_latent: int = 20,
        n_hidden: int = 512,
        lambda_gan: float = 1.0,
        lambda_ae: float = 10.0,
        lambda_la: float = 10.0,
        lambda_mnn: float = 1.0,
        lambda_geo: float = 10.0,
        n_neighbors: int = 30,
        score_anchors: bool = False,
        standardize: bool = True,
        init_std: float | None = 0.1,
        seed: int = 0,
    ):
        super().__init__(mdata)
        self._settings(locals())
        if len(self.modalities) != 2:
            raise ValueError(
                f"scMODAL aligns exactly two modalities, {len(self.modalities)} are registered "
                f"({self.modalities}); pass `modalities=[mod1, mod2]` to `setup_mudata`."
            )
        mod_a, mod_b = self.modalities
        resolved = resolve_links(
            links,
            {m: self.var_names_of(m) for m in (mod_a, mod_b)},
            drop_missing=drop_missing_links,
            min_links=MIN_LINKS,
        )
        #: usable links, one row per (feature of A, feature of B)
        self.links_ = resolved.pairs
        self.link_counts_ = resolved.counts()
        link_a = self.var_names_of(mod_a).get_indexer(resolved.pairs[mod_a]).tolist()
        link_b = self.var_names_of(mod_b).get_indexer(resolved.pairs[mod_b]).tolist()
        stats = {}
        if standardize:
            for k, m in enumerate((mod_a, mod_b)):
                mean, std = column_stats(self._input_matrix(m, None))
                stats[f"means_{'ab'[k]}"] = mean.astype(np.float32).tolist()
                stats[f"stds_{'ab'[k]}"] = std.astype(np.float32).tolist()
        self.seed = seed
        with self._seeded(seed):
            self.module = self._module_cls(
                n_input_a=len(self.var_names_of(mod_a)),
                n_input_b=len(self.var_names_of(mod_b)),
                link_a=link_a,
                link_b=link_b,
                modalities=[mod_a, mod_b],
                n_latent=n_latent,
                n_hidden=n_hidden,
                lambda_gan=lambda_gan,
                lambda_ae=lambda_ae,
                lambda_la=lambda_la,
                lambda_mnn=lambda_mnn,
                lambda_geo=lambda_geo,
                n_neighbors=n_neighbors,
                score_anchors=score_anchors,
                init_std=init_std,
                clip=10.0 if standardize else None,
                **stats,
            )
        self._model_summary_string = (
            f"scMODAL: {mod_a} ({self.module.n_input[0]} features) ↔ {mod_b} "
            f"({self.module.n_input[1]} features), {resolved.n_used} links, n_latent {n_latent}"
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
        weight_decay: float = 1e-3,
        n_discriminator_steps: int = 5,
        clip_norm: float | None = 5.0,
        ema_decay: float | None = None,
        replacement: bool = True,
        train_size: float = 1.0,
        validation_size: float | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        seed: int | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train: every step ``n_discriminator_steps`` D updates, then one update of the rest.

        On a CPU with bfloat16 units (AVX512-BF16 or AMX) training runs in Lightning's
        ``"bf16-mixed"`` precision unless the trainer options name one: the step is bound by
        the products of the full-feature encoders and generators, which bfloat16 tensors make
        2.6× faster than float32 (1.55× faster than ``scx.settings.matmul_precision =
        "medium"``) with unchanged scores on the CITE-seq benchmark (``docs/benchmarks.md``).
        ``precision="32-true"`` trains in float32; the precision used is recorded in
        ``train_params_``.

        Parameters
        ----------
        max_epochs
            Training length in blocks of ``steps_per_epoch`` steps (the history's epochs).
        max_steps
            Training length in steps instead of ``max_epochs`` (rounded up to whole blocks);
            with neither, the reference's 10,000 steps.
        batch_size
            Cells per modality per step on each device; default 500 (the reference's), or the
            smallest modality's training cells when it has fewer.
        steps_per_epoch
            Steps logged together as one epoch of the history (100), on each device.
        lr
            Adam learning rate of both sides (1e-3).
        weight_decay
            Adam (coupled L2) weight decay of both sides (1e-3).
        n_discriminator_steps
            Discriminator updates per generator update (5).
        clip_norm
            Gradient-norm clipping of the encoders and generators (5; ``None``: none).
        ema_decay
            Return the encoders' and generators' weights averaged over the steps (exponential
            moving average with this decay, e.g. 0.99; see
            :class:`~scx.train.AdversarialTrainingPlan`) instead of the last step's; the
            discriminators keep their last weights. ``None`` (default): the last step's, as
            the reference. On the CITE data 0.99 lowered FOSCTTM and raised the generator's
            imputed-protein Pearson at 2,000 steps (2 seeds) but not at the default 10,000
            (1 seed; ``docs/benchmarks.md``).
        replacement
            Sample cells with replacement, as the reference does.
        train_size, validation_size
            Split of each modality's cells into training and validation (validation losses
            appear in ``history``).
        """
        settings = self._settings(locals())
        seed = self.seed if seed is None else seed
        batch_size = self._resolve_batch_size(batch_size, DEFAULT_BATCH_SIZE, train_size=train_size)
        plan = self._training_plan_cls(
            self.module,
            lr=lr,
            weight_decay=weight_decay,
            n_discriminator_steps=n_discriminator_steps,
            clip_norm=clip_norm,
            ema_decay=ema_decay,
        )
        datamodule = self._make_datamodule(
            batch_size,
            seed=seed,
            steps_per_epoch=steps_per_epoch,
            steps_per_device=True,
            replacement=replacement,
            train_size=train_size,
            validation_size=validation_size,
        )
        epochs, steps = self._fit(
            plan,
            datamodule,
            max_epochs=max_epochs,
            max_steps=max_steps,
            default=("steps", 10_000),
            seed=seed,
            accelerator=accelerator,
            devices=devices,
            trainer_kwargs=trainer_kwargs,
        )
        self._record_train(
            settings, max_epochs=epochs, max_steps=steps, batch_size=batch_size, seed=seed
        )

    # ------------------------------------------------------------------ inference
    def _input_matrix(self, modality: str, adata: AnnData | None):
        """Registered rows, or new cells as the user holds them (counts when preprocessed).

        The preprocessed features keep the names of the measured ones, so new cells cannot be
        told apart by their features: with a fitted ``"log_blocks"`` transform they are read as
        counts (from the training layer) and normalised with the stored library sizes, unless
        they are rows of the model's own inputs (``model.adata[modality]``, marked by its
        ``var["linked"]`` column).
        """
        transform = ((self.input_state_ or {}).get("transforms") or {}).get(modality)
        if adata is None or transform is None or transform["kind"] != "log_blocks":
            return super()._input_matrix(modality, adata)
        if (
            isinstance(adata, AnnData)
            and "linked" in adata.var.columns
            and adata.var_names.equals(self.var_names_of(modality))
        ):
            return super()._input_matrix(modality, adata)
        self._check_modality(modality)
        return apply_transform(transform, adata, where=f"`adata` ({modality})")

    def _embed(self, X, modality: str, batch_size: int) -> np.ndarray:
        k = self.modalities.index(modality)
        return self._apply_in_chunks(
            X, lambda x: self.module.embed(x, k), self.module.n_latent, batch_size=batch_size
        )

    def get_imputed(
        self,
        source: str,
        target: str,
        adata: AnnData | None = None,
        *,
        strategy: ImputeStrategy = "neighbors",
        n_neighbors: int = IMPUTE_NEIGHBORS,
        batch_size: int = 4096,
    ) -> pd.DataFrame:
        """``target``'s features predicted for cells of ``source`` (e.g. protein from RNA).

        Parameters
        ----------
        source, target
            Modality of the cells and modality whose features are predicted.
        adata
            New cells of ``source`` (raw counts when the model preprocessed counts, else the
            registered features); ``None`` for the registered ones.
        strategy
            ``"neighbors"``: the mean of the registered values of the ``n_neighbors`` nearest
            ``target`` cells in the shared latent (the integration's own use of the latent, as
            kNN label transfer; the prediction stays within what ``target`` measured and
            averages over its per-cell noise). ``"generator"``: ``G_target(E_source(x))``, the
            reference's decoding of each cell by the target's generator.
        n_neighbors
            Target cells averaged per cell with ``strategy="neighbors"``.
        batch_size
            Cells per forward pass.

        Returns
        -------
        DataFrame ``cells × target features`` on the registered scale of ``target``
        (log-normalised values when trained through :func:`scx.tl.scmodal` with
        ``preprocess=True``), indexed by the cells' names.
        """
        self._check_if_trained(warn=True)
        s = self.modalities.index(self._check_modality(source, "source"))
        t = self.modalities.index(self._check_modality(target, "target"))
        if s == t:
            raise ValueError(f"`source` and `target` must differ, got {source!r} twice.")
        v.choice(*get_args(ImputeStrategy))(strategy, "strategy")
        v.check_positive_int(n_neighbors, argname="n_neighbors")
        if strategy == "neighbors":
            values = knn_average(
                self.get_latent_representation(modality=target, batch_size=batch_size),
                self._input_matrix(target, None),
                self.get_latent_representation(adata, modality=source, batch_size=batch_size),
                n_neighbors=n_neighbors,
                random_state=self.seed,
            )
        else:
            values = self._apply_in_chunks(
                self._input_matrix(source, adata),
                lambda x: self.module.translate(x, s, t),
                self.module.n_input[t],
                batch_size=batch_size,
            )
        cells = self.obs_names_of(source) if adata is None else adata.obs_names
        return pd.DataFrame(values, index=cells.copy(), columns=self.var_names_of(target).copy())

    def get_linked_features(self) -> pd.DataFrame:
        """The usable links the model was trained with (two columns, the modality names)."""
        return self.links_.copy()


# ---------------------------------------------------------------------------- helpers
