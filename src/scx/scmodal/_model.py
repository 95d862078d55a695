"""scMODAL model: registration, adversarial training with anchors, latents and imputation."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from scx import _validation as v
from scx.base import MultiModalModelBase
from scx.train import AdversarialTrainingPlan

from ._links import MIN_LINKS, Links, resolve_links
from ._module import SIDE_A, SIDE_B, SCMODALModule

logger = logging.getLogger(__name__)


def check_settings(**weights: float) -> None:
    """Loss weights must be finite numbers ≥ 0."""
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise ValueError(f"`{name}` must be a number ≥ 0, got {value!r}.")
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"`{name}` must be a finite weight ≥ 0, got {value!r}.")


def check_batch_size(sizes: dict[str, int], batch_size: int) -> None:
    """Every modality must fill one mini-batch (cells are drawn per modality per step)."""
    v.check_positive_int(batch_size, argname="batch_size", minimum=2)
    small = {name: n for name, n in sizes.items() if n < batch_size}
    if small:
        raise ValueError(
            f"Modalities {small} have fewer cells than the mini-batch `batch_size={batch_size}`; "
            f"pass `batch_size` ≤ {min(small.values())}."
        )


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
    inputs are registered unpaired modalities of a MuData; they are standardised per feature
    inside the model (``standardize``), so sparse inputs stay sparse until the mini-batch and
    imputations come back on the registered scale.

    Parameters
    ----------
    mdata
        MuData registered with :meth:`setup_mudata` and exactly two ``modalities`` (A, B), each
        holding preprocessed (e.g. log-normalised) values in ``X`` or ``layer``.
    links
        Links between the two modalities' features: a two-column DataFrame, a list of
        ``(feature, feature)`` pairs or a dict ``{feature: feature or [features]}``; see
        :func:`scx.tl.scmodal`. At least three usable links are needed.
    drop_missing_links
        Ignore links naming features that a modality lacks instead of raising.
    n_latent, n_hidden
        Latent and hidden widths (20, 512).
    lambda_gan, lambda_ae, lambda_la, lambda_mnn, lambda_geo
        Loss weights (1, 10, 10, 1, 10; the reference's defaults).
    n_neighbors
        Neighbours of the mini-batch mutual-neighbour search (30).
    standardize
        Standardise each feature (mean 0, variance 1, clipped at ±10) inside the model, as the
        reference's ``scale(max_value=10)``; ``False`` uses the registered values as they are.
    init_std
        N(0, σ²) initialisation of all weights (0.1, the reference); ``None`` for PyTorch's.

    Examples
    --------
    >>> scx.model.SCMODAL.setup_mudata(mdata, modalities=["rna", "prot"], layer="lognorm")
    >>> model = scx.model.SCMODAL(mdata, links={"CD3": "CD3E", "CD4": "CD4", "CD19": "CD19"})
    >>> model.train()
    >>> z = model.get_latent_representation()  # {"rna": ..., "prot": ...}
    >>> prot_from_rna = model.get_imputed("rna", "prot")
    """

    _module_cls = SCMODALModule
    _training_plan_cls = AdversarialTrainingPlan

    @classmethod
    def setup_anndata(cls, *args, **kwargs) -> None:
        """Not supported: scMODAL's two modalities have different features.

        Register a MuData with two modalities via :meth:`setup_mudata`.
        """
        raise ValueError(
            "SCMODAL aligns two modalities with different features: register a MuData with "
            "`SCMODAL.setup_mudata(mdata, modalities=[mod1, mod2])`, or call `scx.tl.scmodal`."
        )

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
        standardize: bool = True,
        init_std: float | None = 0.1,
    ):
        super().__init__(mdata)
        if len(self.modalities) != 2:
            raise ValueError(
                f"scMODAL aligns exactly two modalities, {len(self.modalities)} are registered "
                f"({self.modalities}); pass `modalities=[mod1, mod2]` to `setup_mudata`."
            )
        v.check_positive_int(n_latent, argname="n_latent")
        v.check_positive_int(n_hidden, argname="n_hidden")
        v.check_positive_int(n_neighbors, argname="n_neighbors")
        check_settings(
            lambda_gan=lambda_gan,
            lambda_ae=lambda_ae,
            lambda_la=lambda_la,
            lambda_mnn=lambda_mnn,
            lambda_geo=lambda_geo,
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
        for side, m in enumerate((mod_a, mod_b)):
            X = self._input_matrix(m, None)
            if standardize:
                mean, std = column_stats(X)
                stats[f"means_{'ab'[side]}"] = mean.astype(np.float32).tolist()
                stats[f"stds_{'ab'[side]}"] = std.astype(np.float32).tolist()
        self.module = self._module_cls(
            n_input_a=len(self.var_names_of(mod_a)),
            n_input_b=len(self.var_names_of(mod_b)),
            link_a=link_a,
            link_b=link_b,
            n_latent=n_latent,
            n_hidden=n_hidden,
            lambda_gan=lambda_gan,
            lambda_ae=lambda_ae,
            lambda_la=lambda_la,
            lambda_mnn=lambda_mnn,
            lambda_geo=lambda_geo,
            n_neighbors=n_neighbors,
            init_std=init_std,
            clip=10.0 if standardize else None,
            **stats,
        )
        self.trained_steps_: int | None = None
        self._model_summary_string = (
            f"scMODAL: {mod_a} ({self.module.n_input[0]} features) ↔ {mod_b} "
            f"({self.module.n_input[1]} features), {resolved.n_used} links, n_latent {n_latent}"
        )
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_steps: int = 10_000,
        *,
        batch_size: int = 500,
        steps_per_epoch: int = 100,
        lr: float = 1e-3,
        weight_decay: float = 1e-3,
        n_discriminator_steps: int = 5,
        clip_norm: float | None = 5.0,
        replacement: bool = True,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        datamodule_kwargs: dict | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train for ``max_steps`` steps, each ``n_discriminator_steps`` D updates and one G update.

        Parameters
        ----------
        max_steps
            Generator steps (the reference's 10,000). Rounded up to whole ``steps_per_epoch``.
        batch_size
            Cells per modality per step (500).
        steps_per_epoch
            Steps logged together as one "epoch" of the history.
        lr, weight_decay
            Adam learning rate and (coupled L2) weight decay of both sides (1e-3, 1e-3).
        n_discriminator_steps
            Discriminator updates per generator update (5).
        clip_norm
            Gradient-norm clipping of the encoders and generators (5).
        replacement
            Sample cells with replacement, as the reference does.
        accelerator, devices
            Lightning accelerator and devices (``strategy=`` goes in ``trainer_kwargs``).
        datamodule_kwargs
            Extra arguments of :class:`~scx.data.MultiModalDataModule`.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer`.
        """
        v.check_positive_int(max_steps, argname="max_steps")
        v.check_positive_int(steps_per_epoch, argname="steps_per_epoch")
        v.check_positive_int(n_discriminator_steps, argname="n_discriminator_steps")
        check_batch_size({m: s.n_obs for m, s in self.sources.items()}, batch_size)
        n_epochs = -(-max_steps // steps_per_epoch)
        mod_a, mod_b = self.modalities
        plan = AdversarialTrainingPlan(
            self.module,
            lr=lr,
            weight_decay=weight_decay,
            n_discriminator_steps=n_discriminator_steps,
            clip_norm=clip_norm,
        )
        datamodule = self._make_datamodule(
            batch_size,
            steps_per_epoch=steps_per_epoch,
            replacement=replacement,
            sources={SIDE_A: self.sources[mod_a], SIDE_B: self.sources[mod_b]},
            **(datamodule_kwargs or {}),
        )
        history = self.history_ if self.is_trained_ else None
        self.is_trained_ = False
        self._run_training(
            plan, datamodule, n_epochs, accelerator=accelerator, devices=devices, **trainer_kwargs
        )
        self.history_ = self._concat_history(history, self.history_)
        self.trained_steps_ = (self.trained_steps_ or 0) + n_epochs * steps_per_epoch
        self.is_trained_ = True
        self.module.eval()

    # ------------------------------------------------------------------ inference
    def _side(self, modality: str) -> int:
        if modality not in self.modalities:
            raise ValueError(
                f"`{modality!r}` is not one of the model's modalities {self.modalities}."
            )
        return self.modalities.index(modality)

    @torch.inference_mode()
    def _map(self, X, source: int, target: int | None, batch_size: int) -> np.ndarray:
        """Encode (``target=None``) or translate registered-scale rows of ``X`` in chunks."""
        self.module.eval()
        device = self.module.device
        width = self.module.n_latent if target is None else self.module.n_input[target]
        out = np.empty((X.shape[0], width), dtype=np.float32)
        for start in range(0, X.shape[0], batch_size):
            chunk = X[start : start + batch_size]
            chunk = chunk.toarray() if sparse.issparse(chunk) else np.asarray(chunk)
            x = torch.as_tensor(chunk, dtype=torch.float32, device=device)
            z = self.module.inference(x, side=source)["z"]
            if target is not None:
                z = self.module.generative(z, side=target)["x"]
            out[start : start + chunk.shape[0]] = z.cpu().numpy()
        return out

    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        modality: str | None = None,
        *,
        batch_size: int = 4096,
    ) -> np.ndarray | dict[str, np.ndarray]:
        """Shared latent of cells.

        Parameters
        ----------
        adata
            New cells of ``modality`` (same features); ``None`` for the registered cells.
        modality
            Modality to embed; ``None`` (with ``adata=None``) returns ``{modality: array}``.
        batch_size
            Cells per forward pass.

        Returns
        -------
        ``(n_cells, n_latent)`` array, or a dict of them.
        """
        self._check_if_trained(warn=True)
        if modality is None:
            return self._for_each_modality(self.get_latent_representation, adata)
        side = self._side(modality)
        return self._map(self._input_matrix(modality, adata), side, None, batch_size)

    def get_imputed(
        self,
        source: str,
        target: str,
        adata: AnnData | None = None,
        *,
        batch_size: int = 4096,
    ) -> pd.DataFrame:
        """Cells of ``source`` translated into ``target``'s features (e.g. protein from RNA).

        ``G_target(E_source(x))``, brought back from the standardised space to the registered
        scale of ``target`` (log-normalised values when trained through
        :func:`scx.tl.scmodal`).

        Parameters
        ----------
        source, target
            Modality of the cells and modality whose features are predicted.
        adata
            New cells of ``source``; ``None`` for the registered ones.
        batch_size
            Cells per forward pass.

        Returns
        -------
        DataFrame ``cells × target features``, indexed by the cells' names.
        """
        self._check_if_trained(warn=True)
        s, t = self._side(source), self._side(target)
        X = self._input_matrix(source, adata)
        values = self._map(X, s, t, batch_size)
        cells = (
            self.modality_adata(source).obs_names[self.sources[source].indices]
            if adata is None
            else adata.obs_names
        )
        return pd.DataFrame(values, index=cells, columns=self.var_names_of(target))

    def get_linked_features(self) -> pd.DataFrame:
        """The usable links the model was trained with (two columns, the modality names)."""
        return self.links_.copy()
