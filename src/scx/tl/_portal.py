"""``scx.tl.portal``: integrate datasets (batches, technologies) with Portal."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scvi import settings

from scx import _validation as v
from scx.portal import PORTAL
from scx.portal._model import check_batch_size, check_settings, domain_order
from scx.pp._batches import joint_pca

from ._outputs import check_writable, clean_params, global_rows, write_obs, write_obsm

logger = logging.getLogger(__name__)

DATASET_KEY = "_scx_dataset"


def _datasets(
    data: AnnData | MuData, batch_key: str | None
) -> tuple[dict[str, AnnData], dict[str, np.ndarray] | None]:
    """``{dataset: AnnData}`` and, for an AnnData, each dataset's rows in it."""
    if isinstance(data, MuData):
        if batch_key is not None:
            raise ValueError(
                "`batch_key` is for an AnnData; for a MuData every modality is one dataset. "
                "Pass `batch_key=None`."
            )
        if len(data.mod) < 2:
            raise ValueError(
                f"The MuData has {len(data.mod)} modality; Portal integrates two or more "
                "datasets (one per modality)."
            )
        return {m: v.check_modality(data, m, argname="modality") for m in data.mod}, None
    if not isinstance(data, AnnData):
        raise ValueError(
            f"`data` must be an AnnData with `batch_key` or a MuData with one modality per "
            f"dataset, got {type(data).__name__}."
        )
    if data.n_obs == 0:
        raise ValueError("`data` has no cells.")
    batches = v.check_obs_key(data, batch_key, argname="batch_key")
    if batches.isna().any():
        raise ValueError(
            f"`batch_key={batch_key!r}` has {int(batches.isna().sum())} missing values; every "
            "cell needs a dataset."
        )
    values = pd.unique(batches.astype(str))
    if len(values) < 2:
        raise ValueError(
            f"`batch_key={batch_key!r}` has a single value ({values[0]!r}); Portal integrates "
            "two or more datasets. Pass the column that separates them."
        )
    labels = batches.astype(str).to_numpy()
    rows = {b: np.flatnonzero(labels == b) for b in values}
    return {b: data[r] for b, r in rows.items()}, rows


def portal(
    data: AnnData | MuData,
    batch_key: str | None = None,
    *,
    reference: str | None = None,
    order: Sequence[str] | None = None,
    use_rep: str | None = None,
    layer: str | None = None,
    n_top_genes: int = 4000,
    genes: Sequence[str] | None = None,
    n_pcs: int = 30,
    n_latent: int = 20,
    n_hidden: int = 512,
    lambda_cos: float | Sequence[float] = 20.0,
    lambda_ae: float = 10.0,
    lambda_la: float = 10.0,
    lambda_gan: float = 1.0,
    boundary: float = 5.0,
    max_steps: int | None = None,
    batch_size: int = 500,
    seed: int = 0,
    key_added: str = "portal",
    accelerator: str = "auto",
    devices: int | list[int] | str = "auto",
    **train_kwargs,
) -> PORTAL:
    """Integrate datasets with Portal's adversarial domain translation.

    Preprocesses as the reference does (unless ``use_rep`` is given): highly variable genes per
    dataset intersected, per-dataset library-size normalisation, log1p and standardisation, one
    PCA on all cells (:func:`scx.pp.joint_pca`). Then trains :class:`scx.model.PORTAL`:
    dataset ``reference`` defines the space, every other dataset is integrated into it in turn.

    Writes ``obsm[f"X_{key_added}"]`` (the harmonised latent of every cell),
    ``obs[f"{key_added}_boundary_score"]`` (the reference discriminator's clamped score of each
    non-reference cell translated into the reference; ``-boundary`` marks cells unlike any
    reference cell) and ``uns[key_added]["params"]``. For a MuData they go to the global
    ``obsm``/``obs`` (when the datasets' cells are distinct) and to each modality. Inputs are
    checked before training; nothing is written unless training succeeds.

    Parameters
    ----------
    data
        AnnData whose ``obs[batch_key]`` names the datasets, or MuData with one modality per
        dataset (over the same genes).
    batch_key
        Column with the datasets (AnnData only).
    reference
        The dataset that defines the common space (the first one by default).
    order
        Order in which the other datasets are integrated (with three or more).
    use_rep
        Start from this ``.obsm`` embedding (e.g. ``"X_pca"`` or ``"X_scVI"``, shared by all
        datasets) instead of Portal's preprocessing of counts.
    layer
        Layer with raw counts (``None``: ``.X``).
    n_top_genes, genes, n_pcs
        Highly variable genes per dataset (4,000) or a given gene list, and PCA components (30).
    n_latent, n_hidden, lambda_cos, lambda_ae, lambda_la, lambda_gan, boundary
        Model settings, see :class:`scx.model.PORTAL`.
    max_steps
        Training steps per integrated dataset (2,000; 1,000 below 20,000 cells).
    batch_size
        Cells per dataset per step (500).
    seed
        Random seed (``scvi.settings.seed``).
    key_added
        Prefix of the written keys.
    accelerator, devices
        Lightning accelerator and devices; ``precision="bf16-mixed"`` in ``train_kwargs``
        speeds up CPUs and GPUs with bfloat16 units.
    **train_kwargs
        Further arguments of :meth:`scx.model.PORTAL.train` and :class:`scvi.train.Trainer`.

    Returns
    -------
    The trained model; ``model.get_translated(...)``, ``model.get_translated_expression(...)``.
    """
    datasets, rows = _datasets(data, batch_key)
    names = list(datasets)
    domains = domain_order(names, reference, order)
    reference = domains[0]
    check_settings(
        n_latent=n_latent,
        n_hidden=n_hidden,
        lambda_cos=lambda_cos,
        lambda_ae=lambda_ae,
        lambda_la=lambda_la,
        lambda_gan=lambda_gan,
        boundary=boundary,
        n_stages=len(names) - 1,
    )
    if max_steps is not None:
        v.check_positive_int(max_steps, argname="max_steps")
    v.check_positive_int(n_pcs, argname="n_pcs", minimum=2)
    check_batch_size({name: a.n_obs for name, a in datasets.items()}, batch_size)
    is_mudata = isinstance(data, MuData)
    if use_rep is not None:
        if layer is not None or genes is not None:
            raise ValueError("`use_rep` replaces the preprocessing: drop `layer` and `genes`.")
        if is_mudata:
            inputs = {}
            for name, adata in datasets.items():
                if use_rep in adata.obsm:
                    rep = v.check_rep(adata, use_rep)
                else:  # a global MuData embedding
                    rep = v.check_rep(data, use_rep)[global_rows(data, name)]
                inputs[name] = rep.astype(np.float32, copy=False)
            if len({x.shape[1] for x in inputs.values()}) != 1:
                raise ValueError(f"`.obsm[{use_rep!r}]` has different widths in the datasets.")
        else:
            # no copy when the embedding is already a float32 array: the model only reads it
            X = v.check_rep(data, use_rep).astype(np.float32, copy=False)
        pca = None
    else:
        for name, adata in datasets.items():
            v.check_counts(
                v.get_matrix(adata, layer), argname=f"dataset {name!r} (layer={layer!r})"
            )
    if is_mudata:
        disjoint = check_writable(data, names)
    # ---- preprocessing (pure computation, nothing written)
    if use_rep is None:
        pca = joint_pca(
            datasets,
            n_top_genes=n_top_genes,
            n_comps=n_pcs,
            layer=layer,
            genes=genes,
            random_state=seed,
        )
        inputs = pca.embeddings
        if not is_mudata:
            X = np.empty((data.n_obs, pca.pca.loadings.shape[1]), dtype=np.float32)
            for name in names:
                X[rows[name]] = inputs[name]
    if is_mudata:
        # datasets one after the other; cell names prefixed (modalities may share barcodes)
        X = np.concatenate([inputs[name] for name in names])
        labels = np.repeat(names, [datasets[name].n_obs for name in names])
        index = pd.Index([f"{name}::{cell}" for name in names for cell in datasets[name].obs_names])
    else:
        # the cells in the user's order and with the user's names: no reordering, no new names
        labels = data.obs[batch_key].astype(str).to_numpy()
        index = data.obs_names
    internal = AnnData(
        X=X,
        obs=pd.DataFrame(
            {DATASET_KEY: pd.Categorical(labels, categories=names)}, index=index, copy=False
        ),
    )
    settings.seed = seed
    PORTAL.setup_anndata(internal, modality_key=DATASET_KEY)
    model = PORTAL(
        internal,
        reference=reference,
        order=order,
        n_latent=n_latent,
        n_hidden=n_hidden,
        lambda_cos=lambda_cos,
        lambda_ae=lambda_ae,
        lambda_la=lambda_la,
        lambda_gan=lambda_gan,
        boundary=boundary,
    )
    if pca is not None:
        model.expression_transform_ = {
            "datasets": names,
            "genes": list(pca.genes),
            "loadings": pca.pca.loadings,
            "means": pca.pca.means,
            "scales": pca.pca.scales,
        }
    model.train(
        max_steps=max_steps,
        batch_size=batch_size,
        accelerator=accelerator,
        devices=devices,
        **train_kwargs,
    )
    latent = model.get_latent_representation()
    scores = model.get_boundary_scores()

    # ---- write results only now
    obsm_key, score_key = f"X_{key_added}", f"{key_added}_boundary_score"
    if is_mudata:
        bounds = np.cumsum([0] + [datasets[name].n_obs for name in names])
        per_dataset = {name: slice(bounds[k], bounds[k + 1]) for k, name in enumerate(names)}
        write_obsm(data, obsm_key, {m: latent[per_dataset[m]] for m in names}, global_=disjoint)
        write_obs(data, score_key, {m: scores[per_dataset[m]] for m in names}, global_=disjoint)
    else:
        data.obsm[obsm_key] = latent
        data.obs[score_key] = scores
    data.uns[key_added] = {
        "params": clean_params(
            {
                "batch_key": batch_key,
                "datasets": model.domains_,
                "reference": reference,
                "use_rep": use_rep,
                "n_genes": None if pca is None else len(pca.genes),
                "n_pcs": model.module.n_input,
                "n_latent": n_latent,
                "n_hidden": n_hidden,
                "lambda_cos": list(model.module.lambda_cos),
                "lambda_ae": lambda_ae,
                "lambda_la": lambda_la,
                "lambda_gan": lambda_gan,
                "boundary": boundary,
                "max_steps": model.trained_steps_,
                "batch_size": batch_size,
                "seed": seed,
            }
        )
    }
    logger.info("Portal: wrote .obsm[%r] and .obs[%r].", obsm_key, score_key)
    return model
