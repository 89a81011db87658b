"""Scaled dot-product attention with a causal mask (tutorial parts 3 and 4: the concept, Q/K/V).

Each query position asks a question (q), every key position offers an answer label (k) and a
content (v). The weights ``softmax(q . k / sqrt(H))`` say how much of each v to take:

    scores_BNTS = einsum('BTNH,BSNH->BNTS', q, k) / sqrt(H)
    probs_BNTS  = softmax(where(mask_TS, scores, -big), axis=S)
    out_BTNH    = einsum('BNTS,BSNH->BTNH', probs, v)

Everything here is a parameter-free pure function; the projections that make q, k and v live in
``gptjax.model.multihead``. Choices:

* The causal mask is a function of positions, not of a triangle: query t at absolute position
  ``p_t`` sees key slot s iff ``s <= p_t``. The same rule serves the full forward pass (positions
  0..T-1, S = T) and decoding with a KV cache (positions index..index+T-1 over the S = block_size
  slots of the cache), and it also hides the cache slots not written yet. It is built once per
  forward pass and shared by every layer and head.
* Scores are accumulated in float32 (``preferred_element_type``) and the softmax runs in float32
  whatever the compute dtype: bfloat16 has 8 bits of mantissa, too few for exp and a sum over S.
  Masked scores get ``finfo(float32).min`` rather than -inf, so a fully masked row cannot produce
  NaN (no row is fully masked here, since position 0 is always visible).
* Faster computations of the same attention (cuDNN's fused kernel on a GPU, a decoding loop
  that reads only the filled part of a KV cache) live in ``gptjax.model.kernels``.
"""

import jax
import jax.numpy as jnp


def causal_mask(q_positions_T: jax.Array, num_keys: int) -> jax.Array:
    """Which key slots each query may attend to.

    Args:
      q_positions_T: int32 absolute positions of the queries, shape (T,).
      num_keys: S, the number of key slots (T without a cache, block_size with one).

    Returns:
      mask_TS, bool, True where query t may attend to key slot s (``s <= q_positions_T[t]``).
    """
    k_positions_S = jnp.arange(num_keys, dtype=jnp.int32)
    return k_positions_S[None, :] <= q_positions_T[:, None]


def attention_probs(q_BTNH: jax.Array, k_BSNH: jax.Array, mask_TS: jax.Array) -> jax.Array:
    """Attention weights ``softmax(q k^T / sqrt(H))`` under a mask, in float32.

    Args:
      q_BTNH: queries.
      k_BSNH: keys (same dtype as the queries).
      mask_TS: bool, True where attending is allowed; broadcast over batch and heads.

    Returns:
      probs_BNTS, float32, each row summing to 1 over S.
    """
    scale = 1.0 / jnp.sqrt(jnp.float32(q_BTNH.shape[-1]))
    scores_BNTS = jnp.einsum("BTNH,BSNH->BNTS", q_BTNH, k_BSNH, preferred_element_type=jnp.float32)
    scores_BNTS = scores_BNTS * scale
    scores_BNTS = jnp.where(mask_TS[None, None], scores_BNTS, jnp.finfo(jnp.float32).min)
    return jax.nn.softmax(scores_BNTS, axis=-1)


def weighted_values(probs_BNTS: jax.Array, v_BSNH: jax.Array) -> jax.Array:
    """Mix the values with the attention weights.

    Args:
      probs_BNTS: attention weights (float32).
      v_BSNH: values.

    Returns:
      out_BTNH in the dtype of the values.
    """
    # Weights go down to the compute dtype for the matmul, as in jax.nn.dot_product_attention.
    return jnp.einsum("BNTS,BSNH->BTNH", probs_BNTS.astype(v_BSNH.dtype), v_BSNH)


def reference_attention(
    q_BTNH: jax.Array, k_BSNH: jax.Array, v_BSNH: jax.Array, mask_TS: jax.Array
) -> jax.Array:
    """The readable reference: ``softmax(q k^T / sqrt(H) + mask) v``.

    Args:
      q_BTNH: queries.
      k_BSNH: keys.
      v_BSNH: values.
      mask_TS: bool, True where attending is allowed (see ``causal_mask``).

    Returns:
      out_BTNH in the dtype of the values.
    """
    return weighted_values(attention_probs(q_BTNH, k_BSNH, mask_TS), v_BSNH)
