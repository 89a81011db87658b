"""Multi-head causal self-attention (tutorial part 5).

N heads attend in parallel, each in its own subspace of size H = D / N: every head has its own
projections of the input to q, k and v, runs the attention of ``gptjax.model.attention``, and the
N outputs are concatenated and projected back to width D. Heads are an axis of the tensors
(``q_BTNH``), never a Python loop::

    q_BTNH, k_BTNH, v_BTNH = x_BTD @ W_q, x_BTD @ W_k, x_BTD @ W_v      (each W: D x N x H)
    out_BTNH = attention(q, k, v, mask)                                 (per head)
    y_BTD    = out_BTNH @ W_proj                                        (W_proj: N x H x D)

Choices:

* q, k and v come from three dense maps D -> (N, H), kernels ``(D, N, H)`` with logical axes
  ``(embed, heads, head_dim)``, so the heads axis can be sharded; the output map (N, H) -> D has
  the residual initialisation normal(0.02 / sqrt(2 L)) of GPT-2. Three separate maps keep GPT-2's
  three q, k, v parameter names.
* QK-norm (``GPTConfig.qk_norm``), when on, divides each head's q and k by their root mean square
  (Flax's ``nn.RMSNorm`` without a scale), so every score is at most ``sqrt(H)`` in size.
* RoPE, when on, rotates q and k after projection (tables built once per forward pass, passed in).
* With a KV cache, the new keys and values are written at slots ``index .. index+T-1`` of the
  fixed-size (block_size) cache with ``lax.dynamic_update_slice``, and the queries attend over the
  cache under the mask ``slot <= position`` (which also hides slots not written yet). Shapes never
  change from one token to the next, so one compiled step serves the whole generation.
* Dropout applies to the attention weights and to the output.
* Under ``GPTConfig.kernels = "fast"``, ``gptjax.model.kernels`` computes the same attention
  faster where it can: over a KV cache longer than ``kernels.DECODE_CHUNK`` it reads only the
  slots written so far (O(current length) per step instead of O(block_size)); without a cache, on
  a GPU in 16-bit floats, it calls cuDNN's fused kernel. Neither has dropout, so a training call
  with ``dropout > 0`` keeps the plain attention.
* The plain attention sows its weights (probs_BNTS, before dropout) into the ``intermediates``
  collection as ``attention_weights``, so a reader can look at them without changing the model:
  ``logits, state = GPT(cfg).apply(variables, tokens, mutable=["intermediates"])`` gives
  ``state["intermediates"]["blocks_0"]["attn"]["attention_weights"] == (probs_BNTS,)``. ``sow``
  does nothing unless the collection is mutable, so training and generation are unchanged. The
  fast kernels never form the weights (cuDNN fuses them away): to see them, apply the model with
  ``kernels="plain"``, which has the same parameters and, up to rounding, the same outputs.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from gptjax.model import attention, kernels
from gptjax.model.config import GPTConfig
from gptjax.model.feedforward import dense, residual_std
from gptjax.model.positional import apply_rope


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
        heads = (cfg.n_head, cfg.head_size)
        axes = ("embed", "heads", "head_dim")
        q_BTNH = dense(cfg, heads, axes, name="query")(x_BTD)
        k_BTNH = dense(cfg, heads, axes, name="key")(x_BTD)
        v_BTNH = dense(cfg, heads, axes, name="value")(x_BTD)
        if cfg.qk_norm:  # Flax's RMSNorm without its scale: each head's vector over its RMS
            rms = nn.RMSNorm(epsilon=1e-6, use_scale=False, dtype=cfg.jnp_dtype, name="qk_norm")
            q_BTNH, k_BTNH = rms(q_BTNH), rms(k_BTNH)
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
            k_BSNH, v_BSNH = k_BSNH.astype(cfg.jnp_dtype), v_BSNH.astype(cfg.jnp_dtype)

        fast = cfg.kernels == "fast" and (deterministic or cfg.dropout == 0)
        if fast and kv_BSNH is not None and cfg.block_size > kernels.DECODE_CHUNK:
            positions_T = index + jnp.arange(x_BTD.shape[1], dtype=jnp.int32)
            out_BTNH = kernels.chunked_attention(
                q_BTNH, k_BSNH, v_BSNH, positions_T, kernels.DECODE_CHUNK
            )
        elif fast and kv_BSNH is None and kernels.cudnn_applies(q_BTNH):
            out_BTNH = kernels.cudnn_causal_attention(q_BTNH, k_BSNH, v_BSNH)
        else:
            probs_BNTS = attention.attention_probs(q_BTNH, k_BSNH, mask_TS)
            # Kept for inspection only when the caller asks for it (see the module docstring).
            self.sow("intermediates", "attention_weights", probs_BNTS)
            probs_BNTS = nn.Dropout(cfg.dropout)(probs_BNTS, deterministic=deterministic)
            out_BTNH = attention.weighted_values(probs_BNTS, v_BSNH)

        y_BTD = dense(
            cfg, cfg.n_embd, ("heads", "head_dim", "embed"), axis=(-2, -1),
            std=residual_std(cfg), name="proj",
        )(out_BTNH)  # fmt: skip
        y_BTD = nn.Dropout(cfg.dropout)(y_BTD, deterministic=deterministic)
        return y_BTD.astype(cfg.jnp_dtype), new_kv
