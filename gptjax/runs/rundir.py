"""Reading a run directory: its saved config, run info and metrics, finished or still training.

A run directory is what ``python -m gptjax.main --workdir DIR`` writes (layout in docs/design.md).
This module only reads it; ``compare`` and ``experiment`` build on it.
"""

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
RUN_INFO_FILE = "run_info.json"
METRICS_FILE = "metrics.jsonl"


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


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Reads a JSON-lines metrics file, tolerating a last line that is still being written.

    Args:
      path: a ``metrics.jsonl`` file; a missing file reads as no records.

    Returns:
      The records in file order.

    Raises:
      ValueError: a line other than the last one is not a JSON object.
    """
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            # A run in progress may be caught half-way through appending its last record.
            if all(not rest.strip() for rest in lines[number:]):
                break
            raise ValueError(f"{path}:{number} is not valid JSON ({error})") from error
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number} is not a JSON object: {line[:80]!r}")
        records.append(record)
    return records


def load_run(path: str | Path) -> Run:
    """Reads a run directory.

    Args:
      path: the ``--workdir`` of a run, finished or in progress.

    Returns:
      The run as it is now on disk.

    Raises:
      ValueError: ``path`` is not a directory, or has no ``config.json`` (so is not a run).
    """
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory: give the --workdir of a training run")
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise ValueError(
            f"{path} is not a run directory: it has no {CONFIG_FILE}. Give the --workdir that "
            "`python -m gptjax.main` trained into (it writes config.json when it starts)."
        )
    config = json.loads(config_path.read_text(encoding="utf-8"))
    info_path = path / RUN_INFO_FILE
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    return Run(
        path=path,
        config=flatten(config),
        info=info,
        metrics=read_metrics(path / METRICS_FILE),
    )
