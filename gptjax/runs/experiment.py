"""Run an experiment: ``python -m gptjax.experiment experiments/NAME.py [--runs-dir runs]``.

An experiment file is a sweep. It defines

  get_config() -> ConfigDict       the base config every variant starts from
  VARIANTS: dict[str, dict]        variant name -> {dotted config key: value} overrides

and may define ``METRIC`` (the validation metric to rank by, default ``"val_bpb"``) and
``analyze(runs: dict[str, Run]) -> str``, returning Markdown for the experiment's own
measurements and findings. Its module docstring opens the report.

Each variant trains into ``RUNS_DIR/NAME/VARIANT``: a variant whose checkpoints reached
``train.steps`` is skipped, an interrupted one resumes from its latest checkpoint, and a folder
trained with a different config is an error. The comparison report (report.md and PNGs, with the
command, the commit and the machine) goes to ``RESULTS_DIR/NAME/`` (default: ``results/`` beside
the experiment file).
"""

import dataclasses
import difflib
import importlib.util
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from gptjax.errors import UserError, errors_of_file
from gptjax.runs import compare, provenance
from gptjax.runs.run import Run, flatten, load_run
from gptjax.runs.rundir import RunDir
from gptjax.training import ledger

VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
BUDGET_KEYS = ("train.steps", "train.batch_size", "model.block_size")


@dataclasses.dataclass(frozen=True)
class Experiment:
    """An experiment file, loaded.

    Attributes:
      name: the file's stem; runs go to ``RUNS_DIR/name/``.
      path: the experiment file.
      doc: its module docstring.
      get_config: builds the base config (a fresh one per call).
      variants: variant name -> dotted-key overrides, in the file's order.
      metric: the validation metric to rank by.
      analyze: optional hook returning Markdown from the loaded runs, by variant name.
    """

    name: str
    path: Path
    doc: str
    get_config: Callable[[], ml_collections.ConfigDict]
    variants: Mapping[str, Mapping[str, Any]]
    metric: str
    analyze: Callable[[dict[str, Run]], str] | None


def _import_file(path: Path, prefix: str):
    """Imports a user's Python file; an exception its code raises is a `UserError` naming it."""
    spec = importlib.util.spec_from_file_location(f"{prefix}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    with errors_of_file(path):
        spec.loader.exec_module(module)
    return module


def config_from_file(path: str | Path) -> ml_collections.ConfigDict:
    """Returns ``get_config()`` of a config file such as ``configs/tiny.py``.

    Experiment files build their base config this way, so the sweep starts from a config that
    ``python -m gptjax.main --config`` also runs.

    Raises:
      UserError: the file is missing, does not load, or its ``get_config()`` raises or returns
        something else than a ConfigDict.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} not found")
    get_config = getattr(_import_file(path, "gptjax_config"), "get_config", None)
    if not callable(get_config):
        raise UserError(f"config file {path} defines no get_config() returning a ConfigDict")
    with errors_of_file(path):
        config = get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise UserError(f"{path}: get_config() returned {type(config).__name__}, not a ConfigDict")
    return config


def load_experiment(path: str | Path) -> Experiment:
    """Imports an experiment file and checks its shape.

    Raises:
      UserError: the file is missing or does not load (a syntax error, an exception at import),
        lacks ``get_config`` or ``VARIANTS``, or names a variant with characters that do not
        belong in a folder name.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"experiment file {path} not found (expected e.g. experiments/heads.py)")
    module = _import_file(path, "gptjax_experiment")
    get_config = getattr(module, "get_config", None)
    variants = getattr(module, "VARIANTS", None)
    if not callable(get_config) or not isinstance(variants, Mapping) or not variants:
        raise UserError(
            f"{path} must define get_config() -> ConfigDict and VARIANTS, a non-empty dict "
            "mapping a variant name to its overrides, e.g. {'h1': {'model.n_head': 1}}."
        )
    for name, overrides in variants.items():
        if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name):
            raise UserError(f"{path}: variant name {name!r} must match {VARIANT_NAME.pattern}")
        if not isinstance(overrides, Mapping):
            raise UserError(f"{path}: variant {name!r} must map dotted keys to values")
    return Experiment(
        name=path.stem,
        path=path,
        doc=(module.__doc__ or "").strip(),
        get_config=get_config,
        variants=dict(variants),
        metric=getattr(module, "METRIC", "val_bpb"),
        analyze=getattr(module, "analyze", None),
    )


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Mapping[str, Any], where: str = "override"
) -> ml_collections.ConfigDict:
    """Sets dotted keys in ``config`` (in place), refusing keys the config does not declare.

    Args:
      config: the config to change; FieldReferences in it stay linked.
      overrides: ``{"model.n_head": 4, ...}``.
      where: names the overrides in error messages (e.g. the variant).

    Returns:
      ``config``.

    Raises:
      UserError: a key is not in the config, or its value has the wrong type.
    """
    known = flatten(json.loads(config.to_json()))
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.get(part)
            if not isinstance(node, ml_collections.ConfigDict):
                break
        if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"{where}: unknown config key {key!r}.{hint}")
        if isinstance(node[leaf], ml_collections.ConfigDict):
            raise UserError(f"{where}: {key!r} is a group; override its keys one by one")
        try:
            node[leaf] = value
        except TypeError as error:
            raise UserError(f"{where}: {key}={value!r} has the wrong type ({error})") from error
    return config


def variant_config(experiment: Experiment, variant: str) -> ml_collections.ConfigDict:
    """Returns the base config with the variant's overrides applied.

    Raises:
      UserError: the experiment's ``get_config()`` raises or returns no ConfigDict, or an
        override is refused (`apply_overrides`).
    """
    where = f"{experiment.path}: variant {variant!r}"
    with errors_of_file(experiment.path):
        config = experiment.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise UserError(
            f"{experiment.path}: get_config() returned {type(config).__name__}, not a ConfigDict"
        )
    return apply_overrides(config, experiment.variants[variant], where)


def train_variant(config: ml_collections.ConfigDict, workdir: Path) -> str:
    """Trains one variant into ``workdir`` unless it is finished there already.

    Returns:
      ``"skipped"`` (already at ``train.steps``), ``"resumed"`` or ``"trained"``.

    Raises:
      UserError: ``workdir`` holds a checkpointed run whose config differs in a key that cannot
        change on resume (``gptjax.training.run_config.SAFE_ON_RESUME`` lists those that can),
        or the trainer refuses it.
      TrainingDiverged: the variant diverged (``gptjax.training.loop``).
    """
    from gptjax.training import loop as train  # these pull in JAX: load them when needed
    from gptjax.training import run_config  # these pull in JAX: load them when needed

    run_dir = RunDir(workdir)
    step = run_dir.latest_step()
    if step is not None:
        # The trainer's own rule: a run directory is bound to its config once it holds a
        # checkpoint; then only cadence, length and sampling keys may change.
        try:
            run_config.check_resume_config(run_dir.read_config(), config)
        except ValueError as error:
            raise UserError(f"{workdir}: {error}") from error
    if step is not None and step >= config.train.steps:
        return "skipped"
    train.train_and_evaluate(config, workdir)
    return "trained" if step is None else "resumed"


def budget(config: Mapping[str, Any]) -> int:
    """Tokens a run trains on: ``train.steps`` steps of ``gptjax.training.ledger``'s count."""
    return ledger.tokens_seen(config, config["train.steps"])


def held_fixed(runs: Sequence[Run]) -> str:
    """Says what the variants share: every key not in the table, and the training budget."""
    budgets = {run.name: budget(run.config) for run in runs}
    product = " × ".join(k.split(".")[1] for k in BUDGET_KEYS)
    if len(set(budgets.values())) == 1:
        tokens = f"{next(iter(budgets.values())):,} tokens for every variant ({product})"
    else:
        tokens = ", ".join(f"{n}: {b:,}" for n, b in budgets.items()) + f" tokens ({product})"
    return f"Held fixed: every config key not in the table. Training budget: {tokens}."


def shared_config(runs: Sequence[Run]) -> str:
    """Lists the config the variants share, as a collapsed Markdown block."""
    differ = set(compare.differing_keys(runs))
    lines = [f"{k} = {v!r}" for k, v in runs[0].config.items() if k not in differ]
    body = "\n".join(lines)
    summary = "<summary>Config shared by every variant</summary>"
    return f"<details>{summary}\n\n```\n{body}\n```\n\n</details>"


def diverged_note(diverged: Mapping[str, str]) -> str:
    """Says which variants diverged and how, in Markdown ("" when none did)."""
    if not diverged:
        return ""
    lines = [f"- `{variant}`: {message}" for variant, message in diverged.items()]
    return "Diverged (the table shows their steps before it):\n\n" + "\n".join(lines)


def run_experiment(
    experiment: Experiment, runs_dir: Path, results_dir: Path, command: str
) -> tuple[dict[str, str], Path]:
    """Trains every variant (skipping finished ones), then writes the comparison report.

    Args:
      experiment: the loaded experiment file.
      runs_dir: variants train into ``runs_dir/experiment.name/variant``.
      results_dir: the report goes to ``results_dir/experiment.name/``.
      command: the command line, recorded in the report.

    A variant that diverges does not stop the sweep: its divergence is a result (a learning
    rate too high, say), the other variants still train, and the report names it and why.

    Returns:
      The status of each variant (``"trained"``, ``"resumed"``, ``"skipped"`` or
      ``"diverged"``), and the path of ``report.md``.

    Raises:
      UserError: a bad experiment file or override (before anything trains), or a variant's
        folder that cannot train (refused by the trainer or by `train_variant`).
    """
    from gptjax.training.loop import TrainingDiverged  # JAX: loaded when there is work to do

    configs = {v: variant_config(experiment, v) for v in experiment.variants}  # fail fast
    status, diverged = {}, {}
    for variant, config in configs.items():
        workdir = runs_dir / experiment.name / variant
        print(f"[{experiment.name}] {variant}: {workdir}", flush=True)
        try:
            status[variant] = train_variant(config, workdir)
        except TrainingDiverged as error:
            status[variant], diverged[variant] = "diverged", str(error)
            print(f"[{experiment.name}] {variant}: diverged: {error}", flush=True)
            continue
        print(f"[{experiment.name}] {variant}: {status[variant]}", flush=True)
    runs = {v: load_run(runs_dir / experiment.name / v) for v in experiment.variants}
    out = results_dir / experiment.name
    intro = "\n\n".join(
        [
            experiment.doc,
            provenance.describe(command, runs.values(), experiment.path),
            held_fixed(list(runs.values())),
            diverged_note(diverged),
        ]
    )
    with errors_of_file(experiment.path):
        extra = experiment.analyze(runs) if experiment.analyze else ""
    extra = f"{extra}\n\n{shared_config(list(runs.values()))}"
    title = f"Experiment: {experiment.name}"
    compare.write_report(list(runs.values()), out, experiment.metric, title, intro, extra)
    return status, out / "report.md"
