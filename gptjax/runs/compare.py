"""Compare training runs: ``python -m gptjax.compare RUN_DIR... [--out DIR] [--metric val_bpb]``.

Prints one table row per run: the config keys that differ between the runs (computed from the
saved configs, nothing listed by hand), parameters, tokens seen, wall time, training throughput
and the best and final validation loss and bits per byte. Writes plots of the validation metric
and the training loss against step, tokens seen and wall-clock time, and ``report.md`` beside them.
Runs still training are read as they are now.
"""

import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gptjax.errors import UserError
from gptjax.runs import plots
from gptjax.runs.run import Run

# Keys that are per-run bookkeeping rather than a choice being compared. The saved config holds
# none today (the workdir and the commit live outside it), so nothing is excluded.
BOOKKEEPING_KEYS: frozenset[str] = frozenset()

MISSING = "—"


def differing_keys(runs: Sequence[Run]) -> list[str]:
    """Returns the dotted config keys whose values are not the same in every run.

    A key present in some runs and absent from others counts as differing. Keys keep the order of
    the first config that has them.
    """
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.config))
    differ = []
    for key in keys:
        if key in BOOKKEEPING_KEYS:
            continue
        values = [run.config.get(key, MISSING) for run in runs]
        if any(value != values[0] or type(value) is not type(values[0]) for value in values):
            differ.append(key)
    return differ


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Maps each dotted key to its last part, or to the whole key when that part is ambiguous."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {
        key: (part if last.count(part) == 1 else key) for key, part in zip(keys, last, strict=True)
    }


def run_names(runs: Sequence[Run]) -> list[str]:
    """Returns a distinct display name per run: the folder name, with its parent when needed."""
    names = [run.path.name for run in runs]
    if len(set(names)) == len(names):
        return names
    return [f"{run.path.parent.name}/{run.path.name}" for run in runs]


def labels(runs: Sequence[Run], diff: Sequence[str]) -> list[str]:
    """Returns a legend label per run: its name and the values of the keys that differ.

    Keys that share a name and agree in every run (``model.vocab_size`` tied to
    ``tokenizer.vocab_size``) are shown once, by their last part.
    """
    kept: dict[tuple[str, tuple[str, ...]], str] = {}
    for key in diff:
        values = tuple(repr(run.config.get(key, MISSING)) for run in runs)
        kept.setdefault((key.rsplit(".", 1)[-1], values), key)
    keys = list(kept.values())
    short = short_keys(keys)
    out = []
    for name, run in zip(run_names(runs), runs, strict=True):
        values = ", ".join(f"{short[k]}={format_value(run.config.get(k, MISSING))}" for k in keys)
        out.append(f"{name}: {values}" if values else name)
    return out


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return MISSING if value == "" else str(value)


def format_count(value: float | None) -> str:
    return MISSING if value is None else f"{round(value):,}"


def format_loss(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4f}"


def format_seconds(value: float | None) -> str:
    if value is None:
        return MISSING
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{value:.1f}s"


def summarize(run: Run) -> dict[str, Any]:
    """Returns the numbers of one run's table row; None where the run has not logged them yet.

    ``tokens_per_sec`` is the median of the throughput logged on training steps (robust to the
    first, compiling step); ``wall_time`` includes compilation, evaluation and checkpointing.
    """
    throughput = run.series("tokens_per_sec")[1]
    row = {
        "params": run.info.get("param_count"),
        "step": run.last("step"),
        "tokens_seen": run.last("tokens_seen"),
        "wall_time": run.last("wall_time"),
        "tokens_per_sec": statistics.median(throughput) if throughput else None,
    }
    for field in ("val_loss", "val_bpb"):
        values = run.series(field)[1]
        row[f"best_{field}"] = min(values) if values else None
        row[f"final_{field}"] = values[-1] if values else None
    return row


def table(runs: Sequence[Run], diff: Sequence[str]) -> str:
    """Returns the comparison table: one row per run, a column per differing key."""
    short = short_keys(diff)
    header = ["run", *(short[k] for k in diff), "params", "steps", "tokens seen", "wall time"]
    header += ["tokens/s", "best val loss", "final val loss", "best val bpb", "final val bpb"]
    rows = []
    for name, run in zip(run_names(runs), runs, strict=True):
        s = summarize(run)
        rows.append(
            [name, *(format_value(run.config.get(k, MISSING)) for k in diff)]
            + [format_count(s["params"]), format_count(s["step"]), format_count(s["tokens_seen"])]
            + [format_seconds(s["wall_time"]), format_count(s["tokens_per_sec"])]
            + [format_loss(s[k]) for k in ("best_val_loss", "final_val_loss")]
            + [format_loss(s[k]) for k in ("best_val_bpb", "final_val_bpb")]
        )
    return markdown_table(header, rows)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Returns a Markdown table with padded columns, so it also reads well in a terminal."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    cells = lambda row: " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([f"| {cells(header)} |", rule, *(f"| {cells(r)} |" for r in rows)])


def notes(runs: Sequence[Run], diff: Sequence[str], metric: str) -> list[str]:
    """Returns the sentences printed under the table: what differs, best run, runs without data."""
    out = []
    if len(runs) > 1:
        keys = ", ".join(f"`{k}`" for k in diff) if diff else "nothing (identical configs)"
        out.append(f"Config keys that differ: {keys}.")
    scored = [
        (summarize_metric(run, metric), name)
        for name, run in zip(run_names(runs), runs, strict=True)
    ]
    scored = [(value, name) for value, name in scored if value is not None]
    if len(scored) > 1:
        value, name = min(scored)
        out.append(f"Lowest {metric}: {name} ({value:.4f}).")
    for name, run in zip(run_names(runs), runs, strict=True):
        last, total = run.last("step"), run.config.get("train.steps")
        if not run.metrics:
            out.append(f"{name} has no metrics yet (metrics.jsonl is missing or empty).")
        elif isinstance(total, int) and last is not None and last < total:
            out.append(f"{name} is at step {last} of {total} (still training, or interrupted).")
    out.append(
        "tokens/s is the median logged training throughput; wall time includes compilation, "
        "evaluation and checkpoints. Timings depend on what else the machine was running."
    )
    return out


def summarize_metric(run: Run, metric: str) -> float | None:
    values = run.series(metric)[1]
    return min(values) if values else None


def make_report_dir(out: Path) -> None:
    """Creates the report folder ``out`` and its parents, if missing.

    Raises:
      UserError: ``out`` is a file or inside one, or cannot be created or written into (a
        read-only disk, no permission); nothing was written.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(
            f"the report folder {out} is a file: give a folder for report.md and the plots (a "
            "missing one is created)"
        ) from None
    except NotADirectoryError:
        file = next((p for p in out.parents if p.is_file()), out.parent)
        raise UserError(
            f"the report folder {out} is inside {file}, which is a file: give a folder outside it"
        ) from None
    except OSError as error:
        raise UserError(
            f"cannot create the report folder {out} ({error.strerror}): give one you can write to"
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserError(f"cannot write into the report folder {out}: give one you can write to")


def write_report(
    runs: Sequence[Run],
    out: Path,
    metric: str = "val_bpb",
    title: str = "Run comparison",
    intro: str = "",
    extra: str = "",
) -> str:
    """Writes ``report.md`` and the PNG plots into ``out``.

    Args:
      runs: the runs to compare, in display order.
      out: the folder to write into (created if needed).
      metric: the validation metric to plot and rank by (a metrics.jsonl field).
      title: the report's heading.
      intro: Markdown placed under the heading.
      extra: Markdown appended after the plots.

    Returns:
      The table and its notes, as printed by the command line.

    Raises:
      UserError: ``out`` cannot be a folder to write into (`make_report_dir`).
    """
    make_report_dir(out)
    diff = differing_keys(runs)
    summary = "\n\n".join([table(runs, diff), *notes(runs, diff, metric)])
    legend = labels(runs, diff)
    images = []
    for field in dict.fromkeys([metric, "train_loss"]):
        if plots.plot_field(runs, legend, field, out / f"{field}.png"):
            images.append(f"![{field} against step, tokens seen and wall time]({field}.png)")
        else:
            (out / f"{field}.png").unlink(missing_ok=True)  # a plot left by an earlier report
            images.append(f"No run has logged `{field}` yet, so there is no plot of it.")
    parts = [f"# {title}", intro, "## Runs", summary, "## Curves", *images, extra]
    (out / "report.md").write_text("\n\n".join(p.strip() for p in parts if p.strip()) + "\n")
    return summary
