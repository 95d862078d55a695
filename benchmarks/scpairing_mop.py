"""scPairing on SNARE-seq2 mouse motor cortex: bridge training, embedding and re-pairing.

The 10,309 paired nuclei of ``mop_snareseq2`` are split at random (seed 0) into a bridge half and
a held-out half. scx trains scPairing on the bridge (its own PCA of RNA and TF-IDF + LSI of ATAC,
10 components each, the reference's tutorial preprocessing and defaults), then embeds the
held-out RNA and ATAC profiles as two *unpaired* datasets (the bridge's projections applied to
their counts) and pairs them with ``scx.tl.pair_cells``.

Peers in the same run, on the same low-dimensional inputs (the bridge's PCA / LSI projections):

* **CCA**: classical canonical correlation analysis fitted on the bridge pairs (10 canonical
  pairs), held-out cells projected and matched the same way. (``benchmarks/_baselines.py``'s
  ``cca_embeddings`` is Seurat's cell × cell CCA over shared genes for *unpaired* data; it does
  not apply to two different feature spaces with a paired bridge.)
* **nearest neighbour**: every held-out RNA cell takes its most similar ATAC cell in the same
  embedding, without the one-to-one matching.

Metrics on the held-out half: FOSCTTM (lower is better, 0.5 = random), the fraction of cells
paired with their true partner (over all held-out cells), the cell-type agreement of the pairs,
and for gene–peak links (``rna.varm["gene_region"]``: peak in the gene body + 2 kb upstream) the
Pearson correlation of log-normalised expression and binarised accessibility across pairs, in
artificial pairs vs the true pairs vs random pairs.

Run: ``python benchmarks/scpairing_mop.py [--epochs 300] [--cutoff 0.8]`` (a few minutes).
"""

from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np
import pandas as pd
from scipy import sparse

from _common import find_data_dir, print_table, run_isolated


def _quiet() -> None:
    warnings.simplefilter("ignore")
    for name in ("lightning", "lightning.pytorch", "scvi", "scx"):
        logging.getLogger(name).setLevel(logging.ERROR)


def load(seed: int):
    import mudata as md

    mdata = md.read_h5mu(find_data_dir() / "mop_snareseq2" / "mop_snareseq2.h5mu")
    n = mdata["rna"].n_obs
    perm = np.random.default_rng(seed).permutation(n)
    bridge_idx, held_idx = np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])
    return mdata, bridge_idx, held_idx


def run_scpairing(seed: int, epochs: int) -> dict:
    """Train on the bridge, embed the held-out halves; also returns the low-dim inputs."""
    _quiet()
    import mudata as md
    import torch

    import scx

    # tiny networks: one thread is much faster than two on a shared 2-core machine
    torch.set_num_threads(1)
    mdata, bridge_idx, held_idx = load(seed)
    bridge = md.MuData({m: mdata[m][bridge_idx].copy() for m in ("rna", "atac")})
    model = scx.tl.scpairing(
        bridge,
        modalities=("rna", "atac"),
        max_epochs=epochs,
        seed=seed,
        trainer_kwargs={"enable_progress_bar": False, "enable_model_summary": False},
    )
    out = {"temperature": model.get_temperature()}
    for m in ("rna", "atac"):
        held = mdata[m][held_idx].copy()
        out[f"z_{m}"] = model.get_latent_representation(held, modality=m)
        out[f"bridge_in_{m}"] = model.model_inputs(modality=m)
        out[f"held_in_{m}"] = model.model_inputs(held, modality=m)
    return out


def cca_fit_transform(b1, b2, h1, h2, n_components: int = 10, reg: float = 1e-3):
    """Classical CCA fitted on paired rows ``(b1, b2)``; returns unit-row projections of ``h``."""
    m1, m2 = b1.mean(0), b2.mean(0)
    x, y = b1 - m1, b2 - m2
    n = x.shape[0]
    cxx = x.T @ x / n + reg * np.eye(x.shape[1])
    cyy = y.T @ y / n + reg * np.eye(y.shape[1])
    cxy = x.T @ y / n

    def inv_sqrt(c):
        w, v = np.linalg.eigh(c)
        return v @ np.diag(w**-0.5) @ v.T

    wx, wy = inv_sqrt(cxx), inv_sqrt(cyy)
    u, _, vt = np.linalg.svd(wx @ cxy @ wy)
    k = min(n_components, u.shape[1], vt.shape[0])
    a, b = wx @ u[:, :k], wy @ vt.T[:, :k]
    p1, p2 = (h1 - m1) @ a, (h2 - m2) @ b
    p1 /= np.linalg.norm(p1, axis=1, keepdims=True) + 1e-12
    p2 /= np.linalg.norm(p2, axis=1, keepdims=True) + 1e-12
    return p1, p2


def run_cca(b1, b2, h1, h2) -> tuple[np.ndarray, np.ndarray]:
    return cca_fit_transform(b1, b2, h1, h2)


def link_correlations(G, P, links: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Per-link Pearson correlation of gene (cells ``rows``) and peak (cells ``cols``)."""
    g = G[rows]
    p = P[cols]
    g = (g - g.mean(0)) / (g.std(0) + 1e-12)
    p = (p - p.mean(0)) / (p.std(0) + 1e-12)
    out = np.empty(links.shape[0])
    for s in range(0, links.shape[0], 2000):
        li = links[s : s + 2000]
        out[s : s + 2000] = (g[:, li[:, 0]] * p[:, li[:, 1]]).mean(0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--cutoff", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-detection", type=float, default=0.01)
    args = parser.parse_args()
    _quiet()
    import scx
    from scx.scpairing import match_embeddings, nearest_neighbour_pairs

    mdata, bridge_idx, held_idx = load(args.seed)
    n_held = held_idx.size
    print(f"bridge {bridge_idx.size} cells, held-out {n_held} cells per modality")

    res = run_isolated(run_scpairing, args.seed, args.epochs)
    out = res["result"]
    print(
        f"scPairing: train + embed {res['time_s']:.1f} s, peak {res['peak_mb']:.0f} MB, "
        f"inverse temperature {out['temperature']:.1f}"
    )
    cca = run_isolated(
        run_cca,
        out["bridge_in_rna"],
        out["bridge_in_atac"],
        out["held_in_rna"],
        out["held_in_atac"],
    )
    print(f"CCA: fit + project {cca['time_s']:.2f} s, peak {cca['peak_mb']:.0f} MB")
    embeddings = {
        "scx scPairing": (out["z_rna"], out["z_atac"]),
        "CCA (same PCA/LSI inputs)": cca["result"],
    }
    types = mdata["rna"].obs["cell_type"].astype(str).to_numpy()[held_idx]
    rows, pair_sets = [], {}
    for name, (z1, z2) in embeddings.items():
        fos = scx.metrics.foscttm(z1, z2)
        for label, cutoff in (
            (f"matching, cutoff {args.cutoff}", args.cutoff),
            ("matching, no cutoff", -1.0),
        ):
            m = match_embeddings(z1, z2, cutoff=cutoff, method="exact")
            rows.append(
                {
                    "embedding": name,
                    "pairing": label,
                    "FOSCTTM": fos,
                    "pairs": m.rows.size,
                    "true_partner_rate": float((m.rows == m.cols).sum() / n_held),
                    "true_among_pairs": float((m.rows == m.cols).mean()) if m.rows.size else np.nan,
                    "cell_type_agreement": float((types[m.rows] == types[m.cols]).mean())
                    if m.rows.size
                    else np.nan,
                }
            )
            pair_sets[f"{name} / {label}"] = (m.rows, m.cols)
        nn, _ = nearest_neighbour_pairs(z1, z2)
        rows.append(
            {
                "embedding": name,
                "pairing": "nearest neighbour (no matching)",
                "FOSCTTM": fos,
                "pairs": n_held,
                "true_partner_rate": float((nn == np.arange(n_held)).mean()),
                "true_among_pairs": float((nn == np.arange(n_held)).mean()),
                "cell_type_agreement": float((types == types[nn]).mean()),
            }
        )
        pair_sets[f"{name} / nearest neighbour"] = (np.arange(n_held), nn)
    print_table(
        pd.DataFrame(rows).set_index(["embedding", "pairing"]),
        f"Held-out half of mop_snareseq2 ({n_held} cells per modality; chance true-partner rate "
        f"{1 / n_held:.5f})",
        floatfmt="{:.4f}",
    )

    # ---- gene–peak links: correlation across pairs
    rna, atac = mdata["rna"][held_idx], mdata["atac"][held_idx]
    X = sparse.csr_matrix(rna.X, dtype=np.float64, copy=True)
    X = sparse.diags(1e4 / np.maximum(np.asarray(X.sum(1)).ravel(), 1)) @ X
    X.data = np.log1p(X.data)
    A = (atac.X > 0).astype(np.float32)  # a binarised copy
    links = sparse.coo_matrix(mdata["rna"].varm["gene_region"])
    det_g = np.asarray((X > 0).mean(0)).ravel()
    det_p = np.asarray(A.mean(0)).ravel()
    keep = (det_g[links.row] >= args.min_detection) & (det_p[links.col] >= args.min_detection)
    pairs = np.stack([links.row[keep], links.col[keep]], axis=1)
    genes_used, gi = np.unique(pairs[:, 0], return_inverse=True)
    peaks_used, pi = np.unique(pairs[:, 1], return_inverse=True)
    G = X[:, genes_used].toarray().astype(np.float32)
    P = A[:, peaks_used].toarray().astype(np.float32)
    local = np.stack([gi, pi], axis=1)
    print(
        f"\n{local.shape[0]} gene–peak links with gene and peak detected in ≥ "
        f"{args.min_detection:.0%} of held-out cells ({genes_used.size} genes, "
        f"{peaks_used.size} peaks)"
    )
    # gene level: expression vs the summed accessibility of all the gene's linked peaks
    gene_links = sparse.csr_matrix(mdata["rna"].varm["gene_region"])
    activity = (A @ gene_links.T).tocsc()
    det_a = np.asarray((activity > 0).mean(0)).ravel()
    genes_ok = np.flatnonzero((det_g >= args.min_detection) & (det_a >= args.min_detection))
    G2 = X[:, genes_ok].toarray().astype(np.float32)
    P2 = activity[:, genes_ok].toarray().astype(np.float32)
    local2 = np.stack([np.arange(genes_ok.size)] * 2, axis=1)
    print(
        f"{genes_ok.size} genes with expression and linked accessibility in ≥ "
        f"{args.min_detection:.0%} of held-out cells"
    )
    rng = np.random.default_rng(args.seed)
    shuffled = rng.permutation(n_held)
    sets = {
        "true pairs": (np.arange(n_held), np.arange(n_held)),
        "random pairs": (np.arange(n_held), shuffled),
    }
    sets.update(pair_sets)
    for level, (g_mat, p_mat, idx) in {
        "gene–peak link": (G, P, local),
        "gene–linked-peaks sum": (G2, P2, local2),
    }.items():
        true_corr = link_correlations(g_mat, p_mat, idx, np.arange(n_held), np.arange(n_held))
        corr_rows = []
        for name, (r, c) in sets.items():
            corr = link_correlations(g_mat, p_mat, idx, r, c)
            corr_rows.append(
                {
                    "pairs": name,
                    "n_pairs": len(r),
                    "mean_r": corr.mean(),
                    "median_r": np.median(corr),
                    "q10_r": np.quantile(corr, 0.1),
                    "q90_r": np.quantile(corr, 0.9),
                    "frac_r>0.05": (corr > 0.05).mean(),
                    "corr_with_true": np.corrcoef(corr, true_corr)[0, 1],
                }
            )
        print_table(
            pd.DataFrame(corr_rows).set_index("pairs"),
            f"{level} correlation (log expression vs binary accessibility) across pairs, "
            f"{idx.shape[0]} links",
            floatfmt="{:.4f}",
        )


if __name__ == "__main__":
    main()
