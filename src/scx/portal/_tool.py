"""``scx.tl.portal``: integrate datasets (batches, technologies) with Portal."""

from __future__ import annotations

from anndata import AnnData
from mudata import MuData

from scx.base import MixingCheck, Outputs, method_tool

from ._model import PORTAL


def _outputs(model: PORTAL, data: AnnData | MuData, key_added: str) -> Outputs:
    """The harmonised latent and the boundary scores of every cell."""
    latent = model.get_latent_representation()
    scores = model.get_boundary_scores()
    state = model.input_state_ or {}
    rows = None
    if isinstance(data, AnnData):
        # the registered view keeps the AnnData's rows: each dataset's rows are its cells
        rows = {m: model.sources[m].indices for m in model.modalities}
    uns = {"datasets": list(model.domains_), "n_genes": state.get("n_genes")}
    if model.lambda_cos_search_ is not None:
        uns["lambda_cos_search"] = model.lambda_cos_search_
    return Outputs(
        obsm={f"X_{key_added}": latent},
        obs={f"{key_added}_boundary_score": scores},
        rows=rows,
        uns=uns,
    )


portal = method_tool(
    PORTAL,
    _outputs,
    name="portal",
    mixing=MixingCheck(
        hint="Train longer (`max_steps`), raise `lambda_gan`, and check that the datasets share "
        "cell types and genes (`n_top_genes`, `genes`).",
        groups="datasets",
    ),
    doc="""Integrate datasets with Portal's adversarial domain translation.

Preprocesses as the reference does (unless ``use_rep`` is given): highly variable genes per
dataset intersected, per-dataset library-size normalisation, log1p and standardisation, one PCA
on all cells (:func:`scx.pp.joint_pca`). Then trains :class:`scx.model.PORTAL`: dataset
``reference`` defines the space, every other dataset is integrated into it in turn, then writes

* ``obsm[f"X_{key_added}"]``: the harmonised latent of every cell;
* ``obs[f"{key_added}_boundary_score"]``: the reference discriminator's clamped score of each
  non-reference cell translated into the reference (``-boundary`` marks cells unlike any
  reference cell); NaN for reference cells;
* ``uns[key_added]``: ``params`` (every setting as used), ``datasets`` (in integration order)
  ``n_genes`` (genes of the joint PCA) and ``mixing`` (how well the datasets mix in the latent,
  see ``check_mixing``; a warning says when they stay apart); with ``search_lambda_cos`` also
  ``lambda_cos_search``: ``candidates``, ``mixing_metric`` (stages × candidates,
  :func:`scx.metrics.mixing_metric`, lower is better), ``chosen`` (per stage) and
  ``integrated`` (the dataset each stage integrated).

For a MuData they go to each modality and, when the datasets' cells are distinct, to the global
``obsm``/``obs``. Every input is checked before any work; nothing is written unless training
succeeds. The joint PCA is kept with the model as one transform per dataset, so
``PORTAL.load(dir, adata=data)`` and ``model.get_latent_representation(new_cells,
modality=dataset)`` work from counts.

{parameters}

Examples
--------
>>> model = scx.tl.portal(adata, batch_key="batch")
>>> model = scx.tl.portal(mdata, modalities=("ctrl", "stim"))  # one modality per dataset
>>> scx.tl.portal(adata, batch_key="batch", use_rep="X_scVI")
>>> sc.pp.neighbors(adata, use_rep="X_portal")
""",
)
