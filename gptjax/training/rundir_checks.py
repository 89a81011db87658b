"""What a training run checks in its run directory before it trains (tutorial part 9).

`gptjax.training.loop.train_and_evaluate` calls these first, under the run directory's lock:

- `finished_read_only`: a finished run on a disk it cannot write still prints its samples;
- `check_init_from`: the run ``train.init_from`` names exists, is trained, and has the shapes
  of the model being trained (fine-tuning);
- `bind_config`: the config is recorded, or checked against the one the run's checkpoints were
  trained with (a directory is bound to its config once it holds a checkpoint).
"""

import json
import os

import ml_collections

from gptjax.errors import UserError
from gptjax.model.config import GPTConfig
from gptjax.runs.rundir import RunDir, read_metrics
from gptjax.training.run_config import check_resume_config, config_diff


def finished_read_only(config: ml_collections.ConfigDict, run_dir: RunDir) -> bool:
    """On a run directory that cannot be written, a finished run still prints its samples.

    Returns:
      True when ``run_dir`` is read-only and has trained ``train.steps`` (nothing is written:
      the saved samples are printed); False otherwise, and the trainer goes on (and refuses a
      read-only directory when it takes the lock).

    Raises:
      UserError: the config differs from the run's in a key that cannot change on resume.
    """
    if not run_dir.is_run or os.access(run_dir.path, os.W_OK):
        return False
    step = run_dir.latest_step()
    if step is None or step < config.train.steps:
        return False
    check_resume_config(run_dir.read_config(), config)
    print(
        f"{run_dir.path} already finished {step} steps (it is read-only: nothing is written); "
        "samples:"
    )
    print(run_dir.read_samples(), end="", flush=True)
    return True


# The model keys that decide the parameters' shapes: they must match the run fine-tuned from.
_SHAPE_KEYS = (
    "vocab_size", "block_size", "n_layer", "n_head", "n_embd", "mlp_ratio", "bias",
    "pos_encoding", "norm", "tie_embeddings",
)  # fmt: skip


def check_init_from(config: ml_collections.ConfigDict, model_config: GPTConfig) -> RunDir | None:
    """The run ``train.init_from`` names (None when it is ''), checked before anything runs.

    Raises:
      UserError: it is not a run directory with a checkpoint, or its model has other shapes.
    """
    if not config.train.init_from:
        return None
    name = f"config.train.init_from={config.train.init_from!r}"
    source = RunDir(config.train.init_from)
    try:
        theirs = source.read_model_config()
    except UserError as error:
        raise UserError(f"{name} is not a run to start from: {error}") from None
    changed = [k for k in _SHAPE_KEYS if getattr(theirs, k) != getattr(model_config, k)]
    if changed:
        fix = " ".join(f"--config.model.{k}={getattr(theirs, k)!r}" for k in changed)
        raise UserError(
            f"{name} has a model of other shapes: "
            + ", ".join(f"model.{k} is {getattr(theirs, k)!r} there" for k in changed)
            + f"; set {fix}."
        )
    if source.latest_step() is None:
        raise UserError(f"{name} has no checkpoint yet; train it first, or give another run.")
    return source


def bind_config(config: ml_collections.ConfigDict, run_dir: RunDir) -> None:
    """Records ``config`` in the run directory, or checks it against the run's checkpoints.

    A directory is bound to its config once it holds a checkpoint: then only the keys of
    ``run_config.SAFE_ON_RESUME`` may change, and ``config.json`` is rewritten only when there
    are steps left to train (a lowered ``train.steps`` leaves it describing the checkpoints).
    Before the first checkpoint, an earlier attempt (one that failed on its corpus, its
    tokenizer, or diverged at once) left nothing to resume: its files go and the new config
    replaces the old.

    Raises:
      UserError: the run has a checkpoint and a key outside SAFE_ON_RESUME changed.
    """
    current = json.loads(config.to_json())
    step = run_dir.latest_step()
    if step is None:
        if run_dir.is_run:
            lines = [
                f"  {k}: {a!r} -> {b!r}" for k, a, b in config_diff(run_dir.read_config(), current)
            ]
            removed = run_dir.discard_unsaved_attempt()
            if lines:
                print(
                    f"{run_dir.path} has no checkpoint yet, so this config replaces the one of "
                    "the earlier attempt:\n" + "\n".join(lines)
                )
            if removed:
                print(f"removed the earlier attempt's {', '.join(removed)}")
        run_dir.write_config(current)
        return
    read_metrics(run_dir.metrics_path)  # a damaged line is refused before anything is written
    if run_dir.is_run:
        changes = check_resume_config(run_dir.read_config(), config)
        if changes:
            print("config changes since this run started (safe to resume):\n" + "\n".join(changes))
    if step < config.train.steps or not run_dir.is_run:
        run_dir.write_config(current)
