"""Tests of ``python -m gptjax.evaluate``: the trainer's own validation numbers from a checkpoint,
any text, JSON out, and one line for each mistake."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_runs import trained_pair

from gptjax import evaluate
from gptjax.runs.rundir import read_metrics

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return trained_pair(tmp_path_factory)["a"]


def test_the_same_numbers_as_the_trainer_on_its_validation_split(run):
    last = [r for r in read_metrics(run / "metrics.jsonl") if "val_loss" in r][-1]
    figures = evaluate.evaluate_run(run)
    assert figures["step"] == last["step"]
    assert figures["loss"] == pytest.approx(last["val_loss"], rel=1e-6)
    assert figures["bpb"] == pytest.approx(last["val_bpb"], rel=1e-6)
    assert figures["perplexity"] == pytest.approx(last["val_perplexity"], rel=1e-6)
    # an earlier checkpoint gives the trainer's number for that step
    first = [r for r in read_metrics(run / "metrics.jsonl") if r["step"] == 2][0]
    assert evaluate.evaluate_run(run, step=2)["loss"] == pytest.approx(first["val_loss"], rel=1e-6)


def test_the_micro_batch_size_does_not_change_the_number(run):
    a = evaluate.evaluate_run(run, tokens=0, device_batch_size=1)
    b = evaluate.evaluate_run(run, tokens=0, device_batch_size=64)
    assert a["tokens"] == b["tokens"] > 128  # the whole split, not the run's budget of 128
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)


def test_the_command_prints_and_writes_json_for_any_text(run, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 20, encoding="utf-8")
    out = tmp_path / "eval.json"
    done = subprocess.run(
        [sys.executable, "-m", "gptjax.evaluate", "--workdir", str(run), "--input", str(text),
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["text"] == str(text) and record["step"] == 4
    assert f"loss {record['loss']:.4f} nats/token" in done.stdout
    # byte-level tokens: every character of this ASCII text is one target but the first
    assert record["tokens"] == len(text.read_text()) - 1
    assert record["bpb"] == pytest.approx(record["loss"] / 0.6931471805599453, rel=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--step", "3"], "no checkpoint at step 3"),
        (["--tokens", "-1"], "--tokens must be >= 0"),
        (["--device-batch-size", "0"], "--device-batch-size must be >= 1"),
        (["--out", "{tmp}/missing/eval.json"], "does not exist; create it first"),
        (["--out", "{tmp}"], "is a folder"),
        (["--input", "{tmp}/short.txt"], "shorter than one window"),
        (["--corpus", "no_such_corpus"], "no such file, folder or glob match"),
    ],
)
def test_mistakes_are_one_line_and_exit_code_2(run, tmp_path, capsys, args, message):
    (tmp_path / "short.txt").write_text("abc", encoding="utf-8")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--workdir", str(run), *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_a_folder_that_is_not_a_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--workdir", str(tmp_path)])
    assert exit_.value.code == 2 and "not a run directory" in capsys.readouterr().err
