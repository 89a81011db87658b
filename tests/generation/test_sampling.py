"""Tests for gptjax.sampling: the filters against numpy references, and sampled frequencies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.generation import sampling

RNG = np.random.default_rng(0)


def _np_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _np_nucleus(probs, p):
    """The smallest prefix of the tokens sorted by probability (ties: lower id) reaching p."""
    order = sorted(range(len(probs)), key=lambda i: (-probs[i], i))
    kept, mass = [], 0.0
    for i in order:
        if mass >= p:
            break
        kept.append(i)
        mass += probs[i]
    return set(kept)


def test_greedy_picks_the_lowest_id_among_ties():
    logits_BV = jnp.array([[0.0, 2.0, 2.0, 1.0], [5.0, 5.0, 5.0, 5.0]])
    assert sampling.greedy(logits_BV).tolist() == [1, 0]


def test_top_k_keeps_exactly_k_even_with_ties():
    # Small integers make many ties; the kept set must be the k best by (logit desc, id asc).
    logits_BV = RNG.integers(0, 3, size=(64, 12)).astype(np.float32)
    for k in [1, 2, 5, 12]:
        kept_BV = np.isfinite(np.asarray(sampling.top_k_filter(logits_BV, k)))
        assert (kept_BV.sum(axis=-1) == k).all()
        for row, kept in zip(logits_BV, kept_BV, strict=True):
            best = sorted(range(12), key=lambda i, row=row: (-row[i], i))[:k]
            assert set(np.flatnonzero(kept)) == set(best)


def test_top_k_zero_or_beyond_vocab_keeps_everything():
    logits_BV = RNG.normal(size=(3, 7)).astype(np.float32)
    np.testing.assert_array_equal(sampling.top_k_filter(logits_BV, 0), logits_BV)
    np.testing.assert_array_equal(sampling.top_k_filter(logits_BV, 50), logits_BV)


def test_top_p_matches_a_numpy_nucleus():
    logits_BV = (RNG.normal(size=(32, 10)) * 2).astype(np.float32)
    for p in [1e-6, 0.3, 0.75, 0.95]:
        kept_BV = np.isfinite(np.asarray(sampling.top_p_filter(logits_BV, p)))
        for row, kept in zip(logits_BV, kept_BV, strict=True):
            assert set(np.flatnonzero(kept)) == _np_nucleus(_np_softmax(row.astype(np.float64)), p)


def test_top_p_one_keeps_even_negligible_tokens():
    logits_BV = np.array([[30.0, 0.0, -30.0, -60.0]], np.float32)
    np.testing.assert_array_equal(sampling.top_p_filter(logits_BV, 1.0), logits_BV)


def test_limits_equal_greedy():
    logits_BV = (RNG.normal(size=(256, 50)) * 3).astype(np.float32)
    key = jax.random.key(1)
    greedy_B = sampling.greedy(logits_BV)
    for kwargs in [
        dict(temperature=0.0, top_k=7, top_p=0.5),
        dict(temperature=1.0, top_k=1),
        dict(temperature=1.0, top_p=1e-6),
        dict(temperature=1e-4),
    ]:
        np.testing.assert_array_equal(sampling.sample(key, logits_BV, **kwargs), greedy_B)


def _frequencies(logits_V, n, **kwargs):
    logits_BV = jnp.broadcast_to(jnp.asarray(logits_V, jnp.float32), (n, len(logits_V)))
    tokens_B = sampling.sample(jax.random.key(42), logits_BV, **kwargs)
    return np.bincount(np.asarray(tokens_B), minlength=len(logits_V)) / n


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(temperature=1.0), _np_softmax(np.array([2.0, 1.0, 0.5, 0.0, -1.0]))),
        (dict(temperature=0.5), _np_softmax(np.array([4.0, 2.0, 1.0, 0.0, -2.0]))),
        (
            dict(temperature=1.0, top_k=2),
            _np_softmax(np.array([2.0, 1.0, -np.inf, -np.inf, -np.inf])),
        ),
        # softmax([2, 1, .5, 0, -1]) = [.53, .19, .12, .07, .03]: p=0.7 keeps the first two.
        (
            dict(temperature=1.0, top_p=0.7),
            _np_softmax(np.array([2.0, 1.0, -np.inf, -np.inf, -np.inf])),
        ),
    ],
)
def test_sampled_frequencies_match_probabilities(kwargs, expected):
    n = 40_000
    freq = _frequencies([2.0, 1.0, 0.5, 0.0, -1.0], n, **kwargs)
    # Five standard deviations of a binomial frequency: a fixed seed, and still a sane bound.
    tolerance = 5 * np.sqrt(expected * (1 - expected) / n) + 1e-9
    np.testing.assert_array_less(np.abs(freq - expected), tolerance + 1e-12)
    assert (freq[expected == 0] == 0).all()


def test_rows_are_independent_draws():
    tokens_B = sampling.sample(jax.random.key(0), jnp.zeros((64, 8)), temperature=1.0)
    assert len(set(np.asarray(tokens_B).tolist())) > 4


def test_logits_are_used_in_float32():
    # In bfloat16 both logits round to 256.0 and a tie would pick token 0.
    logits_BV = jnp.array([[256.0, 256.5]], jnp.float32)
    assert sampling.sample(jax.random.key(0), logits_BV, temperature=0.0).tolist() == [1]
    assert sampling.top_k_filter(logits_BV.astype(jnp.bfloat16), 1).dtype == jnp.float32


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=-0.1, top_k=0, top_p=1.0), "temperature"),
        (dict(temperature=float("nan"), top_k=0, top_p=1.0), "temperature"),
        (dict(temperature=1.0, top_k=-1, top_p=1.0), "top_k"),
        (dict(temperature=1.0, top_k=2.5, top_p=1.0), "top_k"),
        (dict(temperature=1.0, top_k=0, top_p=0.0), "top_p"),
        (dict(temperature=1.0, top_k=0, top_p=1.5), "top_p"),
    ],
)
def test_bad_settings_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sampling.check_sampling_args(**kwargs)
