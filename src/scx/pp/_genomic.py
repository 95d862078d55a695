"""Genomic preprocessing for single-cell ATAC: gene annotations, peak coordinates, peak→gene maps.

Everything here is vectorised with numpy/pandas/scipy: there is no Python loop over peaks or genes
(only over a handful of region-length bins), so a peak set of ~500k peaks against a full Ensembl
annotation (~60k genes) is linked in seconds with memory proportional to the number of candidate
peak–gene pairs.

Coordinate conventions
----------------------
All intervals are treated as *closed* intervals ``[start, end]`` on integer coordinates, which is
the convention of Ensembl/GTF annotations (1-based, inclusive). Peak coordinates are used exactly as
given (for BED-derived peak names this means a shift of at most 1 bp, which is irrelevant for
kilobase-scale regulatory windows). Chromosome names are normalised on both sides so that ``chr1``
matches ``1`` and ``chrM``/``chrMT``/``M``/``MT`` all match (see :func:`normalize_chrom`).
"""

from __future__ import annotations

import itertools
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scx._validation import check_counts, clean_params, get_matrix

__all__ = [
    "gene_activity",
    "normalize_chrom",
    "peak_coordinates",
    "peak_gene_prior",
    "read_annotation",
]

logger = logging.getLogger(__name__)

_REQUIRED_ANNOTATION_COLUMNS = ("gene_name", "chrom", "start", "end", "strand")
_ANNOTATION_COLUMNS = ("gene_name", "gene_id", "chrom", "start", "end", "strand")
_GTF_COLUMNS = (
    "seqname",
    "source",
    "feature",
    "start",
    "end",
    "score",
    "strand",
    "frame",
    "attribute",
)
# Greedy chromosome group so that scaffold names containing "_" or "-" (chrUn_GL000220v1) still
# parse; the last two integer groups are the coordinates.
_PEAK_NAME_RE = r"^\s*(?P<chrom>.+?)[:_-](?P<start>\d+)[_-](?P<end>\d+)\s*$"
# Region-length bins grow by this factor; a bin's candidate window is at most ~factor times wider
# than needed, which bounds the number of false candidate pairs.
_LENGTH_BIN_FACTOR = 4.0
# Maximum number of candidate peak–region pairs materialised at once (bounds peak memory use).
_MAX_CANDIDATES_PER_CHUNK = 20_000_000


# --------------------------------------------------------------------------------------------
# Chromosome names
# --------------------------------------------------------------------------------------------
def normalize_chrom(chrom: Sequence[str] | pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """Normalise chromosome names so that UCSC and Ensembl styles match.

    A leading ``chr`` (any case) is stripped and the mitochondrion is called ``MT``, so ``chr1`` and
    ``1`` become ``1``, and ``chrM``, ``chrMT``, ``M`` and ``MT`` all become ``MT``.

    Parameters
    ----------
    chrom
        Chromosome names.

    Returns
    -------
    numpy.ndarray
        Object array of normalised names, same length as ``chrom``.
    """
    # Normalise only the distinct names (a few dozen) and broadcast back: far cheaper than string
    # operations on every peak.
    codes, uniques = pd.factorize(pd.Series(chrom, dtype=object).astype(str), sort=False)
    norm = pd.Series(uniques, dtype=object).str.strip().str.replace(r"(?i)^chr", "", regex=True)
    norm = norm.where(~norm.str.upper().isin(["M", "MT"]), "MT").to_numpy(dtype=object)
    if len(codes) == 0:
        return np.empty(0, dtype=object)
    return norm[codes]


# --------------------------------------------------------------------------------------------
# Gene annotation
# --------------------------------------------------------------------------------------------
def _annotation_help() -> str:
    return (
        "Pass a DataFrame with columns gene_name, chrom, start, end, strand (optional gene_id), "
        "a path to such a tab-separated table (optionally .gz), or a GTF file (.gtf / .gtf.gz)."
    )


def _read_gtf(path: Path) -> pd.DataFrame:
    """Read the ``gene`` records of a GTF file into the annotation column layout."""
    try:
        gtf = pd.read_csv(
            path,
            sep="\t",
            header=None,
            names=list(_GTF_COLUMNS),
            usecols=["seqname", "feature", "start", "end", "strand", "attribute"],
            dtype=str,
            # Attributes contain double quotes; they must not be interpreted as CSV quoting.
            quoting=3,
            na_filter=False,
            engine="c",
        )
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as err:
        raise ValueError(
            f"`annotation`: could not parse {str(path)!r} as a GTF file ({err}). "
            + _annotation_help()
        ) from err
    # Header lines ("#!genome-build ...") become rows with a '#'-prefixed seqname; drop them here
    # rather than with `comment="#"`, which would also truncate attributes containing '#'.
    gtf = gtf[(gtf["feature"] == "gene") & ~gtf["seqname"].str.startswith("#")]
    if gtf.empty:
        raise ValueError(
            f"`annotation`: the GTF file {str(path)!r} has no rows with feature == 'gene'. "
            "Pass a GTF with gene records, or a gene table. " + _annotation_help()
        )
    attr = gtf["attribute"]
    gene_id = attr.str.extract(r'(?:^|;)\s*gene_id\s+"([^"]*)"', expand=False)
    gene_name = attr.str.extract(r'(?:^|;)\s*gene_name\s+"([^"]*)"', expand=False)
    gene_name = gene_name.where(gene_name.notna() & (gene_name != ""), gene_id)
    return pd.DataFrame(
        {
            "gene_name": gene_name.to_numpy(),
            "gene_id": gene_id.to_numpy(),
            "chrom": gtf["seqname"].to_numpy(),
            "start": gtf["start"].to_numpy(),
            "end": gtf["end"].to_numpy(),
            "strand": gtf["strand"].to_numpy(),
        }
    )


def _is_gtf(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".gtf", ".gtf.gz"))


def _coerce_strand(strand: pd.Series) -> np.ndarray:
    """Map strand values ``1/-1``, ``"+"/"-"`` or ``"1"/"-1"`` to int8 ``1/-1``."""
    mapping = {"+": 1, "-": -1, "1": 1, "-1": -1, "+1": 1, "1.0": 1, "-1.0": -1}
    as_str = strand.astype(str).str.strip()
    out = as_str.map(mapping)
    bad = out.isna()
    if bad.any():
        examples = sorted(set(as_str[bad].tolist()))[:5]
        raise ValueError(
            f"`annotation`: column 'strand' has {int(bad.sum())} value(s) that are not a strand, "
            f"e.g. {examples}. Use 1 / -1 or '+' / '-'."
        )
    return out.to_numpy(dtype=np.int8)


def _coerce_positions(values: pd.Series, column: str) -> np.ndarray:
    num = pd.to_numeric(values, errors="coerce")
    bad = num.isna() | ~np.isfinite(num.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        examples = values[bad].astype(str).unique()[:5].tolist()
        raise ValueError(
            f"`annotation`: column {column!r} has {int(bad.sum())} missing or non-numeric "
            f"value(s), e.g. {examples}. Gene coordinates must be integers (bp)."
        )
    return num.to_numpy(dtype=np.int64)


def check_annotation(annotation: Any) -> None:
    """Check that ``annotation`` is a DataFrame or the path of an existing file.

    Cheap (the file is not read), so a tool can refuse a wrong annotation before any work.
    """
    if isinstance(annotation, pd.DataFrame):
        return
    if not isinstance(annotation, str | os.PathLike) or not str(annotation):
        raise ValueError(
            f"`annotation` must be a DataFrame or a file path, got {type(annotation).__name__}. "
            + _annotation_help()
        )
    path = Path(annotation)
    if not path.is_file():
        raise ValueError(f"`annotation`: file {str(path)!r} does not exist. {_annotation_help()}")


def read_annotation(annotation: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    """Read and normalise a gene annotation.

    Parameters
    ----------
    annotation
        One of

        * a :class:`~pandas.DataFrame` with columns ``gene_name``, ``chrom``, ``start``, ``end``,
          ``strand`` and optionally ``gene_id``;
        * a path to a tab-separated table with those columns (optionally gzip-compressed), e.g. the
          Ensembl tables ``genes_*_ensembl_MAESTRO.tsv.gz``;
        * a path to a GTF file (``.gtf`` or ``.gtf.gz``); rows with feature ``gene`` are used,
          the name is the ``gene_name`` attribute (falling back to ``gene_id``).

        Coordinates are 1-based and inclusive; strand is ``1``/``-1`` or ``"+"``/``"-"``.

    Returns
    -------
    pandas.DataFrame
        One row per gene, in input order, with a fresh ``RangeIndex`` and columns ``gene_name``,
        ``gene_id`` (filled from ``gene_name`` where missing), ``chrom`` (normalised with
        :func:`normalize_chrom`: ``chr1`` → ``1``, ``chrM`` → ``MT``), ``start`` and ``end``
        (int64) and ``strand`` (int8, ``1`` or ``-1``). Gene names need not be unique.

    Raises
    ------
    ValueError
        If the input is of the wrong type, the file is missing or unreadable, required columns are
        missing, or coordinates/strands are invalid.
    """
    check_annotation(annotation)
    if isinstance(annotation, pd.DataFrame):
        df = annotation
        source = "the DataFrame"
    else:
        path = Path(annotation)
        source = repr(str(path))
        if _is_gtf(path):
            df = _read_gtf(path)
        else:
            try:
                df = pd.read_csv(path, sep="\t", dtype={"chrom": str, "strand": str})
            except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as err:
                raise ValueError(
                    f"`annotation`: could not read {source} as a tab-separated table ({err}). "
                    + _annotation_help()
                ) from err

    missing = [c for c in _REQUIRED_ANNOTATION_COLUMNS if c not in df.columns]
    if missing:
        hint = (
            " (a GTF file must end in .gtf or .gtf.gz to be recognised)"
            if not isinstance(annotation, pd.DataFrame)
            else ""
        )
        raise ValueError(
            f"`annotation`: {source} is missing required column(s) {missing}; found "
            f"{list(map(str, df.columns))[:10]}{hint}. {_annotation_help()}"
        )
    if len(df) == 0:
        raise ValueError(f"`annotation`: {source} has no rows. {_annotation_help()}")

    gene_id = df["gene_id"] if "gene_id" in df.columns else pd.Series(np.nan, index=df.index)
    gene_name = df["gene_name"].astype(object)
    gene_name = gene_name.where(gene_name.notna(), gene_id.astype(object))
    if gene_name.isna().any():
        raise ValueError(
            f"`annotation`: {int(gene_name.isna().sum())} row(s) of {source} have no gene_name "
            "(and no gene_id to fall back on). Fill or drop those rows."
        )
    gene_name = gene_name.astype(str)
    gene_id = gene_id.astype(object).where(gene_id.notna(), gene_name).astype(str)
    if df["chrom"].isna().any():
        raise ValueError(
            f"`annotation`: {int(df['chrom'].isna().sum())} row(s) of {source} have no chrom. "
            "Fill or drop those rows."
        )
    start = _coerce_positions(df["start"], "start")
    end = _coerce_positions(df["end"], "end")
    bad = start > end
    if bad.any():
        raise ValueError(
            f"`annotation`: {int(bad.sum())} row(s) of {source} have start > end (e.g. gene "
            f"{gene_name[bad].iloc[0]!r}). Use start <= end whatever the strand; the strand "
            "column says which end is the TSS."
        )
    return pd.DataFrame(
        {
            "gene_name": gene_name.to_numpy(dtype=object),
            "gene_id": gene_id.to_numpy(dtype=object),
            "chrom": normalize_chrom(df["chrom"]),
            "start": start,
            "end": end,
            "strand": _coerce_strand(df["strand"]),
        }
    )


def _deduplicate(ann: pd.DataFrame, duplicates: str) -> pd.DataFrame:
    """Keep one row per gene name (longest or first), preserving the annotation order."""
    if duplicates == "first":
        keep = ~ann["gene_name"].duplicated(keep="first").to_numpy()
    else:
        length = (ann["end"] - ann["start"]).to_numpy()
        # Stable sort by decreasing length, so ties keep the first row.
        order = np.argsort(-length, kind="stable")
        first = ~ann["gene_name"].iloc[order].duplicated(keep="first").to_numpy()
        keep = np.zeros(len(ann), dtype=bool)
        keep[order[first]] = True
    return ann.loc[keep].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Peak coordinates
# --------------------------------------------------------------------------------------------
def _peak_help(chrom_key: str, start_key: str, end_key: str) -> str:
    return (
        f"Pass an AnnData whose .var has columns {chrom_key!r}, {start_key!r}, {end_key!r}, "
        "or peak names like 'chr1:100-200', 'chr1_100_200' or 'chr1-100-200'."
    )


def peak_coordinates(
    atac: ad.AnnData | pd.DataFrame | Sequence[str] | pd.Index | np.ndarray,
    *,
    chrom_key: str = "chrom",
    start_key: str = "start",
    end_key: str = "end",
) -> pd.DataFrame:
    """Genomic coordinates of ATAC peaks.

    Coordinates come from the columns ``chrom_key``, ``start_key``, ``end_key`` of ``atac.var``
    when all three are present (they take precedence over the names); otherwise they are parsed
    from the peak names, which may look like ``chr1:100-200``, ``chr1_100_200`` or
    ``chr1-100-200``.

    Parameters
    ----------
    atac
        An AnnData with peaks as variables, a DataFrame with the coordinate columns (like
        ``atac.var``), or a list/Index/array of peak names.
    chrom_key, start_key, end_key
        Names of the coordinate columns in ``atac.var``.

    Returns
    -------
    pandas.DataFrame
        Indexed by peak name (input order), with columns ``chrom`` (normalised with
        :func:`normalize_chrom`), ``start`` and ``end`` (int64).

    Raises
    ------
    ValueError
        If names cannot be parsed, coordinate columns hold missing/non-integer values, or
        ``start > end`` for some peak.
    """
    helptext = _peak_help(chrom_key, start_key, end_key)
    if isinstance(atac, ad.AnnData):
        var = atac.var
    elif isinstance(atac, pd.DataFrame):
        var = atac
    elif isinstance(atac, str | bytes):
        raise ValueError(
            f"`atac` must be a collection of peak names, not a single string. {helptext}"
        )
    elif isinstance(atac, Sequence | pd.Index | np.ndarray | pd.Series):
        var = pd.DataFrame(index=pd.Index(np.asarray(atac, dtype=object).ravel()))
    else:
        raise ValueError(
            f"`atac` must be an AnnData, a DataFrame or a list of peak names, got "
            f"{type(atac).__name__}. {helptext}"
        )
    names = var.index

    if all(k in var.columns for k in (chrom_key, start_key, end_key)):
        chrom = var[chrom_key]
        start = pd.to_numeric(var[start_key], errors="coerce")
        end = pd.to_numeric(var[end_key], errors="coerce")
        s_f = start.to_numpy(dtype=float, na_value=np.nan)
        e_f = end.to_numpy(dtype=float, na_value=np.nan)
        # Missing, infinite or fractional coordinates are all invalid (bp are integers).
        with np.errstate(invalid="ignore"):
            bad = chrom.isna().to_numpy() | ~(np.isfinite(s_f) & np.isfinite(e_f))
            bad |= (np.nan_to_num(s_f) % 1 != 0) | (np.nan_to_num(e_f) % 1 != 0)
        if bad.any():
            raise ValueError(
                f"`atac`: {int(bad.sum())} peak(s) have missing or non-integer values in var "
                f"columns {chrom_key!r}/{start_key!r}/{end_key!r}, e.g. "
                f"{names[bad][:5].astype(str).tolist()}. {helptext}"
            )
        chrom = chrom.to_numpy()
        start = start.to_numpy(dtype=np.int64)
        end = end.to_numpy(dtype=np.int64)
    else:
        parsed = pd.Series(names.astype(str), dtype=object).str.extract(_PEAK_NAME_RE)
        bad = parsed["chrom"].isna().to_numpy()
        if bad.any():
            examples = names[bad][:5].astype(str).tolist()
            raise ValueError(
                f"`atac`: {int(bad.sum())} of {len(names)} peak name(s) are not genomic "
                f"coordinates, e.g. {examples}, and var has no {chrom_key!r}/{start_key!r}/"
                f"{end_key!r} columns. {helptext}"
            )
        chrom = parsed["chrom"].to_numpy()
        start = parsed["start"].to_numpy(dtype=np.int64)
        end = parsed["end"].to_numpy(dtype=np.int64)

    bad = start > end
    if bad.any():
        raise ValueError(
            f"`atac`: {int(bad.sum())} peak(s) have start > end, e.g. "
            f"{names[bad][:5].astype(str).tolist()}. Peak intervals must have start <= end."
        )
    return pd.DataFrame(
        {"chrom": normalize_chrom(chrom), "start": start, "end": end},
        index=pd.Index(names, copy=True),
    )


# --------------------------------------------------------------------------------------------
# Interval overlap (vectorised)
# --------------------------------------------------------------------------------------------
def _overlap_pairs(
    peak_chrom: np.ndarray,
    peak_start: np.ndarray,
    peak_end: np.ndarray,
    reg_chrom: np.ndarray,
    reg_start: np.ndarray,
    reg_end: np.ndarray,
    max_gap: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (peak, region) pairs on the same chromosome whose gap is at most ``max_gap``.

    Intervals are closed. The gap is ``max(region_start - peak_end, peak_start - region_end, 0)``,
    so overlapping intervals have gap 0 and adjacent ones (``[1, 5]``, ``[6, 9]``) gap 1.

    Returns
    -------
    peak_idx, region_idx, gap
        int64 arrays of equal length, in no particular order.
    """
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))
    if len(peak_start) == 0 or len(reg_start) == 0:
        return empty

    # Put every chromosome on one number line, separated by more than any window can reach, so a
    # single sorted array serves all chromosomes and cross-chromosome pairs can never be candidates.
    codes, _ = pd.factorize(np.concatenate([peak_chrom, reg_chrom]).astype(object))
    p_code = codes[: len(peak_start)].astype(np.int64)
    r_code = codes[len(peak_start) :].astype(np.int64)
    lo = min(int(peak_start.min()), int(reg_start.min()))
    hi = max(int(peak_end.max()), int(reg_end.max()))
    stride = 2 * (hi - lo) + 2 * int(max_gap) + 2
    if (int(codes.max()) + 1) * stride >= 2**62:
        raise ValueError("Genomic coordinates are too large to index.")
    ps = p_code * stride + (peak_start.astype(np.int64) - lo)
    pe = p_code * stride + (peak_end.astype(np.int64) - lo)
    # Query in sorted order: binary searches with monotone queries are far more cache-friendly.
    p_order = np.argsort(ps, kind="stable")
    ps, pe = ps[p_order], pe[p_order]
    rs = r_code * stride + (reg_start.astype(np.int64) - lo)
    re_ = r_code * stride + (reg_end.astype(np.int64) - lo)

    # Bin regions by length so that a peak's candidate window (start within
    # [peak_start - L_bin - gap, peak_end + gap]) is tight for every bin, including the rare
    # megabase-long genes, without inflating the window for the many short ones.
    length = re_ - rs
    bins = np.floor(np.log(np.maximum(length, 1)) / np.log(_LENGTH_BIN_FACTOR)).astype(np.int64)
    order = np.argsort(rs, kind="stable")

    out_p, out_r, out_g = [], [], []
    for b in np.unique(bins):
        idx = order[bins[order] == b]  # regions of this bin, sorted by start
        b_start, b_end = rs[idx], re_[idx]
        max_len = int(length[idx].max())
        first = np.searchsorted(b_start, ps - max_len - max_gap, side="left")
        last = np.searchsorted(b_start, pe + max_gap, side="right")
        counts = last - first
        total = int(counts.sum())
        if total == 0:
            continue
        # Materialise candidates in chunks of whole peaks to bound memory.
        csum = np.cumsum(counts)
        n_chunks = -(-total // _MAX_CANDIDATES_PER_CHUNK)
        edges = np.searchsorted(csum, np.arange(1, n_chunks) * _MAX_CANDIDATES_PER_CHUNK)
        edges = np.unique(np.concatenate([[0], edges, [len(counts)]]))
        for a, z in itertools.pairwise(edges):
            c = counts[a:z]
            n = int(c.sum())
            if n == 0:
                continue
            peak = np.repeat(np.arange(a, z, dtype=np.int64), c)
            # Position within the bin: first[peak] + rank of the candidate within its peak.
            offset = np.repeat(first[a:z] - (np.cumsum(c) - c), c)
            pos = offset + np.arange(n, dtype=np.int64)
            gap = np.maximum(np.maximum(b_start[pos] - pe[peak], ps[peak] - b_end[pos]), 0)
            keep = gap <= max_gap
            out_p.append(peak[keep])
            out_r.append(idx[pos[keep]])
            out_g.append(gap[keep])
    if not out_p:
        return empty
    peak_idx = p_order[np.concatenate(out_p)]
    reg_idx = np.concatenate(out_r)
    gap = np.concatenate(out_g)
    return peak_idx, reg_idx, gap


# --------------------------------------------------------------------------------------------
# Peak → gene prior
# --------------------------------------------------------------------------------------------
def _check_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer (bp), got {value!r}.")
    return int(value)


def _check_params(upstream: object, downstream: object, duplicates: object) -> tuple[int, int]:
    up = _check_int(upstream, "upstream")
    down = _check_int(downstream, "downstream")
    if duplicates not in ("longest", "first"):
        raise ValueError(
            f"`duplicates` must be 'longest' (keep the longest gene per name) or 'first' (keep "
            f"the first row), got {duplicates!r}."
        )
    return up, down


def _check_genes(genes: object) -> pd.Index:
    if isinstance(genes, str | bytes) or genes is None:
        raise ValueError(
            f"`genes` must be a list or Index of gene names (e.g. rna.var_names), got {genes!r}."
        )
    try:
        index = pd.Index(np.asarray(genes, dtype=object).ravel()).astype(str)
    except (TypeError, ValueError) as err:
        raise ValueError(
            "`genes` must be a list or Index of gene names (e.g. rna.var_names)."
        ) from err
    if len(index) == 0:
        raise ValueError("`genes` is empty; pass at least one gene name (e.g. rna.var_names).")
    return index


def _regions(
    ann: pd.DataFrame, upstream: int, downstream: int, gene_body: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Strand-aware regulatory regions (closed intervals) of annotated genes."""
    start = ann["start"].to_numpy(dtype=np.int64)
    end = ann["end"].to_numpy(dtype=np.int64)
    plus = ann["strand"].to_numpy() > 0
    if gene_body:
        # Gene body extended upstream of the TSS (start on +, end on −) and downstream of the TES.
        r_start = np.where(plus, start - upstream, start - downstream)
        r_end = np.where(plus, end + downstream, end + upstream)
    else:
        tss = np.where(plus, start, end)
        r_start = np.where(plus, tss - upstream, tss - downstream)
        r_end = np.where(plus, tss + downstream, tss + upstream)
    return r_start, r_end


def _build_prior(
    coords: pd.DataFrame,
    genes: pd.Index,
    ann: pd.DataFrame,
    *,
    upstream: int,
    downstream: int,
    gene_body: bool,
    distance: float,
    decay: float | None,
    weight: str,
) -> sp.csr_matrix:
    """Core of :func:`peak_gene_prior` on already validated inputs."""
    # Map each requested gene (row) to its (deduplicated, hence unique) annotation row.
    ann_row = pd.Index(ann["gene_name"]).get_indexer(genes)
    rows = np.flatnonzero(ann_row >= 0)
    n_missing = len(genes) - len(rows)
    logger.info(
        "peak_gene_prior: %d of %d genes found in the annotation (%d missing).",
        len(rows),
        len(genes),
        n_missing,
    )
    if n_missing > len(genes) / 2:
        examples = genes[ann_row < 0][:5].tolist()
        warnings.warn(
            f"{n_missing} of {len(genes)} genes (e.g. {examples}) are not in the annotation; "
            "their rows of the prior are empty. Is the annotation for the right genome build and "
            "do the gene identifiers match (names vs. Ensembl IDs)?",
            UserWarning,
            stacklevel=3,
        )
    sub = ann.iloc[ann_row[rows]]
    r_start, r_end = _regions(sub, upstream, downstream, gene_body)
    max_gap = int(np.floor(distance))
    peak_idx, reg_idx, gap = _overlap_pairs(
        coords["chrom"].to_numpy(dtype=object),
        coords["start"].to_numpy(dtype=np.int64),
        coords["end"].to_numpy(dtype=np.int64),
        sub["chrom"].to_numpy(dtype=object),
        r_start,
        r_end,
        max_gap=max_gap,
    )

    if weight == "overlap":
        # Fraction of the peak (closed interval) that lies inside the region.
        p_s = coords["start"].to_numpy(dtype=np.int64)[peak_idx]
        p_e = coords["end"].to_numpy(dtype=np.int64)[peak_idx]
        ov = np.minimum(p_e, r_end[reg_idx]) - np.maximum(p_s, r_start[reg_idx]) + 1
        data = np.clip(ov / (p_e - p_s + 1), 0.0, 1.0)
    else:
        data = np.ones(len(peak_idx), dtype=np.float64)
    if max_gap > 0:
        tau = distance / 2 if decay is None else decay
        near = gap > 0
        data[near] = np.exp(-gap[near] / tau)

    n_peaks = len(coords)
    prior = sp.csr_matrix(
        (data.astype(np.float32), (rows[reg_idx], peak_idx)),
        shape=(len(genes), n_peaks),
        dtype=np.float32,
    )
    prior.sort_indices()
    linked = np.zeros(len(coords), dtype=bool)
    linked[peak_idx] = True
    n_linked_peaks = int(linked.sum())
    logger.info(
        "peak_gene_prior: %d links; %d of %d peaks and %d of %d genes have at least one link.",
        prior.nnz,
        n_linked_peaks,
        n_peaks,
        int((np.diff(prior.indptr) > 0).sum()),
        len(genes),
    )
    peak_chroms = set(pd.unique(coords["chrom"].to_numpy(dtype=object)))
    shared = peak_chroms & set(pd.unique(sub["chrom"].to_numpy(dtype=object)))
    if peak_chroms and not shared:
        logger.info(
            "peak_gene_prior: no chromosome is shared between peaks (%s) and genes (%s).",
            sorted(peak_chroms)[:5],
            sorted(set(sub["chrom"]))[:5],
        )
    return prior


def peak_gene_prior(
    atac: ad.AnnData | pd.DataFrame | Sequence[str] | pd.Index,
    genes: Sequence[str] | pd.Index,
    annotation: pd.DataFrame | str | os.PathLike,
    *,
    upstream: int = 2000,
    downstream: int = 0,
    gene_body: bool = True,
    distance: float = 0,
    decay: float | None = None,
    weight: Literal["binary", "overlap"] = "binary",
    duplicates: Literal["longest", "first"] = "longest",
) -> sp.csr_matrix:
    """Peak → gene prior (genes × peaks) from genomic overlap, as used by scDART.

    A peak is linked to a gene when it overlaps (closed intervals) the gene's regulatory region:

    * ``gene_body=True``: the gene body extended ``upstream`` bp upstream of the TSS and
      ``downstream`` bp past the gene end, strand-aware — ``[start - upstream, end + downstream]``
      on the + strand and ``[start - downstream, end + upstream]`` on the − strand;
    * ``gene_body=False``: only the promoter window around the TSS (``start`` on +, ``end`` on −),
      ``[TSS - upstream, TSS + downstream]`` on + and ``[TSS - downstream, TSS + upstream]`` on −.

    With ``distance > 0`` peaks that do not overlap the region but whose gap to it is at most
    ``distance`` bp are linked as well, with weight ``exp(-gap / decay)`` (a distance-decay prior).

    Parameters
    ----------
    atac
        AnnData with peaks as variables, a DataFrame like ``atac.var``, or peak names; see
        :func:`peak_coordinates`.
    genes
        Gene names defining the rows, e.g. ``rna.var_names``. Genes absent from the annotation
        get empty rows.
    annotation
        Gene annotation; see :func:`read_annotation`.
    upstream, downstream
        Extension of the region upstream of the TSS / downstream (bp, non-negative integers).
    gene_body
        Whether the region includes the gene body; if ``False``, promoter window only.
    distance
        Additionally link peaks whose gap to the region is ``<= distance`` bp. The gap between
        closed intervals ``[a, b]`` and ``[c, d]`` with ``b < c`` is ``c - b``.
    decay
        Length scale (bp) of the exponential weight of distance links; defaults to
        ``distance / 2``. ``numpy.inf`` gives all distance links weight 1.
    weight
        Weight of overlapping links: ``"binary"`` (1) or ``"overlap"`` (fraction of the peak's
        length inside the region, in ``(0, 1]``).
    duplicates
        How to resolve gene names occurring on several annotation rows: ``"longest"`` keeps the
        longest gene, ``"first"`` the first row.

    Returns
    -------
    scipy.sparse.csr_matrix
        float32 matrix of shape ``(len(genes), n_peaks)``; columns are in the order of the peaks.

    Raises
    ------
    ValueError
        On invalid arguments, unparsable peak coordinates or an invalid annotation; all checks
        are done before any computation.
    """
    up, down = _check_params(upstream, downstream, duplicates)
    if isinstance(distance, bool) or not isinstance(distance, int | float | np.number):
        raise ValueError(f"`distance` must be a non-negative number (bp), got {distance!r}.")
    if not np.isfinite(distance) or distance < 0:
        raise ValueError(f"`distance` must be a finite non-negative number (bp), got {distance!r}.")
    if decay is not None and not (isinstance(decay, int | float | np.number) and decay > 0):
        raise ValueError(
            f"`decay` must be a positive number (bp) or None (= distance / 2), got {decay!r}."
        )
    if weight not in ("binary", "overlap"):
        raise ValueError(
            f"`weight` must be 'binary' (overlapping peaks weigh 1) or 'overlap' (fraction of the "
            f"peak inside the region), got {weight!r}."
        )
    gene_index = _check_genes(genes)
    coords = peak_coordinates(atac)
    if len(coords) == 0:
        raise ValueError("`atac` has no peaks; pass an AnnData with at least one peak.")
    ann = _deduplicate(read_annotation(annotation), duplicates)
    return _build_prior(
        coords,
        gene_index,
        ann,
        upstream=up,
        downstream=down,
        gene_body=bool(gene_body),
        distance=float(distance),
        decay=None if decay is None else float(decay),
        weight=weight,
    )


# --------------------------------------------------------------------------------------------
# Gene activity
# --------------------------------------------------------------------------------------------


def _gene_var(
    ann: pd.DataFrame, all_genes: pd.Index, gene_index: pd.Index, n_peaks: np.ndarray
) -> pd.DataFrame:
    """``var`` of a gene-activity matrix: the genes' coordinates and their number of peaks."""
    ann_row = all_genes.get_indexer(gene_index)
    found = ann_row >= 0
    sub = ann.iloc[np.where(found, ann_row, 0)]
    var = pd.DataFrame(index=pd.Index(gene_index).rename(None))
    var["chrom"] = pd.Categorical(np.where(found, sub["chrom"].to_numpy(dtype=object), None))
    if found.all():
        var["start"] = sub["start"].to_numpy()
        var["end"] = sub["end"].to_numpy()
        var["strand"] = sub["strand"].to_numpy()
    else:
        # Nullable dtypes keep genes that are missing from the annotation without float casts.
        var["start"] = pd.array(np.where(found, sub["start"], 0), dtype="Int64")
        var["end"] = pd.array(np.where(found, sub["end"], 0), dtype="Int64")
        var["strand"] = pd.array(np.where(found, sub["strand"], 0), dtype="Int8")
        for col in ("start", "end", "strand"):
            var.loc[~found, col] = pd.NA
    var["gene_id"] = np.where(found, sub["gene_id"].to_numpy(dtype=object), "")
    var["n_peaks"] = n_peaks.astype(np.int64)

    return var


def gene_activity(
    atac: ad.AnnData,
    annotation: pd.DataFrame | str | os.PathLike,
    *,
    genes: Sequence[str] | pd.Index | None = None,
    upstream: int = 2000,
    downstream: int = 0,
    gene_body: bool = True,
    layer: str | None = None,
    duplicates: Literal["longest", "first"] = "longest",
) -> ad.AnnData:
    """Gene-activity matrix: per cell, the counts of the peaks overlapping each gene.

    Signac ``GeneActivity``-style: the activity of a gene is the sum of the counts of all peaks
    overlapping its body extended ``upstream`` bp upstream of the TSS (or its promoter only, with
    ``gene_body=False``). It is computed as ``X @ prior.T`` with the binary sparse prior of
    :func:`peak_gene_prior`; the cells × peaks matrix is never densified.

    Parameters
    ----------
    atac
        AnnData of peak counts (cells × peaks) with peak coordinates in ``var`` columns
        ``chrom``/``start``/``end`` or in names like ``chr1:100-200``. Not modified.
    annotation
        Gene annotation; see :func:`read_annotation`.
    genes
        Genes (columns of the output), in this order; genes without peaks are kept as all-zero
        columns. ``None`` means every annotated gene with at least one overlapping peak, in
        annotation order.
    upstream, downstream, gene_body
        Regulatory region; see :func:`peak_gene_prior`.
    layer
        Use ``atac.layers[layer]`` instead of ``atac.X``.
    duplicates
        Handling of duplicated gene names in the annotation; see :func:`peak_gene_prior`.

    Returns
    -------
    anndata.AnnData
        Cells × genes, ``X`` a float32 CSR matrix; ``obs`` is a copy of ``atac.obs``; ``var`` is
        indexed by gene name with columns ``chrom``, ``start``, ``end``, ``strand``, ``gene_id``
        and ``n_peaks``; ``uns["gene_activity"]["params"]`` records the parameters.

    Raises
    ------
    ValueError
        If ``atac`` is not an AnnData, is empty, holds NaN/inf/negative values, has no peak
        coordinates, or if no peak overlaps any gene. All but the last are checked before any
        computation.
    """
    # ---- validation, before any computation ------------------------------------------------
    if not isinstance(atac, ad.AnnData):
        raise ValueError(
            f"`atac` must be an AnnData of peak counts (cells × peaks), got {type(atac).__name__}. "
            "For a MuData pass mdata['atac']."
        )
    if atac.n_obs == 0 or atac.n_vars == 0:
        raise ValueError(
            f"`atac` is empty ({atac.n_obs} cells × {atac.n_vars} peaks); it needs at least one "
            "cell and one peak."
        )
    X = get_matrix(atac, layer)
    check_counts(X, argname="atac" if layer is None else f"atac.layers[{layer!r}]")
    up, down = _check_params(upstream, downstream, duplicates)
    gene_index = None if genes is None else _check_genes(genes)
    try:
        coords = peak_coordinates(atac)
    except ValueError as err:
        raise ValueError(
            f"{err} If peak coordinates are not available, compute the gene-activity matrix "
            "elsewhere and pass the precomputed gene-activity AnnData instead."
        ) from err
    ann = _deduplicate(read_annotation(annotation), duplicates)

    # ---- prior ---------------------------------------------------------------------------
    all_genes = pd.Index(ann["gene_name"])
    prior = _build_prior(
        coords,
        all_genes if gene_index is None else gene_index,
        ann,
        upstream=up,
        downstream=down,
        gene_body=bool(gene_body),
        distance=0.0,
        decay=None,
        weight="binary",
    )
    if prior.nnz == 0:
        peak_chroms = sorted(pd.unique(coords["chrom"]))[:8]
        gene_chroms = sorted(pd.unique(ann["chrom"]))[:8]
        raise ValueError(
            "`annotation`: no peak of `atac` overlaps any gene region. The annotation is probably "
            "for another genome build or uses other chromosome names (normalised peak "
            f"chromosomes: {peak_chroms}; annotation chromosomes: {gene_chroms})."
        )
    if gene_index is None:
        keep = np.flatnonzero(np.diff(prior.indptr) > 0)
        prior = prior[keep]
        gene_index = all_genes[keep]
    n_peaks = np.diff(prior.indptr)

    # ---- counts --------------------------------------------------------------------------
    Xs = X.tocsr() if sp.issparse(X) else sp.csr_matrix(X)
    activity = sp.csr_matrix(Xs @ prior.T.tocsc(), dtype=np.float32)
    activity.sort_indices()

    # ---- output --------------------------------------------------------------------------
    var = _gene_var(ann, all_genes, gene_index, n_peaks)
    params = clean_params(
        {
            "annotation": "DataFrame" if isinstance(annotation, pd.DataFrame) else str(annotation),
            "genes": None if genes is None else "given",
            "upstream": up,
            "downstream": down,
            "gene_body": bool(gene_body),
            "layer": layer,
            "duplicates": str(duplicates),
        }
    )
    out = ad.AnnData(X=activity, obs=atac.obs.copy(), var=var)
    out.uns["gene_activity"] = {"params": params}
    logger.info(
        "gene_activity: %d cells × %d genes from %d peaks (%d linked to a gene).",
        out.n_obs,
        out.n_vars,
        atac.n_vars,
        int(np.unique(prior.indices).size),
    )
    return out
