"""Generated branching trajectory with paired RNA + ATAC cells and a peak → gene prior."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from ._synthetic import _peaks_for_genes, synthetic_annotation


def synthetic_trajectory(
    n_cells: int = 1000,
    n_genes: int = 200,
    *,
    branch_point: float = 0.4,
    rna_depth: float = 500.0,
    peaks_per_gene: int = 3,
    background_fraction: float = 0.2,
    peak_open: float = 0.6,
    peak_closed: float = 0.03,
    bump_width: float = 0.15,
    fold: float = 3.0,
    branch_ramp: float = 0.0,
    chunk_cells: int = 20_000,
    seed: int = 0,
) -> MuData:
    """A bifurcating trajectory measured in RNA and ATAC of the same cells (pairing hidden).

    Every cell has a true pseudotime ``t ∈ [0, 1]``; cells before ``branch_point`` are on the
    trunk, later ones on branch 1 or 2 (half each). Each gene is active in a Gaussian window of
    ``t`` (width ``bump_width``), on the trunk and both branches or — for windows after the
    branch point — on one branch only. RNA counts are Poisson with log-mean
    ``baseline + fold * activity``; each gene has ``peaks_per_gene`` peaks inside its body whose
    opening probability rises from ``peak_closed`` to ``peak_open`` with the gene's activity,
    plus intergenic background peaks open at ``peak_closed``.

    RNA cell ``rna{i}`` and ATAC cell ``atac{i}`` are the same cell: the names differ so a model
    cannot see the pairing; scores can use it. ``obs`` of both modalities holds
    ``pseudotime``, ``branch`` (``trunk``/``branch1``/``branch2``) and ``milestone`` (the
    branch split into early/late thirds, usable as a root label: ``"trunk_early"``).

    Parameters
    ----------
    n_cells
        Cells (in each modality).
    n_genes
        Genes.
    branch_point
        Pseudotime of the bifurcation.
    rna_depth
        Mean RNA counts per cell.
    peaks_per_gene, background_fraction
        Peaks per gene body, and background peaks as a fraction of the gene peaks.
    peak_open, peak_closed
        Opening probability of a peak of a fully active gene / of an inactive gene.
    bump_width, fold
        Width (pseudotime units) and log fold change of a gene's activity window.
    branch_ramp
        Pseudotime over which the branch-specific programmes switch on after the branch point
        (their activity is scaled by ``min(1, (t - branch_point) / branch_ramp)``), so the two
        branches leave the trunk continuously. ``0`` switches them on at once: expression then
        jumps at the branch point, and a 5-neighbour RNA graph falls apart into trunk and
        branches.
    chunk_cells
        Cells generated at a time (memory stays proportional to the non-zeros).
    seed
        Random seed.

    Returns
    -------
    MuData with modalities ``"rna"`` (counts, genes ``gene{i}``) and ``"atac"`` (binary peaks
    named ``chr:start-end`` with ``var`` columns). ``mdata.mod["rna"].varm["peak_prior"]`` is
    the genes × peaks prior (1 where a peak lies in the gene body) and
    ``mdata.mod["atac"].uns["gene_annotation"]`` the gene table it comes from (for
    :func:`scx.pp.peak_gene_prior`).
    """
    if not 0 < branch_point < 1:
        raise ValueError(f"`branch_point` must be in (0, 1), got {branch_point!r}.")
    rng = np.random.default_rng(seed)
    t = np.sort(rng.random(n_cells))
    after = t >= branch_point
    branch = np.where(after, 1 + (rng.random(n_cells) < 0.5), 0)
    # gene programmes: window centre and the branch it belongs to (0 = everywhere)
    centre = rng.random(n_genes)
    gene_branch = np.where(centre >= branch_point, rng.integers(1, 3, size=n_genes), 0)
    # a third of the late genes are shared by both branches
    gene_branch[(centre >= branch_point) & (rng.random(n_genes) < 1 / 3)] = 0
    baseline = rng.normal(0.0, 0.5, size=n_genes)
    annotation = synthetic_annotation(n_genes, seed=seed)
    n_background = int(background_fraction * n_genes * peaks_per_gene)
    peaks, gene_of_peak = _peaks_for_genes(annotation, peaks_per_gene, n_background, rng)
    strength = rng.uniform(0.5, 1.0, size=gene_of_peak.size)

    rna_blocks, atac_blocks = [], []
    for start in range(0, n_cells, chunk_cells):
        tc, bc = t[start : start + chunk_cells], branch[start : start + chunk_cells]
        bump = np.exp(-((tc[:, None] - centre[None, :]) ** 2) / (2 * bump_width**2))
        on_branch = (gene_branch[None, :] == 0) | (gene_branch[None, :] == bc[:, None])
        weight = on_branch.astype(np.float64)
        if branch_ramp > 0:
            ramp = np.clip((tc - branch_point) / branch_ramp, 0.0, 1.0)[:, None]
            weight = np.where(on_branch & (gene_branch[None, :] > 0), ramp, weight)
        activity = bump * weight
        log_mean = baseline[None, :] + fold * activity
        rates = np.exp(log_mean)
        rates *= rna_depth / rates.sum(axis=1, keepdims=True)
        size = rng.lognormal(0.0, 0.3, size=tc.size)[:, None]
        rna_blocks.append(sparse.csr_matrix(rng.poisson(rates * size).astype(np.float32)))
        peak_activity = np.where(
            gene_of_peak[None, :] >= 0, activity[:, np.maximum(gene_of_peak, 0)], 0.0
        )
        p_open = peak_closed + (peak_open - peak_closed) * peak_activity * strength[None, :]
        open_ = rng.random(p_open.shape) < p_open
        atac_blocks.append(sparse.csr_matrix(open_.astype(np.float32)))

    def obs(prefix: str) -> pd.DataFrame:
        return _trajectory_obs(t, branch, branch_point, [f"{prefix}{i}" for i in range(n_cells)])

    genes = pd.Index([f"gene{i}" for i in range(n_genes)])
    linked = np.flatnonzero(gene_of_peak >= 0)
    prior = sparse.csr_matrix(
        (np.ones(linked.size, dtype=np.float32), (gene_of_peak[linked], linked)),
        shape=(n_genes, len(peaks)),
    )
    rna = AnnData(
        X=sparse.vstack(rna_blocks, format="csr"),
        obs=obs("rna"),
        var=pd.DataFrame({"centre": centre, "programme_branch": gene_branch}, index=genes),
    )
    rna.varm["peak_prior"] = prior
    atac = AnnData(X=sparse.vstack(atac_blocks, format="csr"), obs=obs("atac"), var=peaks)
    atac.uns["gene_annotation"] = annotation
    return MuData({"rna": rna, "atac": atac})


def _trajectory_obs(
    t: np.ndarray, branch: np.ndarray, branch_point: float, names: list[str]
) -> pd.DataFrame:
    """True pseudotime, branch and milestone (early/mid/late third of each segment)."""
    branch_names = np.array(["trunk", "branch1", "branch2"])
    labels = branch_names[branch]
    seg_start = np.where(branch == 0, 0.0, branch_point)
    seg_len = np.where(branch == 0, branch_point, 1 - branch_point)
    third = np.minimum(((t - seg_start) / seg_len * 3).astype(int), 2)
    milestone = np.char.add(
        np.char.add(labels.astype(str), "_"), np.array(["early", "mid", "late"])[third]
    )
    return pd.DataFrame(
        {
            "pseudotime": t,
            "branch": pd.Categorical(labels, categories=branch_names),
            "milestone": pd.Categorical(milestone),
        },
        index=names,
    )
