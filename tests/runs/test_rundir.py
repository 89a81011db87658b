"""Tests for gptjax.runs.rundir: the layout, each file's round trip, resuming the metrics, reading.

Training writes every file through `RunDir`; tests/training/test_loop.py checks a real run's
directory end to end. These check each file on its own, in tmp_path.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from gptjax import tokenizer as tk
from gptjax.runs.rundir import RunDir, flatten, load_run, read_metrics, upgrade_config


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
    with pytest.raises(ValueError, match="not a run directory: it has no config.json"):
        RunDir(tmp_path).read_config()


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
        "from gptjax.runs.rundir import RunDir, load_run\n"
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
