"""``scx.tl.scpairing`` and ``scx.tl.pair_cells``: embed a paired bridge, pair unpaired cells."""

from __future__ import annotations

import logging
import warnings
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scvi import settings

from scx import _validation as v
from scx.scpairing import SCPAIRING
from scx.scpairing._inputs import Preprocess, fit_input
from scx.scpairing._matching import (
    BLOCK_SIZE,
    MAX_UNBLOCKED,
    check_match_args,
    match_embeddings,
)
from scx.scpairing._model import check_modality, check_paired, check_settings

from ._outputs import check_writable, clean_params, write_obsm

logger = logging.getLogger(__name__)

_PREPROCESS = ("pca", "lsi", "none")


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
    for name, value in (("use_rep", use_rep), ("preprocess", preprocess), ("layer", layer)):
        if isinstance(value, dict):
            unknown = set(value) - set(modalities)
            if unknown:
                raise ValueError(
                    f"`{name}` names modalities {sorted(unknown)} that are not paired here; "
                    f"modalities: {modalities}."
                )
    plan = {}
    for m in modalities:
        rep = use_rep.get(m) if isinstance(use_rep, dict) else use_rep
        kind = preprocess.get(m) if isinstance(preprocess, dict) else preprocess
        lay = layer.get(m) if isinstance(layer, dict) else layer
        if rep is not None:
            if kind is not None and isinstance(preprocess, dict):
                raise ValueError(
                    f"Modality {m!r} has both `use_rep={rep!r}` and `preprocess={kind!r}`; pass "
                    "one of them."
                )
            v.check_rep(mdata.mod[m], rep, argname=f"use_rep for modality {m!r}")
            plan[m] = ("rep", rep)
            continue
        kind = kind if kind is not None else _default_preprocess(m)
        if kind is None:
            raise ValueError(
                f"Modality {m!r} has no `use_rep` and its kind cannot be told from its name; pass "
                f"`use_rep={{{m!r}: '<obsm key>'}}` or `preprocess={{{m!r}: 'pca' | 'lsi' | "
                "'none'}`."
            )
        if kind not in _PREPROCESS:
            raise ValueError(
                f"`preprocess` for modality {m!r} must be one of {list(_PREPROCESS)}, got {kind!r}."
            )
        X = v.get_matrix(mdata.mod[m], lay, argname=f"layer for modality {m!r}")
        v.check_counts(X, argname=f"modality {m!r} (layer={lay!r})", allow_negative=kind == "none")
        plan[m] = (kind, lay)
    return plan


def scpairing(
    mdata: MuData,
    mod1: str = "rna",
    mod2: str = "atac",
    mod3: str | None = None,
    *,
    use_rep: str | dict[str, str | None] | None = None,
    preprocess: Preprocess | dict[str, Preprocess] | None = None,
    layer: str | dict[str, str | None] | None = None,
    n_comps: int = 10,
    n_top_genes: int = 2000,
    batch_key: str | None = None,
    n_latent: int = 10,
    n_hidden: int = 128,
    dropout: float = 0.1,
    loss_method: Literal["clip", "debiased_clip", "sigmoid"] = "clip",
    combine: Literal["dropout", "average"] = "dropout",
    modality_discriminative: bool = True,
    batch_discriminative: bool = False,
    cosine_weight: float = 1.0,
    kl_weight: float = 1e-3,
    cap_temperature: float | None = None,
    adversarial: Literal["subtract", "confusion"] = "subtract",
    max_epochs: int = 300,
    batch_size: int = 2000,
    lr: float = 5e-3,
    seed: int = 0,
    key_added: str = "scpairing",
    accelerator: str = "auto",
    devices: int | list[int] | str = "auto",
    **train_kwargs,
) -> SCPAIRING:
    """Train scPairing on a paired bridge and embed its cells on the unit sphere.

    Each modality's low-dimensional input is an ``.obsm`` entry (``use_rep``: PCA, LSI, an
    scVI / PeakVI latent, …) or is computed here (``preprocess``): ``"pca"`` (RNA counts:
    normalise to 10⁴, log1p, highly variable genes, PCA, through scanpy), ``"lsi"`` (ATAC counts:
    TF-IDF and LSI with muon's formulas) or ``"none"`` (the matrix as is, e.g. CLR proteins). By
    default modalities named like ``rna`` get PCA and ``atac`` get LSI. Computed projections are
    stored on the model, so ``model.get_latent_representation(adata, modality=...)`` projects
    new unpaired cells exactly like the bridge.

    Writes ``mdata.mod[m].obsm[f"X_{key_added}"]`` (each modality's embedding),
    ``mdata.obsm[f"X_{key_added}"]`` (the normalised mean of the modalities' embeddings; the
    cells are shared), and ``mdata.uns[key_added]["params"]`` (including the learned inverse
    temperature). Everything is checked before training; nothing is written unless it succeeds.

    Parameters
    ----------
    mdata
        Paired MuData: the modalities hold the same cells in the same order.
    mod1, mod2, mod3
        Modalities to use (a third one, e.g. protein, is optional).
    use_rep
        ``.obsm`` key of the input, once for all or ``{modality: key}``.
    preprocess
        ``"pca"``, ``"lsi"`` or ``"none"`` for modalities without ``use_rep`` (once or per
        modality; inferred from the modality name by default).
    layer
        Layer with counts for ``preprocess`` (``None``: ``.X``), once or per modality.
    n_comps
        Components of the computed PCA / LSI (10, as in the reference's tutorial).
    n_top_genes
        Highly variable genes of the PCA (2,000; all genes when there are fewer).
    batch_key
        ``.obs`` column (of ``mod1``) with batches, for ``batch_discriminative``.
    n_latent, n_hidden, dropout, loss_method, combine
        Model settings, see :class:`scx.model.SCPAIRING`.
    modality_discriminative, batch_discriminative, cosine_weight, kl_weight
        Model settings, see :class:`scx.model.SCPAIRING`.
    cap_temperature, adversarial
        Model settings, see :class:`scx.model.SCPAIRING`.
    max_epochs, batch_size, lr
        Training settings (300, 2,000, 5e-3), see :meth:`scx.model.SCPAIRING.train`.
    seed
        Random seed (``scvi.settings.seed``); also seeds the PCA / LSI.
    key_added
        Prefix of the written keys.
    accelerator, devices
        Lightning accelerator and devices.
    **train_kwargs
        Further arguments of :meth:`scx.model.SCPAIRING.train`.

    Returns
    -------
    The trained model.
    """
    mdata = v.check_mudata(mdata)
    modalities = [mod1, mod2] + ([mod3] if mod3 is not None else [])
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"`mod1`, `mod2` and `mod3` must be different, got {modalities}.")
    for name, m in zip(("mod1", "mod2", "mod3"), modalities):
        check_modality(mdata, m, argname=name)
    check_paired(mdata, modalities)
    n_obs = mdata.mod[mod1].n_obs
    if n_obs < 2:
        raise ValueError("The bridge needs at least 2 paired cells.")
    check_settings(
        n_latent=n_latent,
        n_hidden=n_hidden,
        dropout=dropout,
        loss_method=loss_method,
        combine=combine,
        adversarial=adversarial,
        weights={"cosine_weight": cosine_weight, "kl_weight": kl_weight},
        temperature=1 / 0.07,
        cap_temperature=cap_temperature,
    )
    v.check_positive_int(n_comps, argname="n_comps", minimum=2)
    v.check_positive_int(n_top_genes, argname="n_top_genes", minimum=2)
    v.check_positive_int(max_epochs, argname="max_epochs")
    v.check_positive_int(batch_size, argname="batch_size", minimum=2)
    if batch_key is not None:
        v.check_obs_key(mdata.mod[mod1], batch_key, argname="batch_key", where=f" of {mod1!r}")
    plan = _resolve_inputs(mdata, modalities, use_rep, preprocess, layer)
    check_writable(mdata, modalities)

    # ---- inputs (pure computation on copies; nothing written to the user's data)
    settings.seed = seed
    inputs, transforms, keys = {}, {}, {}
    for m in modalities:
        how, arg = plan[m]
        if how == "rep":
            inputs[m] = v.check_rep(mdata.mod[m], arg).astype(np.float32)
            transforms[m], keys[m] = None, arg
        else:
            inputs[m], transforms[m] = fit_input(
                mdata.mod[m], how, layer=arg, n_comps=n_comps, n_top_genes=n_top_genes, seed=seed
            )
            keys[m] = f"X_{how}" if how != "none" else "X_input"
    obs = pd.DataFrame(index=mdata.mod[mod1].obs_names.copy())
    if batch_key is not None:
        obs[batch_key] = mdata.mod[mod1].obs[batch_key].to_numpy()
    internal = MuData(
        {
            m: AnnData(obs=obs.copy(), obsm={keys[m]: inputs[m]}, shape=(n_obs, 0))
            for m in modalities
        }
    )
    SCPAIRING.setup_mudata(internal, modalities=modalities, use_rep=keys, batch_key=batch_key)
    model = SCPAIRING(
        internal,
        n_latent=n_latent,
        n_hidden=n_hidden,
        dropout=dropout,
        loss_method=loss_method,
        combine=combine,
        modality_discriminative=modality_discriminative,
        batch_discriminative=batch_discriminative,
        cosine_weight=cosine_weight,
        kl_weight=kl_weight,
        cap_temperature=cap_temperature,
        adversarial=adversarial,
    )
    model.input_transforms_ = transforms
    model.train(
        max_epochs=max_epochs,
        batch_size=batch_size,
        lr=lr,
        accelerator=accelerator,
        devices=devices,
        **train_kwargs,
    )
    embeddings = {m: model.get_latent_representation(modality=m) for m in modalities}

    # ---- write (only after success)
    obsm_key = f"X_{key_added}"
    write_obsm(mdata, obsm_key, embeddings, global_=False)
    mean = np.mean([embeddings[m] for m in modalities], axis=0)
    mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    from ._outputs import global_rows

    out = np.full((mdata.n_obs, n_latent), np.nan, dtype=np.float32)
    out[global_rows(mdata, mod1)] = mean
    mdata.obsm[obsm_key] = out
    mdata.uns[key_added] = {
        "params": clean_params(
            {
                "modalities": modalities,
                "inputs": {
                    m: plan[m][1] if plan[m][0] == "rep" else plan[m][0] for m in modalities
                },
                "n_comps": n_comps,
                "n_latent": n_latent,
                "n_hidden": n_hidden,
                "loss_method": loss_method,
                "combine": combine,
                "adversarial": adversarial,
                "modality_discriminative": modality_discriminative,
                "batch_discriminative": batch_discriminative,
                "batch_key": batch_key if batch_key is not None else "None",
                "cosine_weight": cosine_weight,
                "kl_weight": kl_weight,
                "max_epochs": max_epochs,
                "batch_size": batch_size,
                "lr": lr,
                "seed": seed,
                "temperature": model.get_temperature(),
            }
        )
    }
    return model


def _embedding(
    model: SCPAIRING | None,
    adata: AnnData,
    modality: str | None,
    use_rep: str | None,
    argname: str,
) -> np.ndarray:
    if not isinstance(adata, AnnData):
        raise ValueError(f"`{argname}` must be an AnnData, got {type(adata).__name__}.")
    if adata.n_obs == 0:
        raise ValueError(f"`{argname}` has no cells; pass at least one cell per side.")
    if model is None:
        if use_rep is None:
            raise ValueError(
                "Without a model pass `use_rep`, the `.obsm` key of a shared embedding of both "
                "sides."
            )
        return v.check_rep(adata, use_rep, argname=f"use_rep (in {argname})")
    return model.get_latent_representation(adata, modality=modality)


def pair_cells(
    model: SCPAIRING | None,
    adata_mod1: AnnData,
    adata_mod2: AnnData,
    *,
    mod1: str | None = None,
    mod2: str | None = None,
    use_rep: str | None = None,
    cutoff: float = 0.8,
    method: Literal["auto", "exact", "sparse"] = "auto",
    n_neighbors: int = 10,
    block_size: int = BLOCK_SIZE,
    max_unblocked: int = MAX_UNBLOCKED,
    seed: int = 0,
    key_added: str = "scpairing",
) -> MuData:
    """Pair unpaired cells of two modalities into an artificial multiome MuData.

    Both sides are embedded with the model's encoders, then matched one-to-one by maximum-weight
    bipartite matching on cosine similarity: the summed similarity of the pairs is maximal,
    pairs below ``cutoff`` are never formed, and unequal sizes give at most ``min(n1, n2)``
    pairs. ``method="exact"`` solves the dense problem with
    :func:`scipy.optimize.linear_sum_assignment` (the reference's procedure); ``"sparse"``
    matches on a candidate graph of each cell's ``n_neighbors`` nearest cross-modality
    neighbours (both directions) with
    :func:`scipy.sparse.csgraph.min_weight_full_bipartite_matching` and never builds the
    ``n1 × n2`` matrix (in k-means blocks of about ``block_size`` cells above
    ``max_unblocked`` cells per side);
    ``"auto"`` is exact up to 25 million cell pairs. See :func:`scx.scpairing.match_embeddings`.

    Parameters
    ----------
    model
        Trained :class:`scx.model.SCPAIRING`, or ``None`` to pair on a shared embedding in
        ``.obsm[use_rep]`` of both AnnData.
    adata_mod1, adata_mod2
        Cells measured only in ``mod1`` / ``mod2`` (with the inputs the model needs: counts
        when scx computed the PCA / LSI, else the same ``.obsm`` key as the bridge).
    mod1, mod2
        The model's modalities of the two sides (its first two by default).
    use_rep
        ``.obsm`` key of a shared embedding, only with ``model=None``.
    cutoff
        Minimum cosine similarity of a pair (0.8, the reference's README).
    method
        ``"auto"``, ``"exact"`` or ``"sparse"``.
    n_neighbors
        Candidates per cell and direction of the sparse solver (10).
    block_size, max_unblocked
        The sparse solver works in k-means blocks of about ``block_size`` cells (5,000) when a
        side has more than ``max_unblocked`` cells (20,000).
    seed
        Seed of the approximate neighbour search and the blocks.
    key_added
        Prefix of the written keys.

    Returns
    -------
    New MuData with one observation per pair (named ``"<mod1 cell>+<mod2 cell>"``): modality
    ``mod1`` holds the paired ``adata_mod1`` cells and ``mod2`` their partners, each with
    ``obs["original_obs_name"]`` and ``obsm[f"X_{key_added}"]``; ``obs[f"{key_added}_similarity"]``
    holds each pair's cosine similarity; ``uns[f"{key_added}_pairs"]`` is the pair table
    (``mod1``, ``mod2`` cell names, ``similarity``) and ``uns[key_added]["params"]`` the settings.
    """
    if model is not None and not isinstance(model, SCPAIRING):
        raise ValueError(
            f"`model` must be a trained scx.model.SCPAIRING (or None with `use_rep`), got "
            f"{type(model).__name__}."
        )
    if model is not None:
        if use_rep is not None:
            raise ValueError("`use_rep` is for pairing without a model; drop it or `model`.")
        mod1 = model.modalities[0] if mod1 is None else mod1
        mod2 = model.modalities[1] if mod2 is None else mod2
        for name, m in (("mod1", mod1), ("mod2", mod2)):
            if m not in model.modalities:
                raise ValueError(
                    f"`{name}={m!r}` is not one of the model's modalities {model.modalities}."
                )
    else:
        mod1 = "mod1" if mod1 is None else mod1
        mod2 = "mod2" if mod2 is None else mod2
    if mod1 == mod2:
        raise ValueError(f"`mod1` and `mod2` must be different modalities, got {mod1!r} twice.")
    z1 = _embedding(model, adata_mod1, mod1, use_rep, "adata_mod1")
    z2 = _embedding(model, adata_mod2, mod2, use_rep, "adata_mod2")
    check_match_args(z1, z2, cutoff, method, n_neighbors)
    matching = match_embeddings(
        z1,
        z2,
        cutoff=cutoff,
        method=method,
        n_neighbors=n_neighbors,
        block_size=block_size,
        max_unblocked=max_unblocked,
        random_state=seed,
    )
    if matching.rows.size == 0:
        warnings.warn(
            f"No pair reaches the similarity cutoff {cutoff}; the returned MuData is empty. "
            "Lower `cutoff` or check that both sides are embedded by the same model.",
            stacklevel=2,
        )
    names1 = adata_mod1.obs_names[matching.rows]
    names2 = adata_mod2.obs_names[matching.cols]
    pair_names = pd.Index([f"{a}+{b}" for a, b in zip(names1, names2)])
    sides = {}
    for m, adata, idx, z in (
        (mod1, adata_mod1, matching.rows, z1),
        (mod2, adata_mod2, matching.cols, z2),
    ):
        part = adata[idx].copy()
        part.obs["original_obs_name"] = part.obs_names.to_numpy()
        part.obs_names = pair_names
        part.obsm[f"X_{key_added}"] = np.asarray(z[idx], dtype=np.float32)
        sides[m] = part
    paired = MuData(sides)
    paired.obs[f"{key_added}_similarity"] = (
        pd.Series(matching.similarity.astype(np.float64), index=pair_names)
        .reindex(paired.obs_names)
        .to_numpy()
    )
    paired.uns[f"{key_added}_pairs"] = pd.DataFrame(
        {
            mod1: names1.astype(str).to_numpy(),
            mod2: names2.astype(str).to_numpy(),
            "similarity": matching.similarity.astype(np.float64),
        }
    )
    paired.uns[key_added] = {
        "params": clean_params(
            {
                "mod1": mod1,
                "mod2": mod2,
                "cutoff": float(cutoff),
                "method": matching.method,
                "n_neighbors": n_neighbors,
                "block_size": block_size,
                "max_unblocked": max_unblocked,
                "n_pairs": int(matching.rows.size),
                "n_candidates": matching.n_candidates,
                "total_similarity": matching.total_similarity,
            }
        )
    }
    return paired
