"""Tests of gptjax.training.loop: a real run, exact resume across processes, stops, bad input,
one trainer per run directory, configs bound by the first checkpoint, no NaN ever saved."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax import tokenizer as tk
from gptjax.errors import UserError
from gptjax.runs import checkpoint, rundir
from gptjax.runs.rundir import RunDir, read_metrics
from gptjax.training import loop as train

REPO = Path(__file__).resolve().parents[2]
# A tiny run: the tiny config with a smaller model, vocabulary and step count.
OVERRIDES = {
    "tokenizer.vocab_size": 270,
    "model.n_layer": 1,
    "model.n_embd": 32,
    "model.n_head": 2,
    "model.block_size": 16,
    "model.dropout": 0.1,
    "train.steps": 16,
    "train.batch_size": 4,
    "train.steps_per_call": 4,
    "train.eval_every": 8,
    "eval.device_batch_size": 4,
    "eval.val_tokens": 128,
    "eval.train_tokens": 64,
    "train.log_every": 1,
    "train.checkpoint_every": 100,
    "sample.max_new_tokens": 8,
    "sample.num_samples": 1,
}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))


def _config_file(tmp_path: Path, **extra) -> Path:
    """A config file (for the CLI) that is configs/tiny.py with OVERRIDES applied."""
    path = tmp_path / "small.py"
    path.write_text(
        textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("tiny", {str(REPO / "configs/tiny.py")!r})
        tiny = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tiny)

        def get_config():
            c = tiny.get_config()
            for key, value in { ({**OVERRIDES, **extra})!r}.items():
                group, name = key.split(".")
                c[group][name] = value
            return c
        """)
    )
    return path


def _config(tmp_path, **extra):
    namespace = {}
    exec(_config_file(tmp_path, **extra).read_text(), namespace)  # noqa: S102
    return namespace["get_config"]()


def _main_args(tmp_path, workdir, *flags) -> list[str]:
    return ["--config", str(_config_file(tmp_path)), "--workdir", str(workdir), *flags]


def _run_main(tmp_path, workdir, *flags) -> subprocess.CompletedProcess:
    """``python -m gptjax.main`` on `_config_file` (then ``flags``) in a new process."""
    return subprocess.run(
        [sys.executable, "-m", "gptjax.main", *_main_args(tmp_path, workdir, *flags)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def _losses(workdir):
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train_loss"] for r in rows if "train_loss" in r}, rows


def test_call_plan_stops_on_every_evaluation_and_checkpoint_step():
    assert train.call_plan(0, 10, 4, (5,)) == [(0, 4), (4, 1), (5, 4), (9, 1)]
    assert train.call_plan(6, 10, 4, (5, 8)) == [(6, 2), (8, 2)]
    assert train.call_plan(10, 10, 4, (5,)) == []
    plan = train.call_plan(3, 100, 7, (10, 25))
    assert [first for first, _ in plan[1:]] == [a + n for a, n in plan[:-1]]  # contiguous
    ends = {a + n for a, n in plan}
    assert {10, 20, 25, 30, 50, 75, 100} <= ends and max(n for _, n in plan) == 7


def test_a_run_writes_the_run_directory(tmp_path):
    workdir = tmp_path / "run"
    config = _config(tmp_path, **{"opt.warmup_steps": 4})
    train.train_and_evaluate(config, workdir)
    for name in ("config.json", "run_info.json", "tokenizer.bpe", "metrics.jsonl", "samples.txt"):
        assert (workdir / name).is_file(), name
    assert list((workdir / "tb").glob("events.out.tfevents.*"))
    assert RunDir(workdir).latest_step() == 16
    info = json.loads((workdir / "run_info.json").read_text())
    assert {"git_commit", "jax_version", "devices", "param_count"} <= set(info)
    assert info["matmul_peak_dtype"] == "float32" and info["matmul_peak_flops"] > 0
    losses, rows = _losses(workdir)
    assert sorted(losses) == list(range(1, 17))
    evals = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in evals] == [0, 8, 16]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]  # it learns
    for r in evals:
        assert r["val_perplexity"] == pytest.approx(np.exp(r["val_loss"]), rel=1e-6)
        assert 0 < r["val_bpb"] < 10
    logged = rows[-1]
    for key in ("tokens_seen", "wall_time", "lr", "grad_norm", "tokens_per_sec", "mfu"):
        assert key in logged
    assert logged["tokens_seen"] == 16 * 4 * 16
    # The logged rate is the one step s used: 4 warm-up steps, then cosine down to step 16.
    opt = config.opt
    for r in rows:
        if "lr" in r:
            s = r["step"] - 1
            if s < opt.warmup_steps:
                want = opt.lr * (s + 1) / (opt.warmup_steps + 1)
            else:
                ratio = min((s - opt.warmup_steps) / (16 - opt.warmup_steps), 1.0)
                want = opt.min_lr + 0.5 * (1 + np.cos(np.pi * ratio)) * (opt.lr - opt.min_lr)
            assert r["lr"] == pytest.approx(want, rel=1e-5), r["step"]
    assert (workdir / "samples.txt").read_text().startswith("--- sample 1 ---\nThe ")


@pytest.mark.e2e
def test_exact_resume_in_a_new_process_after_ctrl_c(tmp_path, monkeypatch):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train.train_and_evaluate(_config(tmp_path), straight)

    # Ctrl-C while step 8 is being logged: the loop saves step 8 and re-raises.
    write = rundir.MetricsWriter.write

    def write_then_interrupt(self, step, values):
        write(self, step, values)
        if step == 8:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(rundir.MetricsWriter, "write", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(_config(tmp_path), resumed)
    assert RunDir(resumed).latest_step() == 8

    done = _run_main(tmp_path, resumed)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed" in done.stdout
    a, rows_a = _losses(straight)
    b, rows_b = _losses(resumed)
    assert a == b  # every step's loss, bitwise (JSON keeps float32 values exactly)
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    _, params_a, _ = checkpoint.load_for_inference(straight)
    _, params_b, _ = checkpoint.load_for_inference(resumed)
    for x, y in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b), strict=True):
        np.testing.assert_array_equal(x, y)
    # a finished run says so
    again = _run_main(tmp_path, resumed)
    assert again.returncode == 0 and "already finished" in again.stdout


@pytest.mark.e2e
def test_config_changes_on_resume(tmp_path, capsys):
    workdir = tmp_path / "run"
    train.train_and_evaluate(_config(tmp_path, **{"train.steps": 4}), workdir)
    with pytest.raises(UserError, match=r"opt\.lr: 0\.002 -> 0\.01"):
        train.train_and_evaluate(_config(tmp_path, **{"opt.lr": 0.01}), workdir)
    # more steps and another logging cadence are safe
    train.train_and_evaluate(_config(tmp_path, **{"train.steps": 8, "train.log_every": 2}), workdir)
    assert RunDir(workdir).latest_step() == 8
    assert RunDir(workdir).read_config()["train"]["steps"] == 8
    # Fewer steps than trained: nothing to do, and config.json keeps describing the checkpoints.
    capsys.readouterr()
    train.train_and_evaluate(_config(tmp_path, **{"train.steps": 4, "train.log_every": 2}), workdir)
    assert "is already past train.steps=4: it has trained 8 steps" in capsys.readouterr().out
    assert RunDir(workdir).read_config()["train"]["steps"] == 8
    assert RunDir(workdir).latest_step() == 8


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = train.train_steps

    def poisoned(state, batches):
        state, metrics = real(state, batches)
        # the call that ends at step 12 leaves NaN parameters: step 13 sees a NaN loss
        params = jax.tree.map(lambda p: p * jnp.where(state.step > 8, jnp.nan, 1.0), state.params)
        return state.replace(params=params), metrics

    monkeypatch.setattr(train, "train_steps", poisoned)
    workdir = tmp_path / "run"
    config = _config(tmp_path, **{"train.checkpoint_every": 8})
    with pytest.raises(train.TrainingDiverged, match="non-finite at step 13"):
        train.train_and_evaluate(config, workdir)
    assert RunDir(workdir).latest_step() == 8
    _, params, _ = checkpoint.load_for_inference(workdir)
    assert all(np.isfinite(p).all() for p in jax.tree.leaves(params))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"data.corpus": "/no/such/corpus.txt"}, "no such file"),
        ({"opt.lr": -1.0}, "opt.lr"),
        ({"train.batch_size": 0}, "train.batch_size"),
        ({"model.block_size": 4096}, "fewer than one block"),
    ],
)
def test_bad_input_fails_before_compiling(tmp_path, monkeypatch, overrides, message):
    def no_jit(*args, **kwargs):
        raise AssertionError("compiled before checking the input")

    monkeypatch.setattr(jax, "jit", no_jit)
    small = tmp_path / "small.txt"
    from pydoc_data.topics import topics

    small.write_text(topics["assert"][:3000])  # enough text for the tokenizer, < 4096 tokens
    config = _config(tmp_path, **{"data.corpus": str(small), **overrides})
    with pytest.raises(ValueError, match=message):
        train.train_and_evaluate(config, tmp_path / "run")


def test_a_tokenizer_that_does_not_fit_the_model(tmp_path, monkeypatch):
    from gptjax import tokenizer as tk

    path = tmp_path / "big.bpe"
    from pydoc_data.topics import topics

    tk.save(tk.train([topics["assert"]], vocab_size=280, pattern="gpt4"), path)
    monkeypatch.setattr(jax, "jit", None)  # nothing may compile
    config = _config(tmp_path, **{"tokenizer.path": str(path)})  # model.vocab_size is 270
    with pytest.raises(ValueError, match="vocab_size=280"):
        train.train_and_evaluate(config, tmp_path / "run")


@pytest.mark.parametrize(
    "poison, at, checkpoint_every",
    [
        ("params", 16, 8),  # found before the evaluation of step 16 (which would be NaN)
        ("opt_state", 12, 4),  # found before the save of step 12, not an evaluation step
    ],
)
def test_a_non_finite_state_is_never_saved(tmp_path, monkeypatch, poison, at, checkpoint_every):
    real = train.train_steps

    def poisoned(state, batches):
        state, metrics = real(state, batches)
        # The call that ends at step `at` logs finite losses (computed before its updates) but
        # leaves NaN in the parameters, or only in the optimizer moments, which no loss sees.
        nan = jnp.where(state.step >= at, jnp.nan, 1.0)
        tree = jax.tree.map(
            lambda x: x * nan.astype(x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
            getattr(state, poison),
        )
        return state.replace(**{poison: tree}), metrics

    monkeypatch.setattr(train, "train_steps", poisoned)
    workdir = tmp_path / "run"
    config = _config(tmp_path, **{"train.checkpoint_every": checkpoint_every})
    with pytest.raises(train.TrainingDiverged) as error:
        train.train_and_evaluate(config, workdir)
    assert str(error.value).startswith(
        f"the parameters or optimizer moments became non-finite by step {at}, though the losses "
        "were finite; nothing after step 8 was saved"
    )
    assert RunDir(workdir).latest_step() == 8
    assert max(int(p.name) for p in RunDir(workdir).checkpoint_dir.iterdir()) == 8
    losses, _ = _losses(workdir)
    assert sorted(losses) == list(range(1, at + 1))  # the losses were finite up to `at`
    _, params, _ = checkpoint.load_for_inference(workdir)
    assert all(np.isfinite(p).all() for p in jax.tree.leaves(params))


@pytest.mark.e2e
def test_a_run_that_diverges_at_once_saves_nothing_and_the_fixed_rerun_starts_afresh(tmp_path):
    # lr=1e30 is finite in float32, so the config is valid, and the first loss (before any
    # update) is finite; the update leaves finite parameters near 1e28, which the evaluation
    # turns into NaN.
    workdir = tmp_path / "run"
    flags = ("--config.train.steps=1", "--config.sample.num_samples=0")
    failed = _run_main(tmp_path, workdir, *flags, "--config.opt.lr=1e30")
    assert failed.returncode == 1, failed.stderr[-3000:]
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, failed.stderr[-3000:]
    assert errors[0].startswith("error: the evaluation loss became non-finite at step 1 ")
    assert "no checkpoint was saved" in errors[0] and "Traceback" not in failed.stderr
    assert RunDir(workdir).latest_step() is None
    assert not RunDir(workdir).checkpoint_dir.exists() or not any(
        RunDir(workdir).checkpoint_dir.iterdir()
    )
    # Its advice: lower opt.lr and rerun; the same --workdir takes the new config.
    assert "Lower opt.lr" in errors[0] and "this --workdir has no checkpoint yet" in errors[0]
    config = _config(tmp_path, **{"train.steps": 1, "sample.num_samples": 0})  # opt.lr 2e-3
    train.train_and_evaluate(config, workdir)
    assert RunDir(workdir).latest_step() == 1
    assert RunDir(workdir).read_config()["opt"]["lr"] == 2e-3
    _, rows = _losses(workdir)
    assert [r["step"] for r in rows] == [0, 1]  # the failed attempt's step 0 is gone
    assert all(np.isfinite(r["val_loss"]) for r in rows)


@pytest.mark.e2e
def test_following_the_vocab_size_advice_reruns_in_the_same_workdir(tmp_path):
    path = tmp_path / "big.bpe"
    from pydoc_data.topics import topics

    tk.save(tk.train([topics["assert"]], vocab_size=280, pattern="gpt4"), path)
    workdir = tmp_path / "run"
    flags = (f"--config.tokenizer.path={path}", "--config.sample.num_samples=0")
    failed = _run_main(tmp_path, workdir, *flags)  # model.vocab_size is 270
    assert failed.returncode == 2, failed.stderr[-3000:]
    advice = re.search(r"set (--config\.model\.vocab_size=\d+) or more", failed.stderr)
    assert advice, failed.stderr[-3000:]
    assert RunDir(workdir).read_config()["model"]["vocab_size"] == 270  # the failed attempt's
    done = _run_main(tmp_path, workdir, *flags, advice.group(1))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no checkpoint yet, so this config replaces" in done.stdout
    assert RunDir(workdir).read_config()["model"]["vocab_size"] == 280
    assert RunDir(workdir).latest_step() == 16


@pytest.mark.e2e
def test_a_corrected_config_does_not_reuse_the_failed_attempts_tokenizer(tmp_path, capsys):
    small = tmp_path / "small.txt"
    from pydoc_data.topics import topics

    small.write_text(topics["assert"][:3000])
    workdir = tmp_path / "run"
    overrides = {"data.corpus": str(small), "tokenizer.vocab_size": 280}
    with pytest.raises(UserError, match="fewer than one block") as error:
        train.train_and_evaluate(
            _config(tmp_path, **overrides, **{"model.block_size": 4096}), workdir
        )
    assert "a smaller model.block_size" in str(error.value)  # the advice, followed below
    assert RunDir(workdir).load_tokenizer().vocab_size == 280  # the attempt saved its tokenizer
    # Also another tokenizer size: a tokenizer trained under the old settings must not be reused.
    fixed = {**overrides, "tokenizer.vocab_size": 272, "train.steps": 2, "sample.num_samples": 0}
    train.train_and_evaluate(_config(tmp_path, **fixed), workdir)
    out = capsys.readouterr().out
    assert "model.block_size: 4096 -> 16" in out and "removed the earlier attempt's" in out
    assert RunDir(workdir).load_tokenizer().vocab_size == 272
    assert RunDir(workdir).read_config()["model"]["block_size"] == 16
    assert RunDir(workdir).latest_step() == 2


# The first run of the lock test: `python -m gptjax.main`, which pauses once it has logged step 4
# until the file argv[1] exists, so that the second run surely meets it, however fast the machine.
_PAUSED_MAIN = """
import runpy, sys, time
from pathlib import Path
from gptjax.runs import rundir

go = Path(sys.argv.pop(1))
write = rundir.MetricsWriter.write


def write_then_wait(self, step, values):
    write(self, step, values)
    deadline = time.monotonic() + 240
    while step == 4 and not go.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


rundir.MetricsWriter.write = write_then_wait
runpy.run_module("gptjax.main", run_name="__main__", alter_sys=True)
"""


def _files(workdir: Path) -> dict:
    # tb/ is left out: the running trainer's TensorBoard writer flushes in a thread of its own.
    return {
        p.relative_to(workdir): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(workdir.rglob("*"))
        if p.is_file() and "tb" not in p.relative_to(workdir).parts
    }


@pytest.mark.e2e
def test_a_second_trainer_on_a_running_workdir_is_refused_and_changes_nothing(tmp_path):
    workdir, go = tmp_path / "run", tmp_path / "go"
    driver = tmp_path / "paused_main.py"
    driver.write_text(_PAUSED_MAIN)
    no_samples = "--config.sample.num_samples=0"
    with open(tmp_path / "first.out", "w") as out, open(tmp_path / "first.err", "w") as err:
        first = subprocess.Popen(
            [sys.executable, str(driver), str(go), *_main_args(tmp_path, workdir, no_samples)],
            stdout=out, stderr=err, text=True, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not any(r["step"] == 4 for r in read_metrics(workdir / "metrics.jsonl")):
            assert first.poll() is None, (tmp_path / "first.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "the first run never logged step 4"
            time.sleep(0.1)
        before = _files(workdir)
        second = _run_main(tmp_path, workdir, no_samples)
        assert _files(workdir) == before  # not a byte, not a timestamp
    finally:
        go.touch()
        first.wait(timeout=300)
    assert second.returncode == 2, second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    errors = [line for line in second.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, second.stderr[-3000:]
    assert errors[0].startswith(
        f"error: another training run holds {workdir} "
        f"(pid {first.pid} on {socket.gethostname()}, since "
    )
    assert errors[0].endswith("wait for it to finish or stop it, or use another --workdir")
    assert first.returncode == 0, (tmp_path / "first.err").read_text()[-3000:]
    _, rows = _losses(workdir)
    assert [r["step"] for r in rows] == list(range(17))  # every step once
    assert RunDir(workdir).latest_step() == 16
    with RunDir(workdir).lock():  # the first run has finished: the lock is free again
        pass


@pytest.mark.e2e
def test_a_damaged_latest_checkpoint_is_skipped_and_the_run_replays_exactly(tmp_path, capsys):
    workdir = tmp_path / "run"
    config = _config(tmp_path, **{"train.checkpoint_every": 4, "train.keep_checkpoints": 5})
    train.train_and_evaluate(config, workdir)
    _, params, _ = checkpoint.load_for_inference(workdir)
    losses, _ = _losses(workdir)
    # 64 bytes zeroed in the middle of the newest checkpoint's largest array file
    newest = workdir / "checkpoints" / "16"
    f = max((p for p in newest.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(f.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    f.write_bytes(bytes(data))
    damaged = f.read_bytes()

    capsys.readouterr()
    train.train_and_evaluate(config, workdir)  # the same command again
    out = capsys.readouterr().out
    assert re.search(r"checkpoint 16 is damaged \(.+\); moved to .+; resuming from 12", out)
    assert "resumed" in out and "from step 12" in out
    assert (workdir / "damaged_checkpoints" / "16" / f.relative_to(newest)).read_bytes() == damaged
    # steps 13..16 trained again, bit for bit the same
    assert _losses(workdir)[0] == losses
    _, again, _ = checkpoint.load_for_inference(workdir)
    for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.e2e
def test_init_from_starts_from_another_runs_parameters_and_tokenizer(tmp_path, capsys):
    source = tmp_path / "source"
    train.train_and_evaluate(_config(tmp_path), source)
    last = [r for r in read_metrics(source / "metrics.jsonl") if "val_loss" in r][-1]
    tuned = tmp_path / "tuned"
    config = _config(tmp_path, **{"train.init_from": str(source), "train.steps": 2})
    config.tokenizer.vocab_size = 300  # not used: the tokenizer comes with the parameters
    config.model.vocab_size = 270
    train.train_and_evaluate(config, tuned)
    assert "starting from the parameters and the tokenizer of" in capsys.readouterr().out
    assert (tuned / "tokenizer.bpe").read_bytes() == (source / "tokenizer.bpe").read_bytes()
    # Step 0 of the new run evaluates the source's final parameters: the same number.
    first = read_metrics(tuned / "metrics.jsonl")[0]
    assert first["step"] == 0 and first["val_loss"] == pytest.approx(last["val_loss"], rel=1e-6)


@pytest.mark.parametrize(
    ("init_from", "extra", "message"),
    [
        ("missing", {}, "is not a run to start from: .*missing does not exist"),
        ("source", {}, "has no checkpoint yet; train it first"),
        ("source", {"model.n_embd": 64}, r"model.n_embd is 32 there; set --config.model.n_embd=32"),
    ],
)
def test_a_bad_init_from_is_refused_before_compiling(tmp_path, monkeypatch, init_from, extra,
                                                      message):  # fmt: skip
    source = tmp_path / "source"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({"model": {**_config(tmp_path).model}}))
    monkeypatch.setattr(jax, "jit", None)  # any compilation would fail differently
    config = _config(tmp_path, **{"train.init_from": str(tmp_path / init_from), **extra})
    with pytest.raises(UserError, match=message):
        train.train_and_evaluate(config, tmp_path / "tuned")
    assert not (tmp_path / "tuned").exists()


def _limit_file_size(max_bytes):
    """A ``preexec_fn``: files larger than ``max_bytes`` cannot be written (as on a full disk)."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit


@pytest.mark.e2e
def test_a_checkpoint_that_cannot_be_written_is_one_line_and_the_earlier_one_survives(tmp_path):
    workdir = tmp_path / "run"
    first = _config_file(tmp_path, **{"train.steps": 8, "train.checkpoint_every": 8})
    done = subprocess.run(
        [sys.executable, "-m", "gptjax.main", "--config", str(first), "--workdir", str(workdir)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    saved = {p: p.read_bytes() for p in (workdir / "checkpoints").rglob("*") if p.is_file()}
    largest = max(len(b) for b in saved.values())
    # Resumed to 16 steps with no file allowed past half the largest array file: the save at
    # step 16 fails the way a full disk fails it. orbax packs the arrays into data files whose
    # number and sizes vary from one save to the next, so a save can fit under a limit that the
    # first one exceeded: then the disk had room, and the run starts again from a copy of the
    # 8-step run with a smaller limit.
    pristine = tmp_path / "pristine"
    shutil.copytree(workdir, pristine)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for limit in (largest // 2, largest // 8, largest // 32):
        shutil.rmtree(workdir)
        shutil.copytree(pristine, workdir)
        done = subprocess.run(
            [sys.executable, "-m", "gptjax.main", *_main_args(tmp_path, workdir,
             "--config.train.checkpoint_every=8")],
            capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
            preexec_fn=_limit_file_size(limit),
        )  # fmt: skip
        if done.returncode != 0:
            break
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "writing a checkpoint into" in lines[0]
    assert "the checkpoint of step 8 is intact" in lines[0] and "rerun the same command" in lines[0]
    assert "Traceback" not in done.stderr
    assert RunDir(workdir).checkpoint_steps() == [8]
    assert all(p.read_bytes() == b for p, b in saved.items())  # step 8 untouched
    # The advice, followed: the same command again, with room to write.
    again = _run_main(tmp_path, workdir, "--config.train.checkpoint_every=8")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed" in again.stdout and RunDir(workdir).checkpoint_steps() == [8, 16]
