"""Tests for configs/*.py: every config is complete, valid, and builds its model abstractly."""

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from gptjax.model import GPT
from gptjax.model.config import GPTConfig
from gptjax.training.run_config import SCHEMA, check_config
from gptjax.training.step import create_train_state, make_optimizer

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
NAMES = sorted(p.stem for p in CONFIG_DIR.glob("*.py"))


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, CONFIG_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_four_configs_ship():
    assert {"tiny", "shakespeare_char", "shakespeare", "gpt2"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_config_declares_every_key_and_builds_its_model_abstractly(name):
    module = load(name)
    config = module.get_config()
    assert set(config.keys()) == {"seed", "model", *SCHEMA}
    assert set(config.model.keys()) == {f.name for f in dataclasses.fields(GPTConfig)}
    model_config = check_config(config)
    # the docstring gives the command to run it
    assert f"--config configs/{name}.py" in module.__doc__
    tx, _ = make_optimizer(**config.opt, total_steps=config.train.steps)
    state = jax.eval_shape(
        lambda: create_train_state(
            GPT(model_config), tx, seed=0, block_size=model_config.block_size
        )
    )
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    assert n_params == model_config.param_count()
    logits = jax.eval_shape(
        lambda p: GPT(model_config).apply({"params": p}, jnp.zeros((2, 8), jnp.int32)),
        state.params,
    )
    assert logits.shape == (2, 8, model_config.vocab_size) and logits.dtype == jnp.float32


def test_gpt2_is_the_124m_model():
    config = load("gpt2").get_config()
    model_config = check_config(config)
    assert model_config.param_count() == 124_475_904  # 124,439,808 with V=50257, padded to 50304
    assert config.model.vocab_size >= config.tokenizer.vocab_size == 50257


def test_shakespeare_char_is_the_known_cpu_recipe():
    c = load("shakespeare_char").get_config()
    assert c.data.corpus == "tinyshakespeare"
    assert (c.tokenizer.vocab_size, c.tokenizer.path) == (260, "")  # bytes + specials, no merges
    m = c.model
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size, m.dropout) == (4, 4, 128, 64, 0.0)
    assert (c.train.batch_size * c.train.grad_accum // c.train.grad_accum, c.train.steps) == (
        12,
        2000,
    )
    assert (c.opt.lr, c.opt.warmup_steps, c.opt.min_lr, c.opt.beta2) == (1e-3, 100, 1e-4, 0.99)
    assert (c.train.eval_every, c.eval.val_tokens) == (250, 0)  # the whole validation split


def test_model_vocab_follows_the_tokenizer_vocab():
    config = load("tiny").get_config()
    config.tokenizer.vocab_size = 1024
    assert config.model.vocab_size == 1024


@pytest.mark.parametrize(
    "override, message",
    [
        ("opt.lr", -1.0),
        ("train.batch_size", 0),
        ("train.steps", 0),
        ("opt.beta2", 1.0),
        ("data.val_fraction", 0.0),
        ("model.n_head", 3),
    ],
)
def test_invalid_values_are_refused(override, message):
    config = load("tiny").get_config()
    group, key = override.split(".")
    config[group][key] = message
    with pytest.raises(ValueError, match=key):
        check_config(config)


def test_cli_refuses_unknown_keys_before_doing_anything(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "gptjax.main", "--config", str(CONFIG_DIR / "tiny.py"),
         "--config.train.no_such_key=3", "--workdir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode != 0
    assert "no_such_key" in done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.e2e
def test_french_tiny_trains_offline_on_the_committed_excerpt(tmp_path, monkeypatch):
    import urllib.request

    from gptjax.runs.experiment import apply_overrides
    from gptjax.runs.rundir import RunDir
    from gptjax.training.data import load_documents
    from gptjax.training.loop import train_and_evaluate

    def no_network(*args, **kwargs):
        raise AssertionError("configs/french_tiny.py must not need the network")

    monkeypatch.delenv("GPTJAX_DATA_DIR", raising=False)
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.chdir(tmp_path)  # the corpus is found from the package, not the current folder
    config = load("french_tiny").get_config()
    assert config.data.corpus == "hugo_extrait" and config.model.kernels == "plain"
    (doc,) = load_documents(config.data.corpus)
    assert "monseigneur Bienvenu" in doc
    # The config itself (its tokenizer, model and French prompt), for a few steps.
    short = {
        "train.steps": 4,
        "train.steps_per_call": 2,
        "train.eval_every": 4,
        "eval.val_tokens": 64,
        "eval.train_tokens": 64,
        "train.checkpoint_every": 4,
        "sample.num_samples": 1,
        "sample.max_new_tokens": 4,
    }
    train_and_evaluate(apply_overrides(config, short), tmp_path / "run")
    assert RunDir(tmp_path / "run").latest_step() == 4
    assert (tmp_path / "run" / "tokenizer.bpe").is_file()
    assert (tmp_path / "run" / "samples.txt").read_text().count("Le chat mange la") == 1
