"""Tests for gptjax.runs.rundir: the layout, each file's round trip, resuming the metrics, reading.

Training writes every file through `RunDir`; tests/training/test_loop.py checks a real run's
directory end to end. These check each file on its own, in tmp_path.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_runs import PAIR, train_tiny, trained_pair

from gptjax import tokenizer as tk
from gptjax.errors import UserError
from gptjax.runs.experiment import config_from_file
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
    new_keys = {"activation": "gelu", "qk_norm": False}
    want = {"seed": 0, "model": {"n_head": 2, "kernels": "fast", **new_keys}}
    assert upgrade_config(old) == want
    assert old["model"]["attention"] == "dot_product"  # the argument is left as it was
    current = {"seed": 0, "model": {"n_head": 2, "kernels": "plain", **new_keys}}
    assert upgrade_config(current) == current
    assert upgrade_config({"train": {"steps": 3}}) == {"train": {"steps": 3}}
    # Runs saved before the optimizer's choices and eval.at_start trained with AdamW, the
    # cosine schedule, and an evaluation at step 0.
    before = {"opt": {"lr": 1e-3}, "eval": {"device_batch_size": 8}}
    after = upgrade_config(before)
    assert after["opt"] == {
        "lr": 1e-3, "optimizer": "adamw", "schedule": "cosine", "cooldown": 1.0,
        "muon_lr": 0.02, "muon_momentum": 0.95,
    }  # fmt: skip
    assert after["eval"] == {"device_batch_size": 8, "at_start": True}
    tiny = json.loads(config_from_file(Path(__file__).parents[2] / "configs/tiny.py").to_json())
    assert upgrade_config(tiny) == tiny  # a current config has them all already
    # Every reader goes through it: RunDir.read_config, hence load_run and load_for_inference.
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert RunDir(tmp_path).read_config()["model"] == want["model"]
    assert load_run(tmp_path).config == {
        "seed": 0, "model.n_head": 2, "model.kernels": "fast", "model.activation": "gelu",
        "model.qk_norm": False,
    }  # fmt: skip


def test_tokenizer_and_samples(tmp_path):
    run_dir = RunDir(tmp_path)
    tok = tk.train(["some text to learn a few merges from " * 5], vocab_size=265, pattern="gpt4")
    run_dir.save_tokenizer(tok)
    assert run_dir.load_tokenizer() == tok
    assert run_dir.read_samples() == ""
    text = run_dir.write_samples(["The first", "The second\n"])
    assert text == "--- sample 1 ---\nThe first\n--- sample 2 ---\nThe second\n\n"
    assert run_dir.samples_path.read_text(encoding="utf-8") == text == run_dir.read_samples()
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
    # (with the model keys added since, at the values such a run trained with)
    new_keys = {"model.activation": "gelu", "model.qk_norm": False}
    assert run.config == {"seed": 0, "model.n_head": 2, **new_keys}
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


def _files(path: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``path``: its bytes and modification time, to compare before and after.

    ``.lock`` is left out: each trainer that takes the lock writes its pid there, by design.
    """
    return {
        str(p.relative_to(path)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_a_torn_last_line_is_dropped_on_resume_and_the_records_before_kept(
    tmp_path, tmp_path_factory, monkeypatch
):
    # A run killed while appending a record, after its step-2 checkpoint: the resume drops the
    # torn line, keeps every earlier record byte for byte and logs steps 3 and 4 once each.
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    workdir = tmp_path / "run"
    shutil.copytree(trained_pair(tmp_path_factory)["a"], workdir)
    shutil.rmtree(workdir / "checkpoints" / "4")
    lines = (workdir / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    kept = b"".join(line for line in lines if json.loads(line)["step"] <= 2)
    (workdir / "metrics.jsonl").write_bytes(kept + b'{"step": 3, "train_lo')
    train_tiny(workdir, PAIR["a"])
    after = (workdir / "metrics.jsonl").read_bytes()
    assert after.startswith(kept)
    assert [json.loads(line)["step"] for line in after.splitlines()] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "tail",
    [b'{"step": 6, "train_lo', b'{"step": 6, "text": "caf\xc3', b"\x00\x00\x00\x00", b'{"st\n\n'],
    ids=["json", "utf-8", "zeros", "blank-lines-after"],
)
def test_every_kind_of_torn_last_line_is_dropped(tmp_path, tail):
    run_dir = RunDir(tmp_path)
    good = b"".join(json.dumps({"step": s, "train_loss": 1.0 / s}).encode() + b"\n" for s in (1, 2))
    run_dir.metrics_path.write_bytes(good + tail)
    assert [r["step"] for r in read_metrics(run_dir.metrics_path)] == [1, 2]
    run_dir.metrics_writer(resume_step=2).close()
    assert run_dir.metrics_path.read_bytes() == good


@pytest.mark.parametrize(
    "line, message",
    [
        (b'{"step": 2, "train_lo', r"metrics.jsonl:2 is not valid JSON \(Unterminated string"),
        (b'{"train_loss": 1.0}', r'metrics.jsonl:2 is not a metrics record .*integer "step"'),
        (b"[2, 3]", r"metrics.jsonl:2 is not a metrics record"),
        (b'{"step": "2"}', r"metrics.jsonl:2 is not a metrics record"),
    ],
)
def test_a_damaged_line_before_the_last_is_refused_naming_it_and_nothing_changes(
    tmp_path, line, message
):
    run_dir = RunDir(tmp_path)
    lines = [b'{"step": 1}', line, b'{"step": 3}']
    run_dir.metrics_path.write_bytes(b"\n".join(lines) + b"\n")
    before = _files(tmp_path)
    for read in (lambda: read_metrics(run_dir.metrics_path), lambda: run_dir.metrics_writer(1)):
        with pytest.raises(UserError, match=message) as error:
            read()
        assert "\n" not in str(error.value) and str(run_dir.metrics_path) in str(error.value)
        assert "delete or repair that line" in str(error.value)
    assert _files(tmp_path) == before
    # The advice, followed: without that line the run resumes.
    run_dir.metrics_path.write_bytes(b"\n".join([lines[0], lines[2]]) + b"\n")
    run_dir.metrics_writer(resume_step=3).close()
    assert [r["step"] for r in read_metrics(run_dir.metrics_path)] == [1, 3]


def test_a_crash_while_the_metrics_are_cut_back_loses_no_record(tmp_path, monkeypatch):
    run_dir = RunDir(tmp_path)
    run_dir.metrics_path.write_text("".join(f'{{"step": {s}}}\n' for s in range(1, 6)))
    before = run_dir.metrics_path.read_bytes()

    def crash_half_way(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", crash_half_way)
    with pytest.raises(KeyboardInterrupt):
        run_dir.metrics_writer(resume_step=2)
    assert run_dir.metrics_path.read_bytes() == before


def test_a_workdir_that_is_a_file_or_inside_one_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "notes.txt").write_text("the user's own file")
    before = _files(tmp_path)
    cases = [
        (tmp_path / "notes.txt", "notes.txt exists and is not a folder"),
        (tmp_path / "notes.txt" / "run", "inside .*notes.txt, which is a file"),
    ]
    for path, message in cases:
        for take in (RunDir(path).create, lambda p=path: RunDir(p).lock().__enter__()):
            with pytest.raises(UserError, match=message):
                take()
    assert _files(tmp_path) == before
    # The advice, followed: a new path is a run directory.
    with RunDir(tmp_path / "run").lock():
        pass


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"model": {"n_head": 2', r"config.json is not valid JSON \(Expecting"),
        (b"\xff\xfe{}", r"config.json is not valid JSON \('utf-8' codec"),
        ("[1, 2]", "config.json holds a JSON list, not an object"),
    ],
)
def test_a_damaged_config_or_run_info_names_its_file(tmp_path, text, message):
    run_dir = RunDir(tmp_path)
    run_dir.write_config({"seed": 0})
    for path, read in [
        (run_dir.config_path, run_dir.read_config),
        (run_dir.run_info_path, run_dir.read_run_info),
    ]:
        good = path.read_bytes() if path.exists() else b"{}"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(UserError, match=message.replace("config.json", path.name)) as error:
            read()
        assert str(path) in str(error.value) and "\n" not in str(error.value)
        with pytest.raises(UserError, match=path.name):
            load_run(tmp_path)
        path.write_bytes(good)
    # run_info.json's advice, followed: without it the run reads as one that has not written it.
    run_dir.run_info_path.write_text("{")
    with pytest.raises(UserError, match="repair or delete it"):
        load_run(tmp_path)
    run_dir.run_info_path.unlink()
    assert load_run(tmp_path).info == {}


def test_read_config_says_what_the_path_is_when_it_is_not_a_run(tmp_path):
    (tmp_path / "file").write_text("")
    for path, message in [
        (tmp_path / "missing", "missing does not exist: give the --workdir"),
        (tmp_path / "file", "file is a file, not a run directory: give the --workdir"),
        (tmp_path, "not a run directory: it has no config.json"),
    ]:
        with pytest.raises(UserError, match=message):
            RunDir(path).read_config()


def test_read_model_config(tmp_path):
    run_dir = RunDir(tmp_path)
    model = {"vocab_size": 260, "block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 32}
    run_dir.write_config({"seed": 0, "model": model})
    config = run_dir.read_model_config()
    assert (config.vocab_size, config.block_size, config.n_head) == (260, 16, 2)
    for saved, message in [
        ({"seed": 0}, "config.json has no model group; repair it, or delete it and rerun"),
        ({"model": 3}, "config.json has no model group"),
        ({"model": {**model, "n_hed": 2}}, "its model group is not valid .*n_hed"),
        ({"model": {**model, "n_head": 3}}, "its model group is not valid .*n_head=3"),
    ]:
        run_dir.write_config(saved)
        with pytest.raises(UserError, match=message):
            run_dir.read_model_config()


def test_a_missing_or_damaged_tokenizer_is_a_user_error(tmp_path):
    run_dir = RunDir(tmp_path)
    with pytest.raises(UserError, match="tokenizer.bpe is missing"):
        run_dir.load_tokenizer()
    run_dir.save_tokenizer(tk.train(["some text " * 5], vocab_size=262, pattern="gpt4"))
    run_dir.tokenizer_path.write_text(run_dir.tokenizer_path.read_text()[:40])
    with pytest.raises(UserError, match="tokenizer.bpe"):
        run_dir.load_tokenizer()


def test_a_damaged_config_json_is_refused_and_its_advice_works(tmp_path, tmp_path_factory):
    # The advice of read_config, followed: delete config.json, rerun the trainer with the run's
    # config; it writes config.json again, and the run reads as before.
    workdir = tmp_path / "run"
    shutil.copytree(trained_pair(tmp_path_factory)["a"], workdir)
    good = RunDir(workdir).read_config()
    (workdir / "config.json").write_text('{"seed": 0,')
    before = _files(workdir)
    with pytest.raises(UserError, match="config.json is not valid JSON") as error:
        train_tiny(workdir, PAIR["a"])
    assert f"delete it and rerun `python -m gptjax.main --workdir {workdir}`" in str(error.value)
    assert _files(workdir) == before
    (workdir / "config.json").unlink()
    train_tiny(workdir, PAIR["a"])
    assert RunDir(workdir).read_config() == good


def test_a_resume_refused_for_a_damaged_metrics_line_changes_nothing(tmp_path, tmp_path_factory):
    workdir = tmp_path / "run"
    shutil.copytree(trained_pair(tmp_path_factory)["a"], workdir)
    shutil.rmtree(workdir / "checkpoints" / "4")
    lines = (workdir / "metrics.jsonl").read_text().splitlines(keepends=True)
    (workdir / "metrics.jsonl").write_text("".join([lines[0], lines[1][:20], "\n", *lines[2:]]))
    before = _files(workdir)
    with pytest.raises(UserError, match=r"metrics.jsonl:2 is not valid JSON"):
        train_tiny(workdir, PAIR["a"])
    assert _files(workdir) == before
