"""``python -m gptjax.generate``: the command line, on run directories written through RunDir."""

import dataclasses
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from tiny_runs import trained_pair

from gptjax import generate as cli
from gptjax import tokenizer as tk
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
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--workdir", str(workdir), *args])
    assert exit_info.value.code == 2
    assert re.search(match, capsys.readouterr().err)


def test_cli_rejects_missing_empty_and_untrained_workdirs(tmp_path, capsys, tok, model):
    untrained = RunDir(tmp_path / "untrained")
    untrained.create()
    untrained.write_config({"model": {}})
    (tmp_path / "empty").mkdir()
    for path, message in [
        (tmp_path / "missing", "does not exist"),
        (tmp_path / "empty", "not a run directory"),
        (untrained.path, "no complete checkpoint"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["--workdir", str(path)])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


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
