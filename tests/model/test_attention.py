"""Scaled dot-product attention: a NumPy loop, dtypes, masks, and the weights sown to inspect."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.model import GPT, GPTConfig, attention
from gptjax.model.multihead import MultiHeadAttention


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


# --- The weights the multi-head attention sows for inspection ----------------------------------


def _shaken(variables, seed=1):
    """Parameters plus noise, so that the biases are not zero."""
    leaves, tree = jax.tree.flatten(nn.unbox(variables))
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(
        tree, [x + 0.2 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    )


def test_multihead_sows_the_softmax_of_its_own_q_and_k():
    cfg = GPTConfig(vocab_size=64, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.5)
    x = jax.random.normal(jax.random.key(0), (2, 8, 16))
    mask = attention.causal_mask(jnp.arange(8), 8)
    layer = MultiHeadAttention(cfg)
    variables = _shaken(layer.init(jax.random.key(1), x, mask))
    (y, _), state = layer.apply(variables, x, mask, mutable=["intermediates"])
    (sown,) = state["intermediates"]["attention_weights"]
    y_plain, _ = layer.apply(variables, x, mask)
    np.testing.assert_array_equal(y, y_plain)
    # Recomputed from the parameters: q = x W_q + b_q, k = x W_k + b_k, softmax(q k / sqrt(H)).
    p = variables["params"]
    q = jnp.einsum("BTD,DNH->BTNH", x, p["query"]["kernel"]) + p["query"]["bias"][None, None]
    k = jnp.einsum("BTD,DNH->BTNH", x, p["key"]["kernel"]) + p["key"]["bias"][None, None]
    np.testing.assert_allclose(sown, numpy_probs(q, k), rtol=1e-5, atol=1e-6)
    # With dropout on, the weights are sown before dropout: still rows of a softmax.
    _, state = layer.apply(
        variables, x, mask, deterministic=False, rngs={"dropout": jax.random.key(2)},
        mutable=["intermediates"],
    )  # fmt: skip
    np.testing.assert_allclose(state["intermediates"]["attention_weights"][0], sown, rtol=1e-6)


def numpy_probs(q, k):
    """Causal softmax(q k^T / sqrt(H)) per batch and head, in float64: probs_BNTS."""
    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    scores = np.einsum("BTNH,BSNH->BNTS", q, k) / np.sqrt(q.shape[-1])
    t = q.shape[1]
    scores = np.where(np.tri(t, dtype=bool), scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    return weights / weights.sum(-1, keepdims=True)


def test_sowing_changes_neither_the_logits_nor_the_gradients():
    cfg = GPTConfig(vocab_size=64, block_size=8, n_layer=2, n_head=2, n_embd=16)
    model = GPT(cfg)
    tokens = jax.random.randint(jax.random.key(0), (2, 8), 0, 64)
    params = _shaken(model.init(jax.random.key(1), tokens))["params"]

    def loss(params, sow):
        if sow:
            logits, state = model.apply({"params": params}, tokens, mutable=["intermediates"])
            assert len(jax.tree.leaves(state)) == cfg.n_layer  # one (1, N, T, T) per layer
        else:
            logits = model.apply({"params": params}, tokens)
        return jnp.mean(logits**2), logits

    (value, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)(
        params, False
    )
    (value_s, logits_s), grads_s = jax.jit(
        jax.value_and_grad(loss, has_aux=True), static_argnums=1
    )(params, True)
    np.testing.assert_array_equal(logits, logits_s)
    np.testing.assert_array_equal(value, value_s)
    jax.tree.map(np.testing.assert_array_equal, grads, grads_s)
    # Without a mutable collection the model returns its logits alone: nothing else is computed.
    jaxpr = jax.make_jaxpr(lambda p: model.apply({"params": p}, tokens))(params)
    assert len(jaxpr.out_avals) == 1


def test_qk_norm_scores_are_the_softmax_of_unit_rms_queries_and_keys():
    cfg = GPTConfig(vocab_size=64, block_size=8, n_layer=1, n_head=2, n_embd=16, qk_norm=True)
    x = jax.random.normal(jax.random.key(0), (2, 8, 16))
    mask = attention.causal_mask(jnp.arange(8), 8)
    layer = MultiHeadAttention(cfg)
    variables = _shaken(layer.init(jax.random.key(1), x, mask))
    _, state = layer.apply(variables, x, mask, mutable=["intermediates"])
    (sown,) = state["intermediates"]["attention_weights"]
    # Recomputed in float64: each head's q and k divided by their root mean square.
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    xs = np.asarray(x, np.float64)
    q = np.einsum("BTD,DNH->BTNH", xs, p["query"]["kernel"]) + p["query"]["bias"]
    k = np.einsum("BTD,DNH->BTNH", xs, p["key"]["kernel"]) + p["key"]["bias"]
    rms = lambda a: a / np.sqrt((a**2).mean(-1, keepdims=True) + 1e-6)  # noqa: E731
    np.testing.assert_allclose(sown, numpy_probs(rms(q), rms(k)), rtol=1e-5, atol=1e-6)
    # Hence the scale of the query and key maps no longer matters: times 10, the same output.
    y, _ = layer.apply(variables, x, mask)
    scaled = jax.tree.map(lambda a: a, variables)
    for name in ("query", "key"):
        for part in ("kernel", "bias"):
            scaled["params"][name][part] = 10 * scaled["params"][name][part]
    np.testing.assert_allclose(layer.apply(scaled, x, mask)[0], y, rtol=1e-4, atol=1e-5)
    plain = GPTConfig(**{**cfg.__dict__, "qk_norm": False})
    y_plain, _ = MultiHeadAttention(plain).apply(scaled, x, mask)
    assert np.abs(np.asarray(y_plain) - np.asarray(y)).max() > 1e-2  # without it, it does
