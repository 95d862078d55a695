"""``scx.tl.scpairing`` and ``scx.tl.pair_cells``: embed a paired bridge, pair unpaired cells."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from scx import _validation as v
from scx.base import MixingCheck, Outputs, clean_params, global_rows, method_tool
from scx.train import unknown_name_message

from ._matching import BLOCK_SIZE, MAX_UNBLOCKED, check_match_options, match_embeddings
from ._model import SCPAIRING

logger = logging.getLogger(__name__)


def _outputs(model: SCPAIRING, data: MuData, key_added: str) -> Outputs:
    """Each modality's embedding of the bridge and their normalised mean."""
    embeddings = model.get_latent_representation()
    mean = np.mean([embeddings[m] for m in model.modalities], axis=0)
    mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    # the bridge is paired: one global row per cell, the rows of the first modality
    joint = np.full((data.n_obs, mean.shape[1]), np.nan, dtype=np.float32)
    joint[global_rows(data, model.modalities[0])] = mean
    args = model.input_state_["args"]
    return Outputs(
        obsm={f"X_{key_added}": embeddings},
        global_obsm={f"X_{key_added}": joint},
        uns={
            "inputs": {
                m: args["use_rep"][m] if args["use_rep"][m] is not None else args["preprocess"][m]
                for m in model.modalities
            },
            "learned_temperature": model.get_temperature(),
        },
    )


scpairing = method_tool(
    SCPAIRING,
    _outputs,
    name="scpairing",
    renamed={"mod1": ("modalities", 0), "mod2": ("modalities", 1), "mod3": ("modalities", 2)},
    mixing=MixingCheck(
        hint="Train longer (`max_epochs`), and check that the bridge is paired: row i of every "
        "modality must be the same cell.",
    ),
    doc="""Train scPairing on a paired bridge and embed its cells on the unit sphere.

Each modality's low-dimensional input is an ``.obsm`` entry (``use_rep``: PCA, LSI, an scVI /
PeakVI latent, …) or is computed here (``preprocess``): ``"pca"`` for RNA counts, ``"lsi"`` for
ATAC counts, ``"none"`` for a matrix used as is (e.g. CLR proteins); by default modalities named
like ``rna`` get PCA and ``atac`` get LSI. The fitted projections are kept with the model
(``model.input_state_["transforms"]``), so
``model.get_latent_representation(new_cells, modality=...)`` maps the counts of new unpaired
cells exactly like the bridge's, and ``scx.model.SCPAIRING.load(dir, adata=bridge)`` rebuilds
the inputs from the bridge as you hold it. Then writes

* ``data.mod[m].obsm[f"X_{key_added}"]``: each modality's unit embedding of the bridge cells;
* ``data.obsm[f"X_{key_added}"]``: the normalised mean of the modalities' embeddings (the cells
  are shared; for ``sc.pp.neighbors``);
* ``uns[key_added]``: ``params`` (every setting as used), ``inputs`` (each modality's input:
  its ``.obsm`` key or the computed kind), ``learned_temperature`` (the learned inverse
  temperature) and ``mixing`` (how well the modalities' embeddings mix, see
  ``check_mixing``; a warning says when they stay apart).

Every input is checked before any work; nothing is written unless training succeeds.

{parameters}

Examples
--------
>>> model = scx.tl.scpairing(bridge, modalities=("rna", "atac"))
>>> z_atac = model.get_latent_representation(atac_only, modality="atac")
>>> paired = scx.tl.pair_cells(mudata.MuData({"rna": rna_only, "atac": atac_only}), model)
""",
)


# ---------------------------------------------------------------------------- pair_cells
_OLD_NAMES = ("adata_mod1", "adata_mod2", "mod1", "mod2")


def pair_cells(
    data: MuData,
    model: SCPAIRING | None = None,
    *args: Any,
    modalities: tuple[str, str] | list[str] | None = None,
    use_rep: str | None = None,
    cutoff: float = 0.8,
    method: Literal["auto", "exact", "sparse"] = "auto",
    n_neighbors: int = 10,
    block_size: int = BLOCK_SIZE,
    max_unblocked: int = MAX_UNBLOCKED,
    seed: int = 0,
    key_added: str = "scpairing",
    **old: Any,
) -> MuData:
    """Pair unpaired cells of two modalities into an artificial multiome MuData.

    Both sides are embedded with the model's encoders (or read from ``.obsm[use_rep]``), then
    matched one-to-one by maximum-weight bipartite matching on cosine similarity: the summed
    similarity of the pairs is maximal, pairs below ``cutoff`` are never formed, and unequal
    sizes give at most ``min(n1, n2)`` pairs. ``method="exact"`` solves the dense problem with
    :func:`scipy.optimize.linear_sum_assignment` (the reference's procedure); ``"sparse"``
    matches on a candidate graph of each cell's ``n_neighbors`` nearest cross-modality
    neighbours (both directions) with
    :func:`scipy.sparse.csgraph.min_weight_full_bipartite_matching` and never builds the
    ``n1 × n2`` matrix (in k-means blocks of about ``block_size`` cells above
    ``max_unblocked`` cells per side); ``"auto"`` is exact up to 25 million cell pairs. See
    :func:`scx.scpairing.match_embeddings`. Nothing is written into ``data``.

    The old form ``pair_cells(model, adata_mod1, adata_mod2, mod1=..., mod2=...)`` still works
    (with a ``FutureWarning``).

    Parameters
    ----------
    data
        MuData holding the unpaired cells of the two modalities (named like the model's
        modalities), with the inputs the model needs: counts when scx computed the PCA / LSI,
        else the same ``.obsm`` key as the bridge. Its modalities need not share cells.
    model
        Trained :class:`scx.model.SCPAIRING`, or ``None`` to pair on a shared embedding in
        ``.obsm[use_rep]`` of both modalities.
    modalities
        The two modalities to pair, in order: the model's (its first two by default); without
        a model, the MuData's (its two modalities by default).
    use_rep
        ``.obsm`` key of a shared embedding, only with ``model=None``.
    cutoff
        Minimum cosine similarity of a pair, in [-1, 1] (0.8, the reference's README).
    method
        ``"auto"``, ``"exact"`` or ``"sparse"``.
    n_neighbors
        Candidates per cell and direction of the sparse solver (10).
    block_size, max_unblocked
        The sparse solver works in k-means blocks of about ``block_size`` cells (5,000) when a
        side has more than ``max_unblocked`` cells (20,000).
    seed
        Seed of the approximate neighbour search and of the blocks.
    key_added
        Prefix of the keys of the returned MuData.

    Returns
    -------
    New MuData with one observation per pair (named ``"<cell 1>+<cell 2>"``): the first modality
    holds the paired cells of the first side and the second their partners, each with
    ``obs["original_obs_name"]`` and ``obsm[f"X_{key_added}"]``;
    ``obs[f"{key_added}_similarity"]`` holds each pair's cosine similarity;
    ``uns[f"{key_added}_pairs"]`` is the pair table (the two modalities' cell names and
    ``similarity``) and ``uns[key_added]["params"]`` the settings.

    Examples
    --------
    >>> unpaired = mudata.MuData({"rna": rna_only, "atac": atac_only})
    >>> paired = scx.tl.pair_cells(unpaired, model, cutoff=0.8)
    """
    sides = None
    if args or old or isinstance(data, SCPAIRING) or (data is None and isinstance(model, AnnData)):
        data, model, modalities, sides = _old_form(data, model, args, old, modalities)
    options = {
        "cutoff": cutoff,
        "method": method,
        "n_neighbors": n_neighbors,
        "block_size": block_size,
        "max_unblocked": max_unblocked,
    }
    names, sides = _check_pairing(data, model, modalities, use_rep, sides, seed, key_added, options)
    z = {m: _embedding(model, sides[m], m, use_rep) for m in names}
    matching = match_embeddings(
        z[names[0]],
        z[names[1]],
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
            UserWarning,
            stacklevel=2,
        )
    return _paired_mudata(sides, names, z, matching, key_added, {**options, "seed": seed})


def _old_form(data, model, args: tuple, old: dict, modalities):
    """The deprecated forms → ``(data, model, modalities, sides)``.

    ``pair_cells(model, adata_mod1, adata_mod2, mod1=, mod2=)`` gives ``sides`` (the two
    AnnData by modality); ``pair_cells(mdata, model, mod1=, mod2=)`` gives ``modalities``.
    """
    unknown = [k for k in old if k not in _OLD_NAMES]
    if unknown:
        accepted = [*_OLD_NAMES, "modalities", "use_rep", "cutoff", "method", "n_neighbors"]
        accepted += ["block_size", "max_unblocked", "seed", "key_added", "data", "model"]
        raise ValueError(unknown_name_message(unknown[0], accepted, "scx.tl.pair_cells"))
    if len(args) > 1:
        raise TypeError("scx.tl.pair_cells takes at most three positional arguments (old form).")
    if modalities is not None and ("mod1" in old or "mod2" in old):
        raise ValueError("Pass either `modalities=` or the deprecated `mod1=`/`mod2=`, not both.")
    new_form = isinstance(data, MuData) and not args and not {"adata_mod1", "adata_mod2"} & set(old)
    real_model = model if new_form else data
    if real_model is not None and not isinstance(real_model, SCPAIRING):
        raise ValueError(
            f"`model` must be a trained scx.model.SCPAIRING (or None with `use_rep`), got "
            f"{type(real_model).__name__}."
        )
    if real_model is not None:
        defaults = real_model.modalities[:2]
    elif new_form:
        defaults = list(data.mod)[:2]
    else:
        defaults = ["mod1", "mod2"]
    if modalities is None:
        modalities = (old.get("mod1", defaults[0]), old.get("mod2", defaults[-1]))
    warnings.warn(
        "scx.tl.pair_cells: `mod1=`/`mod2=` and the form pair_cells(model, adata_mod1, "
        "adata_mod2) are deprecated and will be removed in the next release; pass the unpaired "
        "cells as one MuData and the modalities as `modalities=`: "
        "`scx.tl.pair_cells(mudata.MuData({mod1: adata_mod1, mod2: adata_mod2}), model)`.",
        FutureWarning,
        stacklevel=3,
    )
    if new_form:
        return data, real_model, modalities, None
    first = model if model is not None else old.get("adata_mod1")
    second = args[0] if args else old.get("adata_mod2")
    for name, adata in (("adata_mod1", first), ("adata_mod2", second)):
        if not isinstance(adata, AnnData):
            raise ValueError(f"`{name}` must be an AnnData, got {type(adata).__name__}.")
    names = _two_names(modalities)
    return None, real_model, names, {names[0]: first, names[1]: second}


def _two_names(modalities: Any) -> list[str]:
    if (
        isinstance(modalities, str)
        or not isinstance(modalities, list | tuple)
        or len(modalities) != 2
        or not all(isinstance(m, str) for m in modalities)
    ):
        raise ValueError(
            f"`modalities` must name the two modalities to pair, e.g. ('rna', 'atac'); got "
            f"{modalities!r}."
        )
    if modalities[0] == modalities[1]:
        raise ValueError(
            f"`modalities` must be two different modalities, got {modalities[0]!r} twice."
        )
    return list(modalities)


def _check_pairing(
    data: MuData | None,
    model: SCPAIRING | None,
    modalities,
    use_rep: str | None,
    sides: dict[str, AnnData] | None,
    seed: int,
    key_added: str,
    options: Mapping[str, Any],
) -> tuple[list[str], dict[str, AnnData]]:
    """Every check of ``pair_cells``' arguments, before any work; returns the two sides."""
    if model is not None and not isinstance(model, SCPAIRING):
        raise ValueError(
            f"`model` must be a trained scx.model.SCPAIRING (or None with `use_rep`), got "
            f"{type(model).__name__}."
        )
    if model is not None and use_rep is not None:
        raise ValueError("`use_rep` is for pairing without a model; drop it or `model`.")
    if model is None and (use_rep is None or not isinstance(use_rep, str)):
        raise ValueError(
            "Without a model pass `use_rep`, the `.obsm` key of a shared embedding of both "
            f"modalities (got {use_rep!r})."
        )
    if sides is None:
        v.check_mudata(data, argname="data")
        if modalities is None:
            modalities = model.modalities[:2] if model is not None else list(data.mod)
            if model is None and len(modalities) != 2:
                raise ValueError(
                    f"`data` has modalities {list(data.mod)}; pass `modalities=` to say which "
                    "two to pair."
                )
        names = _two_names(modalities)
        for m in names:
            if m not in data.mod:
                raise ValueError(
                    f"`modalities` names {m!r}, which is not a modality of `data`; pass two of "
                    f"its modalities {list(data.mod)}."
                )
        sides = {m: data.mod[m] for m in names}
    else:
        names = _two_names(list(sides))
    if model is not None:
        for m in names:
            if m not in model.modalities:
                raise ValueError(
                    f"`modalities` names {m!r}, which is not one of the model's modalities "
                    f"{model.modalities}."
                )
    for m in names:
        if sides[m].n_obs == 0:
            raise ValueError(f"Modality {m!r} has no cells; pass at least one cell per side.")
        v.check_unique_names(sides[m], where=f"Modality {m!r}")
        if model is None:
            v.check_rep(sides[m], use_rep, argname=f"use_rep (modality {m!r})")
    check_match_options(**options)
    v.check_positive_int(seed, argname="seed", minimum=0)
    if not isinstance(key_added, str) or not key_added or "/" in key_added:
        raise ValueError(f"`key_added` must be a non-empty name without '/', got {key_added!r}.")
    return names, sides


def _embedding(model: SCPAIRING | None, adata: AnnData, modality: str, use_rep) -> np.ndarray:
    if model is None:
        return v.check_rep(adata, use_rep, argname=f"use_rep (modality {modality!r})")
    return model.get_latent_representation(adata, modality=modality)


def _paired_mudata(
    sides: dict[str, AnnData],
    names: list[str],
    z: dict[str, np.ndarray],
    matching,
    key_added: str,
    options: Mapping[str, Any],
) -> MuData:
    m1, m2 = names
    index = {m1: matching.rows, m2: matching.cols}
    cells = {m: sides[m].obs_names[index[m]] for m in names}
    pair_names = pd.Index([f"{a}+{b}" for a, b in zip(cells[m1], cells[m2])])
    parts = {}
    for m in names:
        part = sides[m][index[m]].copy()
        part.obs["original_obs_name"] = part.obs_names.to_numpy()
        part.obs_names = pair_names
        part.obsm[f"X_{key_added}"] = np.asarray(z[m][index[m]], dtype=np.float32)
        parts[m] = part
    paired = MuData(parts)
    paired.obs[f"{key_added}_similarity"] = (
        pd.Series(matching.similarity.astype(np.float64), index=pair_names)
        .reindex(paired.obs_names)
        .to_numpy()
    )
    paired.uns[f"{key_added}_pairs"] = pd.DataFrame(
        {
            m1: cells[m1].astype(str).to_numpy(),
            m2: cells[m2].astype(str).to_numpy(),
            "similarity": matching.similarity.astype(np.float64),
        }
    )
    paired.uns[key_added] = {
        "function": "scx.tl.pair_cells",
        "outputs": {
            "obsm": [f"X_{key_added}"],
            "obs": [f"{key_added}_similarity"],
            "modalities": [],
        },
        "params": clean_params(
            {
                "modalities": names,
                **options,
                "cutoff": float(options["cutoff"]),
                "method": matching.method,
                "n_pairs": int(matching.rows.size),
                "n_candidates": matching.n_candidates,
                "total_similarity": matching.total_similarity,
            }
        ),
    }
    return paired
