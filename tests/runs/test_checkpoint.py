"""Tests for gptjax.runs.checkpoint: round trips, retention, atomicity, verification, loading."""

import json
import shutil
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
    manager.close()
    restored, meta = checkpoint.restore(RunDir(tmp_path), _state(), 6)
    # an abstract target (shapes, dtypes, shardings; what train.py resumes into) restores the same
    abstract = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), _state()
    )
    from_abstract, _ = checkpoint.restore(RunDir(tmp_path), abstract, 6)
    assert _equal(from_abstract.checkpoint_items(), state.checkpoint_items())
    assert meta.pop("wall_time") == 6.0
    assert set(meta) == {"checksums"}
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


# Damaged checkpoints: what a failing disk, a copy cut short or an edit by hand leaves.


def _largest_file(step_dir):
    return max((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _flip_bytes(step_dir):
    f = _largest_file(step_dir)
    data = bytearray(f.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    f.write_bytes(bytes(data))


def _truncate(step_dir):
    f = _largest_file(step_dir)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _zero(step_dir):
    f = _largest_file(step_dir)
    f.write_bytes(bytes(f.stat().st_size))


DAMAGES = {
    "flipped bytes": _flip_bytes,
    "truncated array file": _truncate,
    "zeroed array file": _zero,
    "deleted array file": lambda d: _largest_file(d).unlink(),
    "no state item": lambda d: shutil.rmtree(d / "state"),
    "no meta item": lambda d: shutil.rmtree(d / "meta"),
    "no manifests": lambda d: [p.unlink() for p in d.rglob("manifest.ocdbt")],
}


@pytest.fixture(scope="module")
def _saved_twice(tmp_path_factory):
    """Checkpoints at steps 2 and 4 of one state, made once; returns (folder, state by step)."""
    path = tmp_path_factory.mktemp("two_checkpoints")
    manager = RunDir(path).checkpoint_manager(keep=3)
    states = {}
    state = _state()
    for _ in range(2):
        state = _trained(state, 2)
        states[int(state.step)] = state
        checkpoint.save(manager, state, {"wall_time": 0.0})
    manager.close()
    return path, states


@pytest.fixture
def two_checkpoints(_saved_twice, tmp_path):
    """A fresh copy of the run with checkpoints at steps 2 and 4, in ``tmp_path``."""
    template, states = _saved_twice
    shutil.copytree(template / "checkpoints", tmp_path / "checkpoints")
    return states


def _one_bit_off(path, state):
    """Rewrites the state item of the checkpoint at ``path`` through orbax with one weight one
    bit off: files that read back without error, whose values only the checksum can tell."""
    import orbax.checkpoint as ocp

    items = jax.tree.map(np.asarray, state.checkpoint_items())
    words = items["params"]["wte"]["embedding"].view(np.uint32).copy()
    words.flat[7] ^= 1  # the lowest mantissa bit of one weight
    items["params"]["wte"]["embedding"] = words.view(np.float32)
    shutil.rmtree(path / "state")
    ocp.PyTreeCheckpointer().save(path / "state", items)


def _tree_bytes(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_latest_checkpoint_is_set_aside_and_the_earlier_one_restored(
    tmp_path, two_checkpoints, damage
):
    states = two_checkpoints
    DAMAGES[damage](tmp_path / "checkpoints" / "4")
    damaged_files = _tree_bytes(tmp_path / "checkpoints" / "4")
    with pytest.raises(checkpoint.DamagedCheckpoint):
        checkpoint.restore(RunDir(tmp_path), _state(), 4)
    lines = []
    restored, _, step = checkpoint.restore_newest_intact(RunDir(tmp_path), _state(), lines.append)
    assert step == 2 and _equal(restored.checkpoint_items(), states[2].checkpoint_items())
    # one line, naming the checkpoint and where it went; its files moved untouched
    assert len(lines) == 1 and lines[0].startswith("checkpoint 4 is damaged (")
    aside = tmp_path / "damaged_checkpoints" / "4"
    assert str(aside) in lines[0]
    assert _tree_bytes(aside) == damaged_files
    assert RunDir(tmp_path).checkpoint_steps() == [2]


def test_changed_values_are_caught_by_the_checksums(tmp_path, two_checkpoints):
    meta_before = (tmp_path / "checkpoints/4/meta/metadata").read_bytes()
    _one_bit_off(tmp_path / "checkpoints/4", two_checkpoints[4])
    assert (tmp_path / "checkpoints/4/meta/metadata").read_bytes() == meta_before
    with pytest.raises(checkpoint.DamagedCheckpoint, match=r"'wte'.*checksum mismatch"):
        checkpoint.restore(RunDir(tmp_path), _state(), 4)


def test_the_checksum_sees_any_single_changed_word_and_a_swap():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000).astype(np.float32)
    base = checkpoint.fingerprints({"x": x})["['x']"]
    # the closed form, computed independently with Python integers
    words = x.view(np.uint32).astype(object)
    assert base == sum(int(w) * (2 * i + 1) for i, w in enumerate(words)) % 2**32
    for i in rng.integers(0, 1000, size=20):
        y = x.copy().view(np.uint32)
        y[i] ^= np.uint32(1 << int(rng.integers(0, 32)))
        assert checkpoint.fingerprints({"x": y.view(np.float32)})["['x']"] != base
    swapped = x.copy()
    swapped[[3, 500]] = swapped[[500, 3]]
    assert checkpoint.fingerprints({"x": swapped})["['x']"] != base
    # bfloat16 and integer arrays are covered too
    for leaf in (x.astype(jnp.bfloat16), np.arange(10, dtype=np.int32)):
        assert isinstance(checkpoint.fingerprints({"y": leaf})["['y']"], int)


def test_a_checkpoint_with_non_finite_parameters_is_damaged(tmp_path, two_checkpoints):
    states = two_checkpoints
    bad = states[4].replace(params=jax.tree.map(lambda p: p * jnp.inf, states[4].params))
    manager = RunDir(tmp_path).checkpoint_manager(keep=3)
    checkpoint.save(manager, bad.replace(step=bad.step + 2), {"wall_time": 0.0})
    manager.close()
    with pytest.raises(checkpoint.DamagedCheckpoint, match="non-finite"):
        checkpoint.restore(RunDir(tmp_path), _state(), 6)


def test_when_every_checkpoint_is_damaged_nothing_is_moved(tmp_path, two_checkpoints):
    for step in (2, 4):
        _flip_bytes(tmp_path / "checkpoints" / str(step))
    before = _tree_bytes(tmp_path)
    with pytest.raises(UserError, match="every checkpoint .* is damaged.*new --workdir"):
        checkpoint.restore_newest_intact(RunDir(tmp_path), _state(), print)
    assert _tree_bytes(tmp_path) == before


def test_load_for_inference_skips_a_damaged_latest_checkpoint(tmp_path, two_checkpoints):
    states = two_checkpoints
    (tmp_path / "config.json").write_text(json.dumps({"model": CFG, "seed": 0}))
    tk.save(tk.train(["abc abc"], vocab_size=261, pattern="gpt4"), tmp_path / "tokenizer.bpe")
    _one_bit_off(tmp_path / "checkpoints/4", states[4])  # in the parameters, which it reads
    before = _tree_bytes(tmp_path)
    lines = []
    _, params, _ = checkpoint.load_for_inference(tmp_path, say=lines.append)
    assert _equal(params, states[2].params)
    assert len(lines) == 1 and "checkpoint 4 is damaged" in lines[0] and "step 2" in lines[0]
    assert _tree_bytes(tmp_path) == before  # a reader moves nothing
    with pytest.raises(UserError, match="checkpoint 4 is damaged"):
        checkpoint.load_for_inference(tmp_path, step=4)
