"""Choosing the next token from the model's logits: greedy, temperature, top-k, top-p (part 10).

Every function here is pure and works on a batch of logits ``logits_BV`` in float32, whatever the
model's compute dtype: the differences between large logits that decide a sample are lost in
bfloat16. The settings are traced values, not static ones, so changing the temperature or top-k
between two calls never recompiles the decode loop.

The filters compose in the usual order: temperature scales the logits, top-k keeps the k most
likely tokens, top-p then keeps the smallest set of the remaining tokens whose (renormalised)
probability reaches p. A filtered token gets the logit ``-inf`` so that its probability is exactly
zero rather than tiny. Ties are broken towards the lower token id, as ``jnp.argmax`` does, so
top-k keeps exactly k tokens and top-k=1, top-p→0 and temperature→0 all agree with greedy.

  >>> logits_BV = jnp.array([[1.0, 3.0, 2.0]])
  >>> greedy(logits_BV)
  Array([1], dtype=int32)
  >>> top_k_filter(logits_BV, 2)
  Array([[-inf,   3.,   2.]], dtype=float32)
"""

import jax
import jax.numpy as jnp


def check_sampling_args(temperature: float, top_k: int, top_p: float) -> None:
    """Raises a ``ValueError`` naming the bad setting and its valid range.

    Args:
      temperature: 0 for greedy decoding, > 0 to sample.
      top_k: 0 to keep every token, k > 0 to keep the k most likely.
      top_p: in (0, 1]; 1 keeps every token.
    """
    if not temperature >= 0:  # also rejects NaN
        raise ValueError(
            f"temperature must be >= 0 (0 means greedy), got {temperature}; "
            "try 0.8 for varied but sensible text"
        )
    if int(top_k) != top_k or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 disables it), got {top_k}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (1 disables it), got {top_p}; try 0.9")


def greedy(logits_BV: jax.Array) -> jax.Array:
    """The most likely token of each row, the lowest id among ties.

    Args:
      logits_BV: logits, any float dtype.

    Returns:
      tokens_B, int32.
    """
    return jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)


def _descending_order(logits_BV: jax.Array) -> jax.Array:
    # A stable sort of the negated logits: among equal logits the lower id comes first, which
    # gives every token a distinct rank and makes the filters agree with argmax.
    return jnp.argsort(-logits_BV, axis=-1, stable=True)


def _unsort(keep_sorted_BV: jax.Array, order_BV: jax.Array) -> jax.Array:
    """Scatters a mask given in descending order back to vocabulary order."""
    rows_B1 = jnp.arange(order_BV.shape[0])[:, None]
    return jnp.zeros_like(keep_sorted_BV).at[rows_B1, order_BV].set(keep_sorted_BV)


def top_k_filter(logits_BV: jax.Array, k: int | jax.Array) -> jax.Array:
    """Keeps exactly the k largest logits of each row (ties by lower id), the rest become -inf.

    Args:
      logits_BV: logits.
      k: number of tokens to keep, 0 to keep them all; may be a traced scalar.

    Returns:
      float32 logits_BV.
    """
    logits_BV = logits_BV.astype(jnp.float32)
    order_BV = _descending_order(logits_BV)
    rank_V = jnp.arange(logits_BV.shape[-1])
    keep_sorted_BV = jnp.broadcast_to((rank_V < k) | (k == 0), logits_BV.shape)
    return jnp.where(_unsort(keep_sorted_BV, order_BV), logits_BV, -jnp.inf)


def top_p_filter(logits_BV: jax.Array, p: float | jax.Array) -> jax.Array:
    """Nucleus filter: keeps the most likely tokens until their probability reaches p.

    A token is kept when the probability of the tokens ranked before it is below p, so the most
    likely token is always kept and p→0 is greedy. p = 1 keeps every token (tested exactly, since
    the cumulated probabilities can round past 1 and would drop the least likely tokens).

    Args:
      logits_BV: logits, -inf for tokens already filtered out.
      p: in (0, 1]; may be a traced scalar.

    Returns:
      float32 logits_BV.
    """
    logits_BV = logits_BV.astype(jnp.float32)
    order_BV = _descending_order(logits_BV)
    sorted_BV = jnp.take_along_axis(logits_BV, order_BV, axis=-1)
    probs_BV = jax.nn.softmax(sorted_BV, axis=-1)
    mass_before_BV = jnp.cumsum(probs_BV, axis=-1) - probs_BV
    keep_sorted_BV = (mass_before_BV < p) | (p >= 1)
    return jnp.where(_unsort(keep_sorted_BV, order_BV), logits_BV, -jnp.inf)


def sample(
    key: jax.Array,
    logits_BV: jax.Array,
    temperature: float | jax.Array,
    top_k: int | jax.Array = 0,
    top_p: float | jax.Array = 1.0,
) -> jax.Array:
    """Draws one token per row: greedy when temperature is 0, else filtered softmax sampling.

    The settings are validated by ``check_sampling_args`` at the boundary, not here, because here
    they may be traced values.

    Args:
      key: PRNG key; rows get independent draws.
      logits_BV: logits, any float dtype (computed in float32).
      temperature: >= 0.
      top_k: >= 0, 0 disables.
      top_p: in (0, 1], 1 disables.

    Returns:
      tokens_B, int32.
    """
    logits_BV = logits_BV.astype(jnp.float32)
    # Dividing by a placeholder 1 when temperature is 0 keeps the sampled branch finite; its
    # result is then discarded for the greedy one.
    scaled_BV = logits_BV / jnp.where(temperature > 0, temperature, 1.0)
    # The filters sort the vocabulary; skip that work when they are disabled.
    scaled_BV = jax.lax.cond(
        top_k > 0, lambda x: top_k_filter(x, top_k), lambda x: x.astype(jnp.float32), scaled_BV
    )
    scaled_BV = jax.lax.cond(
        top_p < 1, lambda x: top_p_filter(x, top_p), lambda x: x.astype(jnp.float32), scaled_BV
    )
    sampled_B = jax.random.categorical(key, scaled_BV, axis=-1).astype(jnp.int32)
    return jnp.where(temperature > 0, sampled_B, greedy(logits_BV))
