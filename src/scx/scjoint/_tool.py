"""``scx.tl.scjoint``: label transfer from scRNA-seq to scATAC-seq with scJoint."""

from __future__ import annotations

from mudata import MuData

from scx import _validation as v
from scx.base import MixingCheck, Outputs, method_tool

from ._model import SCJOINT


def _outputs(
    model: SCJOINT, data: MuData, key_added: str, *, min_confidence: float | None = None
) -> Outputs:
    """The joint embedding and the transferred labels.

    Parameters
    ----------
    min_confidence
        ATAC cells whose neighbour agreement is below this are labelled ``"unassigned"``.
    """
    rna, atac = model.reference, model.queries[0]
    prediction = model.predict(modality=atac, min_confidence=min_confidence)
    return Outputs(
        obsm={f"X_{key_added}": model.get_latent_representation()},
        obs={
            f"{key_added}_label": {atac: prediction["label"]},
            f"{key_added}_confidence": {atac: prediction["confidence"].to_numpy()},
        },
        uns={"labels": list(model.labels_), "n_genes": len(model.var_names_of(rna))},
    )


scjoint = method_tool(
    SCJOINT,
    _outputs,
    name="scjoint",
    output_checks={"min_confidence": v.optional(v.fraction(low_open=False))},
    renamed={"rna": ("modalities", 0), "atac": ("modalities", 1)},
    mixing=MixingCheck(
        hint="Train longer (`max_epochs`), and check the ATAC cells' gene activity: the "
        "`annotation` must match the genome build of the peaks and the RNA's gene names "
        "(`uns['{key_added}']['n_genes']` genes are shared).",
    ),
    doc="""Integrate unpaired scRNA-seq and scATAC-seq and transfer RNA labels to ATAC (scJoint).

Trains :class:`scx.model.SCJOINT` on the RNA cells (with labels) and the ATAC cells (as gene
activity over the shared genes, computed from peaks with ``annotation``), then writes

* ``obsm[f"X_{key_added}"]``: the 64-d L2-normalised embedding of every RNA and ATAC cell (in
  ``data.obsm`` when the modalities' cells are distinct, and in each modality's ``.obsm``);
* ``obs[f"{key_added}_label"]`` and ``obs[f"{key_added}_confidence"]`` for the ATAC cells (NaN
  for RNA cells): the kNN-transferred label and the fraction of the ``n_neighbors`` nearest RNA
  cells that carry it;
* ``uns[key_added]``: ``params`` (every setting as used), ``labels``, ``n_genes`` and
  ``mixing`` (how well RNA and ATAC mix in the latent, see ``check_mixing``; a warning says
  when they stay apart).

Every input is checked before any work; nothing is written unless training succeeds. The
defaults follow the reference (binary input, one linear layer, p = 0.8) with four documented
improvements: a shared 30-component PCA of the per-modality standardised input, per-modality
latent normalisation, learned centres, and stage-3 pseudo-labels only where the majority of the
neighbours agree. ``**scx.scjoint.REFERENCE_SETTINGS`` switches all four back.

{parameters}

Examples
--------
>>> model = scx.tl.scjoint(mdata, modalities=("rna", "atac"), labels_key="cell_type",
...                        annotation="genes_mm10_GRCm38_ensembl_MAESTRO.tsv.gz")
>>> sc.pp.neighbors(mdata, use_rep="X_scjoint")
""",
)
