"""Tests of gptjax.training.evaluation: windows that cover a split exactly once, streamed sums
equal to a recomputation in one batch, one compiled step whatever the amount evaluated."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptjax.model import GPT
from gptjax.model.config import GPTConfig
from gptjax.training import evaluation, sharding
from gptjax.training.evaluation import Evaluator, micro_batches, windows

CFG = GPTConfig(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=32)


def _coverage(n_ids, w):
    """How many times each target position 1 .. n_ids-1 is counted, from the windows alone."""
    counted = np.zeros(n_ids, np.int64)
    for start, skip in zip(w.starts, w.skip, strict=True):
        counted[start + 1 + skip : start + 1 + w.block_size] += 1
    return counted[1:]


@settings(max_examples=200, deadline=None)
@given(n_ids=st.integers(2, 500), block_size=st.integers(1, 40))
def test_whole_split_windows_count_every_target_exactly_once(n_ids, block_size):
    if n_ids < block_size + 1:
        return  # the data checks refuse a split shorter than one window
    w = windows(n_ids, block_size)
    assert np.all(_coverage(n_ids, w) == 1)
    assert w.tokens == n_ids - 1
    assert np.all(w.starts >= 0) and np.all(w.starts + block_size + 1 <= n_ids)


@settings(max_examples=200, deadline=None)
@given(n_ids=st.integers(2, 2000), block_size=st.integers(1, 40), budget=st.integers(1, 3000))
def test_a_budget_takes_whole_windows_spread_over_the_split(n_ids, block_size, budget):
    if n_ids < block_size + 1:
        return
    w = windows(n_ids, block_size, budget)
    if budget // block_size >= (n_ids - 1) // block_size:  # the budget covers the split
        assert w.tokens == n_ids - 1
        return
    k = max(1, budget // block_size)
    assert len(w.starts) == k and not w.skip.any()
    assert np.all(_coverage(n_ids, w) <= 1)  # never overlapping
    assert w.starts[0] == 0 and np.all(np.diff(w.starts) >= block_size)
    # spread over the split: the last window starts in its last k-th
    assert w.starts[-1] + block_size + 1 > n_ids * (k - 1) / k - block_size


def test_micro_batches_pad_with_weight_zero_rows():
    ids = np.arange(50, dtype=np.uint16)
    w = windows(50, 8)  # 6 whole windows (48 targets) and a last one for target 49
    batches = list(micro_batches(ids, w, 8, batch_size=4))
    assert len(batches) == 2
    inputs = np.concatenate([b["inputs"] for b in batches])
    targets = np.concatenate([b["targets"] for b in batches])
    weights = np.concatenate([b["weights"] for b in batches])
    np.testing.assert_array_equal(targets[:7], inputs[:7] + 1)  # targets are the next ids
    assert weights[:6].all() and weights[7].sum() == 0  # the padding row counts nothing
    assert weights[6].tolist() == [0.0] * 7 + [1.0] and targets[6, -1] == 49
    assert weights.sum() == 49


def _params():
    return GPT(CFG).init(jax.random.PRNGKey(0), jnp.zeros((1, 16), jnp.int32))["params"]


def _byte_lengths():
    lengths = np.random.default_rng(1).integers(1, 4, size=300).astype(np.int32)
    lengths[256:260] = 0  # the specials have no bytes
    return lengths


def test_the_streamed_evaluation_equals_one_recomputation_of_every_window():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 300, size=1000).astype(np.uint16)
    ids[::37] = 259  # some special targets, left out of bits per byte
    params, lengths = _params(), _byte_lengths()
    mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
    w = windows(len(ids), 16)
    # The truth: every target of the split, each scored once, in float64 from one big batch.
    x = ids[w.starts[:, None] + np.arange(17)].astype(np.int32)
    logits = GPT(CFG).apply({"params": params}, jnp.asarray(x[:, :-1]), deterministic=True)
    logits = np.asarray(logits, np.float64)
    top = logits.max(-1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    nats = -np.take_along_axis(logp, x[:, 1:, None], -1)[..., 0]
    keep = np.arange(16)[None, :] >= w.skip[:, None]
    text = keep & (lengths[x[:, 1:]] > 0)
    want_loss = nats[keep].mean()
    want_bpb = nats[text].sum() / np.log(2) / lengths[x[:, 1:]][text].sum()
    for device_batch_size in (1, 5, 64):
        ev = Evaluator(GPT(CFG).apply, lengths, mesh, 16, device_batch_size)
        got = ev(params, ids, w)
        assert got["tokens"] == len(ids) - 1
        assert got["loss"] == pytest.approx(want_loss, rel=1e-5)
        assert got["bpb"] == pytest.approx(want_bpb, rel=1e-5)
        assert got["perplexity"] == pytest.approx(np.exp(want_loss), rel=1e-5)
        assert ev(params, ids, w) == got  # the same number every time


def test_one_compiled_step_whatever_the_amount_evaluated():
    # Memory does not grow with the split: every split goes through the same compiled
    # micro-batch step, whose buffers do not depend on how many micro-batches follow.
    params, lengths = _params(), _byte_lengths()
    mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
    ev = Evaluator(GPT(CFG).apply, lengths, mesh, 16, 4)
    for n in (17, 400, 3000):
        ids = np.random.default_rng(n).integers(0, 300, size=n).astype(np.uint16)
        ev(params, ids, windows(n, 16))
    assert ev.step._cache_size() == 1
    assert evaluation._IN_FLIGHT <= 4
