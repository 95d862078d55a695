"""Plots of training histories and benchmark tables (matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

_NOT_LOSSES = {"stage", "lr", "epoch"}


def _history_terms(history: dict[str, pd.DataFrame]) -> list[str]:
    terms = []
    for key in history:
        for split in ("_train", "_validation"):
            if key.endswith(split) and key[: -len(split)] not in terms:
                terms.append(key[: -len(split)])
    return [t for t in terms if t not in _NOT_LOSSES]


def history(
    model,
    keys: Sequence[str] | None = None,
    *,
    ncols: int = 3,
    log: bool = False,
    figsize_per_panel: tuple[float, float] = (3.2, 2.4),
    show: bool | None = None,
) -> np.ndarray:
    """Training (and validation) losses per term over epochs, one panel per term.

    Stage boundaries of multi-stage methods (scJoint) are drawn as dotted vertical lines.

    Parameters
    ----------
    model
        A trained scx model (anything with a scvi-tools ``history`` dict).
    keys
        Loss terms to show (without the ``_train`` suffix); all by default.
    ncols
        Panels per row.
    log
        Logarithmic y axis.
    figsize_per_panel
        Size of each panel in inches.
    show
        Call ``plt.show()``; by default only outside scripts that keep the axes.

    Returns
    -------
    Array of the panels' axes.
    """
    hist = getattr(model, "history", None)
    if not hist:
        raise ValueError("`model` has no training history; train it first.")
    terms = list(keys) if keys is not None else _history_terms(hist)
    unknown = [t for t in terms if f"{t}_train" not in hist and f"{t}_validation" not in hist]
    if unknown:
        raise ValueError(f"No history for {unknown}; available terms: {_history_terms(hist)}.")
    nrows = -(-len(terms) // ncols)
    _, axes = plt.subplots(
        nrows,
        min(ncols, len(terms)),
        figsize=(figsize_per_panel[0] * min(ncols, len(terms)), figsize_per_panel[1] * nrows),
        squeeze=False,
        layout="constrained",
    )
    boundaries = []
    if "stage" in hist:
        stage = hist["stage"].iloc[:, 0].to_numpy()
        boundaries = list(hist["stage"].index[1:][np.diff(stage) != 0])
    for ax, term in zip(axes.ravel(), terms):
        for split, style in (("train", "-"), ("validation", "--")):
            key = f"{term}_{split}"
            if key in hist:
                frame = hist[key]
                ax.plot(frame.index, frame.iloc[:, 0], style, label=split)
        for boundary in boundaries:
            ax.axvline(boundary - 0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_title(term)
        ax.set_xlabel("epoch")
        if log:
            ax.set_yscale("log")
        if f"{term}_validation" in hist:
            ax.legend(fontsize="small")
    for ax in axes.ravel()[len(terms) :]:
        ax.set_visible(False)
    if show:
        plt.show()
    return axes


def metrics_table(
    results: pd.DataFrame,
    *,
    lower_is_better: Sequence[str] = (),
    ax: Axes | None = None,
    fmt: str = "{:.3g}",
    cmap: str = "RdYlGn",
    title: str | None = None,
) -> Axes:
    """Benchmark results as a coloured table: rows are methods, columns are metrics.

    Each numeric column is coloured from worst (red) to best (green) among the methods; columns
    listed in ``lower_is_better`` (e.g. FOSCTTM, time, memory) are reversed. Non-numeric cells
    are shown uncoloured.

    Parameters
    ----------
    results
        DataFrame indexed by method.
    lower_is_better
        Columns where a lower value is better.
    ax
        Axes to draw on; a new figure otherwise.
    fmt
        Format of the numbers.
    cmap
        Matplotlib colour map.
    title
        Title above the table.

    Returns
    -------
    The axes.
    """
    if not isinstance(results, pd.DataFrame) or results.empty:
        raise ValueError("`results` must be a non-empty DataFrame (methods × metrics).")
    unknown = set(lower_is_better) - set(results.columns)
    if unknown:
        raise ValueError(f"`lower_is_better` names columns not in `results`: {sorted(unknown)}.")
    n_rows, n_cols = results.shape
    if ax is None:
        _, ax = plt.subplots(
            figsize=(1.6 + 1.3 * n_cols, 0.6 + 0.42 * n_rows), layout="constrained"
        )
    colours = plt.get_cmap(cmap)
    score = np.full(results.shape, np.nan)
    for j, column in enumerate(results.columns):
        values = pd.to_numeric(results[column], errors="coerce").to_numpy(dtype=float)
        finite = np.isfinite(values)
        if finite.sum() >= 2 and np.ptp(values[finite]) > 0:
            scaled = (values - np.nanmin(values)) / np.ptp(values[finite])
            score[:, j] = 1 - scaled if column in lower_is_better else scaled
    for i in range(n_rows):
        for j in range(n_cols):
            value = results.iat[i, j]
            colour = colours(0.15 + 0.7 * score[i, j]) if np.isfinite(score[i, j]) else "white"
            ax.add_patch(plt.Rectangle((j, n_rows - 1 - i), 1, 1, color=colour, alpha=0.75))
            is_number = isinstance(value, int | float | np.number) and not isinstance(value, bool)
            text = fmt.format(value) if is_number and np.isfinite(value) else str(value)
            ax.text(j + 0.5, n_rows - 0.5 - i, text, ha="center", va="center", fontsize=9)
    ax.set_xlim(0, n_cols)
    ax.set_ylim(0, n_rows)
    ax.set_xticks(np.arange(n_cols) + 0.5)
    ax.set_xticklabels(
        [f"{c} ↓" if c in lower_is_better else str(c) for c in results.columns],
        rotation=30,
        ha="right",
    )
    ax.set_yticks(np.arange(n_rows) + 0.5)
    ax.set_yticklabels(list(results.index)[::-1])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
    return ax
