"""Tests for gptjax.runs.checkpoint: round trips, retention, atomicity, loading for inference."""

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax import tokenizer as tk
from gptjax.errors import UserError
from gptjax.model import GPT
from gptjax.model.config import GPTConfig
from gptjax.runs import checkpoint
from gptjax.runs.rundir import RunDir
from gptjax.training.step import create_train_state, make_optimizer, train_step

CFG = dict(vocab_size=270, block_size=8, n_layer=1, n_head=2, n_embd=16)


def _state():
    tx, _ = make_optimizer(
        lr=1e-2, min_lr=1e-3, warmup_steps=0, weight_decay=0.1, beta1=0.9, beta2=0.99,
        grad_clip=1.0, total_steps=10,
    )  # fmt: skip
    return jax.jit(lambda: create_train_state(GPT(GPTConfig(**CFG)), tx, seed=0, block_size=8))()


def _trained(state, steps):
    x = jnp.asarray(np.random.default_rng(0).integers(0, 270, size=(2, 9)), jnp.int32)
    step = jax.jit(train_step)
    for _ in range(steps):
        state, _ = step(state, {"inputs": x[:, :-1], "targets": x[:, 1:]})
    return state


def _equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


def test_save_restore_round_trip_is_exact_and_keeps_k(tmp_path):
    manager = RunDir(tmp_path).checkpoint_manager(keep=2)
    state = _state()
    assert RunDir(tmp_path).latest_step() is None
    for _ in range(3):
        state = _trained(state, 2)
        checkpoint.save(manager, state, {"wall_time": float(state.step)})
    manager.wait_until_finished()
    assert RunDir(tmp_path).latest_step() == 6
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [4, 6]
    restored, meta = checkpoint.restore(manager, _state())
    # an abstract target (shapes, dtypes, shardings; what train.py resumes into) restores the same
    abstract = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), _state()
    )
    from_abstract, _ = checkpoint.restore(manager, abstract)
    manager.close()
    assert _equal(from_abstract.checkpoint_items(), state.checkpoint_items())
    assert meta == {"wall_time": 6.0}
    assert int(restored.step) == 6
    assert _equal(restored.checkpoint_items(), state.checkpoint_items())
    # and the restored state trains on exactly like the original
    assert _equal(_trained(restored, 1).params, _trained(state, 1).params)


def test_an_unfinished_save_is_never_taken_for_a_checkpoint(tmp_path):
    manager = RunDir(tmp_path).checkpoint_manager(keep=3)
    checkpoint.save(manager, _trained(_state(), 1), {"wall_time": 0.0})
    manager.wait_until_finished()
    manager.close()
    # what a crash in the middle of saving step 9 leaves behind: orbax's temporary folder
    partial = tmp_path / "checkpoints" / "9.orbax-checkpoint-tmp"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "half_written").write_bytes(b"\0" * 10)
    assert RunDir(tmp_path).latest_step() == 1
    manager = RunDir(tmp_path).checkpoint_manager(keep=3)  # a new run cleans it up
    assert manager.latest_step() == 1
    # The clean-up runs in a background thread that wait_until_finished does not wait for.
    deadline = time.monotonic() + 30
    while partial.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    manager.close()
    assert not partial.exists()


def _saved_run(path, model: dict):
    """A run directory laid out by hand: a checkpoint after 3 steps, a config, a tokenizer."""
    state = _trained(_state(), 3)
    manager = RunDir(path).checkpoint_manager(keep=1)
    checkpoint.save(manager, state, {"wall_time": 0.0})
    manager.close()
    (path / "config.json").write_text(json.dumps({"model": model, "seed": 0}))
    tok = tk.train(["some text to learn a few merges from " * 5], vocab_size=265, pattern="gpt4")
    tk.save(tok, path / "tokenizer.bpe")
    return state, tok


def test_load_for_inference(tmp_path):
    state, tok = _saved_run(tmp_path, CFG)
    model_config, params, loaded_tok = checkpoint.load_for_inference(tmp_path)
    assert model_config == GPTConfig(**CFG)
    assert loaded_tok == tok
    assert _equal(params, state.params)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    assert isinstance(jax.tree.leaves(params)[0], jax.Array)


def test_load_for_inference_without_a_run_is_a_clear_error(tmp_path):
    # UserError: the commands print it as one line, not a traceback.
    with pytest.raises(UserError, match="not a run directory"):
        checkpoint.load_for_inference(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model": CFG}))
    with pytest.raises(UserError, match="no complete checkpoint"):
        checkpoint.load_for_inference(tmp_path)


def test_load_for_inference_of_a_run_saved_with_model_attention(tmp_path):
    # Runs trained before model.kernels existed saved model.attention; they used the fast kernels.
    state, _ = _saved_run(tmp_path, {**CFG, "attention": "reference"})
    model_config, params, _ = checkpoint.load_for_inference(tmp_path)
    assert model_config == GPTConfig(**CFG, kernels="fast")
    assert _equal(params, state.params)
