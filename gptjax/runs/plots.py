"""Plots of run metrics for ``gptjax.compare``: one PNG per metric, three panels per PNG.

Each PNG shows one metric against training step, tokens seen and wall-clock time, one line per
run. Uses matplotlib's Agg backend, so it works without a display.
"""

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import EngFormatter  # noqa: E402

from gptjax.runs.run import Run  # noqa: E402

AXES = (("step", "training step"), ("tokens_seen", "tokens seen"), ("wall_time", "wall time (s)"))

TITLES = {
    "val_bpb": "validation bits per byte",
    "val_loss": "validation loss (nats per token)",
    "val_perplexity": "validation perplexity",
    "train_loss": "training loss (nats per token)",
    "train_bpb": "training bits per byte",
}


def plot_field(runs: Sequence[Run], legend: Sequence[str], field: str, path: Path) -> bool:
    """Writes a PNG of ``field`` against step, tokens seen and wall time.

    Args:
      runs: the runs, one line each.
      legend: a label per run (what differs between the runs).
      field: the metrics field to plot, e.g. ``"val_bpb"``.
      path: the PNG file to write.

    Returns:
      False (and writes nothing) when no run has logged ``field`` yet.
    """
    if not any(run.series(field)[0] for run in runs):
        return False
    name = TITLES.get(field, field)
    fig, axes = plt.subplots(1, len(AXES), figsize=(16, 5), sharey=True, layout="constrained")
    lows, highs = [], []
    for run, label in zip(runs, legend, strict=True):
        for ax, (x_field, _) in zip(axes, AXES, strict=True):
            xs, ys = run.series(field, x=x_field)
            if not xs:
                continue
            # Evaluation curves have few points: mark them so a single point still shows.
            marker = "o" if len(xs) < 30 else None
            ax.plot(xs, ys, marker=marker, markersize=3, linewidth=1.2, label=label)
        steps, ys = run.series(field)
        if ys:
            lows.append(min(ys))
            # The untrained model's first points sit far above the rest; scaling the axis to the
            # last 90% of the steps keeps the differences that matter readable.
            start = 0.1 * max(steps)
            highs.append(max(y for step, y in zip(steps, ys, strict=True) if step >= start))
    for ax, (_, x_label) in zip(axes, AXES, strict=True):
        ax.set_xlabel(x_label)
        ax.grid(True, alpha=0.3)
    axes[1].xaxis.set_major_formatter(EngFormatter(sep=""))  # 200k rather than 200000
    axes[0].set_ylabel(name)
    if lows and highs:
        low, high = min(lows), max(highs)
        margin = 0.05 * (high - low) or 0.05 * abs(high) or 0.1
        axes[0].set_ylim(low - margin, high + margin)
    fig.suptitle(
        f"{name} against step, tokens seen and wall-clock time "
        "(y axis fitted to the last 90% of steps)"
    )
    handles, labels = axes[0].get_legend_handles_labels()
    # As many columns (up to 3) as the longest label leaves room for across the figure: about
    # 200 characters of 9-point text fit in its 16 inches.
    columns = max(1, min(len(labels), 3, 200 // (max(map(len, labels), default=1) + 8)))
    fig.legend(handles, labels, loc="outside lower center", ncol=columns, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
