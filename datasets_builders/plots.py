"""PNG plots for the dataset cards of preference-pair builds (matplotlib, Agg, no global pyplot state).

VideoDPO's analysis figures show the OmniScore histogram and the winner–loser gap histogram; the cards of
our builds show the same two plots (for DSR: the DSR-Score histogram with the winner threshold) and the
number of prompts kept and dropped by each rule, so a reader sees at a glance what the filters did.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np

from vidalign.datasets_builders.pairs import is_score


def _figure(width: float = 5.0, height: float = 3.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.13, right=0.97, top=0.89, bottom=0.16)  # fixed margins: tight_layout costs 0.1 s
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _bins(values: np.ndarray, bin_width: float) -> np.ndarray:
    lo = np.floor(values.min() / bin_width) * bin_width
    hi = np.ceil(values.max() / bin_width) * bin_width
    if hi <= lo:
        hi = lo + bin_width
    n = max(1, int(round((hi - lo) / bin_width)))
    return np.linspace(lo, lo + n * bin_width, n + 1)


def histogram_png(values: Sequence[float | None], title: str, xlabel: str, bin_width: float = 0.01,
                  threshold: float | None = None, color: str = "#4477aa") -> bytes:
    """Histogram of the finite ``values`` with bins of ``bin_width``; an optional dashed threshold line."""
    vals = np.asarray([float(v) for v in values if is_score(v)], dtype=np.float64)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    if vals.size:
        ax.hist(vals, bins=_bins(vals, bin_width), color=color, edgecolor="white", linewidth=0.3)
        ax.set_title(f"{title} (n={vals.size}, mean={vals.mean():.3f})", fontsize=10)
    else:
        ax.text(0.5, 0.5, "no scored values", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=10)
    if threshold is not None:
        ax.axvline(threshold, color="#cc3311", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    return _png(fig)


def score_histogram_png(scores: Sequence[float | None], name: str = "OmniScore", bin_width: float = 0.01,
                        threshold: float | None = None) -> bytes:
    """Distribution of every scored candidate (VideoDPO fig. b; DSR with the winner threshold)."""
    return histogram_png(scores, f"{name} of candidates", name, bin_width, threshold)


def gap_histogram_png(gaps: Sequence[float], name: str = "OmniScore", bin_width: float = 0.01) -> bytes:
    """Distribution of s_W − s_L over the kept pairs (VideoDPO fig. c)."""
    return histogram_png(gaps, f"{name} gap of pairs", f"{name}(winner) − {name}(loser)", bin_width,
                         color="#228833")


def rule_counts_png(counts: Mapping[str, int], title: str = "prompts by rule") -> bytes:
    """Horizontal bars: how many prompts each rule kept (green) or dropped (red); totals in grey."""
    names = list(counts)
    fig = _figure(6.0, 0.9 + 0.3 * max(1, len(names)))
    fig.subplots_adjust(left=min(0.6, 0.04 + 0.0115 * max(map(len, names), default=4)),
                        bottom=0.5 / fig.get_figheight(), top=1 - 0.35 / fig.get_figheight())
    ax = fig.add_subplot(1, 1, 1)
    values = [int(counts[n]) for n in names]
    colors = ["#228833" if n.startswith("kept") else "#cc3311" if n.startswith("dropped") else "#888888"
              for n in names]
    ax.barh(range(len(names)), values, color=colors)
    ax.set_yticks(range(len(names)), labels=names, fontsize=8)
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(v, i, f" {v}", va="center", fontsize=8)
    ax.set_xlabel("prompts")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, max(values + [1]) * 1.15)
    return _png(fig)


def rule_counts_markdown(counts: Mapping[str, int]) -> str:
    """The same counts as a Markdown table for the card text."""
    lines = ["| rule | prompts |", "|---|---:|"]
    lines += [f"| {name} | {int(n)} |" for name, n in counts.items()]
    return "\n".join(lines)
