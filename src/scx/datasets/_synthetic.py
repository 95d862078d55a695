"""Generated single-cell data with planted cell types, for tests, demos and scaling runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import sparse


def _type_profiles(
    rng: np.random.Generator, n_types: int, n_genes: int, n_markers: int, fold: float
) -> np.ndarray:
    """Log-scale expression profile per type: a shared baseline plus type-specific markers."""
    baseline = rng.normal(0.0, 1.0, size=n_genes)
    profiles = np.tile(baseline, (n_types, 1))
    for t in range(n_types):
        markers = rng.choice(n_genes, size=n_markers, replace=False)
        profiles[t, markers] += fold
    return profiles


def _sample_counts(
    rng: np.random.Generator,
    log_profiles: np.ndarray,
    types: np.ndarray,
    depth: float,
    chunk_cells: int = 50_000,
) -> sparse.csr_matrix:
    """Sparse multinomial counts: ``depth`` draws per cell (Poisson) from its type's profile.

    Cells are drawn in chunks so that memory stays proportional to the non-zeros.
    """
    n_cells, n_genes = types.size, log_profiles.shape[1]
    probs = np.exp(log_profiles - log_profiles.max(axis=1, keepdims=True))
    cdf = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    blocks = []
    for start in range(0, n_cells, chunk_cells):
        t = types[start : start + chunk_cells]
        n_draws = rng.poisson(depth, size=t.size)
        rows = np.repeat(np.arange(t.size, dtype=np.int32), n_draws)
        genes = np.empty(rows.size, dtype=np.int32)
        row_types = t[rows]
        for k in np.unique(t):
            hit = row_types == k
            genes[hit] = np.searchsorted(cdf[k], rng.random(int(hit.sum())), side="right")
        np.minimum(genes, n_genes - 1, out=genes)
        block = sparse.csr_matrix(
            (np.ones(rows.size, dtype=np.float32), (rows, genes)), shape=(t.size, n_genes)
        )
        block.sum_duplicates()
        blocks.append(block)
    return sparse.vstack(blocks, format="csr", dtype=np.float32)


def synthetic_annotation(n_genes: int, *, seed: int = 0, n_chromosomes: int = 3) -> pd.DataFrame:
    """Gene coordinates for generated genes ``gene0``, ``gene1``, … (1-based, both strands)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5_000, 60_000, size=n_genes)
    gaps = rng.integers(20_000, 80_000, size=n_genes)
    chrom = np.arange(n_genes) % n_chromosomes
    start = np.zeros(n_genes, dtype=np.int64)
    for c in range(n_chromosomes):
        on_c = np.flatnonzero(chrom == c)
        start[on_c] = 10_000 + np.cumsum(gaps[on_c] + lengths[on_c]) - lengths[on_c]
    return pd.DataFrame(
        {
            "gene_name": [f"gene{i}" for i in range(n_genes)],
            "gene_id": [f"GENE{i:06d}" for i in range(n_genes)],
            "chrom": [f"chr{c + 1}" for c in chrom],
            "start": start,
            "end": start + lengths - 1,
            "strand": rng.choice([1, -1], size=n_genes),
        }
    )


def _peaks_for_genes(
    annotation: pd.DataFrame, peaks_per_gene: int, n_background: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    """Peaks inside gene bodies (``gene_of_peak`` ≥ 0) plus intergenic background (−1)."""
    n_genes = len(annotation)
    gene_of_peak = np.repeat(np.arange(n_genes), peaks_per_gene)
    start = annotation["start"].to_numpy()[gene_of_peak]
    length = (annotation["end"] - annotation["start"]).to_numpy()[gene_of_peak]
    peak_start = start + (rng.random(gene_of_peak.size) * (length - 600)).astype(np.int64)
    chrom = annotation["chrom"].to_numpy()[gene_of_peak]
    # two peaks drawn at the same position would share a name: move the later one by 1 bp
    # (rare; every other peak keeps its position, so datasets without a clash are unchanged)
    while True:
        clash = pd.DataFrame({"chrom": chrom, "start": peak_start}).duplicated().to_numpy()
        if not clash.any():
            break
        peak_start[clash] += 1
    # background peaks far beyond the last gene of each chromosome
    bg_chrom = rng.choice(np.unique(annotation["chrom"]), size=n_background)
    bg_start = annotation["end"].max() + 100_000 + np.arange(n_background) * 5_000
    peaks = pd.DataFrame(
        {
            "chrom": np.concatenate([chrom, bg_chrom]),
            "start": np.concatenate([peak_start, bg_start]),
        }
    )
    peaks["end"] = peaks["start"] + 500
    peaks.index = [f"{c}:{s}-{e}" for c, s, e in zip(peaks["chrom"], peaks["start"], peaks["end"])]
    return peaks, np.concatenate([gene_of_peak, np.full(n_background, -1)])


def synthetic_multiome(
    n_rna: int = 600,
    n_atac: int = 600,
    n_genes: int = 300,
    n_types: int = 5,
    *,
    atac_features: str = "gene_activity",
    rna_depth: float = 400.0,
    atac_depth: float = 150.0,
    marker_fraction: float = 0.1,
    marker_fold: float = 2.5,
    modality_noise: float = 0.5,
    peaks_per_gene: int = 3,
    background_fraction: float = 0.2,
    type_weights: np.ndarray | None = None,
    paired: bool = False,
    seed: int = 0,
) -> MuData:
    """Unpaired RNA + ATAC cells with planted cell types.

    Each type has marker genes with raised expression. RNA counts are drawn from the type
    profile; ATAC signal is drawn from the same profile distorted per gene (modality-specific
    effects) at lower depth. Labels are in ``obs["cell_type"]`` of both modalities (hide the ATAC
    labels from a method; they are for scoring).

    Parameters
    ----------
    n_rna, n_atac
        Cells per modality.
    n_genes, n_types
        Genes and planted cell types.
    atac_features
        ``"gene_activity"``: ATAC as a cells × genes matrix over the RNA genes.
        ``"peaks"``: ATAC as cells × peaks with coordinates (``chr:start-end`` names and
        ``var`` columns); the gene annotation that maps peaks to genes is in
        ``mdata.mod["atac"].uns["gene_annotation"]``.
    rna_depth, atac_depth
        Mean counts drawn per cell.
    marker_fraction, marker_fold
        Fraction of genes that mark each type, and their log fold change.
    modality_noise
        Standard deviation of the per-gene ATAC distortion (log scale).
    peaks_per_gene
        Peaks inside each gene body (``atac_features="peaks"``).
    background_fraction
        Extra intergenic peaks carrying noise, as a fraction of the gene peaks.
    type_weights
        Type frequencies (uniform by default).
    paired
        Give both modalities the same cells (same names and types, as in a multiome assay)
        instead of disjoint ones; requires ``n_rna == n_atac``.
    seed
        Random seed.

    Returns
    -------
    MuData with modalities ``"rna"`` and ``"atac"``.
    """
    if paired and n_rna != n_atac:
        raise ValueError("`paired=True` needs `n_rna == n_atac`.")
    rng = np.random.default_rng(seed)
    n_markers = max(1, int(marker_fraction * n_genes))
    profiles = _type_profiles(rng, n_types, n_genes, n_markers, marker_fold)
    weights = np.full(n_types, 1 / n_types) if type_weights is None else np.asarray(type_weights)
    weights = weights / weights.sum()
    type_names = np.array([f"type{t}" for t in range(n_types)])
    rna_types = rng.choice(n_types, size=n_rna, p=weights)
    atac_types = rna_types.copy() if paired else rng.choice(n_types, size=n_atac, p=weights)
    genes = pd.Index([f"gene{i}" for i in range(n_genes)])

    rna = AnnData(
        X=_sample_counts(rng, profiles, rna_types, rna_depth),
        obs=pd.DataFrame(
            {"cell_type": pd.Categorical(type_names[rna_types], categories=type_names)},
            index=[f"cell{i}" if paired else f"rna{i}" for i in range(n_rna)],
        ),
        var=pd.DataFrame(index=genes),
    )
    atac_profiles = profiles + rng.normal(0.0, modality_noise, size=n_genes)[None, :]
    atac_obs = pd.DataFrame(
        {"cell_type": pd.Categorical(type_names[atac_types], categories=type_names)},
        index=[f"cell{i}" if paired else f"atac{i}" for i in range(n_atac)],
    )
    if atac_features == "gene_activity":
        atac = AnnData(
            X=_sample_counts(rng, atac_profiles, atac_types, atac_depth),
            obs=atac_obs,
            var=pd.DataFrame(index=genes),
        )
    elif atac_features == "peaks":
        annotation = synthetic_annotation(n_genes, seed=seed)
        n_background = int(background_fraction * n_genes * peaks_per_gene)
        peaks, gene_of_peak = _peaks_for_genes(annotation, peaks_per_gene, n_background, rng)
        # peak profile: its gene's ATAC profile (minus log peaks_per_gene); background is flat
        peak_profiles = np.where(
            gene_of_peak[None, :] >= 0,
            atac_profiles[:, np.maximum(gene_of_peak, 0)],
            np.log(np.exp(atac_profiles).mean(axis=1, keepdims=True)),
        )
        atac = AnnData(
            X=_sample_counts(rng, peak_profiles, atac_types, atac_depth),
            obs=atac_obs,
            var=peaks,
        )
        atac.uns["gene_annotation"] = annotation
    else:
        raise ValueError(
            f"`atac_features` must be 'gene_activity' or 'peaks', got {atac_features!r}."
        )
    return MuData({"rna": rna, "atac": atac})


def synthetic_batches(
    n_cells: int = 600,
    n_genes: int = 300,
    n_types: int = 5,
    n_batches: int = 2,
    *,
    depth: float = 500.0,
    marker_fraction: float = 0.1,
    marker_fold: float = 2.5,
    batch_effect: float = 0.5,
    interaction_effect: float = 1.5,
    interaction_fraction: float = 0.1,
    missing_types: dict[int, list[int]] | None = None,
    seed: int = 0,
) -> AnnData:
    """Cells of several batches with planted cell types and batch effects, as raw counts.

    Each batch multiplies every gene by its own random factor (``batch_effect``, the standard
    deviation of the log factor), and shifts a random ``interaction_fraction`` of the genes by
    ``±interaction_effect`` (log scale) differently in each cell type, like a stimulation that
    acts per cell type. The second part survives per-batch standardisation and is what
    integration methods must remove. Batches also differ in their type proportions.

    Parameters
    ----------
    n_cells
        Cells per batch.
    n_genes, n_types, n_batches
        Genes, planted cell types and batches.
    depth
        Mean counts per cell.
    marker_fraction, marker_fold
        Fraction of genes that mark each type, and their log fold change.
    batch_effect, interaction_effect, interaction_fraction
        Sizes of the batch effects (see above).
    missing_types
        ``{batch: [types]}`` left out of a batch (batch-specific populations).
    seed
        Random seed.

    Returns
    -------
    AnnData with counts in ``X`` and ``obs["batch"]`` (``batch0``, …), ``obs["cell_type"]``.
    """
    rng = np.random.default_rng(seed)
    n_markers = max(1, int(marker_fraction * n_genes))
    profiles = _type_profiles(rng, n_types, n_genes, n_markers, marker_fold)
    type_names = np.array([f"type{t}" for t in range(n_types)])
    batch_names = np.array([f"batch{b}" for b in range(n_batches)])
    n_interaction = max(1, int(interaction_fraction * n_genes))
    log_profiles, types, batches = [], [], []
    for b in range(n_batches):
        shifted = profiles + rng.normal(0.0, batch_effect, size=n_genes)[None, :]
        if b > 0:
            for t in range(n_types):
                genes = rng.choice(n_genes, size=n_interaction, replace=False)
                shifted[t, genes] += rng.choice([-1.0, 1.0], size=n_interaction) * (
                    interaction_effect
                )
        log_profiles.append(shifted)
        weights = rng.dirichlet(np.full(n_types, 5.0))
        for t in (missing_types or {}).get(b, []):
            weights[t] = 0.0
        weights /= weights.sum()
        types.append(rng.choice(n_types, size=n_cells, p=weights))
        batches.append(np.full(n_cells, b))
    types, batches = np.concatenate(types), np.concatenate(batches)
    # one profile per (batch, type)
    X = _sample_counts(rng, np.concatenate(log_profiles), batches * n_types + types, depth)
    obs = pd.DataFrame(
        {
            "batch": pd.Categorical(batch_names[batches], categories=batch_names),
            "cell_type": pd.Categorical(type_names[types], categories=type_names),
        },
        index=[f"cell{i}" for i in range(types.size)],
    )
    return AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"gene{i}" for i in range(n_genes)]))


def synthetic_linked_modalities(
    n_rna: int = 600,
    n_prot: int = 600,
    n_genes: int = 300,
    n_proteins: int = 30,
    n_types: int = 5,
    n_links: int = 8,
    *,
    rna_depth: float = 800.0,
    prot_depth: float = 3000.0,
    marker_fraction: float = 0.1,
    marker_fold: float = 2.5,
    protein_fold: float = 2.0,
    link_noise: float = 0.3,
    seed: int = 0,
) -> MuData:
    """Unpaired RNA and protein counts of planted cell types, with only a few linked features.

    RNA and protein are drawn for different cells (no pairing) from per-type log-scale
    profiles. ``n_links`` proteins are linked to a marker gene each (chosen round-robin over the
    types, like CD19 ↔ *CD19*): their log-profile across types follows the gene's, plus noise
    of standard deviation ``link_noise``. The other proteins mark types on their own, unrelated
    to any gene, so the two modalities are only weakly linked.

    Parameters
    ----------
    n_rna, n_prot
        Cells of each modality.
    n_genes, n_proteins, n_types, n_links
        Genes, proteins, planted types, and linked protein–gene pairs.
    rna_depth, prot_depth
        Mean counts per cell.
    marker_fraction, marker_fold
        Fraction of genes marking each type and their log fold change.
    protein_fold
        Log fold change of the unlinked proteins' markers (two per type).
    link_noise
        Standard deviation of the log-scale difference between a linked protein's profile and
        its gene's.
    seed
        Random seed.

    Returns
    -------
    MuData with modalities ``rna`` (genes ``gene0``…) and ``prot`` (proteins ``prot0``…, the
    first ``n_links`` linked), counts in ``X``, ``obs["cell_type"]`` in each; the links in
    ``uns["links"]`` (DataFrame, columns ``prot``, ``gene``) and each protein's planted
    log-profile in ``mod["prot"].varm["log_profile"]`` (proteins × types, centred per protein).
    """
    if not 0 < n_links <= n_proteins:
        raise ValueError(f"`n_links` must be in [1, n_proteins={n_proteins}], got {n_links}.")
    rng = np.random.default_rng(seed)
    n_markers = max(1, int(marker_fraction * n_genes))
    genes = _type_profiles(rng, n_types, n_genes, n_markers, marker_fold)
    # each linked gene is the strongest marker of one type, in turn
    linked_genes = []
    for i in range(n_links):
        t = i % n_types
        order = np.argsort(genes[t] - np.delete(genes, t, axis=0).mean(axis=0))[::-1]
        linked_genes.append(next(g for g in order if g not in linked_genes))
    prot = rng.normal(0.0, 0.3, size=(n_types, n_proteins))
    for i, g in enumerate(linked_genes):
        prot[:, i] = genes[:, g] - genes[:, g].mean() + rng.normal(0.0, link_noise, n_types)
    for i in range(n_links, n_proteins):
        prot[(i - n_links) % n_types, i] += protein_fold
        prot[rng.integers(n_types), i] += protein_fold / 2
    type_names = np.array([f"type{t}" for t in range(n_types)])
    modalities = {}
    for name, profiles, n_cells, depth, features in [
        ("rna", genes, n_rna, rna_depth, [f"gene{g}" for g in range(n_genes)]),
        ("prot", prot, n_prot, prot_depth, [f"prot{p}" for p in range(n_proteins)]),
    ]:
        weights = rng.dirichlet(np.full(n_types, 5.0))
        types = rng.choice(n_types, size=n_cells, p=weights)
        X = _sample_counts(rng, profiles, types, depth)
        modalities[name] = AnnData(
            X=X,
            obs=pd.DataFrame(
                {"cell_type": pd.Categorical(type_names[types], categories=type_names)},
                index=[f"{name}_cell{i}" for i in range(n_cells)],
            ),
            var=pd.DataFrame(index=features),
        )
    modalities["prot"].varm["log_profile"] = (prot - prot.mean(axis=0)).T
    mdata = MuData(modalities)
    mdata.uns["links"] = pd.DataFrame(
        {"prot": [f"prot{i}" for i in range(n_links)], "gene": [f"gene{g}" for g in linked_genes]}
    )
    return mdata
