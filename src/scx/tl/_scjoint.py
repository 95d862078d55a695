"""``scx.tl.scjoint``: label transfer from scRNA-seq to scATAC-seq with scJoint."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scvi import settings

from scx import _validation as v
from scx.pp import gene_activity as compute_gene_activity
from scx.pp import peak_coordinates
from scx.scjoint import SCJOINT

from ._outputs import check_writable, clean_params, write_obs, write_obsm

logger = logging.getLogger(__name__)

#: Fewer shared genes than this between RNA and gene activity triggers a warning.
MIN_SHARED_GENES_WARNING = 200


def _atac_is_peaks(atac: AnnData) -> bool:
    try:
        peak_coordinates(atac)
    except ValueError:
        return False
    return True


def _resolve_gene_activity(
    rna: AnnData,
    atac: AnnData,
    *,
    rna_name: str,
    atac_name: str,
    atac_layer: str | None,
    annotation: pd.DataFrame | str | Path | None,
    gene_activity_kwargs: dict | None,
) -> AnnData:
    """The ATAC cells × genes matrix scJoint trains on (computed from peaks when needed)."""
    if annotation is not None:
        return compute_gene_activity(
            atac,
            annotation,
            genes=rna.var_names,
            layer=atac_layer,
            **(gene_activity_kwargs or {}),
        )
    shared = rna.var_names.intersection(atac.var_names)
    if len(shared) > 0:
        return atac
    if _atac_is_peaks(atac):
        raise ValueError(
            f"Modality `atac={atac_name!r}` holds peaks (genomic coordinates) and shares no "
            f"features with `rna={rna_name!r}`; pass `annotation=` (a gene table or GTF matching "
            "the genome build) to compute gene activity, or pass a precomputed gene-activity "
            "modality."
        )
    raise ValueError(
        f"Modality `atac={atac_name!r}` shares no genes with `rna={rna_name!r}` and has no peak "
        f"coordinates (e.g. ATAC var names {list(atac.var_names[:3])}, RNA var names "
        f"{list(rna.var_names[:3])}). Pass ATAC gene activity over the RNA gene names, or peaks "
        "with `var` columns chrom/start/end (or names like 'chr1:100-200') together with "
        "`annotation=`."
    )


def scjoint(
    mdata: MuData,
    rna: str = "rna",
    atac: str = "atac",
    labels_key: str = "cell_type",
    *,
    annotation: pd.DataFrame | str | Path | None = None,
    layer: str | dict[str, str | None] | None = None,
    gene_activity_kwargs: dict | None = None,
    n_latent: int = 64,
    n_hidden: Sequence[int] | None = None,
    input_transform: Literal["binary", "log1p", "none"] = "binary",
    n_pcs: int | None = 30,
    modality_norm: bool = True,
    nndr: Literal["code", "paper"] = "code",
    p: float = 0.8,
    center_weight: float = 1.0,
    learn_centers: bool = True,
    max_epochs: int = 20,
    stage3_epochs: int | None = None,
    lr: float = 0.01,
    lr_stage3: float | None = None,
    batch_size: int = 256,
    n_neighbors: int = 30,
    stage3_init: Literal["fresh", "warm"] = "fresh",
    pseudo_label_min_confidence: float = 0.5,
    min_confidence: float | None = None,
    seed: int = 0,
    key_added: str = "scjoint",
    accelerator: str = "auto",
    devices: int | list[int] | str = "auto",
    **train_kwargs,
) -> SCJOINT:
    """Integrate unpaired scRNA-seq and scATAC-seq and transfer RNA labels to ATAC (scJoint).

    Trains :class:`scx.model.SCJOINT` on the RNA cells (with labels) and the ATAC cells (as
    gene activity over the shared genes), then writes:

    * ``mdata.obsm[f"X_{key_added}"]``: the 64-d L2-normalised embedding of every RNA and ATAC
      cell (also in each modality's ``.obsm``);
    * ``mdata.obs[f"{key_added}_label"]`` and ``mdata.obs[f"{key_added}_confidence"]`` for the
      ATAC cells (NaN for RNA cells; also in ``mdata.mod[atac].obs``): the kNN-transferred
      label and the fraction of the ``n_neighbors`` nearest RNA cells that carry it;
    * ``mdata.uns[key_added]["params"]``.

    Every input is checked before training, and nothing is written unless training succeeds.
    ``sc.pp.neighbors(mdata, use_rep="X_scjoint")``, ``sc.tl.umap`` and ``sc.pl.umap`` work on
    the result.

    Parameters
    ----------
    mdata
        MuData with an RNA and an ATAC modality whose cells need not match.
    rna, atac
        Names of the RNA (labelled) and ATAC (query) modalities.
    labels_key
        Column of ``mdata.mod[rna].obs`` with the cell types to transfer.
    annotation
        Gene annotation (DataFrame, gene table path or GTF) to turn ATAC peaks into gene
        activity with :func:`scx.pp.gene_activity`. Leave ``None`` when the ATAC modality
        already holds gene activity over gene names.
    layer
        Layer with counts, once for both or ``{modality: layer}``; ``None`` uses ``.X``.
    gene_activity_kwargs
        Extra arguments of :func:`scx.pp.gene_activity` (e.g. ``upstream``).
    n_latent, n_hidden, input_transform, n_pcs, modality_norm, nndr, p, center_weight, learn_centers
        Model settings, see :class:`scx.model.SCJOINT`. The defaults follow the reference
        (binary input, one linear layer, p = 0.8, center weight 1) with four documented
        improvements: a shared 30-component PCA of the per-modality standardised input,
        per-modality latent normalisation, learned centres, and stage-3 pseudo-labels only
        where the majority of the neighbours agree. ``**scx.scjoint.REFERENCE_SETTINGS``
        switches all four back to the reference.
    max_epochs, stage3_epochs, lr, lr_stage3, batch_size, n_neighbors
        Training settings, see :meth:`scx.model.SCJOINT.train`.
    stage3_init, pseudo_label_min_confidence
        Stage-3 settings, see :meth:`scx.model.SCJOINT.train`.
    min_confidence
        ATAC cells whose neighbour agreement is below this are labelled ``"unassigned"``.
    seed
        Random seed (``scvi.settings.seed``) for initialisation and sampling.
    key_added
        Prefix of the written keys.
    accelerator, devices
        Lightning accelerator and devices; add ``strategy="ddp"`` for several GPUs.
    **train_kwargs
        Further arguments of :meth:`scx.model.SCJOINT.train` and :class:`scvi.train.Trainer`.

    Returns
    -------
    The trained model (holding its own lightweight copy of the inputs' registration).
    """
    v.check_mudata(mdata)
    if rna == atac:
        raise ValueError(f"`rna` and `atac` must be different modalities, both are {rna!r}.")
    rna_adata = v.check_modality(mdata, rna, argname="rna")
    atac_adata = v.check_modality(mdata, atac, argname="atac")
    layers = layer if isinstance(layer, dict) else {rna: layer, atac: layer}
    labels = v.check_obs_key(
        rna_adata, labels_key, argname="labels_key", where=f" of modality {rna!r}"
    )
    v.check_labels(labels, argname="labels_key", where=f" in modality {rna!r}")
    for name, adata in ((rna, rna_adata), (atac, atac_adata)):
        if not adata.obs_names.is_unique:
            raise ValueError(
                f"Modality {name!r} has duplicated cell names; call "
                f"`mdata.mod[{name!r}].obs_names_make_unique()` and `mdata.update()` first."
            )
        X = v.get_matrix(adata, layers.get(name), argname="layer")
        v.check_counts(X, argname=f"mdata.mod[{name!r}] (layer={layers.get(name)!r})")
    v.check_positive_int(n_latent, argname="n_latent")
    v.check_positive_int(max_epochs, argname="max_epochs")
    v.check_positive_int(batch_size, argname="batch_size")
    v.check_positive_int(n_neighbors, argname="n_neighbors")
    v.check_fraction(p, argname="p")
    for name, adata in ((rna, rna_adata), (atac, atac_adata)):
        if adata.n_obs < batch_size:
            raise ValueError(
                f"Modality {name!r} has {adata.n_obs} cells, fewer than `batch_size={batch_size}`;"
                f" pass `batch_size` ≤ {adata.n_obs}."
            )
    disjoint = check_writable(mdata, [rna, atac])

    activity = _resolve_gene_activity(
        rna_adata,
        atac_adata,
        rna_name=rna,
        atac_name=atac,
        atac_layer=layers.get(atac),
        annotation=annotation,
        gene_activity_kwargs=gene_activity_kwargs,
    )
    activity_layer = layers.get(atac) if activity is atac_adata else None
    genes = rna_adata.var_names[rna_adata.var_names.isin(activity.var_names)]
    if activity is not atac_adata:
        # genes without any peak carry no ATAC signal
        has_peaks = np.asarray(activity.var["n_peaks"].reindex(genes).fillna(0) > 0)
        genes = genes[has_peaks]
    if len(genes) == 0:
        raise ValueError(
            f"No gene of `rna={rna!r}` has ATAC gene activity; check that the annotation matches "
            "the RNA gene names and the genome build of the peaks."
        )
    if len(genes) < MIN_SHARED_GENES_WARNING:
        warnings.warn(
            f"Only {len(genes)} genes are shared by RNA and ATAC gene activity; scJoint's "
            "embedding will be weak.",
            UserWarning,
            stacklevel=2,
        )

    def model_input(adata: AnnData, layer_name: str | None, obs: pd.DataFrame) -> AnnData:
        # the matrix is shared, not copied, unless genes must be subset; it keeps its layer
        # name so that the returned model reads new cells from the same layer
        X = v.get_matrix(adata, layer_name)
        if not adata.var_names.equals(genes):
            X = X[:, adata.var_names.get_indexer(genes)]
        var = pd.DataFrame(index=genes)
        if layer_name is None:
            return AnnData(X=X, obs=obs, var=var)
        return AnnData(obs=obs, var=var, layers={layer_name: X})

    rna_input = model_input(
        rna_adata,
        layers.get(rna),
        pd.DataFrame({"label": labels.astype(str).to_numpy()}, index=rna_adata.obs_names),
    )
    atac_input = model_input(activity, activity_layer, pd.DataFrame(index=atac_adata.obs_names))
    with warnings.catch_warnings():
        # both modalities carry the same gene names by design
        warnings.filterwarnings("ignore", message="var_names are not unique")
        internal = MuData({rna: rna_input, atac: atac_input})
        settings.seed = seed
        SCJOINT.setup_mudata(
            internal,
            modalities=[rna, atac],
            layer={rna: layers.get(rna), atac: activity_layer},
            labels_key={rna: "label"},
        )
    model = SCJOINT(
        internal,
        reference=rna,
        n_latent=n_latent,
        n_hidden=n_hidden,
        input_transform=input_transform,
        n_pcs=n_pcs,
        modality_norm=modality_norm,
        nndr=nndr,
        p=p,
        center_weight=center_weight,
        learn_centers=learn_centers,
    )
    model.train(
        max_epochs=max_epochs,
        stage3_epochs=stage3_epochs,
        lr=lr,
        lr_stage3=lr_stage3,
        batch_size=batch_size,
        n_neighbors=n_neighbors,
        stage3_init=stage3_init,
        pseudo_label_min_confidence=pseudo_label_min_confidence,
        accelerator=accelerator,
        devices=devices,
        **train_kwargs,
    )
    embedding = model.get_latent_representation()
    prediction = model.predict(
        modality=atac, n_neighbors=n_neighbors, min_confidence=min_confidence
    )

    # ---- write results only now that everything succeeded
    obsm_key = f"X_{key_added}"
    if not disjoint:
        warnings.warn(
            f"Modalities {rna!r} and {atac!r} share cells, so one global embedding row per cell "
            f"is ambiguous; `.obsm[{obsm_key!r}]` and the label columns are written to each "
            "modality only.",
            UserWarning,
            stacklevel=2,
        )
    write_obs(mdata, f"{key_added}_label", {atac: prediction["label"]}, global_=disjoint)
    write_obs(
        mdata,
        f"{key_added}_confidence",
        {atac: prediction["confidence"].to_numpy()},
        global_=disjoint,
    )
    write_obsm(mdata, obsm_key, embedding, global_=disjoint)
    mdata.uns[key_added] = {
        "params": clean_params(
            {
                "rna": rna,
                "atac": atac,
                "labels_key": labels_key,
                "n_genes": len(genes),
                "gene_activity": "computed" if activity is not atac_adata else "given",
                "n_latent": n_latent,
                "n_hidden": list(n_hidden or []),
                "input_transform": input_transform,
                "n_pcs": n_pcs,
                "modality_norm": modality_norm,
                "nndr": nndr,
                "p": p,
                "center_weight": center_weight,
                "learn_centers": learn_centers,
                "max_epochs": max_epochs,
                "stage3_epochs": max_epochs if stage3_epochs is None else stage3_epochs,
                "lr": lr,
                "lr_stage3": lr if lr_stage3 is None else lr_stage3,
                "batch_size": batch_size,
                "n_neighbors": n_neighbors,
                "stage3_init": stage3_init,
                "pseudo_label_min_confidence": pseudo_label_min_confidence,
                "min_confidence": min_confidence,
                "seed": seed,
                "labels": model.labels_,
            }
        )
    }
    logger.info(
        "scJoint: wrote .obsm[%r], .obs['%s_label'] and .obs['%s_confidence'] (%d ATAC cells).",
        obsm_key,
        key_added,
        key_added,
        atac_adata.n_obs,
    )
    return model
