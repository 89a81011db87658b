"""Tests for gptjax.runs.rundir: the layout, each file's round trip, resuming the metrics, reading.

Training writes every file through `RunDir`; tests/training/test_loop.py checks a real run's
directory end to end. These check each file on its own, in tmp_path.
"""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gptjax import tokenizer as tk
from gptjax.errors import UserError
from gptjax.runs.run import flatten, load_run
from gptjax.runs.rundir import RunDir, read_metrics, upgrade_config

REPO = Path(__file__).resolve().parents[2]


def test_the_layout_and_nothing_written_until_asked(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    names = {
        run_dir.config_path: "config.json",
        run_dir.run_info_path: "run_info.json",
        run_dir.tokenizer_path: "tokenizer.bpe",
        run_dir.metrics_path: "metrics.jsonl",
        run_dir.tb_dir: "tb",
        run_dir.checkpoint_dir: "checkpoints",
        run_dir.samples_path: "samples.txt",
    }
    for path, name in names.items():
        assert path == tmp_path / "run" / name
    assert not (tmp_path / "run").exists() and not run_dir.is_run
    assert run_dir.latest_step() is None
    run_dir.create()
    assert list((tmp_path / "run").iterdir()) == [] and run_dir.latest_step() is None


def test_config_and_run_info_round_trip_atomically(tmp_path):
    run_dir = RunDir(tmp_path)
    config = {"train": {"steps": 5}, "seed": 0, "sample": {"prompt": "Le café "}}
    run_dir.write_config(config)
    assert run_dir.is_run and run_dir.read_config() == config
    text = run_dir.config_path.read_text(encoding="utf-8")
    assert text.startswith('{\n  "sample"') and text.endswith("}\n")  # sorted, indented
    assert run_dir.read_run_info() == {}
    run_dir.write_run_info({"param_count": 123, "resumed_from": None})
    run_dir.write_run_info({"param_count": 123, "resumed_from": 8})  # replaced, not appended
    assert run_dir.read_run_info() == {"param_count": 123, "resumed_from": 8}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "run_info.json"]


def test_a_folder_without_config_is_not_a_run(tmp_path):
    with pytest.raises(UserError, match="not a run directory: it has no config.json"):
        RunDir(tmp_path).read_config()


# Takes the lock of the folder argv[1], says so, and on a line of stdin dies holding it: os._exit
# runs no `with` exit and closes nothing by hand, so only the kernel can release the lock.
_HOLD_THE_LOCK = """
import os, sys
from gptjax.runs.rundir import RunDir

with RunDir(sys.argv[1]).lock():
    print("locked", flush=True)
    sys.stdin.readline()
    os._exit(0)
"""


@pytest.mark.parametrize("death", ["os._exit", "SIGKILL"])
def test_the_lock_is_exclusive_across_processes_and_dies_with_its_holder(tmp_path, death):
    run_dir = RunDir(tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_LOCK, str(run_dir.path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "locked\n"
        written = run_dir.lock_path.read_bytes()
        holder_pattern = (
            rf"pid {holder.pid} on {re.escape(socket.gethostname())}, "
            r"since 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC"
        )
        assert re.fullmatch(holder_pattern + "\n", written.decode())
        message = (
            rf"another training run holds {re.escape(str(run_dir.path))} \({holder_pattern}\); "
            "wait for it to finish or stop it, or use another --workdir"
        )
        with pytest.raises(UserError, match=f"^{message}$"), RunDir(run_dir.path).lock():
            pytest.fail("took a lock that another process holds")
        assert run_dir.lock_path.read_bytes() == written  # refused without writing anything
        if death == "SIGKILL":
            holder.kill()
        else:
            holder.stdin.write("\n")
            holder.stdin.flush()
        holder.wait(timeout=60)
    finally:
        holder.kill()
        holder.wait()
    # The holder died holding it: the lock is free, and this process now holds it.
    with run_dir.lock():
        assert run_dir.lock_path.read_text().startswith(f"pid {os.getpid()} on ")
        # Locks belong to open files: even this process cannot take it a second time.
        with pytest.raises(UserError, match=f"pid {os.getpid()} on "), run_dir.lock():
            pass
    with run_dir.lock():  # released at the end of the block
        pass


def test_discarding_an_attempt_without_checkpoint_keeps_only_the_config(tmp_path):
    run_dir = RunDir(tmp_path)
    run_dir.write_config({"seed": 0})
    run_dir.write_run_info({"param_count": 7})
    tok = tk.train(["some text to learn a few merges from " * 5], vocab_size=262, pattern="gpt4")
    run_dir.save_tokenizer(tok)
    writer = run_dir.metrics_writer()
    writer.write(0, {"val_loss": 5.0})
    writer.close()
    run_dir.write_samples(["The end"])
    (tmp_path / "notes.txt").write_text("the user's own file")
    removed = run_dir.discard_unsaved_attempt()
    assert sorted(removed) == [
        "metrics.jsonl", "run_info.json", "samples.txt", "tb", "tokenizer.bpe"
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "notes.txt"]
    assert run_dir.discard_unsaved_attempt() == []


def test_a_config_saved_with_model_attention_reads_as_the_fast_kernels(tmp_path):
    old = {"seed": 0, "model": {"n_head": 2, "attention": "dot_product"}}
    assert upgrade_config(old) == {"seed": 0, "model": {"n_head": 2, "kernels": "fast"}}
    assert old["model"]["attention"] == "dot_product"  # the argument is left as it was
    current = {"seed": 0, "model": {"n_head": 2, "kernels": "plain"}}
    assert upgrade_config(current) == current
    assert upgrade_config({"train": {"steps": 3}}) == {"train": {"steps": 3}}
    # Every reader goes through it: RunDir.read_config, hence load_run and load_for_inference.
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert RunDir(tmp_path).read_config()["model"] == {"n_head": 2, "kernels": "fast"}
    assert load_run(tmp_path).config == {"seed": 0, "model.n_head": 2, "model.kernels": "fast"}


def test_tokenizer_and_samples(tmp_path):
    run_dir = RunDir(tmp_path)
    tok = tk.train(["some text to learn a few merges from " * 5], vocab_size=265, pattern="gpt4")
    run_dir.save_tokenizer(tok)
    assert run_dir.load_tokenizer() == tok
    text = run_dir.write_samples(["The first", "The second\n"])
    assert text == "--- sample 1 ---\nThe first\n--- sample 2 ---\nThe second\n\n"
    assert run_dir.samples_path.read_text(encoding="utf-8") == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.txt", "tokenizer.bpe"]


def test_metrics_writer_writes_plain_json_and_tensorboard(tmp_path):
    run_dir = RunDir(tmp_path)
    writer = run_dir.metrics_writer()
    writer.write(1, {"train_loss": np.float32(2.5), "lr": np.float64(0.1), "tokens_seen": 64})
    writer.write(np.int64(2), {"val_loss": float("nan"), "mfu": np.float32(np.inf)})
    writer.close()
    assert read_metrics(run_dir.metrics_path) == [
        {"step": 1, "train_loss": 2.5, "lr": 0.1, "tokens_seen": 64},
        {"step": 2, "val_loss": "nan", "mfu": "inf"},  # JSON has no NaN
    ]
    assert list(run_dir.tb_dir.glob("events.out.tfevents.*"))


def test_metrics_writer_on_resume_drops_what_came_after_the_checkpoint(tmp_path):
    run_dir = RunDir(tmp_path)
    writer = run_dir.metrics_writer()
    for step in range(1, 6):
        writer.write(step, {"train_loss": 1.0 / step})
    writer.close()
    # A run killed while appending step 6 leaves half a line.
    with open(run_dir.metrics_path, "a", encoding="utf-8") as f:
        f.write('{"step": 6, "train_lo')
    writer = run_dir.metrics_writer(resume_step=3)
    assert [r["step"] for r in read_metrics(run_dir.metrics_path)] == [1, 2, 3]
    writer.write(4, {"train_loss": 0.2})
    writer.close()
    records = read_metrics(run_dir.metrics_path)
    assert [(r["step"], r["train_loss"]) for r in records] == [
        (1, 1.0),
        (2, 0.5),
        (3, 1.0 / 3),  # kept exactly
        (4, 0.2),
    ]


def test_load_run_reads_config_info_and_metrics(tmp_path):
    run_dir = RunDir(tmp_path)
    run_dir.write_config({"seed": 0, "model": {"n_head": 2}})
    writer = run_dir.metrics_writer()
    writer.write(2, {"val_bpb": 2.5})
    writer.close()
    run = load_run(tmp_path)
    assert (run.path, run.name, run.info) == (tmp_path, tmp_path.name, {})
    assert run.config == {"seed": 0, "model.n_head": 2}
    assert run.series("val_bpb") == ([2], [2.5]) and run.last("val_bpb") == 2.5
    run_dir.write_run_info({"param_count": 7})
    assert load_run(tmp_path).info == {"param_count": 7}


def test_reading_runs_imports_neither_jax_nor_orbax(tmp_path):
    # `python -m gptjax.compare` only reads: the slow imports stay inside the writing methods.
    RunDir(tmp_path).write_config({"seed": 0})
    code = (
        "import sys\n"
        "import gptjax.compare\n"
        "from gptjax.runs.rundir import RunDir\nfrom gptjax.runs.run import load_run\n"
        f"load_run({str(tmp_path)!r}); RunDir({str(tmp_path)!r}).latest_step()\n"
        "print(sorted({'jax', 'orbax', 'tensorboardX'} & {m.split('.')[0] for m in sys.modules}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_flatten():
    assert flatten({"seed": 0, "model": {"n_head": 4, "sub": {"k": [1]}}}) == {
        "seed": 0,
        "model.n_head": 4,
        "model.sub.k": (1,),
    }
