"""``python -m gptjax.generate``: the command line, on run directories written through RunDir."""

import dataclasses
import re
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from tiny_runs import trained_pair

from gptjax import generate as cli
from gptjax import tokenizer as tk
from gptjax.errors import UserError
from gptjax.generation import decode
from gptjax.generation import text as generate
from gptjax.model import GPT, GPTConfig
from gptjax.runs import checkpoint
from gptjax.runs.checkpoint import load_for_inference
from gptjax.runs.rundir import RunDir
from gptjax.training import step as ts

W = 16
TEXT = "Le chat mange la souris. L'élève répond : « où ? » → ici, café crème. " * 30


@pytest.fixture(scope="module")
def tok():
    return tk.train(TEXT, vocab_size=300, pattern="gpt4")


@pytest.fixture(scope="module")
def model(tok):
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=W, n_layer=2, n_head=2, n_embd=32)
    variables = GPT(cfg).init(jax.random.key(0), jnp.zeros((1, W), jnp.int32))
    return cfg, nn.unbox(variables["params"])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tok, model):
    cfg, params = model
    tx, _ = ts.make_optimizer(
        lr=1e-3, min_lr=1e-4, warmup_steps=1, total_steps=2, weight_decay=0.1, beta1=0.9,
        beta2=0.99, grad_clip=1.0,
    )  # fmt: skip
    state = ts.create_train_state(GPT(cfg), tx, seed=0, block_size=W)
    state = state.replace(params=params)
    run_dir = RunDir(tmp_path_factory.mktemp("run"))
    run_dir.write_config({"model": dataclasses.asdict(cfg)})
    run_dir.save_tokenizer(tok)
    manager = run_dir.checkpoint_manager(keep=1)
    checkpoint.save(manager, state, {"tokens_seen": 0})
    manager.wait_until_finished()
    manager.close()
    return run_dir.path


@pytest.mark.parametrize("stream", [True, False])
def test_cli_prints_the_samples(workdir, tok, model, capsys, stream):
    cfg, params = model
    args = ["--workdir", str(workdir), "--prompt", "Le chat", "--max-new-tokens", "20"]
    args += ["--temperature", "0.9", "--top-k", "50", "--num-samples", "2", "--seed", "3"]
    cli.main(args + ([] if stream else ["--no-stream"]))
    out = capsys.readouterr().out
    texts = generate.generate_text(
        cfg, params, tok, "Le chat", max_new_tokens=20, temperature=0.9, top_k=50, num_samples=2,
        seed=3,
    )  # fmt: skip
    assert out == f"--- sample 1/2 ---\n{texts[0]}\n--- sample 2/2 ---\n{texts[1]}\n"


@pytest.mark.parametrize(
    "args, match",
    [
        (["--temperature", "-0.5"], "temperature must be >= 0"),
        (["--top-p", "0"], r"top_p must be in \(0, 1\]"),
        (["--top-p", "2"], r"top_p must be in \(0, 1\]"),
        (["--top-k", "-1"], "top_k must be an integer >= 0"),
    ],
)
def test_cli_rejects_bad_settings(workdir, capsys, args, match):
    assert re.search(match, _refused(capsys, ["--workdir", str(workdir), *args]))


def _refused(capsys, argv) -> str:
    """Runs the command, which must refuse: exit code 2 and one line ``error: ...``."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert captured.out == ""
    return lines[0]


def _files(path):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()}


def test_cli_rejects_missing_empty_untrained_and_file_workdirs(tmp_path, capsys, model):
    cfg, _ = model
    untrained = RunDir(tmp_path / "untrained")
    untrained.create()
    untrained.write_config({"model": dataclasses.asdict(cfg)})
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a run")
    for path, message in [
        (tmp_path / "missing", "missing does not exist: give the --workdir"),
        (tmp_path / "empty", "not a run directory"),
        (tmp_path / "notes.txt", "notes.txt is a file, not a run directory"),
        (untrained.path, "no complete checkpoint"),
    ]:
        assert message in _refused(capsys, ["--workdir", str(path)])


@pytest.mark.parametrize(
    "config, message",
    [
        ("{}", "config.json has no model group; repair it, or delete it and rerun"),
        ('{"model": {"n_head": 2', r"config.json is not valid JSON \(Expecting"),
        ('{"model": {"n_hed": 2}}', "config.json: its model group is not valid .*n_hed"),
    ],
)
def test_cli_names_a_damaged_config_json_and_changes_nothing(
    workdir, tmp_path, capsys, config, message
):
    run = tmp_path / "run"
    shutil.copytree(workdir, run)
    (run / "config.json").write_text(config)
    before = _files(run)
    line = _refused(capsys, ["--workdir", str(run)])
    assert re.search(message, line) and str(run / "config.json") in line
    assert _files(run) == before


def test_cli_refuses_a_length_that_would_not_fit_before_loading_anything(workdir, capsys):
    line = _refused(capsys, ["--workdir", str(workdir), "--max-new-tokens", "1000000000"])
    assert line == (
        f"error: --max-new-tokens must be in [0, {cli.MAX_NEW_TOKENS:,}], got 1,000,000,000: each "
        "sample's tokens are kept in one buffer on the device (4 bytes a token), so ask for at "
        f"most {cli.MAX_NEW_TOKENS:,} per sample"
    )
    assert "--max-new-tokens must be in" in _refused(
        capsys, ["--workdir", "x", "--max-new-tokens", "-1"]
    )
    assert "--num-samples must be >= 1" in _refused(
        capsys, ["--workdir", "x", "--num-samples", "0"]
    )
    cli.check_lengths(cli.MAX_NEW_TOKENS, 1)  # the advice, at its bound
    with pytest.raises(UserError):
        cli.check_lengths(cli.MAX_NEW_TOKENS + 1, 1)


def test_an_internal_value_error_keeps_its_traceback(workdir, capsys, monkeypatch):
    # A ValueError raised deep in the decode loop is a bug, not a mistake of the command line.
    def broken(*args, **kwargs):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(decode, "generate_chunks", broken)
    with pytest.raises(ValueError, match="an internal invariant broke") as error:
        cli.main(["--workdir", str(workdir), "--max-new-tokens", "3"])
    assert not isinstance(error.value, UserError)
    assert "error:" not in capsys.readouterr().err


def test_cli_says_when_the_prompt_is_cut(workdir, capsys):
    args = ["--prompt", TEXT[:200], "--max-new-tokens", "20", "--num-samples", "2"]
    cli.main(["--workdir", str(workdir), *args])
    assert f"keeping its last {W} tokens" in capsys.readouterr().err


def test_cli_on_a_real_training_run(tmp_path_factory, capsys):
    # The tiny runs of the compare tests, trained once per session by the real trainer.
    workdir = trained_pair(tmp_path_factory)["a"]
    capsys.readouterr()
    cli.main(["--workdir", str(workdir), "--prompt", "The ", "--max-new-tokens", "12"])
    cfg, params, tok = load_for_inference(workdir)
    (text,) = generate.generate_text(cfg, params, tok, "The ", max_new_tokens=12, temperature=0.8)
    assert capsys.readouterr().out == text + "\n"
