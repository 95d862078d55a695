"""``scx.tl.scdart`` (unpaired RNA + ATAC integration) and ``scx.tl.pseudotime``."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from scvi import settings

from scx import _validation as v
from scx.pp import peak_gene_prior
from scx.scdart import (
    DIFFUSION_OBSM,
    SCDART,
    atac_embedding,
    diffusion_coordinates,
    post_align,
    rna_embedding,
)

from ._outputs import check_writable, clean_params, global_rows, write_obs, write_obsm

logger = logging.getLogger(__name__)

PriorLike = str | pd.DataFrame | np.ndarray | sparse.spmatrix | sparse.sparray


# ---------------------------------------------------------------------------- prior
def _check_prior_values(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    v.check_counts(matrix, argname="prior", allow_negative=True)
    matrix = matrix.copy()
    matrix.eliminate_zeros()
    if matrix.nnz == 0:
        raise ValueError(
            "`prior` links no peak to any gene (every entry is zero); pass a prior with links, "
            "e.g. `scx.pp.peak_gene_prior(mdata['atac'], mdata['rna'].var_names, annotation)`, "
            "or pass `annotation=` (a gene table or GTF of the peaks' genome build)."
        )
    return matrix


def resolve_prior(
    prior: PriorLike | None,
    annotation: pd.DataFrame | str | os.PathLike | None,
    rna: AnnData,
    atac: AnnData,
    *,
    rna_name: str = "rna",
    atac_name: str = "atac",
    prior_kwargs: dict | None = None,
) -> sparse.csr_matrix:
    """The genes × peaks prior in the RNA gene order and the ATAC peak order.

    ``prior`` may be a ``.varm`` key of the RNA (genes × peaks) or ATAC (peaks × genes)
    modality, a DataFrame with gene and peak names on its axes (either orientation), or a
    matrix of shape genes × peaks or peaks × genes; ``annotation`` builds it with
    :func:`scx.pp.peak_gene_prior` instead.
    """
    n_genes, n_peaks = rna.n_vars, atac.n_vars
    if (prior is None) == (annotation is None):
        raise ValueError(
            "Pass exactly one of `prior` (a genes × peaks matrix, DataFrame or `.varm` key) and "
            "`annotation` (a gene table or GTF, to build the prior with "
            f"`scx.pp.peak_gene_prior`); got {'both' if prior is not None else 'neither'}."
        )
    if annotation is not None:
        matrix = peak_gene_prior(atac, rna.var_names, annotation, **(prior_kwargs or {}))
        return _check_prior_values(sparse.csr_matrix(matrix, dtype=np.float32))
    if isinstance(prior, str):
        if prior in rna.varm:
            matrix, where = rna.varm[prior], f"mdata.mod[{rna_name!r}].varm[{prior!r}]"
            transpose = False
        elif prior in atac.varm:
            matrix, where = atac.varm[prior], f"mdata.mod[{atac_name!r}].varm[{prior!r}]"
            transpose = True
        else:
            raise ValueError(
                f"`prior={prior!r}` is neither a `.varm` key of modality {rna_name!r} (genes × "
                f"peaks; keys {list(rna.varm.keys())}) nor of {atac_name!r} (peaks × genes; keys "
                f"{list(atac.varm.keys())}). Pass a key, a matrix, or `annotation=`."
            )
        if isinstance(matrix, pd.DataFrame):
            matrix = matrix.to_numpy()
        matrix = sparse.csr_matrix(matrix, dtype=np.float32)
        expected = (n_peaks, n_genes) if transpose else (n_genes, n_peaks)
        if matrix.shape != expected:
            raise ValueError(
                f"`prior` {where} has shape {matrix.shape}; it must have one column per "
                f"{'gene' if transpose else 'peak'} ({expected})."
            )
        return _check_prior_values((matrix.T if transpose else matrix).tocsr())
    if isinstance(prior, pd.DataFrame):
        genes, peaks = rna.var_names, atac.var_names
        frame = prior
        if frame.index.isin(peaks).all() and frame.columns.isin(genes).all():
            frame = frame.T
        if not (frame.index.isin(genes).all() and frame.columns.isin(peaks).all()):
            bad_rows = frame.index.difference(genes).union(frame.index.difference(peaks))
            raise ValueError(
                f"`prior` DataFrame axes must be gene names of modality {rna_name!r} and peak "
                f"names of modality {atac_name!r}; e.g. {list(bad_rows[:3])} match neither. "
                f"Genes look like {list(genes[:2])}, peaks like {list(peaks[:2])}."
            )
        matrix = sparse.csr_matrix(
            frame.reindex(index=genes, columns=peaks, fill_value=0).to_numpy(dtype=np.float32)
        )
        return _check_prior_values(matrix)
    if isinstance(prior, np.ndarray) or sparse.issparse(prior):
        matrix = sparse.csr_matrix(prior, dtype=np.float32)
        if matrix.shape == (n_genes, n_peaks):
            return _check_prior_values(matrix)
        if matrix.shape == (n_peaks, n_genes):
            return _check_prior_values(matrix.T.tocsr())
        raise ValueError(
            f"`prior` has shape {matrix.shape}, which matches neither genes × peaks "
            f"({n_genes}, {n_peaks}) nor peaks × genes ({n_peaks}, {n_genes}) of modalities "
            f"{rna_name!r} / {atac_name!r}."
        )
    raise ValueError(
        f"`prior` must be a `.varm` key, a DataFrame, or a (sparse) matrix, got "
        f"{type(prior).__name__}."
    )


def _check_anchors(anchors, rna: AnnData, atac: AnnData, rna_name: str, atac_name: str):
    if anchors is None:
        return None
    if not isinstance(anchors, Mapping) or set(anchors) != {rna_name, atac_name}:
        raise ValueError(
            f"`anchors` must be a dict {{{rna_name!r}: cell names, {atac_name!r}: cell names}}, "
            f"got {anchors!r:.80}."
        )
    out = {}
    for name, adata in ((rna_name, rna), (atac_name, atac)):
        cells = pd.Index(np.asarray(list(anchors[name]), dtype=str))
        missing = cells.difference(adata.obs_names)
        if len(missing):
            raise ValueError(
                f"`anchors[{name!r}]` names {len(missing)} cells not in modality {name!r} "
                f"(e.g. {list(missing[:3])})."
            )
        if len(cells) < 2:
            raise ValueError(
                f"`anchors[{name!r}]` holds {len(cells)} cell; pass at least 2 anchor cells."
            )
        out[name] = list(cells)
    return out


# ---------------------------------------------------------------------------- scdart
def scdart(
    mdata: MuData,
    rna: str = "rna",
    atac: str = "atac",
    prior: PriorLike | None = None,
    *,
    annotation: pd.DataFrame | str | os.PathLike | None = None,
    prior_kwargs: dict | None = None,
    layer: str | dict[str, str | None] | None = None,
    n_latent: int = 8,
    n_hidden_gene_activity: Sequence[int] = (1024, 512),
    n_hidden_encoder: Sequence[int] = (512, 128),
    lambda_dist: float = 1.0,
    lambda_prior: float = 1.0,
    lambda_mmd: float = 1.0,
    lambda_anchor: float = 1.0,
    prior_penalty: str = "l1",
    prior_penalty_peaks: int | None = 2048,
    anchors: Mapping[str, Sequence[str]] | None = None,
    init_from_prior: bool = True,
    ts: Sequence[int] = (30, 50, 70),
    diffusion_neighbors: int = 5,
    n_diffusion_components: int = 30,
    n_pcs: int = 30,
    rna_transform: str = "log_normalize",
    atac_transform: str = "binary",
    max_epochs: int | None = None,
    batch_size: int | None = None,
    lr: float = 3e-4,
    post_align_neighbors: int = 10,
    gene_activity_key: str | None = None,
    seed: int = 0,
    key_added: str = "scdart",
    accelerator: str = "auto",
    devices: int | list[int] | str = "auto",
    **train_kwargs,
) -> SCDART:
    """Integrate unpaired scRNA-seq and scATAC-seq with scDART and learn gene activity.

    Computes each modality's diffusion geometry once (RNA: PCA of the log-normalised counts;
    ATAC: LSI; a sparse α-decay kNN graph and its diffusion-map embedding at times ``ts``),
    trains :class:`scx.model.SCDART`, and writes

    * ``mdata.obsm[f"X_{key_added}"]``: the joint latent after the reference's kNN
      post-alignment, for every RNA and ATAC cell (also in each modality's ``.obsm``);
    * ``mdata.obsm[f"X_{key_added}_raw"]``: the latent before post-alignment;
    * ``mdata.uns[key_added]["params"]``;
    * with ``gene_activity_key``, a new modality ``mdata.mod[gene_activity_key]``: the ATAC
      cells × RNA genes predicted by the gene-activity network.

    Every input is checked before any computation, and nothing is written unless training
    succeeds. ``sc.pp.neighbors(mdata, use_rep="X_scdart")`` and
    :func:`scx.tl.pseudotime` work on the result.

    Parameters
    ----------
    mdata
        MuData with an RNA modality (counts) and an ATAC modality (peaks); the cells need not
        match.
    rna, atac
        Modality names.
    prior
        Peak–gene prior: a ``.varm`` key (genes × peaks in the RNA modality, e.g. from
        :func:`scx.pp.peak_gene_prior`, or peaks × genes in the ATAC modality), a DataFrame
        with gene and peak names on its axes, or a genes × peaks / peaks × genes matrix.
        Non-zero entries are links.
    annotation
        Gene table or GTF instead of ``prior``: the prior is built with
        :func:`scx.pp.peak_gene_prior` (gene body + 2 kb upstream, as the reference).
    prior_kwargs
        Extra arguments of :func:`scx.pp.peak_gene_prior`.
    layer
        Layer with counts, once or ``{modality: layer}``; ``None`` uses ``.X``.
    n_latent, n_hidden_gene_activity, n_hidden_encoder, lambda_dist, lambda_prior, lambda_mmd
        Model settings, see :class:`scx.model.SCDART` (reference defaults).
    lambda_anchor, prior_penalty, prior_penalty_peaks, rna_transform, atac_transform
        Model settings, see :class:`scx.model.SCDART`.
    init_from_prior
        Start the gene-activity network with every gene positively linked to its own peaks
        (default); ``False`` initialises at random, as the reference.
    anchors
        ``{rna: cell names, atac: cell names}`` of cells expected to match across modalities
        (e.g. the earliest cells of a trajectory); adds the anchor loss.
    ts
        Diffusion times (30, 50, 70).
    diffusion_neighbors
        Neighbours of the diffusion graphs (5, as the reference's graphtools call).
    n_diffusion_components
        Diffusion-map components per diffusion time (30).
    n_pcs
        RNA principal components and ATAC LSI components (+1, the first is dropped) of the
        diffusion step (30).
    max_epochs, batch_size, lr
        Training settings, see :meth:`scx.model.SCDART.train`.
    post_align_neighbors
        Neighbours of the post-alignment (10, as the reference's scripts).
    gene_activity_key
        Name of a new modality receiving the predicted gene activity of the ATAC cells.
    seed
        Random seed (``scvi.settings.seed``).
    key_added
        Prefix of the written keys.
    accelerator, devices
        Lightning accelerator and devices.
    **train_kwargs
        Further arguments of :meth:`scx.model.SCDART.train` and :class:`scvi.train.Trainer`.

    Returns
    -------
    The trained model (holding its own registration of the inputs).
    """
    v.check_mudata(mdata)
    if rna == atac:
        raise ValueError(f"`rna` and `atac` must be different modalities, both are {rna!r}.")
    rna_adata = v.check_modality(mdata, rna, argname="rna")
    atac_adata = v.check_modality(mdata, atac, argname="atac")
    layers = layer if isinstance(layer, dict) else {rna: layer, atac: layer}
    matrices = {}
    for name, adata in ((rna, rna_adata), (atac, atac_adata)):
        if not adata.obs_names.is_unique:
            raise ValueError(
                f"Modality {name!r} has duplicated cell names; call "
                f"`mdata.mod[{name!r}].obs_names_make_unique()` and `mdata.update()` first."
            )
        X = v.get_matrix(adata, layers.get(name), argname="layer")
        v.check_counts(X, argname=f"mdata.mod[{name!r}] (layer={layers.get(name)!r})")
        matrices[name] = X
    for argname, value in (
        ("n_latent", n_latent),
        ("diffusion_neighbors", diffusion_neighbors),
        ("n_diffusion_components", n_diffusion_components),
        ("post_align_neighbors", post_align_neighbors),
    ):
        v.check_positive_int(value, argname=argname)
    v.check_positive_int(n_pcs, argname="n_pcs", minimum=2)
    # choices the model checks too, but only after the (slow) diffusion step
    for argname, value, choices in (
        ("prior_penalty", prior_penalty, ("l1", "l2", "relative_l1")),
        ("rna_transform", rna_transform, ("log_normalize", "none")),
        ("atac_transform", atac_transform, ("binary", "none")),
    ):
        if value not in choices:
            raise ValueError(f"`{argname}` must be one of {choices}, got {value!r}.")
    if max_epochs is not None:
        v.check_positive_int(max_epochs, argname="max_epochs")
    if (
        isinstance(ts, int)
        or not len(ts)
        or not all(
            isinstance(t, int | np.integer) and not isinstance(t, bool) and t > 0 for t in ts
        )
    ):
        raise ValueError(f"`ts` must be a list of positive integer diffusion times, got {ts!r}.")
    if batch_size is not None:
        v.check_positive_int(batch_size, argname="batch_size", minimum=2)
        for name, adata in ((rna, rna_adata), (atac, atac_adata)):
            if adata.n_obs < batch_size:
                raise ValueError(
                    f"Modality {name!r} has {adata.n_obs} cells, fewer than "
                    f"`batch_size={batch_size}`; pass `batch_size` ≤ {adata.n_obs}."
                )
    if gene_activity_key is not None and gene_activity_key in mdata.mod:
        raise ValueError(
            f"`gene_activity_key={gene_activity_key!r}` is already a modality; pass a new name."
        )
    anchor_cells = _check_anchors(anchors, rna_adata, atac_adata, rna, atac)
    disjoint = check_writable(mdata, [rna, atac])
    prior_matrix = resolve_prior(
        prior,
        annotation,
        rna_adata,
        atac_adata,
        rna_name=rna,
        atac_name=atac,
        prior_kwargs=prior_kwargs,
    )
    n_linked_genes = int((np.diff(prior_matrix.indptr) > 0).sum())

    # ---- diffusion geometry of each modality, once (sparse kNN graphs, no N × N matrix)
    rna_emb = rna_embedding(
        matrices[rna], n_pcs, log_normalize=rna_transform == "log_normalize", seed=seed
    )
    atac_emb = atac_embedding(matrices[atac], n_pcs + 1, seed=seed)
    diffusion = {
        name: diffusion_coordinates(
            emb,
            n_neighbors=diffusion_neighbors,
            ts=list(ts),
            n_components=n_diffusion_components,
            seed=seed,
        )
        for name, emb in ((rna, rna_emb), (atac, atac_emb))
    }

    def model_input(adata: AnnData, name: str) -> AnnData:
        # the matrix is shared, not copied; it keeps its layer name for new cells later
        X = matrices[name]
        obs = pd.DataFrame(index=adata.obs_names)
        var = pd.DataFrame(index=adata.var_names)
        layer_name = layers.get(name)
        out = AnnData(obs=obs, var=var) if layer_name else AnnData(X=X, obs=obs, var=var)
        if layer_name:
            out.layers[layer_name] = X
        out.obsm[DIFFUSION_OBSM] = diffusion[name]
        return out

    internal = MuData({rna: model_input(rna_adata, rna), atac: model_input(atac_adata, atac)})
    settings.seed = seed
    SCDART.setup_mudata(
        internal, modalities=[rna, atac], layer={rna: layers.get(rna), atac: layers.get(atac)}
    )
    model = SCDART(
        internal,
        prior_matrix,
        rna=rna,
        atac=atac,
        n_latent=n_latent,
        n_hidden_gene_activity=n_hidden_gene_activity,
        n_hidden_encoder=n_hidden_encoder,
        lambda_dist=lambda_dist,
        lambda_prior=lambda_prior,
        lambda_mmd=lambda_mmd,
        lambda_anchor=lambda_anchor,
        prior_penalty=prior_penalty,
        prior_penalty_peaks=prior_penalty_peaks,
        rna_transform=rna_transform,
        atac_transform=atac_transform,
        n_diffusion_blocks=len(ts),
        anchors=anchor_cells,
        init_from_prior=init_from_prior,
    )
    model.train(
        max_epochs=max_epochs,
        batch_size=batch_size,
        lr=lr,
        accelerator=accelerator,
        devices=devices,
        **train_kwargs,
    )
    raw = model.get_latent_representation()
    aligned_rna, aligned_atac = post_align(raw[rna], raw[atac], post_align_neighbors, seed=seed)
    activity = model.get_gene_activity() if gene_activity_key is not None else None

    # ---- write results only now that everything succeeded
    obsm_key = f"X_{key_added}"
    if not disjoint:
        warnings.warn(
            f"Modalities {rna!r} and {atac!r} share cells, so one global embedding row per cell "
            f"is ambiguous; `.obsm[{obsm_key!r}]` is written to each modality only.",
            UserWarning,
            stacklevel=2,
        )
    if activity is not None:
        mdata.mod[gene_activity_key] = AnnData(
            X=activity.to_numpy(),
            obs=pd.DataFrame(index=atac_adata.obs_names),
            var=pd.DataFrame(index=rna_adata.var_names),
        )
        mdata.update()
    write_obsm(mdata, obsm_key, {rna: aligned_rna, atac: aligned_atac}, global_=disjoint)
    write_obsm(mdata, f"{obsm_key}_raw", raw, global_=disjoint)
    batch = batch_size if batch_size is not None else model.default_batch_size()
    mdata.uns[key_added] = {
        "params": clean_params(
            {
                "rna": rna,
                "atac": atac,
                "prior": prior
                if isinstance(prior, str)
                else type(prior).__name__
                if prior is not None
                else "annotation",
                "n_prior_links": int(prior_matrix.nnz),
                "n_linked_genes": n_linked_genes,
                "n_latent": n_latent,
                "n_hidden_gene_activity": list(n_hidden_gene_activity),
                "n_hidden_encoder": list(n_hidden_encoder),
                "lambda_dist": lambda_dist,
                "lambda_prior": lambda_prior,
                "lambda_mmd": lambda_mmd,
                "lambda_anchor": lambda_anchor,
                "prior_penalty": prior_penalty,
                "prior_penalty_peaks": prior_penalty_peaks
                if prior_penalty_peaks is not None
                else "all",
                "anchors": anchor_cells is not None,
                "init_from_prior": init_from_prior,
                "ts": list(ts),
                "diffusion_neighbors": diffusion_neighbors,
                "n_diffusion_components": n_diffusion_components,
                "n_pcs": n_pcs,
                "rna_transform": rna_transform,
                "atac_transform": atac_transform,
                "max_epochs": len(next(iter(model.history_.values())))
                if model.history_
                else max_epochs or 0,
                "batch_size": batch,
                "lr": lr,
                "post_align_neighbors": post_align_neighbors,
                "gene_activity_key": gene_activity_key or "",
                "seed": seed,
            }
        )
    }
    logger.info("scDART: wrote .obsm[%r] and .obsm['%s_raw'].", obsm_key, obsm_key)
    return model


# ---------------------------------------------------------------------------- pseudotime
def _cells_with_rep(data: AnnData | MuData, use_rep: str) -> tuple[np.ndarray, np.ndarray]:
    """The embedding and a mask of the cells that have it (rows without NaN)."""
    if use_rep not in data.obsm:
        raise ValueError(
            f"`use_rep={use_rep!r}` is not in `.obsm`; available keys: {list(data.obsm.keys())}. "
            "Run `scx.tl.scdart` first or pass another key."
        )
    rep = data.obsm[use_rep]
    rep = np.asarray(rep.toarray() if sparse.issparse(rep) else rep, dtype=np.float64)
    if rep.ndim != 2:
        raise ValueError(f"`.obsm[{use_rep!r}]` must be 2-d, got shape {rep.shape}.")
    return rep, np.isfinite(rep).all(axis=1)


def _obs_column(data: AnnData | MuData, key: str) -> pd.Series:
    """``.obs[key]``; on a MuData also gathered from the modalities when not pulled globally."""
    if key in data.obs.columns or not isinstance(data, MuData):
        return v.check_obs_key(data, key, argname="groupby")
    have = [m for m in data.mod if key in data.mod[m].obs.columns]
    if not have:
        v.check_obs_key(data, key, argname="groupby", where=" of the MuData or its modalities")
    values = np.full(data.n_obs, None, dtype=object)
    for m in have:
        values[global_rows(data, m)] = data.mod[m].obs[key].astype(str).to_numpy()
    return pd.Series(values, index=data.obs_names, name=key)


def _root_cell(
    rep: np.ndarray,
    obs_names: pd.Index,
    labels: pd.Series | None,
    root: str,
    groupby: str | None,
) -> tuple[int | None, np.ndarray | None]:
    """Index of the root cell, or (None, mask of the root label's cells)."""
    if not isinstance(root, str):
        raise ValueError(f"`root` must be a cell name or a label (a string), got {root!r}.")
    if root in obs_names:
        return int(obs_names.get_loc(root)), None
    if labels is None:
        raise ValueError(
            f"`root={root!r}` is not the name of a cell with `use_rep` (e.g. "
            f"{list(obs_names[:3])}); to root at a cell label pass `groupby=` with the `.obs` "
            "column holding it."
        )
    mask = (labels.astype(str) == root).to_numpy()
    if not mask.any():
        raise ValueError(
            f"`root={root!r}` is neither a cell name nor a label of `.obs[{groupby!r}]` among the "
            f"cells with `use_rep`; labels are {sorted(labels.dropna().astype(str).unique())[:10]}."
        )
    if mask.all():
        raise ValueError(
            f"Every cell has label {root!r} in `.obs[{groupby!r}]`; a label root needs cells of "
            "other labels to tell the start of the trajectory. Pass a cell name instead."
        )
    return None, mask


def _backbone(
    rep: np.ndarray, clusters: np.ndarray, root_cluster: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MST over cluster means; segments between branch points, read off from the root.

    Returns the tree edges (parent, child), each cluster's segment and each segment's parent
    segment (−1 for the root segment).
    """
    from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree

    n = int(clusters.max()) + 1
    means = np.stack([rep[clusters == c].mean(0) for c in range(n)])
    dist = np.sqrt(((means[:, None] - means[None]) ** 2).sum(-1))
    # a tiny offset keeps zero distances (identical means) as edges of the tree
    mst = minimum_spanning_tree(sparse.csr_matrix(dist + 1e-12 * (1 - np.eye(n))))
    tree = mst + mst.T
    order, parents = breadth_first_order(tree, root_cluster, directed=False)
    segment = np.full(n, -1, dtype=np.int64)
    segment_parent: list[int] = [-1]
    segment[root_cluster] = 0
    children = {c: [] for c in range(n)}
    for c in order[1:]:
        children[int(parents[c])].append(int(c))
    for c in order:
        kids = children[int(c)]
        if len(kids) == 1:
            segment[kids[0]] = segment[c]
        else:
            for kid in kids:
                segment[kid] = len(segment_parent)
                segment_parent.append(int(segment[c]))
    edges = np.array([[int(parents[c]), int(c)] for c in order[1:]], dtype=np.int64).reshape(-1, 2)
    return edges, segment, np.asarray(segment_parent, dtype=np.int64)


def pseudotime(
    data: MuData | AnnData,
    use_rep: str = "X_scdart",
    root: str | None = None,
    *,
    groupby: str | None = None,
    n_neighbors: int = 30,
    n_dcs: int = 10,
    backbone: bool = True,
    backbone_neighbors: int = 15,
    resolution: float = 0.1,
    seed: int = 0,
    key_added: str = "scdart",
) -> None:
    """Diffusion pseudotime and trajectory backbone on a joint embedding (scDART's TI).

    Builds a kNN graph (``n_neighbors``) of the cells that have ``use_rep`` (all RNA and ATAC
    cells after :func:`scx.tl.scdart`), computes scanpy's diffusion pseudotime from ``root``
    (:func:`scanpy.tl.dpt`, which removes the stationary component with the proper outer
    product — the reference's hand-written DPT used a scalar there), and with ``backbone``
    clusters the cells (Leiden on a ``backbone_neighbors`` graph), joins the cluster means by a
    minimum spanning tree and reads the branches off from the root's cluster. Writes

    * ``.obs[f"{key_added}_pseudotime"]`` (in [0, 1]; NaN for cells without ``use_rep``);
    * ``.obs[f"{key_added}_branch"]``: the backbone segment of each cell (``"S0"`` is the
      segment holding the root; a new segment starts after every branch point);
    * ``.obs[f"{key_added}_backbone_cluster"]`` and ``.uns[f"{key_added}_pseudotime"]`` with
      the root cell, the parameters, the tree edges between clusters and the parent of every
      segment.

    On a MuData the columns go to ``mdata.obs`` and to every modality whose cells have
    ``use_rep``. Nothing is written if an argument is invalid.

    Parameters
    ----------
    data
        MuData (e.g. after :func:`scx.tl.scdart`) or AnnData with ``.obsm[use_rep]``.
    use_rep
        Embedding to use (post-aligned scDART latent by default).
    root
        Name of the root cell, or a label of ``.obs[groupby]``: the root is then that label's
        medoid (its cell nearest the label's mean in ``use_rep``).
    groupby
        ``.obs`` column with labels, needed when ``root`` is a label.
    n_neighbors
        Neighbours of the DPT graph (30). The reference's demo uses 10 on its graphtools
        graph; the post-aligned latent holds tight groups of cells averaged over the same
        ``post_align_neighbors`` (10) neighbours, on which a 10-neighbour graph falls apart
        into pieces, so the graph reaches past them.
    n_dcs
        Diffusion components of DPT.
    backbone
        Also compute the cluster backbone and branch segments.
    backbone_neighbors, resolution
        Neighbours (15) and Leiden resolution (0.1, the reference's simulations) of the
        backbone clustering.
    seed
        Seed of the clustering.
    key_added
        Prefix of the written keys.
    """
    import scanpy as sc

    if not isinstance(data, AnnData | MuData):
        raise ValueError(f"`data` must be a MuData or AnnData, got {type(data).__name__}.")
    if root is None:
        raise ValueError("`root` is required: pass the name of the root cell or a label.")
    v.check_positive_int(n_neighbors, argname="n_neighbors", minimum=2)
    v.check_positive_int(n_dcs, argname="n_dcs", minimum=2)
    v.check_positive_int(backbone_neighbors, argname="backbone_neighbors", minimum=2)
    if isinstance(resolution, bool) or not isinstance(resolution, int | float) or resolution <= 0:
        raise ValueError(f"`resolution` must be a positive number, got {resolution!r}.")
    rep, valid = _cells_with_rep(data, use_rep)
    if valid.sum() <= n_neighbors:
        raise ValueError(
            f"Only {int(valid.sum())} cells have a finite `.obsm[{use_rep!r}]`; pseudotime needs "
            f"more than `n_neighbors={n_neighbors}`."
        )
    obs_names = data.obs_names[valid]
    labels = None
    if groupby is not None:
        labels = _obs_column(data, groupby)[valid]
    root_index, root_mask = _root_cell(rep[valid], obs_names, labels, root, groupby)
    if isinstance(data, MuData):
        modalities = [m for m in data.mod if use_rep in data.mod[m].obsm]
        rows = {m: global_rows(data, m) for m in modalities}

    work = AnnData(obs=pd.DataFrame(index=obs_names))
    work.obsm["X_rep"] = rep[valid].astype(np.float32)
    sc.pp.neighbors(work, n_neighbors=n_neighbors, use_rep="X_rep", random_state=seed)
    sc.tl.diffmap(work, n_comps=max(n_dcs, 2) + 1)
    if root_index is None:
        # the label's medoid: robust to where the label's cells sit in the embedding
        members = np.flatnonzero(root_mask)
        points = work.obsm["X_rep"][members]
        centre = points.mean(axis=0)
        root_index = int(members[np.argmin(((points - centre) ** 2).sum(axis=1))])
    work.uns["iroot"] = root_index
    sc.tl.dpt(work, n_dcs=n_dcs)
    time = work.obs["dpt_pseudotime"].to_numpy(dtype=np.float64)
    if not np.isfinite(time).all():
        warnings.warn(
            f"{int((~np.isfinite(time)).sum())} cells are not connected to the root in the "
            "neighbour graph; their pseudotime is NaN.",
            UserWarning,
            stacklevel=2,
        )
    result_obs: dict[str, np.ndarray | pd.Series] = {f"{key_added}_pseudotime": time}
    info: dict = {
        "params": clean_params(
            {
                "use_rep": use_rep,
                "root": root,
                "groupby": groupby or "",
                "n_neighbors": n_neighbors,
                "n_dcs": n_dcs,
                "backbone": backbone,
                "backbone_neighbors": backbone_neighbors,
                "resolution": resolution,
                "seed": seed,
            }
        ),
        "root_cell": str(obs_names[root_index]),
    }
    if backbone:
        graph = AnnData(obs=pd.DataFrame(index=obs_names))
        graph.obsm["X_rep"] = work.obsm["X_rep"]
        sc.pp.neighbors(graph, n_neighbors=backbone_neighbors, use_rep="X_rep", random_state=seed)
        sc.tl.leiden(
            graph,
            resolution=resolution,
            flavor="igraph",
            n_iterations=2,
            directed=False,
            random_state=seed,
        )
        clusters = graph.obs["leiden"].astype(int).to_numpy()
        edges, segment, segment_parent = _backbone(
            work.obsm["X_rep"].astype(np.float64), clusters, int(clusters[root_index])
        )
        names = np.array([f"S{s}" for s in range(segment_parent.size)])
        result_obs[f"{key_added}_branch"] = pd.Series(
            pd.Categorical(names[segment[clusters]], categories=names), index=obs_names
        )
        result_obs[f"{key_added}_backbone_cluster"] = pd.Series(
            pd.Categorical(
                clusters.astype(str), categories=[str(c) for c in range(clusters.max() + 1)]
            ),
            index=obs_names,
        )
        info["backbone_edges"] = edges
        info["segment_parent"] = segment_parent
        info["cluster_segment"] = segment

    # ---- write
    positions = np.flatnonzero(valid)
    for key, values in result_obs.items():
        full = _expand(values, positions, data.n_obs)
        if isinstance(data, MuData):
            per_mod = {m: _take(full, rows[m]) for m in modalities}
            write_obs(data, key, per_mod, global_=True)
        else:
            data.obs[key] = pd.Series(
                full.array if isinstance(full, pd.Series) else full, index=data.obs_names
            )
    data.uns[f"{key_added}_pseudotime"] = info


def _expand(values, positions: np.ndarray, n: int):
    if isinstance(values, pd.Series):
        codes = np.full(n, -1, dtype=np.int64)
        codes[positions] = values.cat.codes.to_numpy()
        return pd.Series(pd.Categorical.from_codes(codes, categories=values.cat.categories))
    out = np.full(n, np.nan)
    out[positions] = values
    return out


def _take(full, rows: np.ndarray):
    if isinstance(full, pd.Series):
        return pd.Series(
            pd.Categorical.from_codes(
                full.cat.codes.to_numpy()[rows], categories=full.cat.categories
            )
        )
    return full[rows]
