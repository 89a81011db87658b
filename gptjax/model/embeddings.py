"""Token embeddings and the output projection (tutorial part 2: "les embeddings").

A token id is an index into a table of V learned vectors of width D; the model's last step goes
the other way, scoring a width-D vector against every token to give V logits. GPT-2 ties the two:
the same (V, D) table embeds the input and, transposed, projects the output ("weight tying",
Press & Wolf 2017), which saves V x D parameters (38.6M of GPT-2 small's 124M) and helps small
models.

* ``TokenEmbedding`` is ``nn.Embed`` (``__call__`` looks up, ``attend`` projects) whose ``attend``
  accumulates in float32: logits feed a softmax over V and the loss, and bfloat16 logits (8 bits of
  mantissa) would be off by ~0.05 at magnitude 10. The matmul inputs stay in the compute dtype, so
  on an accelerator it still runs at bfloat16 speed.
* ``LMHead`` is the untied output projection, a (D, V) kernel with the same float32 accumulation
  and no bias (as in GPT-2 and nanoGPT).

Both initialise with normal(0.02) (GPT-2) and carry the logical axis names ``vocab`` and ``embed``.
A gather with an id outside [0, V) returns NaN in JAX rather than failing, so ids are checked at
the host boundary (``gptjax.model.check_tokens``).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

EMBED_INIT_STD = 0.02


def embedding_init():
    """normal(0.02) with the logical axis names of a (V, D) table."""
    return nn.with_logical_partitioning(nn.initializers.normal(EMBED_INIT_STD), ("vocab", "embed"))


class TokenEmbedding(nn.Embed):
    """``nn.Embed`` whose ``attend`` returns float32 logits (float32 accumulation).

    Build it with ``embedding_init=embedding_init()``; ``dtype`` is the compute dtype.
    """

    def attend(self, query: jax.Array) -> jax.Array:
        """Score vectors against every token embedding: ``x_BTD @ table_VD^T``.

        Args:
          query: x_BTD (any leading axes).

        Returns:
          logits_BTV, float32.
        """
        dtype = self.dtype or self.embedding.dtype
        return jnp.einsum(
            "...D,VD->...V",
            query.astype(dtype),
            self.embedding.astype(dtype),
            preferred_element_type=jnp.float32,
        )


class LMHead(nn.Module):
    """Untied output projection D -> V, float32 logits.

    Attributes:
      vocab_size: V.
      dtype: compute dtype of the matmul inputs.
      param_dtype: dtype of the kernel.
    """

    vocab_size: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        """Args: x_BTD. Returns: logits_BTV, float32."""
        kernel_DV = self.param(
            "kernel",
            nn.with_logical_partitioning(
                nn.initializers.normal(EMBED_INIT_STD), ("embed", "vocab")
            ),
            (x_BTD.shape[-1], self.vocab_size),
            self.param_dtype,
        )
        return jnp.einsum(
            "BTD,DV->BTV",
            x_BTD.astype(self.dtype),
            kernel_DV.astype(self.dtype),
            preferred_element_type=jnp.float32,
        )
