"""configs/speedrun_char.py: the task stays nanoGPT's, whatever the training changes."""

from pathlib import Path

import numpy as np
import pytest

from gptjax.runs.experiment import config_from_file
from gptjax.runs.rundir import RunDir, read_metrics
from gptjax.training import evaluation
from gptjax.training.loop import train_and_evaluate
from gptjax.training.prepare import prepare_data
from gptjax.training.run_config import check_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# What the track fixes (issue text and experiments/speedrun/README.md): nanoGPT's data, split,
# tokenization, evaluation context and coverage.
TASK = {
    "data.corpus": "tinyshakespeare",
    "data.val_fraction": 0.1,
    "tokenizer.path": "",  # trained for the run: with vocab 260 and no merges, the 256 bytes
    "tokenizer.vocab_size": 260,
    "tokenizer.pattern": "none",
    "tokenizer.specials": "",
    "model.vocab_size": 260,
    "model.block_size": 64,  # the evaluation's context: 64-token windows
    "eval.val_tokens": 0,  # every target of the validation split
}


def _get(config, dotted: str):
    group, key = dotted.split(".")
    return config[group][key]


@pytest.mark.parametrize("name", ["speedrun_char", "shakespeare_char"])
def test_the_speedrun_keeps_nanogpts_task(name):
    config = config_from_file(CONFIGS / f"{name}.py")
    assert {key: _get(config, key) for key in TASK} == TASK
    check_config(config)


def test_the_split_and_the_windows_are_nanogpts(data_file, tmp_path, monkeypatch):
    # nanoGPT's prepare.py: n characters, train = data[:int(n*0.9)], val = data[int(n*0.9):],
    # one id per character. Ours, from the speedrun's own config: the same characters as bytes.
    monkeypatch.setenv("GPTJAX_DATA_DIR", str(data_file("tinyshakespeare.txt").parent))
    text = data_file("tinyshakespeare.txt").read_text(encoding="utf-8")
    config = config_from_file(CONFIGS / "speedrun_char.py")
    model_config = check_config(config)
    prepared = prepare_data(config, model_config, RunDir(tmp_path))
    cut = int(len(text) * 0.9)
    assert (len(text) - cut, cut) == (111_540, 1_003_854)  # nanoGPT prints these two counts
    np.testing.assert_array_equal(prepared.val_ids, np.frombuffer(text[cut:].encode(), np.uint8))
    np.testing.assert_array_equal(prepared.train_ids, np.frombuffer(text[:cut].encode(), np.uint8))
    # Every one of the 111,539 targets is counted once, each with at most 63 tokens before it.
    windows = evaluation.windows(len(prepared.val_ids), model_config.block_size)
    assert windows.tokens == len(prepared.val_ids) - 1 == 111_539
    covered = np.zeros(len(prepared.val_ids), int)
    for start, skip in zip(windows.starts, windows.skip, strict=True):
        covered[start + 1 + skip : start + 1 + model_config.block_size] += 1
    assert covered[0] == 0 and (covered[1:] == 1).all()


def test_the_speedrun_config_trains_with_its_switches(data_file, tmp_path, monkeypatch):
    # Four steps of the config as it is (Muon, RoPE, the wsd schedule, no evaluation at step 0),
    # ending with the one evaluation over the whole split.
    monkeypatch.setenv("GPTJAX_DATA_DIR", str(data_file("tinyshakespeare.txt").parent))
    config = config_from_file(CONFIGS / "speedrun_char.py")
    config.train.steps, config.train.steps_per_call = 4, 2
    config.train.eval_every = config.train.checkpoint_every = 4
    train_and_evaluate(config, str(tmp_path))
    rows = read_metrics(RunDir(tmp_path).metrics_path)
    evaluated = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in evaluated] == [4]  # none at step 0
    assert 4.0 < evaluated[0]["val_loss"] < 5.6  # 4 steps below ln(260) = 5.56, far from trained
    assert RunDir(tmp_path).checkpoint_steps() == [4]
