"""Tests for gptjax.decode: the loop driven by fake models whose answer is known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.generation import decode

V = 16
W = 8  # block size of the fake models


def bigram_logits(tokens_BT, cache):
    """Fake model: the next token is (last + 3) % V, with a clear margin."""
    logits_BTV = 5.0 * jax.nn.one_hot((tokens_BT + 3) % V, V)
    return logits_BTV, {"index": cache["index"] + tokens_BT.shape[1]}


def bigram_cache(batch_size):
    del batch_size
    return {"index": jnp.int32(0)}


def window_logits(tokens_BT, cache):
    """Fake model whose answer depends on the whole cached window and its positions.

    The next token after window w is (sum_i (i + 1) * w_i + len(w)) % V. The cache stores the
    tokens; ``overflow`` records any write past its ``W`` positions.
    """
    B, T = tokens_BT.shape
    index = cache["index"]
    tokens_BS = jax.lax.dynamic_update_slice(cache["tokens_BS"], tokens_BT, (0, index))
    pos_S = jnp.arange(W)
    query_T = index + jnp.arange(T)
    visible_TS = pos_S[None, :] <= query_T[:, None]
    weighted_BTS = jnp.where(visible_TS[None], tokens_BS[:, None, :] * (pos_S + 1)[None, None], 0)
    next_BT = (weighted_BTS.sum(-1) + query_T[None] + 1) % V
    cache = {
        "tokens_BS": tokens_BS,
        "index": index + T,
        "overflow": cache["overflow"] | (index + T > W),
    }
    return 4.0 * jax.nn.one_hot(next_BT, V), cache


def window_cache(batch_size):
    return {
        "tokens_BS": jnp.zeros((batch_size, W), jnp.int32),
        "index": jnp.int32(0),
        "overflow": jnp.bool_(False),
    }


def reference_window_greedy(prompt, max_new_tokens):
    """The documented windowing, recomputing the answer from scratch in Python."""
    tokens, start, keep = list(prompt), 0, decode.slide_keep(W)
    for _ in range(max_new_tokens):
        window = tokens[start:]
        tokens.append((sum((i + 1) * t for i, t in enumerate(window)) + len(window)) % V)
        if len(tokens) - start > W:
            start = len(tokens) - keep
    return tokens[len(prompt) :]


def run(logits_fn, cache_fn, prompt_BP, max_new_tokens, **kwargs):
    kwargs = {"temperature": 0.0, "block_size": W, **kwargs}
    chunks = list(
        decode.generate_chunks(
            logits_fn, cache_fn, prompt_BP, max_new_tokens=max_new_tokens, **kwargs
        )
    )
    return [sum((c[row] for c in chunks), []) for row in range(len(prompt_BP))]


def test_known_argmax_sequence_is_reproduced_exactly():
    out = run(bigram_logits, bigram_cache, [[1], [2]], 10)
    assert out == [[(1 + 3 * i) % V for i in range(1, 11)], [(2 + 3 * i) % V for i in range(1, 11)]]


@pytest.mark.parametrize(
    "kwargs",
    [dict(temperature=1.0, top_k=1), dict(temperature=1.0, top_p=1e-6), dict(temperature=1e-3)],
)
def test_limits_equal_greedy(kwargs):
    greedy = run(window_logits, window_cache, [[3, 1, 4]], 12)
    assert run(window_logits, window_cache, [[3, 1, 4]], 12, **kwargs) == greedy


@pytest.mark.parametrize("prompt", [[5], [3, 1, 4, 1, 5], list(range(1, W + 1))])
def test_sliding_window_matches_recomputation_with_the_same_windowing(prompt):
    # 3 * W new tokens slide the context several times; a full-window prompt slides at once.
    out = run(window_logits, window_cache, [prompt], 3 * W)
    assert out == [reference_window_greedy(prompt, 3 * W)]


def test_cache_never_overflows():
    state = decode.prefill(
        jax.tree_util.Partial(window_logits),
        jax.tree_util.Partial(window_cache),
        jnp.array([[1, 2, 3]], jnp.int32),
        block_size=W,
        max_new_tokens=5 * W,
    )
    settings = decode.Settings(
        jax.random.key(0), jnp.float32(0), jnp.int32(0), jnp.float32(1), jnp.int32(-1)
    )
    state = decode.decode(
        jax.tree_util.Partial(window_logits),
        jax.tree_util.Partial(window_cache),
        state,
        settings,
        jnp.int32(5 * W),
        block_size=W,
    )
    assert int(state.step) == 5 * W and int(state.length) == 3 + 5 * W
    assert not bool(state.cache["overflow"])
    assert 0 < int(state.length) - int(state.start) <= W


def test_each_row_stops_at_eos():
    # Row 0 (1 -> 4 -> 7 -> 10) meets eos=10 at its third token, row 1 (2 -> 5 -> 8 -> 11) never.
    out = run(bigram_logits, bigram_cache, [[1], [2]], 6, eos_id=10)
    assert out == [[4, 7], [5, 8, 11, 14, 1, 4]]
    # When every row is finished the loop stops before max_new_tokens.
    assert run(bigram_logits, bigram_cache, [[1], [1]], 1000, eos_id=10) == [[4, 7], [4, 7]]


def test_chunked_decoding_equals_one_call():
    prompt = [[3, 1, 4], [1, 5, 9]]
    kwargs = dict(temperature=1.3, top_k=5, seed=7)
    whole = run(window_logits, window_cache, prompt, 21, **kwargs)
    for chunk_size in [1, 4, 50]:
        assert (
            run(window_logits, window_cache, prompt, 21, chunk_size=chunk_size, **kwargs) == whole
        )


def test_seed_reproducibility():
    prompt = [[1]] * 4
    a = run(window_logits, window_cache, prompt, 20, temperature=2.0, seed=1)
    b = run(window_logits, window_cache, prompt, 20, temperature=2.0, seed=1)
    c = run(window_logits, window_cache, prompt, 20, temperature=2.0, seed=2)
    assert a == b
    assert a != c
    assert len({tuple(row) for row in a}) > 1  # the samples of one batch differ too


def fixed_logits(tokens_BT, cache):
    logits_V = jnp.array([1.0, 0.0, -1.0, 0.5, 2.0])
    return jnp.broadcast_to(logits_V, (*tokens_BT.shape, 5)), cache


def test_sampled_frequencies_match_softmax():
    n_rows, n_new = 1000, 8
    out = np.array(run(fixed_logits, bigram_cache, [[0]] * n_rows, n_new, temperature=1.0, seed=3))
    freq = np.bincount(out.ravel(), minlength=5) / out.size
    expected = np.asarray(jax.nn.softmax(jnp.array([1.0, 0.0, -1.0, 0.5, 2.0])))
    # Five binomial standard deviations for 8000 draws.
    np.testing.assert_array_less(
        np.abs(freq - expected), 5 * np.sqrt(expected * (1 - expected) / out.size)
    )


def test_compiled_once_for_any_prompt_settings_and_seed():
    cache_fn = jax.tree_util.Partial(window_cache)
    logits_fn = jax.tree_util.Partial(window_logits)
    run(logits_fn, cache_fn, [[1, 2]], 9, seed=0)
    before = decode.decode._cache_size()
    for prompt, kwargs in [
        ([[7, 7, 7]], dict(seed=5)),
        ([[1]], dict(temperature=0.7, top_k=3, top_p=0.9)),
        ([[2, 3]], dict(chunk_size=2, eos_id=4)),
    ]:
        run(logits_fn, cache_fn, prompt, 9, **kwargs)
    assert decode.decode._cache_size() == before


@pytest.mark.parametrize(
    "prompt, kwargs, match",
    [
        ([[]], {}, "prompt"),
        ([list(range(W + 1))], {}, "prompt"),
        ([[1]], dict(max_new_tokens=-1), "max_new_tokens"),
        ([[1]], dict(chunk_size=0), "chunk_size"),
        ([[1]], dict(temperature=-1.0), "temperature"),
    ],
)
def test_bad_arguments_are_rejected(prompt, kwargs, match):
    kwargs = {"max_new_tokens": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        run(bigram_logits, bigram_cache, np.array(prompt, np.int32).reshape(1, -1), **kwargs)
