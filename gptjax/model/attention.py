"""Scaled dot-product attention with a causal mask (tutorial parts 3 and 4: the concept, Q/K/V).

Each query position asks a question (q), every key position offers an answer label (k) and a
content (v). The weights ``softmax(q . k / sqrt(H))`` say how much of each v to take:

    scores_BNTS = einsum('BTNH,BSNH->BNTS', q, k) / sqrt(H)
    probs_BNTS  = softmax(where(mask_TS, scores, -big), axis=S)
    out_BTNH    = einsum('BNTS,BSNH->BTNH', probs, v)

Everything here is a parameter-free pure function; the projections that make q, k and v live in
``gptjax.multihead``. Choices:

* The causal mask is a function of positions, not of a triangle: query t at absolute position
  ``p_t`` sees key slot s iff ``s <= p_t``. The same rule serves the full forward pass (positions
  0..T-1, S = T) and decoding with a KV cache (positions index..index+T-1 over the S = block_size
  slots of the cache), and it also hides the cache slots not written yet. It is built once per
  forward pass and shared by every layer and head.
* Scores are accumulated in float32 (``preferred_element_type``) and the softmax runs in float32
  whatever the compute dtype: bfloat16 has 8 bits of mantissa, too few for exp and a sum over S.
  Masked scores get ``finfo(float32).min`` rather than -inf, so a fully masked row cannot produce
  NaN (no row is fully masked here, since position 0 is always visible).
* ``dot_product_attention`` wraps ``jax.nn.dot_product_attention``, which also does its softmax
  in float32. In jax 0.10, ``implementation=None`` means XLA; we ask for cuDNN flash attention
  explicitly only where it applies (a GPU, half precision, the plain causal case, a supported head
  size) and let XLA handle everything else, including every CPU run.
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


def chunked_attention(
    q_BTNH: jax.Array,
    k_BSNH: jax.Array,
    v_BSNH: jax.Array,
    q_positions_T: jax.Array,
    chunk: int,
) -> jax.Array:
    """Causal attention over a KV cache that reads only the slots written so far.

    The same result as ``reference_attention(q, k, v, causal_mask(q_positions_T, S))``, computed
    chunk by chunk of key slots with a running (online) softmax, for only as many chunks as the
    last query position needs. The trip count is a traced value, so one compiled step serves every
    cache length while the work grows with the current length, not with S. Forward only (a
    ``while_loop`` has no reverse-mode derivative): this is the decoding path.

    Args:
      q_BTNH: queries of the new tokens.
      k_BSNH: the whole key cache, new keys already written.
      v_BSNH: the whole value cache.
      q_positions_T: int32 absolute positions of the queries, increasing.
      chunk: key slots per iteration (at most S).

    Returns:
      out_BTNH in the dtype of the values.
    """
    b, t, n, h = q_BTNH.shape
    num_slots = k_BSNH.shape[1]
    assert chunk <= num_slots, (chunk, num_slots)
    scale = 1.0 / jnp.sqrt(jnp.float32(h))
    num_chunks = q_positions_T[-1] // chunk + 1

    def body(i, carry):
        max_BNT, sum_BNT, acc_BTNH = carry
        # The last chunk may overhang the cache: slide it back and mask the slots seen already.
        first = jnp.minimum(i * chunk, num_slots - chunk)
        k_chunk = jax.lax.dynamic_slice_in_dim(k_BSNH, first, chunk, axis=1)
        v_chunk = jax.lax.dynamic_slice_in_dim(v_BSNH, first, chunk, axis=1)
        slots_S = first + jnp.arange(chunk, dtype=jnp.int32)
        mask_TS = (slots_S[None, :] <= q_positions_T[:, None]) & (slots_S[None, :] >= i * chunk)
        scores_BNTS = jnp.einsum(
            "BTNH,BSNH->BNTS", q_BTNH, k_chunk, preferred_element_type=jnp.float32
        )
        scores_BNTS = jnp.where(mask_TS[None, None], scores_BNTS * scale, -jnp.inf)
        new_max_BNT = jnp.maximum(max_BNT, scores_BNTS.max(axis=-1))
        # Chunk 0 always holds slot 0, which every query sees, so new_max is finite from there on.
        probs_BNTS = jnp.exp(scores_BNTS - new_max_BNT[..., None])
        rescale_BNT = jnp.exp(max_BNT - new_max_BNT)
        sum_BNT = sum_BNT * rescale_BNT + probs_BNTS.sum(axis=-1)
        acc_BTNH = acc_BTNH * jnp.transpose(rescale_BNT, (0, 2, 1))[..., None] + jnp.einsum(
            "BNTS,BSNH->BTNH", probs_BNTS, v_chunk.astype(jnp.float32)
        )
        return new_max_BNT, sum_BNT, acc_BTNH

    init = (
        jnp.full((b, n, t), -jnp.inf, jnp.float32),
        jnp.zeros((b, n, t), jnp.float32),
        jnp.zeros((b, t, n, h), jnp.float32),
    )
    _, sum_BNT, acc_BTNH = jax.lax.fori_loop(0, num_chunks, body, init)
    return (acc_BTNH / jnp.transpose(sum_BNT, (0, 2, 1))[..., None]).astype(v_BSNH.dtype)


def _use_cudnn(q_BTNH: jax.Array, mask_TS: jax.Array | None) -> bool:
    """Whether cuDNN flash attention applies: GPU, half precision, plain causal, head size ok."""
    head_size = q_BTNH.shape[-1]
    return (
        jax.default_backend() == "gpu"
        and q_BTNH.dtype in (jnp.bfloat16, jnp.float16)
        and mask_TS is None
        and head_size % 8 == 0
        and head_size <= 128
    )


def dot_product_attention(
    q_BTNH: jax.Array, k_BSNH: jax.Array, v_BSNH: jax.Array, mask_TS: jax.Array | None
) -> jax.Array:
    """Attention through ``jax.nn.dot_product_attention`` (cuDNN flash attention where it applies).

    Args:
      q_BTNH: queries.
      k_BSNH: keys.
      v_BSNH: values.
      mask_TS: bool mask as in ``causal_mask``, or None for the plain causal case (S == T, query t
        sees keys 0..t), which lets the fused kernels use their built-in causal masking.

    Returns:
      out_BTNH in the dtype of the queries.
    """
    implementation = "cudnn" if _use_cudnn(q_BTNH, mask_TS) else None
    if mask_TS is None:
        return jax.nn.dot_product_attention(
            q_BTNH, k_BSNH, v_BSNH, is_causal=True, implementation=implementation
        )
    return jax.nn.dot_product_attention(
        q_BTNH, k_BSNH, v_BSNH, mask=mask_TS[None, None], implementation=implementation
    )
