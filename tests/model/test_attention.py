"""Scaled dot-product attention: a NumPy loop, jax.nn.dot_product_attention, dtypes, masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.model import attention


def qkv(t, s, n=3, h=8, b=2, dtype=jnp.float32, seed=0):
    kq, kk, kv = jax.random.split(jax.random.key(seed), 3)
    q = jax.random.normal(kq, (b, t, n, h), dtype)
    k = jax.random.normal(kk, (b, s, n, h), dtype)
    v = jax.random.normal(kv, (b, s, n, h), dtype)
    return q, k, v


def numpy_attention(q, k, v, positions):
    """Loop-by-loop softmax attention, query t seeing keys 0..positions[t]."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    b, t, n, h = q.shape
    out = np.zeros_like(q)
    for bi in range(b):
        for ni in range(n):
            for ti in range(t):
                keys = k[bi, : positions[ti] + 1, ni]
                scores = keys @ q[bi, ti, ni] / np.sqrt(h)
                weights = np.exp(scores - scores.max())
                weights /= weights.sum()
                out[bi, ti, ni] = weights @ v[bi, : positions[ti] + 1, ni]
    return out


def test_causal_mask_is_lower_triangular_and_shifts_with_positions():
    np.testing.assert_array_equal(
        attention.causal_mask(jnp.arange(4), 4), np.tril(np.ones((4, 4), bool))
    )
    # Two queries at positions 2 and 3 over a cache of 5 slots: slot 4 is not written yet.
    mask = attention.causal_mask(jnp.array([2, 3]), 5)
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])


def test_reference_matches_numpy_loop():
    q, k, v = qkv(6, 6)
    out = attention.reference_attention(q, k, v, attention.causal_mask(jnp.arange(6), 6))
    np.testing.assert_allclose(out, numpy_attention(q, k, v, np.arange(6)), rtol=1e-5, atol=1e-6)


def test_reference_matches_numpy_loop_with_cache_layout():
    # Queries at positions 4..6 over 10 cache slots; slots 7..9 hold junk to be ignored.
    q, k, v = qkv(3, 10)
    positions = jnp.arange(4, 7)
    out = attention.reference_attention(q, k, v, attention.causal_mask(positions, 10))
    np.testing.assert_allclose(out, numpy_attention(q, k, v, positions), rtol=1e-5, atol=1e-6)


def test_future_keys_do_not_change_the_output():
    q, k, v = qkv(5, 5)
    mask = attention.causal_mask(jnp.arange(5), 5)
    out = attention.reference_attention(q, k, v, mask)
    out2 = attention.reference_attention(q, k.at[:, 3:].set(1e4), v.at[:, 3:].set(1e4), mask)
    np.testing.assert_array_equal(out[:, :3], out2[:, :3])
    assert not np.allclose(out[:, 3:], out2[:, 3:])


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_softmax_runs_in_float32_for_half_precision(dtype):
    q, k, v = qkv(8, 8, dtype=dtype)
    mask = attention.causal_mask(jnp.arange(8), 8)
    probs = attention.attention_probs(q, k, mask)
    assert probs.dtype == jnp.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    out = attention.reference_attention(q, k, v, mask)
    assert out.dtype == dtype
    ref = numpy_attention(
        q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32), np.arange(8)
    )
    np.testing.assert_allclose(out.astype(jnp.float32), ref, atol=5e-2)


def test_large_scores_do_not_overflow():
    # Scores of ~1e4 would overflow exp without the max subtraction, and -inf masking would NaN.
    q, k, v = qkv(4, 4)
    out = attention.reference_attention(
        q * 300, k * 300, v, attention.causal_mask(jnp.arange(4), 4)
    )
    assert np.isfinite(np.asarray(out)).all()
