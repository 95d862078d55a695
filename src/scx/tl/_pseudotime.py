"""``scx.tl.pseudotime``: diffusion pseudotime and a branch backbone on a joint embedding."""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from scx import _validation as v
from scx._settings import isolated_state
from scx.base import Outputs, check_key_added, global_rows, write_outputs
from scx.train import unknown_name_message

logger = logging.getLogger(__name__)

#: ``uns[key_added]["function"]`` of the records :func:`pseudotime` writes.
FUNCTION = "scx.tl.pseudotime"
#: Parameters that are not keyword arguments a user passes.
_NOT_NAMES = {"data", "args", "unknown"}


# ---------------------------------------------------------------------------- checks
def _cells_with_rep(data: AnnData | MuData, use_rep: str) -> tuple[np.ndarray, np.ndarray]:
    """The embedding and a mask of the cells that have it (rows without NaN)."""
    if not isinstance(use_rep, str) or use_rep not in data.obsm:
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
    if not isinstance(key, str):
        raise ValueError(f"`groupby` must name an `.obs` column, got {key!r}.")
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
    obs_names: pd.Index, labels: pd.Series | None, root: str, groupby: str | None
) -> tuple[int | None, np.ndarray | None]:
    """Index of the root cell, or (None, mask of the root label's cells)."""
    if not isinstance(root, str):
        raise ValueError(f"`root` must be a cell name or a label (a string), got {root!r}.")
    if root in obs_names:
        position = obs_names.get_loc(root)
        if not isinstance(position, int | np.integer):
            raise ValueError(
                f"`root={root!r}` names {int(np.sum(obs_names == root))} cells with `use_rep`: "
                "the cell names are duplicated. Call `.obs_names_make_unique()` first (and "
                "`mdata.update()` for a MuData), or pass a label with `groupby=`."
            )
        return int(position), None
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
            f"cells with `use_rep`; pass one of the labels "
            f"{sorted(labels.dropna().astype(str).unique())[:10]} or a cell name."
        )
    if mask.all():
        raise ValueError(
            f"Every cell has label {root!r} in `.obs[{groupby!r}]`; a label root needs cells of "
            "other labels to tell the start of the trajectory. Pass a cell name instead."
        )
    return None, mask


# ---------------------------------------------------------------------------- computation
def _dpt(rep: np.ndarray, root_index, root_mask, n_neighbors: int, n_dcs: int, seed: int):
    """Scanpy's diffusion pseudotime from the root cell (a label's medoid when a mask)."""
    import scanpy as sc

    work = AnnData(obs=pd.DataFrame(index=[str(i) for i in range(rep.shape[0])]))
    work.obsm["X_rep"] = rep.astype(np.float32)
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
    return work.obs["dpt_pseudotime"].to_numpy(dtype=np.float64), root_index


def _backbone(
    connectivities: np.ndarray, means: np.ndarray, root_cluster: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spanning tree of the clusters; segments between branch points, read off from the root.

    Clusters are joined by the maximum spanning tree of their PAGA connectivity (Wolf et al.,
    Genome Biol 2019: how much more the kNN graph links two clusters than chance), i.e. the
    minimum spanning tree of its inverse, as ``scanpy.tl.paga`` builds its tree. Clusters in
    separate pieces of the kNN graph (connectivity 0) are joined by their nearest means, with
    weights above every connected edge so that only as many such edges enter as there are
    extra pieces.

    Returns the tree edges (parent, child), each cluster's segment and each segment's parent
    segment (−1 for the root segment).
    """
    from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree

    n = connectivities.shape[0]
    linked = connectivities > 0
    inverse = np.divide(1.0, connectivities, out=np.zeros((n, n)), where=linked)
    dist = np.sqrt(((means[:, None] - means[None]) ** 2).sum(-1))
    ceiling = n * max(float(inverse.max()), 1.0)
    weights = np.where(linked, inverse, ceiling * (2.0 + dist / max(float(dist.max()), 1e-12)))
    np.fill_diagonal(weights, 0.0)
    mst = minimum_spanning_tree(sparse.csr_matrix(weights))
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


def _branches(rep: np.ndarray, root_index: int, neighbors: int, resolution: float, seed: int):
    """Leiden clusters of the cells, and the backbone's segments and tree."""
    import scanpy as sc

    graph = AnnData(obs=pd.DataFrame(index=[str(i) for i in range(rep.shape[0])]))
    graph.obsm["X_rep"] = rep.astype(np.float32)
    sc.pp.neighbors(graph, n_neighbors=neighbors, use_rep="X_rep", random_state=seed)
    sc.tl.leiden(
        graph,
        resolution=resolution,
        flavor="igraph",
        n_iterations=2,
        directed=False,
        random_state=seed,
    )
    clusters = graph.obs["leiden"].astype(int).to_numpy()
    n_clusters = int(clusters.max()) + 1
    if n_clusters > 1:
        sc.tl.paga(graph, groups="leiden")
        connectivities = graph.uns["paga"]["connectivities"].toarray()
    else:
        connectivities = np.zeros((1, 1))
    cells = graph.obsm["X_rep"].astype(np.float64)
    means = np.stack([cells[clusters == c].mean(0) for c in range(n_clusters)])
    edges, segment, segment_parent = _backbone(connectivities, means, int(clusters[root_index]))
    names = [f"S{s}" for s in range(segment_parent.size)]
    branch = pd.Categorical.from_codes(segment[clusters], categories=names)
    cluster = pd.Categorical.from_codes(clusters, categories=[str(c) for c in range(n_clusters)])
    tree = {"backbone_edges": edges, "segment_parent": segment_parent, "cluster_segment": segment}
    return branch, cluster, tree


def _per_part(values, positions: np.ndarray, n_obs: int, parts: Mapping[str, np.ndarray]):
    """Values of the cells at ``positions`` spread to every part's rows (missing elsewhere)."""
    if isinstance(values, pd.Categorical):
        codes = np.full(n_obs, -1, dtype=np.int64)
        codes[positions] = values.codes
        return {
            m: pd.Series(pd.Categorical.from_codes(codes[rows], categories=values.categories))
            for m, rows in parts.items()
        }
    full = np.full(n_obs, np.nan)
    full[positions] = values
    return {m: full[rows] for m, rows in parts.items()}


def _old_call_form(args: tuple, use_rep: str, root: str | None) -> tuple[str, str | None]:
    """``pseudotime(data, use_rep, root)`` of the previous release, with a FutureWarning."""
    if not args:
        return use_rep, root
    if len(args) > 2:
        raise TypeError(
            "scx.tl.pseudotime takes the data as its only positional argument; pass `use_rep=` "
            "and `root=` by name."
        )
    warnings.warn(
        "scx.tl.pseudotime: passing `use_rep` and `root` by position is deprecated; pass them by "
        "name (`use_rep=`, `root=`). Results are now written under `key_added='trajectory'` by "
        "default.",
        FutureWarning,
        stacklevel=3,
    )
    return args[0], args[1] if len(args) > 1 else root


def _check_arguments(
    data: AnnData | MuData,
    key_added: str,
    copy: bool,
    *,
    use_rep: str,
    root: str | None,
    groupby: str | None,
    n_neighbors: int,
    n_dcs: int,
    backbone: bool,
    backbone_neighbors: int,
    resolution: float,
    seed: int,
):
    """Every check before any work.

    Returns the embedding, the mask of the cells that have it, the root (a cell, or the mask of
    a label's cells) and the parts the columns are written to (modalities, or the AnnData).
    """
    if not isinstance(data, AnnData | MuData):
        raise ValueError(f"`data` must be a MuData or AnnData, got {type(data).__name__}.")
    if root is None:
        raise ValueError("`root` is required: pass the name of the root cell or a label.")
    v.check_positive_int(n_neighbors, argname="n_neighbors", minimum=2)
    v.check_positive_int(n_dcs, argname="n_dcs", minimum=2)
    v.boolean(backbone, "backbone")
    v.check_positive_int(backbone_neighbors, argname="backbone_neighbors", minimum=2)
    v.positive(resolution, "resolution")
    v.boolean(copy, "copy")
    v.check_positive_int(seed, argname="seed", minimum=0)
    check_key_added(data, key_added, function=FUNCTION)
    rep, valid = _cells_with_rep(data, use_rep)
    if valid.sum() <= n_neighbors:
        raise ValueError(
            f"Only {int(valid.sum())} cells have a finite `.obsm[{use_rep!r}]`; pseudotime needs "
            f"more than `n_neighbors={n_neighbors}`."
        )
    labels = None if groupby is None else _obs_column(data, groupby)[valid]
    root_index, root_mask = _root_cell(data.obs_names[valid], labels, root, groupby)
    if isinstance(data, MuData):
        # the modalities that hold the embedding (not, e.g., a gene-activity modality over the
        # same cells, which would make the cells look shared and keep the columns off data.obs)
        holders = [m for m in data.mod if use_rep in data.mod[m].obsm] or list(data.mod)
        rows = {m: global_rows(data, m) for m in holders}
        parts = {m: r for m, r in rows.items() if valid[r].any()}
    else:
        parts = {"cells": np.arange(data.n_obs)}
    return rep, valid, root_index, root_mask, parts


# ---------------------------------------------------------------------------- the tool
def pseudotime(
    data: MuData | AnnData,
    *args,
    use_rep: str = "X_scdart",
    root: str | None = None,
    groupby: str | None = None,
    n_neighbors: int = 30,
    n_dcs: int = 10,
    backbone: bool = True,
    backbone_neighbors: int = 15,
    resolution: float = 0.1,
    key_added: str = "trajectory",
    copy: bool = False,
    seed: int = 0,
    **unknown,
) -> MuData | AnnData | None:
    """Diffusion pseudotime and trajectory backbone on a joint embedding (scDART's TI).

    Builds a kNN graph (``n_neighbors``) of the cells that have ``use_rep`` (all RNA and ATAC
    cells after :func:`scx.tl.scdart`), computes scanpy's diffusion pseudotime from ``root``
    (:func:`scanpy.tl.dpt`, which removes the stationary component with the proper outer
    product — the reference's hand-written DPT used a scalar there), and with ``backbone``
    clusters the cells (Leiden on a ``backbone_neighbors`` graph), joins the clusters by the
    maximum spanning tree of their PAGA connectivity (:func:`scanpy.tl.paga`; the reference
    joins the cluster means by a minimum spanning tree, which can attach a branch to the end of
    another that it passes near) and reads the branches off from the root's cluster. Writes

    * ``obs[f"{key_added}_pseudotime"]`` (in [0, 1]; NaN for cells without ``use_rep``);
    * ``obs[f"{key_added}_branch"]``: the backbone segment of each cell (``"S0"`` is the
      segment holding the root; a new segment starts after every branch point);
    * ``obs[f"{key_added}_backbone_cluster"]``;
    * ``uns[key_added]``: ``root_cell``, the tree (``backbone_edges`` between clusters,
      ``segment_parent`` of every segment, ``cluster_segment``), ``params`` and ``outputs``.

    On a MuData the columns go to every modality whose cells have ``use_rep`` and, when those
    modalities' cells are distinct, to ``data.obs``. A second run with the same ``key_added``
    replaces the first. Every argument is checked before any work; nothing is written if one
    is invalid.

    Parameters
    ----------
    data
        MuData (e.g. after :func:`scx.tl.scdart`) or AnnData with ``.obsm[use_rep]``.
    *args
        Deprecated positional ``use_rep`` and ``root`` (the old call form).
    use_rep
        Embedding to use (the post-aligned scDART latent by default).
    root
        Name of the root cell, or a label of ``.obs[groupby]``: the root is then that label's
        medoid (its cell nearest the label's mean in ``use_rep``). Required.
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
    key_added
        Name of the results: ``obs[f"{key_added}_…"]`` and ``uns[key_added]``.
    copy
        Work on a copy of ``data`` and return it with the results (the input stays untouched).
    seed
        Seed of the neighbour graphs and the clustering; the caller's global random state is
        left as it was.

    Returns
    -------
    ``None``, or with ``copy=True`` the new object holding the results.
    """
    if unknown:
        accepted = [p for p in inspect.signature(pseudotime).parameters if p not in _NOT_NAMES]
        raise ValueError(unknown_name_message(next(iter(unknown)), accepted, "scx.tl.pseudotime"))
    use_rep, root = _old_call_form(args, use_rep, root)
    params = {
        "use_rep": use_rep,
        "root": root,
        "groupby": groupby,
        "n_neighbors": n_neighbors,
        "n_dcs": n_dcs,
        "backbone": backbone,
        "backbone_neighbors": backbone_neighbors,
        "resolution": resolution,
        "seed": seed,
    }
    rep, valid, root_index, root_mask, parts = _check_arguments(data, key_added, copy, **params)
    obs_names = data.obs_names[valid]
    with isolated_state(seed):
        time, root_index = _dpt(rep[valid], root_index, root_mask, n_neighbors, n_dcs, seed)
        if not np.isfinite(time).all():
            warnings.warn(
                f"{int((~np.isfinite(time)).sum())} cells are not connected to the root in the "
                "neighbour graph; their pseudotime is NaN.",
                UserWarning,
                stacklevel=2,
            )
        columns: dict = {f"{key_added}_pseudotime": time}
        info: dict = {"function": FUNCTION, "root_cell": str(obs_names[root_index])}
        if backbone:
            branch, cluster, tree = _branches(
                rep[valid], root_index, backbone_neighbors, resolution, seed
            )
            columns[f"{key_added}_branch"] = branch
            columns[f"{key_added}_backbone_cluster"] = cluster
            info.update(tree)
        # copying a MuData draws from Python's global random generator
        target = data.copy() if copy else data
    positions = np.flatnonzero(valid)
    outputs = Outputs(
        obs={
            key: _per_part(values, positions, data.n_obs, parts) for key, values in columns.items()
        },
        uns=info,
        rows=None if isinstance(data, MuData) else parts,
    )
    write_outputs(target, key_added, outputs, params)
    logger.info("pseudotime: wrote %s and .uns[%r].", [f".obs[{k!r}]" for k in columns], key_added)
    return target if copy else None
