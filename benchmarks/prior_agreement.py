"""Agreement of `scx.pp.peak_gene_prior` with the shipped MOp (SNARE-seq2) peak→gene prior.

The MOp dataset ships scMoMaT's binary prior ``mdata["rna"].varm["gene_region"]`` (genes × peaks,
each peak linked to exactly one gene: the gene whose body extended 2 kb upstream it overlaps,
Ensembl GRCm38.84). We rebuild a prior from the bundled mm10 Ensembl table and compare links, then
time the construction on 500,000 random peaks against the full mm10 annotation.

Usage::

    python benchmarks/prior_agreement.py [--data-dir DIR] [--n-random-peaks 500000]

The data directory defaults to ``$SCX_DATA_DIR`` or ``../shared/data`` next to the repository.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
ANNOTATION = "annotations/genes_mm10_GRCm38_ensembl_MAESTRO.tsv.gz"

try:
    from scx.pp._genomic import peak_gene_prior, read_annotation
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(REPO / "src"))
    from scx.pp._genomic import peak_gene_prior, read_annotation


def find_data_dir(cli_value: str | None) -> Path:
    candidates = [cli_value, os.environ.get("SCX_DATA_DIR"), str(REPO.parent / "shared" / "data")]
    for cand in candidates:
        if cand and Path(cand).is_dir():
            return Path(cand)
    sys.exit(
        "error: data directory not found. Pass --data-dir or set SCX_DATA_DIR to the folder that "
        f"holds mop_snareseq2/ and annotations/ (tried: {[c for c in candidates if c]})."
    )


def find_file(data_dir: Path, *relative: str) -> Path:
    for rel in relative:
        if (data_dir / rel).is_file():
            return data_dir / rel
    sys.exit(f"error: none of {list(relative)} found under {data_dir}.")


def compare(ours: sp.csr_matrix, shipped: sp.csr_matrix) -> dict[str, float]:
    """Set-agreement statistics of two genes × peaks link matrices (ours may be weighted)."""
    ours_b = (ours > 0).astype(np.float32).tocsr()
    ship_b = (shipped > 0).astype(np.float32).tocsr()
    both = ours_b.multiply(ship_b).tocsr()
    n_ours, n_ship, n_both = ours_b.nnz, ship_b.nnz, both.nnz
    n_peaks = ours.shape[1]

    # Per peak: is (one of) the shipped gene(s) among our linked genes / our top-weighted genes?
    ship_peaks = np.diff(ship_b.tocsc().indptr) > 0
    hit = np.asarray(both.sum(axis=0)).ravel() > 0
    col_max = ours.max(axis=0).toarray().ravel()
    ship_coo = ship_b.tocoo()
    ours_at_ship = np.asarray(ours[ship_coo.row, ship_coo.col]).ravel()
    top = np.zeros(n_peaks, dtype=bool)
    top[ship_coo.col[(ours_at_ship > 0) & (ours_at_ship == col_max[ship_coo.col])]] = True

    # Per gene: Jaccard of peak sets over genes with a link on either side.
    g_ours = np.diff(ours_b.indptr)
    g_ship = np.diff(ship_b.indptr)
    g_both = np.diff(both.indptr)
    active = (g_ours + g_ship) > 0
    union = (g_ours + g_ship - g_both)[active]
    jac = g_both[active] / union
    return {
        "links (ours)": n_ours,
        "links (shipped)": n_ship,
        "links in both": n_both,
        "recall of shipped links": n_both / n_ship,
        "precision": n_both / n_ours if n_ours else np.nan,
        "Jaccard": n_both / (n_ours + n_ship - n_both),
        "peaks: shipped gene among ours": hit[ship_peaks].mean(),
        "peaks: shipped gene is our top": top[ship_peaks].mean(),
        "peaks with >=1 link (ours)": (np.diff(ours_b.tocsc().indptr) > 0).mean(),
        "peaks with >=1 link (shipped)": ship_peaks.mean(),
        "mean links per linked peak (ours)": n_ours
        / max(1, (np.diff(ours_b.tocsc().indptr) > 0).sum()),
        "genes with >=1 link (ours)": int((g_ours > 0).sum()),
        "genes with >=1 link (shipped)": int((g_ship > 0).sum()),
        "per-gene Jaccard: median": float(np.median(jac)),
        "per-gene Jaccard: mean": float(jac.mean()),
        "per-gene: identical peak sets": float((jac == 1).mean()),
        "per-gene: no shared peak": float((jac == 0).mean()),
        "per-gene #peaks Pearson r": float(np.corrcoef(g_ours, g_ship)[0, 1]),
    }


def timed(fn, repeats: int):
    """Best-of-``repeats`` wall time (s) and the last result."""
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def fmt(value) -> str:
    if isinstance(value, int | np.integer):
        return f"{value:,}"
    if isinstance(value, float | np.floating):
        return "nan" if np.isnan(value) else f"{value:.4f}"
    return str(value)


def print_table(rows: dict[str, dict[str, object]], title: str) -> None:
    cols = list(rows)
    metrics = list(next(iter(rows.values())))
    w0 = max(len(m) for m in metrics)
    widths = [max(len(c), *(len(fmt(rows[c][m])) for m in metrics)) for c in cols]
    print(f"\n{title}")
    header = " | ".join([f"{'metric':<{w0}}", *(f"{c:>{w}}" for c, w in zip(cols, widths))])
    print(header)
    print("-" * len(header))
    for m in metrics:
        cells = [f"{fmt(rows[c][m]):>{w}}" for c, w in zip(cols, widths)]
        print(" | ".join([f"{m:<{w0}}", *cells]))


def random_peaks(ann: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Random peaks of 150–1,500 bp on chromosomes drawn in proportion to their length."""
    rng = np.random.default_rng(seed)
    chrom_len = ann.groupby("chrom")["end"].max()
    chrom = rng.choice(chrom_len.index.to_numpy(), n, p=(chrom_len / chrom_len.sum()).to_numpy())
    start = (rng.random(n) * chrom_len.loc[chrom].to_numpy()).astype(np.int64)
    end = start + rng.integers(150, 1500, n)
    chrom = np.char.add("chr", chrom.astype(str))
    names = pd.Index(np.char.add(np.char.add(np.char.add(chrom, ":"), start.astype(str)), "-"))
    names = names + pd.Index(end.astype(str))
    return pd.DataFrame({"chrom": chrom, "start": start, "end": end}, index=names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="folder with mop_snareseq2/, annotations/")
    parser.add_argument("--n-random-peaks", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=3, help="timings are best of this many")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data_dir = find_data_dir(args.data_dir)
    h5mu = find_file(data_dir, "mop_snareseq2/mop_snareseq2.h5mu", "mop_snareseq2.h5mu")
    annotation = find_file(data_dir, ANNOTATION)

    import mudata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        mdata = mudata.read_h5mu(h5mu)
    atac, rna = mdata["atac"], mdata["rna"]
    shipped = sp.csr_matrix(rna.varm["gene_region"])
    print(f"data: {h5mu}")
    print(f"annotation: {annotation}")
    print(f"RNA genes: {rna.n_vars:,}   ATAC peaks: {atac.n_vars:,}   cells: {atac.n_obs:,}")

    configs = {
        "body+2kb": {"upstream": 2000},
        "promoter 2kb": {"upstream": 2000, "gene_body": False},
        "body+2kb, dist 10kb": {"upstream": 2000, "distance": 10_000},
    }
    rows = {}
    for name, kwargs in configs.items():
        seconds, prior = timed(
            lambda kw=kwargs: peak_gene_prior(atac, rna.var_names, annotation, **kw), args.repeats
        )
        stats = compare(prior, shipped)
        stats["build time incl. reading table (s)"] = seconds
        rows[name] = stats
    print_table(rows, "MOp: our prior vs shipped scMoMaT prior (rna.varm['gene_region'])")

    # ---- scaling: random peaks against the full mm10 table -------------------------------
    t_read, ann = timed(lambda: read_annotation(annotation), args.repeats)
    genes = pd.unique(ann["gene_name"])
    peaks = random_peaks(ann, args.n_random_peaks, args.seed)
    scale = {}
    for name, kwargs in configs.items():
        t_df, prior = timed(
            lambda kw=kwargs: peak_gene_prior(peaks, genes, ann, **kw), args.repeats
        )
        tracemalloc.start()
        peak_gene_prior(peaks, genes, ann, **kwargs)
        _, peak_mem = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        scale[name] = {
            "peaks": len(peaks),
            "genes": len(genes),
            "links": prior.nnz,
            "peaks with >=1 link": float((np.diff(prior.tocsc().indptr) > 0).mean()),
            "time, annotation DataFrame (s)": t_df,
            "peak traced memory (MiB)": peak_mem / 2**20,
        }
    t_names, _ = timed(
        lambda: peak_gene_prior(peaks.index, genes, ann, upstream=2000), args.repeats
    )
    scale["body+2kb"]["time, parsing peak names (s)"] = t_names
    for name in configs:
        if name != "body+2kb":
            scale[name]["time, parsing peak names (s)"] = "-"
    print_table(
        scale,
        f"Scaling: {len(peaks):,} random peaks × full mm10 table "
        f"(read_annotation: {t_read:.3f} s; timings best of {args.repeats})",
    )


if __name__ == "__main__":
    main()
