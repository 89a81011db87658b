"""Real but tiny training runs for the compare and experiment tests (a few steps, a tiny model).

The base is ``configs/tiny.py`` with the byte-level vocabulary (no BPE merges to learn) and a
model and budget small enough that a run takes seconds on a CPU.
"""

from pathlib import Path

import ml_collections

from gptjax.experiment import apply_overrides, config_from_file

TINY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.py"

TINY_OVERRIDES = {
    "tokenizer.vocab_size": 260,
    "model.block_size": 16,
    "model.n_layer": 1,
    "model.n_head": 2,
    "model.n_embd": 32,
    "opt.warmup_steps": 1,
    "train.steps": 4,
    "train.batch_size": 4,
    "train.steps_per_call": 1,
    "train.eval_every": 2,
    "train.eval_batches": 2,
    "train.log_every": 1,
    "train.checkpoint_every": 2,
    "train.keep_checkpoints": 3,
    "sample.max_new_tokens": 8,
    "sample.num_samples": 1,
}


def tiny_config(overrides=None) -> ml_collections.ConfigDict:
    """Returns configs/tiny.py shrunk to a few-second run, with ``overrides`` applied last."""
    config = apply_overrides(config_from_file(TINY_CONFIG), TINY_OVERRIDES)
    return apply_overrides(config, overrides or {})


def train_tiny(workdir: Path, overrides=None) -> Path:
    """Trains a tiny run into ``workdir`` with the real trainer and returns ``workdir``."""
    from gptjax.train import train_and_evaluate

    train_and_evaluate(tiny_config(overrides), workdir)
    return workdir
