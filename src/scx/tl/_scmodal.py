"""``scx.tl.scmodal``: align two modalities with weakly linked features; ``scx.tl.impute``."""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from scvi import settings

from scx import _validation as v
from scx.pp._batches import log_normalize
from scx.scmodal import SCMODAL
from scx.scmodal._links import MIN_LINKS, Links, resolve_links
from scx.scmodal._model import check_batch_size, check_settings

from ._outputs import check_writable, clean_params, write_obsm

logger = logging.getLogger(__name__)

#: Smallest library-size target of the linked blocks (the reference's floor).
MIN_LINKED_TARGET = 20.0


def _normalize_log(X, target_sum: float | None) -> sparse.csr_matrix:
    """Library-size normalisation of a block to ``target_sum`` (median total if None), log1p."""
    return log_normalize(sparse.csr_matrix(X, dtype=np.float32), target_sum)


def _unlinked_features(adata: AnnData, counts, linked: pd.Index, n_top: int, name: str) -> pd.Index:
    """Detected features outside the links; the ``n_top`` most variable when there are more."""
    detected = np.asarray((counts != 0).sum(axis=0)).ravel() > 0
    candidates = adata.var_names[detected & ~adata.var_names.isin(linked)]
    if len(candidates) <= n_top:
        return candidates
    columns = adata.var_names.get_indexer(candidates)
    block = AnnData(X=sparse.csr_matrix(counts[:, columns], dtype=np.float32))
    block.var_names = candidates
    hvg = sc.pp.highly_variable_genes(block, flavor="seurat_v3", n_top_genes=n_top, inplace=False)
    logger.info("scMODAL: %d of %d unlinked %s features kept.", n_top, len(candidates), name)
    return candidates[np.asarray(hvg["highly_variable"])]


def _preprocess(
    adatas: dict[str, AnnData],
    counts: dict[str, object],
    links: pd.DataFrame,
    n_top_features: int,
) -> dict[str, AnnData]:
    """The reference's recipe on counts, as log-normalised blocks (standardised in the model).

    Linked features of both modalities are normalised to one common library size (the median
    linked total of the first modality, at least 20) and log1p; the other features (the
    ``n_top_features`` most variable beyond the links) to their own median library size and
    log1p. Result per modality: ``[linked | unlinked]`` as a sparse matrix.
    """
    names = list(adatas)
    linked = {m: pd.Index(pd.unique(links[m])) for m in names}
    blocks = {}
    first = adatas[names[0]]
    cols = first.var_names.get_indexer(linked[names[0]])
    first_totals = np.asarray(counts[names[0]][:, cols].sum(axis=1)).ravel()
    target = max(float(np.median(first_totals)), MIN_LINKED_TARGET)
    for m in names:
        adata, X = adatas[m], counts[m]
        cols = adata.var_names.get_indexer(linked[m])
        linked_block = _normalize_log(X[:, cols], target)
        other = _unlinked_features(adata, X, linked[m], n_top_features, m)
        parts = [linked_block]
        if len(other):
            parts.append(_normalize_log(X[:, adata.var_names.get_indexer(other)], None))
        block = sparse.hstack(parts, format="csr", dtype=np.float32)
        blocks[m] = AnnData(
            X=block,
            obs=pd.DataFrame(index=adata.obs_names.copy()),
            var=pd.DataFrame(
                {"linked": np.r_[np.ones(len(cols), bool), np.zeros(len(other), bool)]},
                index=linked[m].append(other),
            ),
        )
    return blocks


def scmodal(
    mdata: MuData,
    mod1: str = "rna",
    mod2: str = "prot",
    links: Links | None = None,
    *,
    layer: str | dict[str, str | None] | None = None,
    preprocess: bool = True,
    n_top_features: int = 3000,
    drop_missing_links: bool = False,
    n_latent: int = 20,
    n_hidden: int = 512,
    lambda_gan: float = 1.0,
    lambda_ae: float = 10.0,
    lambda_la: float = 10.0,
    lambda_mnn: float = 1.0,
    lambda_geo: float = 10.0,
    n_neighbors: int = 30,
    max_steps: int = 10_000,
    batch_size: int = 500,
    seed: int = 0,
    key_added: str = "scmodal",
    accelerator: str = "auto",
    devices: int | list[int] | str = "auto",
    **train_kwargs,
) -> SCMODAL:
    """Align two modalities whose features are only weakly linked, with scMODAL.

    Examples: RNA ↔ surface protein (protein → gene links), protein ↔ protein from two panels
    (shared marker names), RNA ↔ ATAC gene activity (gene → gene). The modalities are treated as
    unpaired. With ``preprocess=True`` (counts) the reference's recipe is applied: the linked
    features of both modalities are normalised to one common library size (median linked total
    of ``mod1``, at least 20) and log1p; the other features, reduced to the ``n_top_features``
    most variable (seurat_v3), to their own median library size and log1p. The model then
    standardises every feature (clipped at ±10) and trains :class:`scx.model.SCMODAL`.

    Writes ``mdata.mod[m].obsm[f"X_{key_added}"]`` for every cell of both modalities (and
    ``mdata.obsm`` when the modalities' cells are distinct) and ``mdata.uns[key_added]
    ["params"]`` with the link counts and the links used. Everything is checked before
    training; nothing is written unless training succeeds. Impute one modality from the other
    with :func:`scx.tl.impute`.

    Parameters
    ----------
    mdata
        MuData holding both modalities.
    mod1, mod2
        The two modalities (``mod1`` plays the reference's "A": its latents are the
        discriminator's "real" class and its linked total sets the common library size).
    links
        Feature links: a two-column DataFrame (columns named ``mod1``/``mod2``, or in any order
        of the two), a list of ``(feature, feature)`` pairs or a dict ``{feature: feature or
        [features]}``; one-to-many allowed, either orientation (e.g. a protein → gene dict for
        ``mod1="rna", mod2="prot"``). At least three usable links are needed.
    layer
        Layer with the input (``None``: ``.X``), once or ``{modality: layer}``.
    preprocess
        Treat the inputs as counts and preprocess them (above). ``False``: use them as they are
        (e.g. log-normalised values, gene activity); they are still standardised per feature.
    n_top_features
        Unlinked features kept per modality (3,000 highly variable, as the reference).
    drop_missing_links
        Ignore links naming features a modality lacks (reported in ``params``) instead of
        raising an error.
    n_latent, n_hidden, lambda_gan, lambda_ae, lambda_la, lambda_mnn, lambda_geo, n_neighbors
        Model settings, see :class:`scx.model.SCMODAL`.
    max_steps
        Training steps (10,000, the reference's default).
    batch_size
        Cells per modality per step (500).
    seed
        Random seed (``scvi.settings.seed``).
    key_added
        Prefix of the written keys.
    accelerator, devices
        Lightning accelerator and devices.
    **train_kwargs
        Further arguments of :meth:`scx.model.SCMODAL.train` and :class:`scvi.train.Trainer`.

    Returns
    -------
    The trained model.
    """
    v.check_mudata(mdata)
    adata_1 = v.check_modality(mdata, mod1, argname="mod1")
    adata_2 = v.check_modality(mdata, mod2, argname="mod2")
    if mod1 == mod2:
        raise ValueError(f"`mod1` and `mod2` must be two different modalities, got {mod1!r} twice.")
    if links is None:
        raise ValueError(
            "`links` is required: the features of the two modalities that measure the same "
            "thing, e.g. {'CD3': 'CD3E', 'CD19': 'CD19', ...} (protein → gene)."
        )
    adatas = {mod1: adata_1, mod2: adata_2}
    layers = layer if isinstance(layer, dict) else {mod1: layer, mod2: layer}
    unknown = set(layers) - {mod1, mod2}
    if unknown:
        raise ValueError(f"`layer` names modalities {sorted(unknown)}; use {[mod1, mod2]}.")
    matrices = {}
    for m, adata in adatas.items():
        if not adata.var_names.is_unique:
            raise ValueError(
                f"Modality {m!r} has duplicated feature names; call "
                f"`mdata.mod[{m!r}].var_names_make_unique()` first (links use names)."
            )
        if not adata.obs_names.is_unique:
            raise ValueError(
                f"Modality {m!r} has duplicated cell names; call "
                f"`mdata.mod[{m!r}].obs_names_make_unique()` and `mdata.update()` first."
            )
        X = v.get_matrix(adata, layers.get(m), argname="layer")
        v.check_counts(
            X, argname=f"mdata.mod[{m!r}] (layer={layers.get(m)!r})", allow_negative=not preprocess
        )
        matrices[m] = X
    resolved = resolve_links(
        links,
        {m: adatas[m].var_names for m in (mod1, mod2)},
        drop_missing=drop_missing_links,
        min_links=MIN_LINKS,
    )
    check_settings(
        lambda_gan=lambda_gan,
        lambda_ae=lambda_ae,
        lambda_la=lambda_la,
        lambda_mnn=lambda_mnn,
        lambda_geo=lambda_geo,
    )
    v.check_positive_int(n_latent, argname="n_latent")
    v.check_positive_int(n_hidden, argname="n_hidden")
    v.check_positive_int(n_neighbors, argname="n_neighbors")
    v.check_positive_int(n_top_features, argname="n_top_features", minimum=0)
    v.check_positive_int(max_steps, argname="max_steps")
    check_batch_size({m: a.n_obs for m, a in adatas.items()}, batch_size)
    disjoint = check_writable(mdata, [mod1, mod2])

    # ---- preprocessing (pure computation, nothing written)
    if preprocess:
        inputs = _preprocess(adatas, matrices, resolved.pairs, n_top_features)
    else:
        inputs = {
            m: AnnData(
                X=matrices[m],
                obs=pd.DataFrame(index=adatas[m].obs_names.copy()),
                var=pd.DataFrame(
                    {"linked": adatas[m].var_names.isin(resolved.pairs[m])},
                    index=adatas[m].var_names.copy(),
                ),
            )
            for m in (mod1, mod2)
        }
    internal = MuData(inputs)
    settings.seed = seed
    SCMODAL.setup_mudata(internal, modalities=[mod1, mod2])
    model = SCMODAL(
        internal,
        links=resolved.pairs,
        n_latent=n_latent,
        n_hidden=n_hidden,
        lambda_gan=lambda_gan,
        lambda_ae=lambda_ae,
        lambda_la=lambda_la,
        lambda_mnn=lambda_mnn,
        lambda_geo=lambda_geo,
        n_neighbors=n_neighbors,
    )
    model.train(
        max_steps=max_steps,
        batch_size=batch_size,
        accelerator=accelerator,
        devices=devices,
        **train_kwargs,
    )
    latent = model.get_latent_representation()

    # ---- write results only now
    obsm_key = f"X_{key_added}"
    write_obsm(mdata, obsm_key, latent, global_=disjoint)
    mdata.uns[key_added] = {
        "params": clean_params(
            {
                "mod1": mod1,
                "mod2": mod2,
                "layer": {m: layers.get(m) or "X" for m in (mod1, mod2)},
                "preprocess": preprocess,
                **resolved.counts(),
                "links_swapped": resolved.swapped,
                f"linked_{mod1}": resolved.pairs[mod1].tolist(),
                f"linked_{mod2}": resolved.pairs[mod2].tolist(),
                "n_features": {m: int(inputs[m].n_vars) for m in (mod1, mod2)},
                "n_latent": n_latent,
                "n_hidden": n_hidden,
                "lambda_gan": lambda_gan,
                "lambda_ae": lambda_ae,
                "lambda_la": lambda_la,
                "lambda_mnn": lambda_mnn,
                "lambda_geo": lambda_geo,
                "n_neighbors": n_neighbors,
                "max_steps": model.trained_steps_,
                "batch_size": batch_size,
                "seed": seed,
            }
        )
    }
    logger.info(
        "scMODAL: %d links used; wrote .obsm[%r] of %s and %s.",
        resolved.n_used,
        obsm_key,
        mod1,
        mod2,
    )
    return model


def impute(
    mdata: MuData,
    model: SCMODAL,
    source: str,
    target: str,
    *,
    to: Literal["modality", "obsm"] = "modality",
    key_added: str | None = None,
) -> pd.DataFrame:
    """Translate the cells of ``source`` into ``target``'s features (e.g. protein from RNA).

    Uses a trained cross-modal model (:func:`scx.tl.scmodal`): each ``source`` cell is encoded
    into the shared latent and decoded by ``target``'s generator, back on the scale of
    ``target``'s model input (log-normalised values with the default preprocessing).

    Parameters
    ----------
    mdata
        The MuData the model was trained on.
    model
        The trained model returned by :func:`scx.tl.scmodal`.
    source, target
        Modality of the cells, and modality whose features are predicted.
    to
        ``"modality"``: a new modality ``key_added`` (cells of ``source`` × features of
        ``target``), followed by ``mdata.update()``; ``"obsm"``: a DataFrame in
        ``mdata.mod[source].obsm[key_added]``.
    key_added
        Name of the new modality or ``obsm`` key; ``f"{target}_from_{source}"`` (modality) or
        ``f"scmodal_{target}"`` (obsm) by default.

    Returns
    -------
    The imputed values, ``source`` cells × ``target`` features.
    """
    v.check_mudata(mdata)
    if not hasattr(model, "get_imputed"):
        raise ValueError(
            f"`model` must be a trained cross-modal model such as scx.model.SCMODAL, got "
            f"{type(model).__name__}."
        )
    for name, m in (("source", source), ("target", target)):
        if m not in model.modalities:
            raise ValueError(
                f"`{name}={m!r}` is not one of the model's modalities {model.modalities}."
            )
    if source == target:
        raise ValueError("`source` and `target` must differ.")
    if to not in ("modality", "obsm"):
        raise ValueError(f"`to` must be 'modality' or 'obsm', got {to!r}.")
    adata = v.check_modality(mdata, source, argname="source")
    imputed = model.get_imputed(source, target)
    if not adata.obs_names.equals(imputed.index):
        raise ValueError(
            f"The cells of `mdata.mod[{source!r}]` are not those the model was trained on; pass "
            "the MuData given to `scx.tl.scmodal`."
        )
    if to == "modality":
        key = key_added or f"{target}_from_{source}"
        if key in (source, target):
            raise ValueError(f"`key_added={key!r}` would overwrite a measured modality.")
        mdata.mod[key] = AnnData(
            X=imputed.to_numpy(),
            obs=pd.DataFrame(index=imputed.index.copy()),
            var=pd.DataFrame(index=imputed.columns.copy()),
        )
        mdata.update()
    else:
        key = key_added or f"scmodal_{target}"
        mdata.mod[source].obsm[key] = imputed
    return imputed
