"""A run as read at one moment: its config, run info and metrics, for comparing runs.

``compare``, the sweeps' reports and the plots read many run directories, finished or still
training; `load_run` reads one through `gptjax.runs.rundir.RunDir` (which alone knows the
layout) into a `Run` value, with the config flattened to dotted keys so that runs compare key by
key.
"""

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gptjax.runs.rundir import RunDir, read_metrics


@dataclasses.dataclass(frozen=True)
class Run:
    """One run directory, as read at one moment.

    Attributes:
      path: the run directory.
      config: the saved config flattened to dotted keys (``"model.n_head" -> 4``).
      info: ``run_info.json`` as a dict, empty when the run has not written it yet.
      metrics: the ``metrics.jsonl`` records in file order, empty when none were logged yet.
    """

    path: Path
    config: Mapping[str, Any]
    info: Mapping[str, Any]
    metrics: Sequence[Mapping[str, Any]]

    @property
    def name(self) -> str:
        return self.path.name

    def series(self, field: str, x: str = "step") -> tuple[list[float], list[float]]:
        """Returns the (x, y) points of ``field`` over the records that have it.

        Args:
          field: a metrics field, e.g. ``"val_bpb"`` or ``"train_loss"``.
          x: the field to use as abscissa: ``"step"``, ``"tokens_seen"`` or ``"wall_time"``.
        """
        rows = [r for r in self.metrics if field in r and x in r]
        return [r[x] for r in rows], [r[field] for r in rows]

    def last(self, field: str) -> Any:
        """Returns the last logged value of ``field``, or None when it was never logged."""
        for row in reversed(self.metrics):
            if field in row:
                return row[field]
        return None


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flattens nested mappings to dotted keys.

    >>> flatten({"seed": 0, "model": {"n_head": 4, "n_layer": 2}})
    {'seed': 0, 'model.n_head': 4, 'model.n_layer': 2}

    Lists stay values (turned into tuples so that values compare and hash alike).
    """
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{dotted}."))
        else:
            flat[dotted] = tuple(value) if isinstance(value, list) else value
    return flat


def load_run(path: str | Path) -> Run:
    """Reads a run directory.

    Args:
      path: the ``--workdir`` of a run, finished or in progress.

    Returns:
      The run as it is now on disk.

    Raises:
      UserError: ``path`` is not a directory, or has no ``config.json`` (so is not a run), or
        one of its files is damaged (`RunDir.read_config`, `RunDir.read_run_info`,
        `gptjax.runs.rundir.read_metrics`).
    """
    run_dir = RunDir(path)
    return Run(
        path=run_dir.path,
        config=flatten(run_dir.read_config()),
        info=run_dir.read_run_info(),
        metrics=read_metrics(run_dir.metrics_path),
    )
