"""The run directory: its layout, and every read and write of it (tutorial part 9).

A run directory is what ``python -m gptjax.main --workdir DIR`` trains into, and what
``generate``, ``compare`` and ``experiment`` read::

  DIR/
    config.json      the resolved config, written when training starts
    run_info.json    provenance: commit, JAX and its devices, model size, command line
    tokenizer.bpe    the run's tokenizer
    metrics.jsonl    one JSON object per logged or evaluated step
    tb/              TensorBoard event files (the same metrics)
    checkpoints/     orbax checkpoints, one folder per saved step
    damaged_checkpoints/  checkpoints that failed verification, set aside (never deleted)
    samples.txt      the samples printed at the end of training
    .lock            the lock of the run training here (`RunDir.lock`): its pid, host, start time

`RunDir` is the only code that knows these names and the only code that writes these files:
training, data preparation and the sweeps ask it, so the layout is defined once. What goes
inside a checkpoint is ``gptjax.runs.checkpoint``'s business; where checkpoints live, and which
of them are complete, is this module's. Reading a whole run at once, to compare runs, is
``gptjax.runs.run``'s.

One run at a time: the trainer holds `RunDir.lock` (an exclusive ``flock``, which the kernel
releases when the process dies, however it dies) from before it reads anything here until it has
written its last file, so a second trainer on the same directory is refused at once. Readers
(``compare``, ``generate``, ``gptjax.runs.run.load_run``) never take it: they read a run while
it trains.

A run directory binds its config once it holds a checkpoint. Before that, an attempt that failed
(a bad corpus, a tokenizer too big for the model, a divergence at once) left nothing worth
resuming: `RunDir.discard_unsaved_attempt` removes its files, and the corrected config replaces
the old one.

This module is on the import path of ``python -m gptjax.compare``, which only reads: orbax and
TensorBoard are slow to import, so they are imported inside the methods that need them.
"""

import contextlib
import json
import math
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from gptjax import tokenizer as tk
from gptjax.errors import UserError, as_user_error

CONFIG_FILE = "config.json"
RUN_INFO_FILE = "run_info.json"
TOKENIZER_FILE = "tokenizer.bpe"
METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"
CHECKPOINT_DIR = "checkpoints"
DAMAGED_CHECKPOINT_DIR = "damaged_checkpoints"  # see RunDir.set_aside_checkpoint
SAMPLES_FILE = "samples.txt"
LOCK_FILE = ".lock"
# The items of each checkpoint: the train state, and JSON facts about the run at that step.
CHECKPOINT_ITEMS = ("state", "meta")


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Calls ``write`` on a temporary file beside ``path``, then renames it to ``path``.

    A crash (or Ctrl-C) leaves the old file or the new one, never half of the new one.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    tmp.replace(path)


def _write_json(path: Path, value: Any) -> None:
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    _write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _read_json(path: Path, fix: str) -> dict[str, Any]:
    """Reads a JSON object from ``path``; a damaged file is a `UserError` naming it and ``fix``."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:  # json.JSONDecodeError, UnicodeDecodeError
        raise UserError(f"{path} is not valid JSON ({error}); {fix}") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} holds a JSON {type(value).__name__}, not an object; {fix}")
    return value


_NOT_A_RUN = "give the --workdir that `python -m gptjax.main` trained into"


# Keys added since runs were first saved, with the value that gives what those runs did.
NEW_KEYS = {
    "opt": {
        "optimizer": "adamw", "schedule": "cosine", "cooldown": 1.0, "muon_lr": 0.02,
        "muon_momentum": 0.95,
    },
    "eval": {"at_start": True},
    "model": {"activation": "gelu", "qk_norm": False},
}  # fmt: skip


def upgrade_config(saved: Mapping[str, Any]) -> dict[str, Any]:
    """Brings a ``config.json`` written by an earlier gptjax up to the current keys.

    ``model.attention`` ("reference" | "dot_product") became ``model.kernels``: every run saved
    with the old key trained with what are now the fast kernels, so it reads as
    ``kernels="fast"``.

    ``tokenizer.specials`` is new: runs saved without it read as ``specials=""`` (their
    tokenizer is the run directory's own copy, which carries its specials). So are the keys of
    ``NEW_KEYS`` (the optimizer's choices, ``eval.at_start``, the MLP's activation, QK-norm): a
    run saved without them trained as their values there say.

    >>> upgrade_config({"seed": 0, "model": {"n_head": 4, "attention": "reference"}})
    {'seed': 0, 'model': {'activation': 'gelu', 'qk_norm': False, 'n_head': 4, 'kernels': 'fast'}}
    >>> upgrade_config({"tokenizer": {"path": ""}})
    {'tokenizer': {'path': '', 'specials': ''}}
    """
    saved = dict(saved)
    model = saved.get("model")
    if isinstance(model, Mapping) and "attention" in model:
        model = {key: value for key, value in model.items() if key != "attention"}
        saved["model"] = {**model, "kernels": "fast"}
    tokenizer = saved.get("tokenizer")
    if isinstance(tokenizer, Mapping) and "specials" not in tokenizer:
        saved["tokenizer"] = {**tokenizer, "specials": ""}
    for group, defaults in NEW_KEYS.items():
        if isinstance(saved.get(group), Mapping):
            saved[group] = {**defaults, **saved[group]}
    return saved


class RunDir:
    """One run directory: where each of its files lives, and how each is read and written.

    Creating a `RunDir` touches nothing on disk; `create` makes the folder.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def run_info_path(self) -> Path:
        return self.path / RUN_INFO_FILE

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def tb_dir(self) -> Path:
        return self.path / TB_DIR

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def samples_path(self) -> Path:
        return self.path / SAMPLES_FILE

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def is_run(self) -> bool:
        """Whether training has started here (once locked, it writes ``config.json`` first)."""
        return self.config_path.is_file()

    def create(self) -> None:
        """Makes the folder (and its parents) if it does not exist yet.

        Raises:
          UserError: the path is a file or inside one, or cannot be created (a read-only disk, a
            parent folder without write permission); nothing was changed.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise UserError(
                f"{self.path} exists and is not a folder: give a --workdir that is a run "
                "directory, or a new path"
            ) from None
        except NotADirectoryError:
            file = next((p for p in self.path.parents if p.is_file()), self.path.parent)
            raise UserError(
                f"{self.path} is inside {file}, which is a file, not a folder: give a --workdir "
                "outside it"
            ) from None
        except OSError as error:
            raise UserError(
                f"cannot create {self.path} ({error.strerror}): give a --workdir on a disk you "
                "can write to"
            ) from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Holds the directory's exclusive lock for the ``with`` block (creating the folder).

        The lock is an ``flock`` on ``.lock``: the kernel releases it when its file is closed,
        so also when the process dies, even by SIGKILL; nothing stale is ever left to clean up.
        Once it holds the lock, it writes its pid, host and start time into ``.lock`` for the
        message of whoever is refused. Locks belong to open files, not to processes: a second
        `lock` in the same process is refused too.

        Raises:
          UserError: another open ``.lock`` (another trainer) holds the lock, or the folder
            cannot be created (`create`) or written into (a read-only disk); nothing was changed.
        """
        import fcntl  # POSIX only; the lock is the only part of gptjax that needs it

        self.create()
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:  # a read-only disk, a folder without write permission
            raise UserError(
                f"cannot write in {self.path} ({error.strerror}), and training writes its lock, "
                "checkpoints and metrics there: give a --workdir you can write to (`python -m "
                f"gptjax.generate --workdir {self.path}` samples a trained run without writing)"
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self.lock_path.read_text(encoding="utf-8").strip()
                raise UserError(
                    f"another training run holds {self.path} "
                    f"({holder or 'it has not written its pid yet'}); wait for it to finish or "
                    "stop it, or use another --workdir"
                ) from None
            since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            holder = f"pid {os.getpid()} on {socket.gethostname()}, since {since}\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode("utf-8"), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def discard_unsaved_attempt(self) -> list[str]:
        """Removes what a training attempt that saved no checkpoint left behind.

        Without a checkpoint nothing here can be resumed, and everything the attempt wrote
        depends on its config: its tokenizer (trained, or copied, under its tokenizer and data
        settings), its metrics and TensorBoard events, its provenance, its samples. A new
        attempt starts from an empty directory instead of mixing with them; ``config.json`` is
        left for the caller to replace. Call it only while holding `lock`.

        Returns:
          The names removed.
        """
        assert self.latest_step() is None, "a run with a checkpoint is bound to its config"
        removed = []
        for path in (self.tokenizer_path, self.metrics_path, self.run_info_path, self.samples_path):
            if path.is_file():
                path.unlink()
                removed.append(path.name)
        if self.tb_dir.is_dir():
            shutil.rmtree(self.tb_dir)
            removed.append(self.tb_dir.name)
        return removed

    # The config and the run's provenance.

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Saves the resolved config (a plain dict, e.g. ``json.loads(config.to_json())``)."""
        _write_json(self.config_path, dict(config))

    def read_config(self) -> dict[str, Any]:
        """Returns the saved config as a nested dict, brought up to date by `upgrade_config`.

        Raises:
          UserError: the path is not a folder, or has no ``config.json`` (so it is not a run
            directory), or its ``config.json`` is not a JSON object.
        """
        if not self.path.is_dir():
            what = "is a file, not a run directory" if self.path.exists() else "does not exist"
            raise UserError(f"{self.path} {what}: {_NOT_A_RUN}")
        if not self.is_run:
            raise UserError(
                f"{self.path} is not a run directory: it has no {CONFIG_FILE}. Give the --workdir "
                "that `python -m gptjax.main` trained into (it writes config.json when it starts)."
            )
        return upgrade_config(_read_json(self.config_path, self._config_fix))

    @property
    def _config_fix(self) -> str:
        # The trainer writes config.json again when it has none (training.rundir_checks).
        return (
            f"repair it, or delete it and rerun `python -m gptjax.main --workdir {self.path}` with "
            "the config this run was trained with, which writes it again"
        )

    def read_model_config(self):
        """Returns the run's `GPTConfig`, from the ``model`` group of ``config.json``.

        Raises:
          UserError: as `read_config`, or the ``model`` group is missing or does not make a
            valid `GPTConfig`.
        """
        from gptjax.model.config import GPTConfig  # imports JAX, which `compare` does without

        model = self.read_config().get("model")
        if not isinstance(model, Mapping):
            raise UserError(f"{self.config_path} has no model group; {self._config_fix}")
        try:
            return GPTConfig(**model)
        except (TypeError, ValueError) as error:  # TypeError: a key GPTConfig does not have
            raise UserError(
                f"{self.config_path}: its model group is not valid ({error}); {self._config_fix}"
            ) from None

    def write_run_info(self, info: Mapping[str, Any]) -> None:
        """Saves the run's provenance (``gptjax.training.run_config.run_info``)."""
        _write_json(self.run_info_path, dict(info))

    def read_run_info(self) -> dict[str, Any]:
        """Returns ``run_info.json`` as a dict, empty when the run has not written it yet.

        Raises:
          UserError: the file is not a JSON object.
        """
        if not self.run_info_path.is_file():
            return {}
        fix = "repair or delete it (it is provenance only; the trainer writes it when it starts)"
        return _read_json(self.run_info_path, fix)

    # The tokenizer, the metrics and the samples.

    def save_tokenizer(self, tok: tk.Tokenizer) -> None:
        """Saves the run's tokenizer, in gptjax's own format."""
        _write_atomically(self.tokenizer_path, lambda tmp: tk.save(tok, tmp))

    def load_tokenizer(self) -> tk.Tokenizer:
        """Loads the run's tokenizer.

        Raises:
          UserError: the file is missing or damaged.
        """
        if not self.tokenizer_path.is_file():
            raise UserError(
                f"{self.tokenizer_path} is missing: restore the tokenizer this run trained with"
            )
        with as_user_error():  # the file's format errors name the file and the line
            return tk.load(self.tokenizer_path)

    def metrics_writer(self, resume_step: int = 0) -> "MetricsWriter":
        """Opens ``metrics.jsonl`` and ``tb/`` for appending, from ``resume_step`` on."""
        return MetricsWriter(self.metrics_path, self.tb_dir, resume_step=resume_step)

    def write_samples(self, texts: Sequence[str]) -> str:
        """Saves the end-of-training samples under ``--- sample i ---`` headers.

        Returns:
          The text written, for printing.
        """
        text = "".join(f"--- sample {i + 1} ---\n{t}\n" for i, t in enumerate(texts))
        _write_atomically(self.samples_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return text

    def read_samples(self) -> str:
        """Returns the saved samples as `write_samples` wrote them, "" when there are none."""
        if not self.samples_path.is_file():
            return ""
        return self.samples_path.read_text(encoding="utf-8")

    # Checkpoints: where they live and which are complete (their contents: runs/checkpoint.py).

    def checkpoint_manager(self, keep: int):
        """An orbax `CheckpointManager` over ``checkpoints/`` keeping the ``keep`` newest.

        Opening it deletes the temporary folders of saves that never finished.
        """
        import orbax.checkpoint as ocp

        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, cleanup_tmp_directories=True
        )
        return ocp.CheckpointManager(
            self.checkpoint_dir.absolute(), options=options, item_names=CHECKPOINT_ITEMS
        )

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None when there is none."""
        if not self.checkpoint_dir.is_dir():
            return None
        import orbax.checkpoint as ocp

        steps = ocp.utils.checkpoint_steps(self.checkpoint_dir)  # finalised checkpoints only
        return max(steps) if steps else None

    def checkpoint_steps(self) -> list[int]:
        """The steps of every complete checkpoint, oldest first."""
        if not self.checkpoint_dir.is_dir():
            return []
        import orbax.checkpoint as ocp

        return sorted(ocp.utils.checkpoint_steps(self.checkpoint_dir))

    def set_aside_checkpoint(self, step: int) -> Path:
        """Moves the checkpoint at ``step`` into ``damaged_checkpoints/``, and returns where.

        A damaged checkpoint is never deleted: moved out of ``checkpoints/``, it no longer
        counts as the latest, the resumed run can save that step again, and its files stay for
        whoever wants to look at them.
        """
        target = self.path / DAMAGED_CHECKPOINT_DIR / str(step)
        if target.exists():  # set aside before: keep both
            target = target.with_name(f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
        target.parent.mkdir(exist_ok=True)
        (self.checkpoint_dir / str(step)).rename(target)
        return target

    def checkpoint_item(self, step: int, item: str) -> Path:
        """The folder of one item (see CHECKPOINT_ITEMS) of the checkpoint at ``step``."""
        assert item in CHECKPOINT_ITEMS, item
        return self.checkpoint_dir.absolute() / str(step) / item


def _plain(value: Any) -> Any:
    # NumPy and JAX scalars have .item(); Python numbers and strings do not.
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN; "nan" and "inf" stay readable
    return value


class MetricsWriter:
    """Appends metrics to ``metrics.jsonl`` and TensorBoard event files (see `RunDir`).

    On resume from step s, records after s (logged by a run that died before its next
    checkpoint) are dropped and TensorBoard purges them too, so every step appears once. So is a
    torn last line (a run killed while appending it); the records kept stay byte for byte, and
    the file is replaced atomically, so a crash meanwhile loses none of them.
    """

    def __init__(self, path: Path, tb_dir: Path, resume_step: int = 0):
        """Opens the files, dropping the records after ``resume_step``.

        Raises:
          UserError: a line of ``metrics.jsonl`` other than the last is damaged (see
            `read_metrics`); nothing was changed.
        """
        from tensorboardX import SummaryWriter

        self.path = path
        if path.exists():
            text = path.read_bytes()
            kept = b"".join(line + b"\n" for line, r in _records(path) if r["step"] <= resume_step)
            if kept != text:
                _write_atomically(path, lambda tmp: tmp.write_bytes(kept))
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._tb = SummaryWriter(str(tb_dir), purge_step=resume_step + 1 if resume_step else None)

    def write(self, step: int, values: Mapping[str, Any]) -> None:
        """Writes one record: ``{"step": step, **values}``."""
        record = {"step": int(step), **{k: _plain(v) for k, v in values.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float):
                self._tb.add_scalar(key, value, global_step=int(step))

    def close(self) -> None:
        self._file.close()
        self._tb.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Reads a JSON-lines metrics file, tolerating a last line that is still being written.

    Args:
      path: a ``metrics.jsonl`` file; a missing file reads as no records.

    Returns:
      The records in file order.

    Raises:
      UserError: a line other than the last one is not a metrics record (a JSON object with an
        integer ``"step"``); the message names the file and the line.
    """
    return [record for _, record in _records(path)]


def _records(path: Path) -> list[tuple[bytes, dict[str, Any]]]:
    """The records of a metrics file with their lines as written (without the newline)."""
    if not path.is_file():
        return []
    lines = path.read_bytes().split(b"\n")
    # A run in progress may be caught half-way through appending its last record, and a run
    # killed there leaves it torn: a last line that is not JSON is dropped, not an error.
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        where = f"{path}:{index + 1}"
        try:
            record = json.loads(line.decode("utf-8"))
        except ValueError as error:  # json.JSONDecodeError, UnicodeDecodeError
            if index == last:
                break
            raise UserError(
                f"{where} is not valid JSON ({error}); delete or repair that line"
            ) from None
        step = record.get("step") if isinstance(record, dict) else None
        if not isinstance(step, int) or isinstance(step, bool):
            raise UserError(
                f'{where} is not a metrics record (a JSON object with an integer "step"): '
                f"{line[:80].decode('utf-8', 'replace')!r}; delete or repair that line"
            )
        records.append((line, record))
    return records
