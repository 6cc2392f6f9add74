"""Figures for the leaderboards (matplotlib, headless): accuracy-MACs Pareto plots and execution-rate heat maps."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on CI or servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REFERENCE_METHODS = ("dense", "static_small")  # drawn as reference lines, not only as points


def pareto_front(macs: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both axes (fewer MACs and higher score), by MACs."""
    order = np.lexsort((-score, macs))
    front, best = [], -np.inf
    for index in order:
        if score[index] > best:
            front.append(index)
            best = score[index]
    return np.array(front, dtype=int)


def pareto_plot(board: pd.DataFrame, path: Path) -> Path:
    """Test score vs mean executed MACs, one point per method preset with seed-spread error bars; the dense
    and static-small baselines as reference lines; the Pareto front dashed."""
    metric = board["metric"].iloc[0]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    macs, score = board["executed_macs_mean"].to_numpy() / 1e6, 100 * board["score_mean"].to_numpy()
    for i, row in enumerate(board.itertuples()):
        ax.errorbar(macs[i], score[i], xerr=row.executed_macs_std / 1e6, yerr=100 * row.score_std, fmt="o",
                    capsize=3, label=row.entry)
    for method, style in zip(REFERENCE_METHODS, ("-", ":")):
        for row in board[board["method"] == method].itertuples():
            ax.axhline(100 * row.score_mean, color="grey", linestyle=style, linewidth=1)
            ax.annotate(row.entry, (ax.get_xlim()[0], 100 * row.score_mean), fontsize=7, color="grey",
                        xytext=(2, 2), textcoords="offset points")
    if len(board) > 1:
        front = pareto_front(macs, score)
        ax.plot(macs[front], score[front], "k--", linewidth=0.8, alpha=0.6, label="Pareto front")
    ax.set_xlabel("executed MACs per sample (millions, mean over the test set)")
    ax.set_ylabel(f"test {metric} (%)")
    ax.set_title(f"{board['dataset'].iloc[0]}: {metric} vs executed MACs (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def exec_rate_heatmap(runs: pd.DataFrame, path: Path) -> Path | None:
    """Per-unit execution rate (mean over seeds) of each gated method preset; None when nothing is gated."""
    rows: dict[str, dict[str, list[float]]] = {}
    for run in runs.itertuples():
        if run.exec_rate_per_unit:
            label = run.entry
            for unit, rate in run.exec_rate_per_unit.items():
                rows.setdefault(label, {}).setdefault(unit, []).append(rate)
    if not rows:
        return None
    units = sorted({unit for per_unit in rows.values() for unit in per_unit}, key=_natural_key)
    labels = sorted(rows)
    grid = np.array([[np.mean(rows[label].get(unit, [np.nan])) for unit in units] for label in labels])
    fig, ax = plt.subplots(figsize=(max(5, 0.35 * len(units) + 3), 0.45 * len(labels) + 1.8), dpi=110)
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(units)), [u.replace("blocks.", "") for u in units], fontsize=7, rotation=90)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("gated unit (block index)")
    ax.set_title(f"{runs['dataset'].iloc[0]}: execution rate per unit on the test set")
    fig.colorbar(image, ax=ax, label="fraction executed")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in name.replace(".", " ").split()]
