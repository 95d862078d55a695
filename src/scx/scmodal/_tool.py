"""``scx.tl.scmodal``: align two modalities with weakly linked features; ``scx.tl.impute``."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import pandas as pd
from anndata import AnnData
from mudata import MuData

from scx import _validation as v
from scx._settings import isolated_state
from scx.base import MixingCheck, Outputs, method_tool, write_outputs
from scx.train import unknown_name_message

from ._model import IMPUTE_NEIGHBORS, SCMODAL, ImputeStrategy

logger = logging.getLogger(__name__)

#: ``uns[key_added]["function"]`` of the records :func:`impute` writes; a key whose record
#: carries it may be replaced by a later :func:`impute` call.
IMPUTE_RECORD = "scx.tl.impute"


def _outputs(model: SCMODAL, data: MuData, key_added: str) -> Outputs:
    """The shared latent of both modalities, the link counts and the feature counts."""
    state = model.input_state_ or {}
    return Outputs(
        obsm={f"X_{key_added}": model.get_latent_representation()},
        uns={
            **dict(state.get("link_counts", {})),
            "n_features": {m: len(model.var_names_of(m)) for m in model.modalities},
        },
    )


scmodal = method_tool(
    SCMODAL,
    _outputs,
    name="scmodal",
    renamed={"mod1": ("modalities", 0), "mod2": ("modalities", 1)},
    # recorded, never warned about: correct runs keep each modality's fine structure apart
    # (rate 0.01-0.12 on the tests' data, with label transfer above 0.85)
    mixing=MixingCheck(threshold=None),
    doc="""Align two modalities whose features are only weakly linked, with scMODAL.

Examples: RNA ↔ surface protein (protein → gene links), protein ↔ protein from two panels
(shared marker names), RNA ↔ ATAC gene activity (gene → gene). The modalities are treated as
unpaired. With ``preprocess=True`` (counts) the reference's recipe is fitted once and stored
with the model (see ``preprocess``); the model standardises every feature (clipped at ±10) and
trains :class:`scx.model.SCMODAL`. Then writes

* ``obsm[f"X_{key_added}"]``: the 20-d shared latent of every cell of both modalities (in each
  modality's ``.obsm``, and in ``data.obsm`` when the modalities' cells are distinct);
* ``uns[key_added]``: ``params`` (every setting as used, with ``links``, the links used, per
  modality), ``n_links_given``, ``n_links_used``, ``n_links_dropped``,
  ``n_linked_<modality>``, ``links_swapped``, ``n_features`` (model features per modality)
  and ``mixing`` (how well the modalities mix in the latent, see ``check_mixing``; recorded
  only: correct scMODAL runs keep each modality's fine structure apart, so no warning).

Every input is checked before any work; nothing is written unless training succeeds. Impute
one modality from the other with :func:`scx.tl.impute`. On a CPU with bfloat16 units the
training runs in bfloat16 mixed precision unless ``trainer_kwargs`` names a ``precision``
(``params["precision"]`` records it; see :meth:`scx.model.SCMODAL.train`).

{parameters}

Examples
--------
>>> links = {"CD3": "CD3E", "CD4": "CD4", "CD8a": "CD8A", "CD19": "CD19", "CD14": "CD14"}
>>> model = scx.tl.scmodal(mdata, modalities=("rna", "prot"), links=links)  # raw counts
>>> scx.tl.impute(mdata, model, source="rna", target="prot")  # new modality "prot_from_rna"
""",
)


# ---------------------------------------------------------------------------- impute
def impute(
    data: MuData,
    model: SCMODAL,
    *args: str,
    source: str | None = None,
    target: str | None = None,
    strategy: ImputeStrategy = "neighbors",
    n_neighbors: int = IMPUTE_NEIGHBORS,
    to: Literal["modality", "obsm"] = "modality",
    key_added: str | None = None,
    copy: bool = False,
    **unknown,
) -> MuData | None:
    """Predict ``target``'s features for the cells of ``source`` (e.g. protein from RNA).

    Each ``source`` cell is encoded into the shared latent of a trained scMODAL model and gets
    the mean of what its ``n_neighbors`` nearest ``target`` cells measured (default), or its
    decoding by ``target``'s generator (``strategy="generator"``, the reference's imputation),
    on the scale of ``target``'s model input (log-normalised values with the default
    preprocessing). The cells of ``data.mod[source]`` are those the model was trained on, or
    new cells (raw counts when the model was trained from counts), which are mapped with the
    model's stored preprocessing.

    Parameters
    ----------
    data
        MuData holding the ``source`` modality (e.g. the one given to :func:`scx.tl.scmodal`).
    model
        The trained :class:`scx.model.SCMODAL` (returned by :func:`scx.tl.scmodal`).
    *args
        Deprecated: ``source, target`` given by position (the old form
        ``impute(mdata, model, "rna", "prot")``); pass them by name.
    source
        Modality of the cells.
    target
        Modality whose features are predicted.
    strategy
        ``"neighbors"`` (kNN average in the latent) or ``"generator"``; see
        :meth:`scx.model.SCMODAL.get_imputed`.
    n_neighbors
        Target cells averaged per cell with ``strategy="neighbors"``.
    to
        ``"modality"``: a new modality ``key_added`` (cells of ``source`` × features of
        ``target``); ``"obsm"``: a DataFrame in ``data.mod[source].obsm[key_added]`` (and
        ``data.obsm[key_added]``, NaN for cells outside ``source``, when the modalities'
        cells are distinct).
    key_added
        Name of the new modality or ``obsm`` key, and of the record ``uns[key_added]``
        (``params``: source, target, strategy, n_neighbors, to; ``outputs``: what was
        written). Defaults to ``f"{target}_from_{source}"`` (modality) or
        ``f"scmodal_{target}"`` (obsm). Naming a measured modality, or an ``obsm``/``uns``
        entry that an earlier :func:`impute` call did not write, is an error; an earlier
        call's results under the same name are replaced.
    copy
        Work on a copy of ``data`` and return it (the input stays untouched).

    Returns
    -------
    ``None``, or with ``copy=True`` the new MuData holding the results.
    """
    if unknown:
        accepted = ["source", "target", "strategy", "n_neighbors", "to", "key_added", "copy"]
        raise ValueError(unknown_name_message(next(iter(unknown)), accepted, "scx.tl.impute"))
    source, target = _positional(args, source, target)
    key = _check_impute(data, model, source, target, to, key_added, copy)
    own = data.mod[source]
    registered = own.obs_names.equals(model.obs_names_of(source))
    imputed = model.get_imputed(
        source,
        target,
        adata=None if registered else own,
        strategy=strategy,
        n_neighbors=n_neighbors,
    )
    if to == "modality":
        outputs = Outputs(
            modalities={
                key: AnnData(
                    X=imputed.to_numpy(),
                    obs=pd.DataFrame(index=imputed.index.copy()),
                    var=pd.DataFrame(index=imputed.columns.copy()),
                )
            },
            uns={"function": IMPUTE_RECORD},
        )
    else:
        outputs = Outputs(obsm={key: {source: imputed}}, uns={"function": IMPUTE_RECORD})
    if copy:
        with isolated_state():  # copying a MuData draws from Python's global generator
            data = data.copy()
    with warnings.catch_warnings():
        # the imputed modality has the target's feature names by design
        warnings.filterwarnings("ignore", message="var_names are not unique")
        params = {
            "source": source,
            "target": target,
            "strategy": strategy,
            "n_neighbors": n_neighbors,
            "to": to,
        }
        write_outputs(data, key, outputs, params)
    logger.info(
        "scMODAL: %s cells imputed as %s (%s), written to %s.",
        source,
        target,
        strategy,
        f"modality {key!r}" if to == "modality" else f".mod[{source!r}].obsm[{key!r}]",
    )
    return data if copy else None


def _positional(args: tuple, source: str | None, target: str | None) -> tuple[str, str]:
    """The old positional ``source, target`` (with a FutureWarning), or the keywords."""
    if len(args) > 2:
        raise TypeError(
            "scx.tl.impute takes the data and the model by position; pass `source`, `target` "
            "and the other arguments by name."
        )
    if args:
        warnings.warn(
            "scx.tl.impute: passing `source`/`target` by position is deprecated and will be "
            "removed in the next release; use `impute(data, model, source=..., target=...)`.",
            FutureWarning,
            stacklevel=3,
        )
        given = dict(zip(("source", "target"), args, strict=False))
        for name in given:
            if {"source": source, "target": target}[name] is not None:
                raise TypeError(f"scx.tl.impute got `{name}` by position and by name.")
        source, target = given.get("source", source), given.get("target", target)
    return source, target


def _check_impute(
    data: Any,
    model: Any,
    source: Any,
    target: Any,
    to: Any,
    key_added: Any,
    copy: Any,
) -> str:
    """Check the arguments of :func:`impute`; returns the output name.

    ``strategy`` and ``n_neighbors`` are checked by :meth:`scx.model.SCMODAL.get_imputed`
    before it starts.
    """
    v.check_mudata(data, argname="data")
    if not isinstance(model, SCMODAL) or not model.is_trained_:
        raise ValueError(
            f"`model` must be a trained cross-modal model, scx.model.SCMODAL (as returned by "
            f"`scx.tl.scmodal`), got {type(model).__name__}"
            f"{'' if not isinstance(model, SCMODAL) else ' that is not trained'}."
        )
    for name, value in (("source", source), ("target", target)):
        if value is None:
            raise ValueError(
                f"`{name}` is required: one of the model's modalities {model.modalities}."
            )
        if value not in model.modalities:
            raise ValueError(
                f"`{name}={value!r}` is not one of the model's modalities {model.modalities}."
            )
    if source == target:
        raise ValueError(f"`source` and `target` must differ, got {source!r} twice.")
    v.choice("modality", "obsm")(to, "to")
    v.boolean(copy, "copy")
    v.check_modality(data, source, argname="source")
    default = f"{target}_from_{source}" if to == "modality" else f"scmodal_{target}"
    key = default if key_added is None else key_added
    if not isinstance(key, str) or not key or "/" in key:
        raise ValueError(f"`key_added` must be a non-empty name without '/', got {key!r}.")
    record = data.uns.get(key)
    ours = isinstance(record, Mapping) and record.get("function") == IMPUTE_RECORD
    written = (record.get("outputs") or {}) if ours else {}
    earlier = {*_names(written.get("modalities")), *_names(written.get("obsm"))}
    if key in data.mod and key not in earlier:
        raise ValueError(
            f"`key_added={key!r}` would overwrite the measured modality {key!r} (or, with "
            "`to='obsm'`, clash with the MuData's own `.obsm` entry of that modality); pass "
            "another name."
        )
    # a new modality also gets a global ``.obsm`` entry of its name (MuData's cell mask)
    in_obsm = key in data.obsm or (to == "obsm" and key in data.mod[source].obsm)
    if in_obsm and key not in earlier:
        raise ValueError(
            f"`key_added={key!r}` would overwrite `.obsm[{key!r}]`, which scx.tl.impute did not "
            "write; pass another name."
        )
    if record is not None and not ours:
        raise ValueError(
            f"`key_added={key!r}` would overwrite `.uns[{key!r}]`, which scx.tl.impute did not "
            "write (e.g. the record of another tool); pass another name."
        )
    return key


def _names(values: Any) -> list[str]:
    """Names recorded in ``uns[...]["outputs"]`` (a list, or an array after an h5 round trip)."""
    if values is None:
        return []
    if isinstance(values, str):
        return [values]
    return [str(x) for x in values]
