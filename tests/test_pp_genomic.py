"""Tests for scx.pp._genomic: annotations, peak coordinates, peak→gene prior, gene activity."""

from __future__ import annotations

import gzip
import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scx.pp._genomic import (
    _overlap_pairs,
    gene_activity,
    normalize_chrom,
    peak_coordinates,
    peak_gene_prior,
    read_annotation,
)

# --------------------------------------------------------------------------------------------
# Hand-made toy genome (upstream = 100 in most tests)
#
#   gA  chr1  1000-2000  +   body+100 up: [900, 2000]      promoter(100 up, 50 down): [900, 1050]
#   gB  chr1  3000-4000  -   body+100 up: [3000, 4100]     promoter: [3950, 4100]
#   gC  chr1  1500-1600  -   body+100 up: [1500, 1700]     (nested in gA)
#   gL  chr2  10000-1000000 +  body+100 up: [9900, 1000000]  (very long gene)
#   gM  chrMT 100-200    +   body+100 up: [0, 200]
# --------------------------------------------------------------------------------------------
GENES = ["gA", "gB", "gC", "gL", "gM"]


def toy_annotation() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "gene_name": GENES,
            "gene_id": ["ENSA", "ENSB", "ENSC", "ENSL", "ENSM"],
            "chrom": ["chr1", "chr1", "chr1", "chr2", "chrMT"],
            "start": [1000, 3000, 1500, 10_000, 100],
            "end": [2000, 4000, 1600, 1_000_000, 200],
            "strand": ["+", "-", "-", "+", "+"],
        }
    )


# name, expected genes with upstream=100, gene body
PEAKS = [
    ("chr1:850-899", []),  # 1 bp short of gA's extended start (gap 1)
    ("chr1_880_905", ["gA"]),  # overlaps gA's upstream extension
    ("chr1-1550-1560", ["gA", "gC"]),  # nested genes
    ("1:1650-1690", ["gA", "gC"]),  # no "chr" prefix; inside gC's upstream (− strand) extension
    ("chr1:2000-2000", ["gA"]),  # single bp at gA's last base (closed intervals)
    ("chr1:2950-2999", []),  # just before gB; no downstream extension (gap 1)
    ("chr1:4050-4100", ["gB"]),  # upstream of the − strand TSS at 4000
    ("chr1:4101-4200", []),  # one past gB's upstream window (gap 1)
    ("chr2:20000-20500", ["gL"]),  # long gene, many peaks
    ("chr2:500000-500100", ["gL"]),
    ("chr2:999990-1000100", ["gL"]),
    ("chr2:9800-9899", []),  # gap 1 to gL's extended start
    ("chrM:150-160", ["gM"]),  # chrM matches chrMT
    ("chr3:100-200", []),  # chromosome absent from the annotation
]
PEAK_NAMES = [p for p, _ in PEAKS]


def expected_binary(genes=GENES, peaks=PEAKS) -> np.ndarray:
    out = np.zeros((len(genes), len(peaks)), dtype=np.float32)
    for j, (_, linked) in enumerate(peaks):
        for g in linked:
            if g in genes:
                out[genes.index(g), j] = 1
    return out


# --------------------------------------------------------------------------------------------
# Chromosome names and annotation
# --------------------------------------------------------------------------------------------
def test_normalize_chrom():
    got = normalize_chrom(["chr1", "1", "chrM", "chrMT", "M", "MT", "chrX", "Chr2", "chrUn_x"])
    assert got.tolist() == ["1", "1", "MT", "MT", "MT", "MT", "X", "2", "Un_x"]
    assert normalize_chrom([]).shape == (0,)


def test_read_annotation_dataframe_normalises_and_does_not_modify_input():
    df = toy_annotation().drop(columns="gene_id")
    before = df.copy()
    ann = read_annotation(df)
    pd.testing.assert_frame_equal(df, before)
    assert list(ann.columns) == ["gene_name", "gene_id", "chrom", "start", "end", "strand"]
    assert ann["gene_id"].tolist() == GENES  # filled from gene_name
    assert ann["chrom"].tolist() == ["1", "1", "1", "2", "MT"]
    assert ann["strand"].tolist() == [1, -1, -1, 1, 1]
    assert ann["strand"].dtype == np.int8
    assert ann["start"].dtype == np.int64 and ann["end"].dtype == np.int64


def test_read_annotation_tsv_gz(tmp_path):
    df = toy_annotation()
    df["strand"] = df["strand"].map({"+": 1, "-": -1})
    path = tmp_path / "genes.tsv.gz"
    df.to_csv(path, sep="\t", index=False)
    ann = read_annotation(path)
    assert ann["gene_name"].tolist() == GENES
    assert ann["gene_id"].tolist() == df["gene_id"].tolist()
    assert ann["strand"].tolist() == [1, -1, -1, 1, 1]
    assert ann["chrom"].tolist() == ["1", "1", "1", "2", "MT"]
    # the same read through str path
    pd.testing.assert_frame_equal(read_annotation(str(path)), ann)


GTF = """#!genome-build GRCm38.p6
#!genome-version GRCm38
1\thavana\tgene\t1000\t2000\t.\t+\t.\tgene_id "ENSA"; gene_version "1"; gene_name "gA";
1\thavana\ttranscript\t1000\t2000\t.\t+\t.\tgene_id "ENSA"; transcript_id "T1"; gene_name "gA";
1\thavana\texon\t1000\t1100\t.\t+\t.\tgene_id "ENSA"; transcript_id "T1"; gene_name "gA";
1\thavana\tgene\t3000\t4000\t.\t-\t.\tgene_id "ENSB"; gene_name "gB"; note "has # hash";
MT\tinsdc\tgene\t100\t200\t.\t+\t.\tgene_id "ENSM"; gene_biotype "Mt_tRNA";
"""


@pytest.mark.parametrize("compressed", [False, True])
def test_read_annotation_gtf(tmp_path, compressed):
    if compressed:
        path = tmp_path / "genes.gtf.gz"
        with gzip.open(path, "wt") as fh:
            fh.write(GTF)
    else:
        path = tmp_path / "genes.gtf"
        path.write_text(GTF)
    ann = read_annotation(path)
    assert ann["gene_name"].tolist() == ["gA", "gB", "ENSM"]  # no gene_name -> gene_id
    assert ann["gene_id"].tolist() == ["ENSA", "ENSB", "ENSM"]
    assert ann["chrom"].tolist() == ["1", "1", "MT"]
    assert ann["start"].tolist() == [1000, 3000, 100]
    assert ann["end"].tolist() == [2000, 4000, 200]
    assert ann["strand"].tolist() == [1, -1, 1]


def test_read_annotation_errors(tmp_path):
    with pytest.raises(ValueError, match=r"`annotation`.*missing required column.*\['strand'\]"):
        read_annotation(toy_annotation().drop(columns="strand"))
    with pytest.raises(ValueError, match=r"`annotation` must be a DataFrame or a file path"):
        read_annotation(42)
    with pytest.raises(ValueError, match=r"`annotation`: file .* does not exist"):
        read_annotation(tmp_path / "nope.tsv.gz")
    bad = toy_annotation()
    bad.loc[0, "strand"] = "."
    with pytest.raises(ValueError, match=r"`annotation`: column 'strand'.*\['\.'\]"):
        read_annotation(bad)
    bad = toy_annotation()
    bad.loc[1, "start"] = 5000
    with pytest.raises(ValueError, match=r"start > end.*'gB'"):
        read_annotation(bad)
    bad = toy_annotation()
    bad["start"] = bad["start"].astype(object)
    bad.loc[2, "start"] = "abc"
    with pytest.raises(ValueError, match=r"column 'start'.*non-numeric"):
        read_annotation(bad)
    with pytest.raises(ValueError, match="has no rows"):
        read_annotation(toy_annotation().iloc[:0])
    path = tmp_path / "noheader.tsv"
    path.write_text("gA\tchr1\t1\t2\t+\n")
    with pytest.raises(ValueError, match=r"missing required column.*\.gtf"):
        read_annotation(path)
    gtf = tmp_path / "nogenes.gtf"
    gtf.write_text(GTF.replace("\tgene\t", "\tCDS\t"))
    with pytest.raises(ValueError, match="no rows with feature == 'gene'"):
        read_annotation(gtf)


# --------------------------------------------------------------------------------------------
# Peak coordinates
# --------------------------------------------------------------------------------------------
def test_peak_coordinates_three_formats():
    names = ["chr1:100-200", "chr1_300_400", "chr1-500-600", "chrUn_GL000220v1_7_8", "chrM:1-2"]
    coords = peak_coordinates(names)
    assert coords.index.tolist() == names
    assert coords["chrom"].tolist() == ["1", "1", "1", "Un_GL000220v1", "MT"]
    assert coords["start"].tolist() == [100, 300, 500, 7, 1]
    assert coords["end"].tolist() == [200, 400, 600, 8, 2]
    assert coords["start"].dtype == np.int64
    # AnnData without coordinate columns: parsed from var_names
    adata = ad.AnnData(np.zeros((1, len(names)), dtype=np.float32), var=pd.DataFrame(index=names))
    pd.testing.assert_frame_equal(peak_coordinates(adata), coords)
    pd.testing.assert_frame_equal(peak_coordinates(pd.Index(names)), coords)


def test_peak_coordinates_var_columns_take_precedence():
    var = pd.DataFrame(
        {"chrom": pd.Categorical(["chr2", "chrM"]), "start": [10, 20], "end": [15, 25]},
        index=["chr1:100-200", "not-a-peak"],
    )
    adata = ad.AnnData(np.zeros((2, 2), dtype=np.float32), var=var)
    coords = peak_coordinates(adata)
    assert coords["chrom"].tolist() == ["2", "MT"]
    assert coords["start"].tolist() == [10, 20]
    assert coords["end"].tolist() == [15, 25]
    # custom keys
    adata.var = var.rename(columns={"chrom": "seq", "start": "s", "end": "e"})
    coords = peak_coordinates(adata, chrom_key="seq", start_key="s", end_key="e")
    assert coords["start"].tolist() == [10, 20]
    # incomplete columns -> names are parsed (and here fail on "not-a-peak")
    adata.var = var.drop(columns="end")
    with pytest.raises(ValueError, match=r"not-a-peak"):
        peak_coordinates(adata)


def test_peak_coordinates_errors():
    names = ["chr1:100-200", "gene1", "chr2:5-x", "chr1:1-2"]
    with pytest.raises(ValueError) as info:
        peak_coordinates(names)
    msg = str(info.value)
    assert "`atac`" in msg and "2 of 4" in msg and "gene1" in msg and "chr2:5-x" in msg
    assert "chr1:100-200" in msg and "'chrom'" in msg  # says what to pass
    with pytest.raises(ValueError, match=r"start > end.*chr1:300-200"):
        peak_coordinates(["chr1:100-200", "chr1:300-200"])
    var = pd.DataFrame({"chrom": ["chr1", None], "start": [1, 2], "end": [3, 4]}, index=["a", "b"])
    with pytest.raises(ValueError, match=r"missing or non-integer.*\['b'\]"):
        peak_coordinates(var)
    var = pd.DataFrame(
        {"chrom": ["chr1", "chr1"], "start": [1, 2.5], "end": [3, 4]}, index=["a", "b"]
    )
    with pytest.raises(ValueError, match=r"missing or non-integer"):
        peak_coordinates(var)
    with pytest.raises(ValueError, match="single string"):
        peak_coordinates("chr1:1-2")
    with pytest.raises(ValueError, match="must be an AnnData"):
        peak_coordinates(5)


# --------------------------------------------------------------------------------------------
# Peak → gene prior on the toy genome
# --------------------------------------------------------------------------------------------
def test_prior_hand_computed_gene_body():
    prior = peak_gene_prior(PEAK_NAMES, GENES, toy_annotation(), upstream=100)
    assert sp.isspmatrix_csr(prior) and prior.dtype == np.float32
    assert prior.shape == (len(GENES), len(PEAKS))
    np.testing.assert_array_equal(prior.toarray(), expected_binary())


def test_prior_promoter_only_and_downstream():
    # gA promoter [900, 1050]; gB (−) promoter [3950, 4100]; gC (−) [1550, 1700];
    # gL [9900, 10050]; gM [0, 150]
    prior = peak_gene_prior(
        PEAK_NAMES, GENES, toy_annotation(), upstream=100, downstream=50, gene_body=False
    ).toarray()
    expected = {
        "chr1_880_905": ["gA"],
        "chr1-1550-1560": ["gC"],
        "1:1650-1690": ["gC"],
        "chr1:4050-4100": ["gB"],
        "chrM:150-160": ["gM"],
    }
    peaks = [(p, expected.get(p, [])) for p in PEAK_NAMES]
    np.testing.assert_array_equal(prior, expected_binary(peaks=peaks))


def test_prior_downstream_on_both_strands():
    # downstream=60 extends gA (+) to 2060 and gB (−) down to 2940
    peaks = ["chr1:2040-2045", "chr1:2945-2950", "chr1:2930-2939"]
    prior = peak_gene_prior(peaks, ["gA", "gB"], toy_annotation(), upstream=0, downstream=60)
    np.testing.assert_array_equal(prior.toarray(), [[1, 0, 0], [0, 1, 0]])


def test_prior_row_order_missing_genes_and_logging(caplog):
    genes = ["gM", "nope", "gA"]
    with caplog.at_level(logging.INFO, logger="scx.pp._genomic"):
        prior = peak_gene_prior(PEAK_NAMES, genes, toy_annotation(), upstream=100)
    assert "2 of 3 genes found in the annotation (1 missing)" in caplog.text
    np.testing.assert_array_equal(prior.toarray(), expected_binary(genes=["gM", "__none__", "gA"]))
    with pytest.warns(UserWarning, match=r"2 of 3 genes .* not in the annotation.*genome build"):
        prior = peak_gene_prior(PEAK_NAMES, ["x", "y", "gA"], toy_annotation(), upstream=100)
    assert prior[:2].nnz == 0


def test_prior_var_columns_take_precedence():
    var = pd.DataFrame(
        {"chrom": ["chr2", "chr1"], "start": [20_000, 100], "end": [20_001, 101]},
        index=["chr1:1500-1600", "chr2:20000-20001"],  # names deliberately contradict
    )
    adata = ad.AnnData(sp.csr_matrix((1, 2), dtype=np.float32), var=var)
    prior = peak_gene_prior(adata, GENES, toy_annotation(), upstream=100)
    assert prior[GENES.index("gL"), 0] == 1 and prior[:, 1].nnz == 0


def test_prior_duplicates():
    ann = pd.concat(
        [
            toy_annotation(),
            pd.DataFrame(
                {
                    "gene_name": ["gA", "gA"],
                    "gene_id": ["ENSA2", "ENSA3"],
                    "chrom": ["chr2", "chr2"],
                    "start": [500_000, 20_000],
                    "end": [500_050, 21_000],
                    "strand": [1, 1],
                }
            ),
        ],
        ignore_index=True,
    )
    # gA copies: chr1 1000-2000 (length 1000, first), chr2 500000-500050, chr2 20000-21000
    # (length 1000 as well; tie -> first row wins for "longest").
    longest = peak_gene_prior(PEAK_NAMES, ["gA"], ann, upstream=100).toarray()[0]
    first = peak_gene_prior(PEAK_NAMES, ["gA"], ann, upstream=100, duplicates="first").toarray()[0]
    np.testing.assert_array_equal(longest, expected_binary(genes=["gA"])[0])
    np.testing.assert_array_equal(first, longest)
    ann.loc[6, "end"] = 22_000  # now the chr2:20000 copy is the longest
    longest = peak_gene_prior(PEAK_NAMES, ["gA"], ann, upstream=100).toarray()[0]
    assert np.flatnonzero(longest).tolist() == [PEAK_NAMES.index("chr2:20000-20500")]
    with pytest.raises(ValueError, match=r"`duplicates` must be 'longest'.*'first'"):
        peak_gene_prior(PEAK_NAMES, ["gA"], ann, duplicates="last")


def test_prior_distance_weights():
    ann = toy_annotation()
    peaks = ["chr1:850-899", "chr1:700-800", "chr1:1500-1501", "chr1:4101-4200", "chr1:500-600"]
    # gaps to gA's region [900, 2000]: 1, 100, 0 (overlap), -, 300
    # gap to gB's region [3000, 4100]: peak 3 -> 1; gC region [1500, 1700]: peak 1 -> 700
    prior = peak_gene_prior(peaks, GENES, ann, upstream=100, distance=200, decay=50).toarray()
    expected = np.zeros((5, 5), dtype=np.float32)
    expected[0, 0] = np.exp(-1 / 50)
    expected[0, 1] = np.exp(-100 / 50)
    expected[0, 2] = 1
    expected[2, 2] = 1
    expected[1, 3] = np.exp(-1 / 50)
    np.testing.assert_allclose(prior, expected, rtol=1e-6)
    # default decay = distance / 2 = 150; distance 300 reaches peak 4 (gap 300)
    prior = peak_gene_prior(peaks, GENES, ann, upstream=100, distance=300).toarray()
    assert prior[0, 4] == pytest.approx(np.exp(-2))
    assert prior[0, 1] == pytest.approx(np.exp(-100 / 150))
    # decay = inf -> all links weigh 1
    prior = peak_gene_prior(peaks, GENES, ann, upstream=100, distance=300, decay=np.inf)
    assert set(np.unique(prior.data)) == {1.0}


def test_prior_overlap_weight():
    # peak [1990, 2009] (20 bp) overlaps gA's region [900, 2000] by 11 bp
    prior = peak_gene_prior(
        ["chr1:1990-2009", "chr1:1200-1300"], ["gA"], toy_annotation(), weight="overlap"
    ).toarray()
    np.testing.assert_allclose(prior, [[11 / 20, 1.0]])


def test_prior_argument_errors():
    ann = toy_annotation()
    with pytest.raises(ValueError, match="`upstream` must be a non-negative integer"):
        peak_gene_prior(PEAK_NAMES, GENES, ann, upstream=-1)
    with pytest.raises(ValueError, match="`downstream` must be a non-negative integer"):
        peak_gene_prior(PEAK_NAMES, GENES, ann, downstream=1.5)
    with pytest.raises(ValueError, match="`distance`"):
        peak_gene_prior(PEAK_NAMES, GENES, ann, distance=-5)
    with pytest.raises(ValueError, match="`decay`"):
        peak_gene_prior(PEAK_NAMES, GENES, ann, distance=5, decay=0)
    with pytest.raises(ValueError, match="`weight`"):
        peak_gene_prior(PEAK_NAMES, GENES, ann, weight="gaussian")
    with pytest.raises(ValueError, match="`genes` is empty"):
        peak_gene_prior(PEAK_NAMES, [], ann)
    with pytest.raises(ValueError, match="`genes` must be a list"):
        peak_gene_prior(PEAK_NAMES, "gA", ann)
    with pytest.raises(ValueError, match="`atac` has no peaks"):
        peak_gene_prior([], GENES, ann)
    with pytest.raises(ValueError, match=r"`atac`.*not genomic coordinates"):
        peak_gene_prior(["gene1"], GENES, ann)
    with pytest.raises(ValueError, match="`annotation`"):
        peak_gene_prior(PEAK_NAMES, GENES, ann.drop(columns="chrom"))


# --------------------------------------------------------------------------------------------
# Vectorised overlap vs brute force
# --------------------------------------------------------------------------------------------
def _random_genome(rng, n_peaks, n_genes):
    chroms = np.array(["chr1", "chr2", "chrX"])
    p_chrom = rng.choice(chroms, n_peaks)
    p_start = rng.integers(0, 2_000_000, n_peaks)
    p_end = p_start + rng.integers(0, 2_000, n_peaks)
    g_chrom = rng.choice(
        np.array(["1", "2", "X", "Y"]), n_genes
    )  # no "chr", plus a chrom w/o peaks
    g_len = np.where(
        rng.random(n_genes) < 0.1,
        rng.integers(100_000, 1_500_000, n_genes),  # some very long genes
        rng.integers(1, 30_000, n_genes),
    )
    g_start = rng.integers(1, 2_000_000, n_genes)
    ann = pd.DataFrame(
        {
            "gene_name": [f"g{i}" for i in range(n_genes)],
            "chrom": g_chrom,
            "start": g_start,
            "end": g_start + g_len,
            "strand": rng.choice([1, -1], n_genes),
        }
    )
    var = pd.DataFrame(
        {"chrom": p_chrom, "start": p_start, "end": p_end},
        index=[f"p{i}" for i in range(n_peaks)],
    )
    return var, ann


def _brute_force_prior(var, ann, upstream, downstream, gene_body, distance, decay):
    s, e = ann["start"].to_numpy(), ann["end"].to_numpy()
    plus = ann["strand"].to_numpy() == 1
    if gene_body:
        rs = np.where(plus, s - upstream, s - downstream)
        re_ = np.where(plus, e + downstream, e + upstream)
    else:
        tss = np.where(plus, s, e)
        rs = np.where(plus, tss - upstream, tss - downstream)
        re_ = np.where(plus, tss + downstream, tss + upstream)
    same = ann["chrom"].to_numpy()[:, None] == var["chrom"].str[3:].to_numpy()[None, :]
    ps, pe = var["start"].to_numpy()[None, :], var["end"].to_numpy()[None, :]
    gap = np.maximum(np.maximum(rs[:, None] - pe, ps - re_[:, None]), 0)
    out = np.where(same & (gap <= distance), 1.0, 0.0)
    if distance > 0:
        out = np.where(same & (gap > 0) & (gap <= distance), np.exp(-gap / decay), out)
    return out


@pytest.mark.parametrize(
    ("upstream", "downstream", "gene_body", "distance"),
    [(2000, 0, True, 0), (5000, 1000, False, 0), (2000, 500, True, 20_000)],
)
def test_prior_matches_brute_force(upstream, downstream, gene_body, distance):
    rng = np.random.default_rng(upstream + distance)
    var, ann = _random_genome(rng, 2000, 300)
    prior = peak_gene_prior(
        var,
        ann["gene_name"],
        ann,
        upstream=upstream,
        downstream=downstream,
        gene_body=gene_body,
        distance=distance,
    )
    ref = _brute_force_prior(var, ann, upstream, downstream, gene_body, distance, distance / 2)
    assert prior.nnz > 500  # the example is not trivially empty
    np.testing.assert_allclose(prior.toarray(), ref, rtol=1e-6)


def test_overlap_pairs_chunking(monkeypatch):
    import scx.pp._genomic as genomic

    rng = np.random.default_rng(0)
    var, ann = _random_genome(rng, 500, 100)
    full = peak_gene_prior(var, ann["gene_name"], ann)
    monkeypatch.setattr(genomic, "_MAX_CANDIDATES_PER_CHUNK", 7)
    chunked = peak_gene_prior(var, ann["gene_name"], ann)
    assert (full != chunked).nnz == 0
    empty = _overlap_pairs(
        np.array([], dtype=object), np.array([]), np.array([]), np.array(["1"]), [1], [2]
    )
    assert all(len(a) == 0 for a in empty)


# --------------------------------------------------------------------------------------------
# Gene activity
# --------------------------------------------------------------------------------------------
def _random_atac(rng, n_cells=40, n_peaks=120, n_genes=25):
    var, ann = _random_genome(rng, n_peaks, n_genes)
    # Concentrate peaks and genes so many overlap.
    var["start"] = rng.integers(0, 200_000, n_peaks)
    var["end"] = var["start"] + rng.integers(50, 1500, n_peaks)
    ann["start"] = rng.integers(1, 200_000, n_genes)
    ann["end"] = ann["start"] + rng.integers(1, 40_000, n_genes)
    ann.loc[0, ["start", "end"]] = [5_000_000, 5_000_010]  # a gene without peaks
    ann["chrom"] = np.where(ann["chrom"] == "Y", "X", ann["chrom"])
    X = sp.random(n_cells, n_peaks, density=0.2, random_state=1, format="csr", dtype=np.float32)
    X.data = np.ceil(X.data * 4)
    atac = ad.AnnData(
        X,
        obs=pd.DataFrame(
            {"cell_type": rng.choice(["a", "b"], n_cells)}, index=[f"c{i}" for i in range(n_cells)]
        ),
        var=var,
    )
    atac.layers["counts2"] = X * 2
    atac.uns["note"] = {"x": 1}
    return atac, ann


def _brute_force_activity(atac, ann, upstream, layer=None):
    X = (atac.X if layer is None else atac.layers[layer]).toarray()
    out = np.zeros((atac.n_obs, len(ann)))
    for g in range(len(ann)):
        s, e, strand = ann.loc[g, ["start", "end", "strand"]]
        rs, re_ = (s - upstream, e) if strand == 1 else (s, e + upstream)
        for p in range(atac.n_vars):
            v = atac.var.iloc[p]
            if v["chrom"][3:] == ann.loc[g, "chrom"] and v["start"] <= re_ and rs <= v["end"]:
                out[:, g] += X[:, p]
    return out


def test_gene_activity_matches_brute_force_and_leaves_input_unchanged():
    rng = np.random.default_rng(7)
    atac, ann = _random_atac(rng)
    before = atac.copy()
    ann_before = ann.copy()
    ga = gene_activity(atac, ann, upstream=2000)
    ref = _brute_force_activity(atac, ann, 2000)
    has_peaks = _brute_force_prior(atac.var, ann, 2000, 0, True, 0, 1).any(axis=1)
    # genes=None: annotated genes with >=1 peak, in annotation order
    assert ga.var_names.tolist() == ann["gene_name"][has_peaks].tolist()
    assert "g0" not in ga.var_names
    assert sp.isspmatrix_csr(ga.X) and ga.X.dtype == np.float32
    np.testing.assert_allclose(ga.X.toarray(), ref[:, has_peaks], rtol=1e-6)
    # metadata
    pd.testing.assert_frame_equal(ga.obs, atac.obs)
    assert list(ga.var.columns) == ["chrom", "start", "end", "strand", "gene_id", "n_peaks"]
    assert (ga.var["n_peaks"] > 0).all()
    assert ga.uns["gene_activity"]["params"]["upstream"] == 2000
    for value in ga.uns["gene_activity"]["params"].values():
        assert value is None or isinstance(value, str | int | float | bool | list)
    # input untouched
    assert (atac.X != before.X).nnz == 0
    assert (atac.layers["counts2"] != before.layers["counts2"]).nnz == 0
    pd.testing.assert_frame_equal(atac.var, before.var)
    pd.testing.assert_frame_equal(atac.obs, before.obs)
    assert atac.uns.keys() == before.uns.keys()
    pd.testing.assert_frame_equal(ann, ann_before)
    ga.obs["new"] = 1
    assert "new" not in atac.obs


def test_gene_activity_genes_layer_dense_and_h5ad(tmp_path):
    rng = np.random.default_rng(3)
    atac, ann = _random_atac(rng)
    genes = ["g5", "missing", "g0", "g2"]
    ga = gene_activity(atac, ann, genes=genes, layer="counts2", upstream=500)
    ref = _brute_force_activity(atac, ann, 500, layer="counts2")
    assert ga.var_names.tolist() == genes
    np.testing.assert_allclose(ga.X[:, 0].toarray().ravel(), ref[:, 5])
    np.testing.assert_allclose(ga.X[:, 3].toarray().ravel(), ref[:, 2])
    assert ga.X[:, 1].nnz == 0 and ga.X[:, 2].nnz == 0  # missing gene and gene without peaks
    assert ga.var.loc["g0", "n_peaks"] == 0 and pd.isna(ga.var.loc["missing", "start"])
    assert ga.uns["gene_activity"]["params"]["layer"] == "counts2"
    ga.write_h5ad(tmp_path / "ga.h5ad")  # output is serialisable
    # dense X gives the same answer, still sparse output
    dense = atac.copy()
    dense.X = atac.X.toarray()
    ga_dense = gene_activity(dense, ann)
    assert sp.isspmatrix_csr(ga_dense.X)
    assert (ga_dense.X != gene_activity(atac, ann).X).nnz == 0


def test_gene_activity_errors():
    rng = np.random.default_rng(5)
    atac, ann = _random_atac(rng)
    with pytest.raises(ValueError, match="`atac` must be an AnnData"):
        gene_activity(atac.X, ann)
    with pytest.raises(ValueError, match=r"`atac` is empty \(0 cells"):
        gene_activity(atac[:0].copy(), ann)
    with pytest.raises(ValueError, match=r"`atac` is empty \(40 cells × 0 peaks"):
        gene_activity(atac[:, :0].copy(), ann)
    for bad_value, pattern in [
        (np.nan, "1 NaN"),
        (np.inf, "1 infinite"),
        (-1, "negative"),
    ]:
        bad = atac.copy()
        bad.X.data[3] = bad_value
        with pytest.raises(ValueError, match=pattern):
            gene_activity(bad, ann)
        bad.X = bad.X.toarray()  # dense check as well
        with pytest.raises(ValueError, match=pattern):
            gene_activity(bad, ann)
    with pytest.raises(ValueError, match=r"`layer='nope'` is not a layer"):
        gene_activity(atac, ann, layer="nope")
    no_coords = ad.AnnData(
        atac.X.copy(), var=pd.DataFrame(index=[f"p{i}" for i in range(atac.n_vars)])
    )
    with pytest.raises(ValueError) as info:
        gene_activity(no_coords, ann)
    msg = str(info.value)
    assert (
        "var has no 'chrom'" in msg and "chr1:100-200" in msg and "precomputed gene-activity" in msg
    )
    wrong_build = ann.assign(chrom="chr19")
    with pytest.raises(ValueError, match=r"no peak of `atac` overlaps any gene.*genome build"):
        gene_activity(atac, wrong_build)
    with pytest.raises(ValueError, match="`annotation`"):
        gene_activity(atac, ann.drop(columns="start"))
    with pytest.raises(ValueError, match="`upstream`"):
        gene_activity(atac, ann, upstream=-5)
