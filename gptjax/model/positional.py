"""Positional encoding (tutorial part 6): telling attention where each token sits.

Attention alone is blind to order (a permutation of the keys permutes nothing in the output), so
the model gets positions one of four ways, chosen by ``GPTConfig.pos_encoding``:

* ``learned`` (GPT-2): a trained table of ``block_size`` vectors added to the token embeddings.
  It cannot go past ``block_size``.
* ``sinusoidal`` (Vaswani et al. 2017): the fixed table
  ``PE[p, 2i] = sin(p / 10000^(2i/D))``, ``PE[p, 2i+1] = cos(p / 10000^(2i/D))``, added to the
  embeddings; no parameters. Computed from the positions on the fly (a T x D sin/cos), which is as
  cheap as a gather and needs no stored table.
* ``rope`` (Su et al. 2021, RoFormer): q and k of every head are rotated by an angle proportional
  to their position, so ``q_p . k_p'`` depends only on ``p - p'``. We use the "rotate half"
  layout of GPT-NeoX and Llama (feature i pairs with feature i + H/2) rather than interleaved
  pairs: same maths, contiguous slices instead of strided ones. The cos/sin tables are built once
  per forward pass and shared by every layer and head; the rotation runs in float32.
* ``none``: no positional signal; the causal mask alone leaks order (a known working baseline).

All functions take absolute positions, so the same code serves the full forward pass (0..T-1)
and KV-cache decoding (index..index+T-1).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

ROPE_BASE = 10000.0
SINUSOID_BASE = 10000.0


def sinusoidal_encoding(positions_T: jax.Array, width: int) -> jax.Array:
    """The fixed sinusoidal encoding of Vaswani et al., sine on even features, cosine on odd.

    Args:
      positions_T: absolute positions, shape (T,).
      width: D, an even model width.

    Returns:
      pe_TD, float32, ``pe[t, 2i] = sin(p_t / 10000^(2i/D))`` and
      ``pe[t, 2i+1] = cos(p_t / 10000^(2i/D))``.
    """
    assert width % 2 == 0, "GPTConfig rejects odd widths with sinusoidal positions"
    inv_freq = SINUSOID_BASE ** (-jnp.arange(0, width, 2, dtype=jnp.float32) / width)
    angles_TK = positions_T.astype(jnp.float32)[:, None] * inv_freq[None, :]  # K = D / 2 pairs
    # Stack then reshape interleaves: [sin0, cos0, sin1, cos1, ...].
    pe_TK2 = jnp.stack([jnp.sin(angles_TK), jnp.cos(angles_TK)], axis=-1)
    return pe_TK2.reshape(positions_T.shape[0], width)


def rope_tables(positions_T: jax.Array, head_size: int) -> tuple[jax.Array, jax.Array]:
    """Cosine and sine tables of the rotary encoding, "rotate half" layout.

    Args:
      positions_T: absolute positions, shape (T,).
      head_size: H, even.

    Returns:
      (cos_TH, sin_TH), float32; both halves of the last axis repeat the same H/2 frequencies
      ``10000^(-2i/H)``, so feature i and feature i + H/2 rotate together.
    """
    assert head_size % 2 == 0, "GPTConfig rejects odd head sizes with RoPE"
    inv_freq = ROPE_BASE ** (-jnp.arange(0, head_size, 2, dtype=jnp.float32) / head_size)
    angles_TK = positions_T.astype(jnp.float32)[:, None] * inv_freq[None, :]
    angles_TH = jnp.concatenate([angles_TK, angles_TK], axis=-1)
    return jnp.cos(angles_TH), jnp.sin(angles_TH)


def apply_rope(x_BTNH: jax.Array, cos_TH: jax.Array, sin_TH: jax.Array) -> jax.Array:
    """Rotate each (i, i + H/2) feature pair of every head by its position's angle.

    Args:
      x_BTNH: queries or keys.
      cos_TH: from ``rope_tables``.
      sin_TH: from ``rope_tables``.

    Returns:
      The rotated tensor, same shape and dtype as ``x_BTNH``.
    """
    x = x_BTNH.astype(jnp.float32)
    half = x.shape[-1] // 2
    # rotate_half(x) = [-x2, x1]: the 2-D rotation [[cos, -sin], [sin, cos]] on each pair.
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    cos = cos_TH[None, :, None, :]
    sin = sin_TH[None, :, None, :]
    return (x * cos + rotated * sin).astype(x_BTNH.dtype)


class LearnedPositions(nn.Module):
    """GPT-2's learned position table, ``block_size`` vectors of width D.

    Attributes:
      block_size: number of positions.
      width: D.
      dtype: dtype of the returned embeddings.
      param_dtype: dtype of the table.
    """

    block_size: int
    width: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, positions_T: jax.Array) -> jax.Array:
        """Look up the vectors of the given positions.

        Args:
          positions_T: int32 positions in [0, block_size); checked at the host boundary
            (``gptjax.model.check_tokens``), since a gather cannot check traced values.

        Returns:
          pos_TD in ``dtype``.
        """
        table = self.param(  # (block_size, D)
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(0.02), ("pos", "embed")),
            (self.block_size, self.width),
            self.param_dtype,
        )
        return jnp.take(table, positions_T, axis=0).astype(self.dtype)
