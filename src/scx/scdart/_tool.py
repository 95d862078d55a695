"""``scx.tl.scdart``: unpaired scRNA-seq + scATAC-seq integration with a learned gene activity."""

from __future__ import annotations

from typing import Any

import pandas as pd
from anndata import AnnData
from mudata import MuData

from scx import _validation as v
from scx.base import MixingCheck, Outputs, method_tool

from ._diffusion import post_align
from ._model import SCDART


def _modality_name(value: Any, argname: str) -> None:
    if not isinstance(value, str) or not value or "/" in value:
        raise ValueError(f"`{argname}` must be a new modality name (a string), got {value!r}.")


def _outputs(
    model: SCDART,
    data: MuData,
    key_added: str,
    *,
    post_align_neighbors: int = 10,
    gene_activity_key: str | None = None,
) -> Outputs:
    """The post-aligned and the raw joint latent, and optionally the predicted gene activity.

    Parameters
    ----------
    post_align_neighbors
        Neighbours of the reference's kNN post-alignment (10, as the reference's scripts).
    gene_activity_key
        Name of a new modality receiving the predicted RNA of the ATAC cells (ATAC cells ×
        RNA genes, from the gene-activity network); ``None`` writes none (and a rerun removes
        the one an earlier run with the same ``key_added`` wrote).
    """
    rna, atac = model.rna, model.atac
    raw = model.get_latent_representation()
    modalities = {}
    if gene_activity_key is not None:
        activity = model.get_gene_activity()
        modalities[gene_activity_key] = AnnData(
            X=activity.to_numpy(),
            obs=pd.DataFrame(index=data.mod[atac].obs_names.copy()),
            var=pd.DataFrame(index=data.mod[rna].var_names.copy()),
        )
    aligned = post_align(raw[rna], raw[atac], post_align_neighbors, seed=model.seed)
    state = model.input_state_ or {}
    return Outputs(
        obsm={
            f"X_{key_added}": dict(zip((rna, atac), aligned, strict=True)),
            f"X_{key_added}_raw": raw,
        },
        modalities=modalities,
        uns={
            **{k: state[k] for k in ("n_prior_links", "n_linked_genes") if k in state},
            **(
                {}
                if model.candidate_pairs_ is None
                else {"candidate_pairs": model.candidate_pairs_}
            ),
        },
    )


scdart = method_tool(
    SCDART,
    _outputs,
    name="scdart",
    output_checks={
        "post_align_neighbors": v.positive_int(),
        "gene_activity_key": v.optional(_modality_name),
    },
    new_modalities=("gene_activity_key",),
    renamed={
        "rna": ("modalities", 0),
        "atac": ("modalities", 1),
        "n_pcs": "diffusion_n_pcs",
    },
    # the post-alignment moves every ATAC cell onto RNA cells whatever the raw latent, so the
    # raw latent is the one that shows whether training aligned the modalities
    mixing=MixingCheck(
        embedding="X_{key_added}_raw",
        hint="Train longer (`max_epochs`/`max_steps`), raise `lambda_pairs` or `lambda_mmd`, "
        "give `anchors` "
        "(cells known to match), and check the peak-gene links "
        "(`uns['{key_added}']['n_prior_links']`, `['n_linked_genes']`): a prior linking few "
        "genes, or peaks and genes of different genome builds, cannot align the modalities.",
    ),
    doc="""Integrate unpaired scRNA-seq and scATAC-seq with scDART and learn gene activity.

Trains :class:`scx.model.SCDART` on the RNA counts and the ATAC peaks with a peak–gene prior
(each modality's diffusion geometry is computed at the start of training: PCA of the
log-normalised RNA / LSI of the ATAC peaks, a sparse α-decay kNN graph and its diffusion-map
embedding at times ``ts``), then writes

* ``obsm[f"X_{key_added}"]``: the joint latent after the reference's kNN post-alignment, for
  every RNA and ATAC cell (in ``data.obsm`` when the modalities' cells are distinct, and in each
  modality's ``.obsm``);
* ``obsm[f"X_{key_added}_raw"]``: the latent before post-alignment;
* with ``gene_activity_key``, a new modality ``data.mod[gene_activity_key]``: the ATAC cells ×
  RNA genes predicted by the gene-activity network;
* ``uns[key_added]``: ``params`` (every setting as used), ``n_prior_links``,
  ``n_linked_genes``, ``candidate_pairs`` (with ``lambda_pairs > 0``: how many mutual
  neighbours the CCA of RNA and prior gene activity gave, how many of them the anchor filter
  kept (``pair_filter_neighbors``), how many ATAC cells have one and, with
  ``pair_score_neighbors``, their mean anchor score)
  and ``mixing`` (how well RNA and ATAC mix in the raw latent, see
  ``check_mixing``; a warning says when they stay apart: the post-alignment hides it).

Every input is checked before any work; nothing is written unless training succeeds.
``sc.pp.neighbors(data, use_rep="X_scdart")`` and :func:`scx.tl.pseudotime` work on the result.

{parameters}

Examples
--------
>>> model = scx.tl.scdart(mdata, modalities=("rna", "atac"), prior="gene_region")
>>> scx.tl.pseudotime(mdata, use_rep="X_scdart", root="HSC", groupby="cell_type")
""",
)
