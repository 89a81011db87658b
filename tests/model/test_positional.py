"""Positional encodings: the sinusoidal closed form, RoPE's relative-position property."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.model import positional


def test_sinusoidal_matches_closed_form():
    d = 16
    pe = np.asarray(positional.sinusoidal_encoding(jnp.arange(50), d))
    assert pe.shape == (50, 16) and pe.dtype == np.float32
    # Position 0: sin 0 = 0 on even features, cos 0 = 1 on odd ones.
    np.testing.assert_array_equal(pe[0], np.tile([0.0, 1.0], d // 2))
    # Feature pair i = 0 has frequency 1: pe[p, 0] = sin p, pe[p, 1] = cos p.
    assert pe[1, 0] == pytest.approx(math.sin(1.0), abs=1e-6)
    assert pe[1, 1] == pytest.approx(math.cos(1.0), abs=1e-6)
    # PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d)).
    for p, i in [(7, 1), (49, 3), (25, 7)]:
        angle = p / 10000 ** (2 * i / d)
        assert pe[p, 2 * i] == pytest.approx(math.sin(angle), abs=1e-5)
        assert pe[p, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-5)


def rotated(x, positions):
    return positional.apply_rope(x, *positional.rope_tables(positions, x.shape[-1]))


def test_rope_scores_depend_only_on_relative_position():
    kq, kk = jax.random.split(jax.random.key(0))
    q = jax.random.normal(kq, (1, 6, 2, 16))
    k = jax.random.normal(kk, (1, 6, 2, 16))
    positions = jnp.arange(6)
    scores = jnp.einsum("BTNH,BSNH->BNTS", rotated(q, positions), rotated(k, positions))
    for shift in (1, 13, 500):
        shifted = jnp.einsum(
            "BTNH,BSNH->BNTS", rotated(q, positions + shift), rotated(k, positions + shift)
        )
        np.testing.assert_allclose(shifted, scores, rtol=1e-4, atol=1e-4)
    # And they do depend on the relative position: the property is not vacuous.
    apart = jnp.einsum("BTNH,BSNH->BNTS", rotated(q, positions), rotated(k, positions * 2))
    assert not np.allclose(apart, scores, atol=1e-2)


def test_rope_matches_complex_rotation():
    # Independent form: feature pair (i, i + H/2) as a complex number times e^{i p theta_i}.
    h = 8
    x = jax.random.normal(jax.random.key(1), (1, 5, 1, h))
    positions = jnp.arange(3, 8)
    theta = 10000.0 ** (-np.arange(0, h, 2) / h)
    z = np.asarray(x[0, :, 0, : h // 2]) + 1j * np.asarray(x[0, :, 0, h // 2 :])
    z = z * np.exp(1j * np.asarray(positions)[:, None] * theta[None, :])
    want = np.concatenate([z.real, z.imag], axis=-1)
    np.testing.assert_allclose(rotated(x, positions)[0, :, 0], want, rtol=1e-5, atol=1e-5)


def test_rope_keeps_dtype_and_is_identity_at_position_zero():
    x = jax.random.normal(jax.random.key(2), (2, 1, 3, 8)).astype(jnp.bfloat16)
    out = rotated(x, jnp.zeros((1,), jnp.int32))
    assert out.dtype == jnp.bfloat16
    np.testing.assert_array_equal(out, x)


def test_learned_positions_look_up_rows():
    module = positional.LearnedPositions(block_size=8, width=4)
    variables = module.init(jax.random.key(0), jnp.arange(8))
    table = variables["params"]["embedding"].unbox()
    np.testing.assert_array_equal(
        module.apply(variables, jnp.array([5, 2])), np.asarray(table)[[5, 2]]
    )
    assert table.std() == pytest.approx(0.02, rel=0.5)
