"""How the ATAC cells' labels are read off a joint embedding: vote rules on scJoint and CCA.

Both transfers on MOp lose the rare interneuron types to the frequent ones (scJoint predicts
Npy, CGE and Sst less often than they occur). This script asks whether the *reading* of the
embedding, rather than the embedding, is what loses them: on each random split (the halves of
``mop_scjoint.py``) it trains scx scJoint with its defaults (seed = split, and with
``--ensemble N`` N - 1 more seeds), computes CCA's embedding, and scores on both embeddings

* ``uniform``: the 30 nearest RNA cells vote (scJoint's and CCA's rule);
* ``hubness``: each RNA neighbour's vote weighted by 1 / the number of ATAC cells that have
  it among their 30 nearest (the hubness correction of the reference's intended confidence
  score); ``hubness^0.5`` by 1 / its square root;
* ``csls``: the 30 neighbours ranked by cross-domain similarity local scaling (Conneau et al.
  2018), 2 cos(a, r) - r_ATAC(a) - r_RNA(r), with r the mean cosine to the 30 nearest cells of
  the other modality; the candidates are each ATAC cell's 300 nearest RNA cells;
* ``label propagation``: RNA labels clamped and propagated over the symmetric 15-NN graph of
  all cells (Zhou et al. 2004, alpha = 0.9, 30 iterations);
* ``coral``: the uniform vote after the ATAC embedding is re-coloured to the RNA's mean and
  covariance (CORAL, Sun et al. 2016: the second-order version of the per-modality
  standardisation that scJoint's ``modality_norm`` applies to each latent dimension);
* ``self-training on ATAC LSI``: the uniform vote's confident winners (at least half of the 30
  votes) train a logistic regression on the ATAC's own LSI (what the ATAC-only ceiling reads),
  and its class probabilities are added to the vote fractions: a co-training step that lets
  the query's peaks, which neither embedding sees, have a say;
* ``ensemble of N seeds`` (scJoint only): the N models' 30-NN votes summed.

Run: ``python benchmarks/mop_scjoint_votes.py`` (five splits, about two minutes on 2 CPU
cores; ``--ensemble 5`` about four). ``--labels`` and ``--cell-types`` select the pairing as in
``mop_scjoint.py``.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy import sparse

from _baselines import cca_embeddings
from mop_scjoint import _quiet, atac_lsi, load_mop, select_nuclei, split_halves

N_NEIGHBORS = 30


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def vote_counts(reference, query, codes, n_classes, rule: str) -> np.ndarray:
    """``(n_query, n_classes)`` votes of the RNA neighbours under ``rule``."""
    from scx._neighbors import knn

    reference, query = _unit(reference), _unit(query)
    k = N_NEIGHBORS
    if rule == "label propagation":
        return _label_propagation(reference, query, codes, n_classes)
    if rule == "coral":
        return vote_counts(reference, _unit(coral(reference, query)), codes, n_classes, "uniform")
    if rule == "csls":
        _, d_query = knn(reference, query, k, metric="cosine")
        _, d_reference = knn(query, reference, k, metric="cosine")
        r_query = 1 - d_query.mean(axis=1)
        r_reference = 1 - d_reference.mean(axis=1)
        candidates, d = knn(reference, query, 10 * k, metric="cosine")
        score = 2 * (1 - d) - r_query[:, None] - r_reference[candidates]
        best = np.argsort(-score, axis=1, kind="stable")[:, :k]
        idx, weights = np.take_along_axis(candidates, best, axis=1), np.ones((len(query), k))
    else:
        idx, _ = knn(reference, query, k, metric="cosine")
        hubness = np.bincount(idx.ravel(), minlength=len(reference)).astype(float)
        power = {"uniform": 0.0, "hubness": 1.0, "hubness^0.5": 0.5}[rule]
        weights = 1.0 / hubness[idx] ** power
    counts = np.zeros((len(query), n_classes))
    np.add.at(counts, (np.repeat(np.arange(len(query)), k), codes[idx].ravel()), weights.ravel())
    return counts


def coral(reference: np.ndarray, query: np.ndarray, shrinkage: float = 0.01) -> np.ndarray:
    """``query`` whitened and re-coloured to the mean and covariance of ``reference``.

    Both covariances get ``shrinkage`` × their mean variance on the diagonal, so that a
    near-singular embedding does not blow up its smallest directions.
    """

    def covariance(x):
        c = np.cov(x, rowvar=False)
        return c + shrinkage * np.trace(c) / len(c) * np.eye(len(c))

    def matrix_power(c, power):
        values, vectors = np.linalg.eigh(c)
        return (vectors * np.maximum(values, 1e-12) ** power) @ vectors.T

    recolour = matrix_power(covariance(query), -0.5) @ matrix_power(covariance(reference), 0.5)
    return (query - query.mean(0)) @ recolour + reference.mean(0)


def self_training(counts: np.ndarray, features: np.ndarray, min_share: float = 0.5) -> np.ndarray:
    """Vote fractions plus the probabilities of a classifier of the query's own ``features``.

    The classifier (logistic regression) is fitted to the cells whose winning class has at
    least ``min_share`` of the votes, with that class as label.
    """
    from sklearn.linear_model import LogisticRegression

    fractions = counts / counts.sum(axis=1, keepdims=True)
    winners, confident = fractions.argmax(axis=1), fractions.max(axis=1) >= min_share
    classifier = LogisticRegression(max_iter=2000).fit(features[confident], winners[confident])
    probabilities = np.zeros_like(fractions)
    probabilities[:, classifier.classes_] = classifier.predict_proba(features)
    return fractions + probabilities


def _label_propagation(reference, query, codes, n_classes, alpha=0.9, k=15, n_iter=30):
    from scx._neighbors import knn

    cells = np.vstack([reference, query])
    n = len(cells)
    idx, dist = knn(cells, cells, k + 1)
    idx, dist = idx[:, 1:], dist[:, 1:]
    weight = np.exp(-((dist / np.median(dist[:, -1])) ** 2))
    rows = np.repeat(np.arange(n), k)
    graph = sparse.csr_matrix((weight.ravel(), (rows, idx.ravel())), shape=(n, n))
    graph = graph.maximum(graph.T)
    scale = sparse.diags(1 / np.sqrt(np.asarray(graph.sum(axis=1)).ravel()))
    graph = scale @ graph @ scale
    clamped = np.zeros((n, n_classes))
    clamped[np.arange(len(reference)), codes] = 1
    labels = clamped.copy()
    for _ in range(n_iter):
        labels = alpha * (graph @ labels) + (1 - alpha) * clamped
    return labels[len(reference) :]


def score_row(truth, labels, split: int, embedding: str, rule: str, counts) -> dict:
    """Accuracy, macro-F1 and balanced accuracy of the votes' winners."""
    import scx

    result = scx.metrics.label_transfer_accuracy(
        truth, labels[counts.argmax(axis=1)], reference_labels=set(labels)
    )
    return {
        "embedding": embedding,
        "rule": rule,
        "split": split,
        "accuracy": result["accuracy"],
        "macro_f1": result["macro_f1"],
        "balanced_acc": result["balanced_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--ensemble", type=int, default=1, help="scJoint seeds per split")
    parser.add_argument(
        "--cell-types", nargs="+", default=None, help="as in mop_scjoint.py, e.g. L2/3 L4/5 L6"
    )
    parser.add_argument(
        "--labels", default="cell_type", help="as in mop_scjoint.py, e.g. cell_type_fine"
    )
    args = parser.parse_args()
    _quiet()
    import mudata
    import torch

    import scx

    print(f"torch threads: {torch.get_num_threads()}")
    mdata, annotation = load_mop()
    mdata, description = select_nuclei(mdata, args.cell_types, args.labels)
    rules = ["uniform", "hubness", "hubness^0.5", "csls", "label propagation", "coral"]
    rows = []
    for split in args.splits:
        rna, atac, activity, truth = split_halves(mdata, annotation, split)
        labels = np.unique(rna.obs["cell_type"].astype(str))
        codes = np.searchsorted(labels, rna.obs["cell_type"].astype(str))
        keep = np.asarray(activity.X.sum(axis=0)).ravel() > 0
        u, v = cca_embeddings(rna.X[:, keep], activity.X[:, keep], 30)
        lsi = atac_lsi(atac, split)
        summed = 0
        for r in range(args.ensemble):
            joint = mudata.MuData({"rna": rna, "atac": atac})
            scx.tl.scjoint(
                joint,
                labels_key="cell_type",
                annotation=annotation,
                seed=split + 100 * r,
                trainer_kwargs={"enable_progress_bar": False},
            )
            z_rna, z_atac = joint["rna"].obsm["X_scjoint"], joint["atac"].obsm["X_scjoint"]
            if r == 0:
                embeddings = {"scJoint": (z_rna, z_atac), "CCA": (u, v)}
                votes = {
                    (name, rule): vote_counts(ref, query, codes, len(labels), rule)
                    for rule in rules
                    for name, (ref, query) in embeddings.items()
                }
                for (name, rule), counts in votes.items():
                    rows.append(score_row(truth, labels, split, name, rule, counts))
                for name in embeddings:
                    scores = self_training(votes[name, "uniform"], lsi)
                    rule = "self-training on ATAC LSI"
                    rows.append(score_row(truth, labels, split, name, rule, scores))
                own_votes = votes["scJoint", "uniform"]
            else:
                own_votes = vote_counts(z_rna, z_atac, codes, len(labels), "uniform")
            summed = summed + own_votes
        if args.ensemble > 1:
            name = f"ensemble of {args.ensemble} seeds"
            rows.append(score_row(truth, labels, split, "scJoint", name, summed))
        print(f"split {split} done", flush=True)
    frame = pd.DataFrame(rows)
    summary = frame.groupby(["embedding", "rule"], sort=False)[
        ["accuracy", "macro_f1", "balanced_acc"]
    ].agg(["mean", "std"])
    print(f"\nVote rules over {len(args.splits)} random MOp splits ({description})")
    print(summary.round(3).to_string())
    wide = frame.pivot_table(index="split", columns=["embedding", "rule"], values="macro_f1")
    accuracy = frame.pivot_table(index="split", columns=["embedding", "rule"], values="accuracy")
    baseline = ("CCA", "uniform")
    for column in [c for c in wide.columns if c != baseline]:
        d_acc = accuracy[column] - accuracy[baseline]
        d_f1 = wide[column] - wide[baseline]
        print(
            f"{column[0]} {column[1]} − CCA uniform: accuracy {d_acc.mean():+.3f} ± "
            f"{d_acc.std():.3f}, macro-F1 {d_f1.mean():+.3f} ± {d_f1.std():.3f} "
            "(paired over splits)"
        )


if __name__ == "__main__":
    main()
