"""Run directories for the tests: real but tiny training runs, and hand-written ones.

The base is ``configs/tiny.py`` with the byte-level vocabulary (no BPE merges to learn), no
samples, and a model and budget small enough that a run takes seconds on a CPU. Most of that time
is compilation, so the two runs both test files need are trained once per test session.
"""

import json
from pathlib import Path

import ml_collections
import pytest
from PIL import Image

from gptjax.runs.experiment import apply_overrides, config_from_file

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
    "eval.device_batch_size": 4,
    "eval.val_tokens": 128,
    "eval.train_tokens": 64,
    "train.log_every": 1,
    "train.checkpoint_every": 2,
    "train.keep_checkpoints": 3,
    "sample.num_samples": 0,
}

# The two runs compare's tests read and the sweep tests resume: two keys differ.
PAIR = {"a": {"model.n_head": 2, "opt.lr": 3e-3}, "b": {"model.n_head": 4, "opt.lr": 1e-3}}

_trained: dict[str, dict[str, Path]] = {}


def tiny_config(overrides=None) -> ml_collections.ConfigDict:
    """Returns configs/tiny.py shrunk to a few-second run, with ``overrides`` applied last."""
    config = apply_overrides(config_from_file(TINY_CONFIG), TINY_OVERRIDES)
    return apply_overrides(config, overrides or {})


def train_tiny(workdir: Path, overrides=None) -> Path:
    """Trains a tiny run into ``workdir`` with the real trainer and returns ``workdir``."""
    from gptjax.training.loop import train_and_evaluate

    train_and_evaluate(tiny_config(overrides), workdir)
    return workdir


def trained_pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Returns the PAIR runs (name -> finished run directory), training them on first use.

    Callers must not modify the returned directories; copy them first.
    """
    if "pair" not in _trained:
        root = tmp_path_factory.mktemp("pair")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("GPTJAX_CACHE_DIR", str(root / "cache"))
            _trained["pair"] = {name: train_tiny(root / name, o) for name, o in PAIR.items()}
    return _trained["pair"]


def write_run(path, config, records, tail=""):
    """A run directory in the documented format: config.json and metrics.jsonl (then ``tail``)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    text = "".join(json.dumps(r) + "\n" for r in records) + tail
    (path / "metrics.jsonl").write_text(text)
    return path


def assert_valid_png(path):
    """A real PNG plot: a valid file, of plot size, with lines and text on it."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.width > 400 and image.height > 200
        # A plot has lines and text, not a blank canvas.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 20
