"""Multi-head causal self-attention (tutorial part 5).

N heads attend in parallel, each in its own subspace of size H = D / N: every head has its own
projections of the input to q, k and v, runs the attention of ``gptjax.attention``, and the N
outputs are concatenated and projected back to width D. Heads are an axis of the tensors
(``q_BTNH``), never a Python loop.

Choices:

* q, k and v come from three maps D -> (N, H), kernels ``(D, N, H)`` with logical axes
  ``(embed, heads, head_dim)``, so the heads axis can be sharded; the output map (N, H) -> D has
  the residual initialisation normal(0.02 / sqrt(2 L)) of GPT-2. All four are
  ``feedforward.Linear`` (``nn.DenseGeneral``'s parameters, a backward pass that XLA's CPU
  backend runs without transposing the cotangents). One fused (D, 3, N, H) projection was
  measured too and did not pay on CPU (shakespeare_char: 31.6 CPU-ms per step, against 31.2 with
  three), so the parameters keep GPT-2's three separate q, k, v names.
* RoPE, when on, rotates q and k after projection (tables built once per forward pass, passed in).
* With a KV cache, the new keys and values are written at slots ``index .. index+T-1`` of the
  fixed-size (block_size) cache with ``lax.dynamic_update_slice``, and the queries attend over the
  cache under the mask ``slot <= position`` (which also hides slots not written yet). Shapes never
  change from one token to the next, so one compiled step serves the whole generation. The
  reference implementation reads the cache in chunks of ``DECODE_CHUNK`` slots with an online
  softmax, for only as many chunks as the current length needs (a traced trip count), so a step
  costs O(current length) in attention and O(1) in the projections and MLP. A cache of at most
  one chunk is read whole, without the loop, whose overhead would then buy nothing (measured on a
  busy 2-core CPU, block_size 64: ~0.9 ms per decode step with the loop, ~0.3 ms without). With
  ``attention="dot_product"`` the cached call attends over all block_size slots under the mask
  (``jax.nn.dot_product_attention`` has no notion of a partly filled cache): O(block_size).
* Dropout on the attention weights exists only in the reference path:
  ``jax.nn.dot_product_attention`` has no dropout. So with ``attention="dot_product"``, a
  training call (``deterministic=False``) with ``dropout > 0`` uses the reference path,
  keeping the two settings the same model; set ``dropout=0`` to train through the fused kernel.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from gptjax.model import attention
from gptjax.model.config import GPTConfig
from gptjax.model.feedforward import Linear, residual_std
from gptjax.model.positional import apply_rope

# Key slots per iteration of the cached (decoding) attention; see attention.chunked_attention.
# Caches of at most this many slots are read whole.
DECODE_CHUNK = 128


class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention with optional RoPE and KV cache.

    Attributes:
      config: the model configuration.
    """

    config: GPTConfig

    @nn.compact
    def __call__(
        self,
        x_BTD: jax.Array,
        mask_TS: jax.Array,
        rope_TH: tuple[jax.Array, jax.Array] | None = None,
        kv_BSNH: tuple[jax.Array, jax.Array] | None = None,
        index: jax.Array | None = None,
        deterministic: bool = True,
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
        """Attend from the T new positions to themselves (and to the cache, if given).

        Args:
          x_BTD: input of the block's attention branch.
          mask_TS: bool, from ``attention.causal_mask``; S = T without a cache, block_size with one.
          rope_TH: (cos_TH, sin_TH) from ``positional.rope_tables`` when RoPE is on, else None.
          kv_BSNH: this layer's cache (k_BSNH, v_BSNH) with S = block_size, or None.
          index: int32 scalar, the cache slot of the first new token (with a cache only).
          deterministic: no dropout when True.

        Returns:
          (y_BTD, new kv_BSNH or None).
        """
        cfg = self.config
        n, h = cfg.n_head, cfg.head_size
        dtype, param_dtype = cfg.jnp_dtype, cfg.jnp_param_dtype

        def project(name: str) -> jax.Array:
            return Linear(
                (n, h),
                ("embed", "heads", "head_dim"),
                ("heads", "head_dim"),
                use_bias=cfg.bias,
                dtype=dtype,
                param_dtype=param_dtype,
                name=name,
            )(x_BTD)

        q_BTNH, k_BTNH, v_BTNH = project("query"), project("key"), project("value")
        if rope_TH is not None:
            q_BTNH = apply_rope(q_BTNH, *rope_TH)
            k_BTNH = apply_rope(k_BTNH, *rope_TH)

        if kv_BSNH is None:
            k_BSNH, v_BSNH, new_kv = k_BTNH, v_BTNH, None
        else:
            k_cache, v_cache = kv_BSNH
            start = (0, index, 0, 0)
            k_BSNH = jax.lax.dynamic_update_slice(k_cache, k_BTNH.astype(k_cache.dtype), start)
            v_BSNH = jax.lax.dynamic_update_slice(v_cache, v_BTNH.astype(v_cache.dtype), start)
            new_kv = (k_BSNH, v_BSNH)
            k_BSNH, v_BSNH = k_BSNH.astype(dtype), v_BSNH.astype(dtype)

        attn_dropout = cfg.dropout > 0 and not deterministic
        chunked = kv_BSNH is not None and cfg.block_size > DECODE_CHUNK
        if chunked and cfg.attention == "reference" and not attn_dropout:
            positions_T = index + jnp.arange(x_BTD.shape[1], dtype=jnp.int32)
            out_BTNH = attention.chunked_attention(
                q_BTNH, k_BSNH, v_BSNH, positions_T, DECODE_CHUNK
            )
        elif cfg.attention == "dot_product" and not attn_dropout:
            # Without a cache the mask is the plain causal triangle: let the kernel build it.
            mask = None if kv_BSNH is None else mask_TS
            out_BTNH = attention.dot_product_attention(q_BTNH, k_BSNH, v_BSNH, mask)
        else:
            probs_BNTS = attention.attention_probs(q_BTNH, k_BSNH, mask_TS)
            probs_BNTS = nn.Dropout(cfg.dropout)(probs_BNTS, deterministic=deterministic)
            out_BTNH = attention.weighted_values(probs_BNTS, v_BSNH)

        y_BTD = Linear(
            cfg.n_embd,
            ("heads", "head_dim", "embed"),
            ("embed",),
            in_dims=2,
            std=residual_std(cfg),
            use_bias=cfg.bias,
            dtype=dtype,
            param_dtype=param_dtype,
            name="proj",
        )(out_BTNH)
        y_BTD = nn.Dropout(cfg.dropout)(y_BTD, deterministic=deterministic)
        return y_BTD.astype(dtype), new_kv
