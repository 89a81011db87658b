"""The full GPT (tutorial part 8): embeddings, L pre-LN blocks, final norm, output projection.

    x = embed(tokens) [+ positions]                       x_BTD
    for each block:  x = x + attn(norm(x));  x = x + mlp(norm(x))
    logits = norm(x) @ embedding^T                        logits_BTV, float32

Usage (see docs/design.md)::

    model = GPT(cfg)
    variables = model.init(key, tokens_BT)
    logits_BTV = model.apply(variables, tokens_BT)                       # eval, deterministic
    logits_BTV = model.apply(variables, tokens_BT, deterministic=False, rngs={"dropout": key})
    cache = init_cache(cfg, batch_size)
    logits_BTV, cache = model.apply(variables, prompt_BT, cache=cache)   # prefill
    logits_B1V, cache = model.apply(variables, next_B1, cache=cache)     # one step

Choices:

* Pre-LN blocks (GPT-2): the norm sits at the start of each branch, so the residual stream is a
  clean sum and deep stacks train without warmup tricks; a final norm precedes the output.
* GPT-2 initialisation: normal(0.02) everywhere, normal(0.02 / sqrt(2 L)) for the two projections
  that write into the residual stream, zero biases, unit norm scales.
* Dtype policy: parameters in ``param_dtype`` (float32), activations and matmuls in ``dtype``,
  with attention softmax, norm statistics and logits in float32. Logits are always float32.
* Ablations (``experiments/ladder.py``). ``n_layer=0`` is the tutorial's first model, the bigram:
  no block, so the logits at position t are a function of token t (and, with learned positions,
  of t), and the cache holds no keys or values, only the index that positions count from.
  ``mlp_ratio=0`` leaves the MLP branch (and its norm ``ln_2``) out of every block.
* The KV cache is an explicit pytree (``KVCache``) passed in and returned, not a mutable flax
  collection: generation stays a pure function and jit sees fixed shapes (block_size slots per
  layer). Keys are cached after RoPE, so a step rotates only its own new key.
* Checks. At trace time the model checks what shapes and dtypes say (rank, integer ids, length
  with learned positions, cache layout) and raises ``ValueError`` before compiling. It cannot check
  the values of traced arrays: an id outside [0, V) would silently gather NaN, and a cache written
  past block_size would be clamped by ``dynamic_update_slice``. Callers check concrete tokens at
  the host boundary, before jit, with ``check_tokens``.
"""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gptjax.model.attention import causal_mask
from gptjax.model.config import GPTConfig
from gptjax.model.embeddings import LMHead, TokenEmbedding, embedding_init
from gptjax.model.feedforward import MLP, make_norm
from gptjax.model.multihead import MultiHeadAttention
from gptjax.model.positional import LearnedPositions, rope_tables, sinusoidal_encoding


@flax.struct.dataclass
class KVCache:
    """Keys and values of the positions seen so far, per layer, in fixed-size buffers.

    Attributes:
      k: one k_BSNH per layer, S = block_size, compute dtype (none when ``n_layer=0``).
      v: one v_BSNH per layer.
      index: int32 scalar, the number of positions written (the slot of the next token).
    """

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]
    index: jax.Array


def init_cache(config: GPTConfig, batch_size: int) -> KVCache:
    """An empty cache: zeros of shape (B, block_size, N, H) per layer, ``index == 0``.

    Args:
      config: the model configuration.
      batch_size: B, the number of sequences decoded together.

    Returns:
      A ``KVCache`` in the compute dtype.
    """
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int | np.integer)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    shape = (int(batch_size), config.block_size, config.n_head, config.head_size)
    zeros = tuple(jnp.zeros(shape, config.jnp_dtype) for _ in range(config.n_layer))
    return KVCache(k=zeros, v=tuple(jnp.zeros_like(z) for z in zeros), index=jnp.int32(0))


def check_tokens(config: GPTConfig, tokens_BT, *, start: int | None = None) -> None:
    """Validate concrete token ids at the host boundary, before they enter jit.

    Inside jit the values of ``tokens_BT`` are unknown, and a gather outside the table returns NaN
    instead of failing; call this on the host on every batch or prompt coming from outside.

    Args:
      config: the model configuration.
      tokens_BT: integer ids, shape (B, T); a NumPy or concrete JAX array.
      start: None for a plain forward pass; with a KV cache, the cache index where these tokens go
        (their positions are start .. start+T-1, and the cache holds block_size of them).

    Raises:
      ValueError: wrong rank or dtype, ids outside [0, vocab_size), or too long a sequence.
    """
    if isinstance(tokens_BT, jax.core.Tracer):
        raise ValueError("check_tokens needs concrete values: call it outside jax.jit")
    tokens = np.asarray(tokens_BT)
    _check_shape_dtype(config, tokens.shape, tokens.dtype, cached=start is not None)
    if start is not None and start + tokens.shape[1] > config.block_size:
        raise ValueError(
            f"the KV cache holds block_size={config.block_size} positions; "
            f"{tokens.shape[1]} tokens at index {start} would end at "
            f"{start + tokens.shape[1]}: crop the context first"
        )
    if tokens.size:
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= config.vocab_size:
            raise ValueError(
                f"token ids must lie in [0, vocab_size={config.vocab_size}), got ids in "
                f"[{low}, {high}]: is the tokenizer's vocabulary the model's?"
            )


def _check_shape_dtype(config: GPTConfig, shape, dtype, cached: bool) -> None:
    """What can be checked from shape and dtype alone, so also at trace time."""
    if len(shape) != 2:
        raise ValueError(f"tokens must have shape (batch, time), got shape {tuple(shape)}")
    if not (jnp.issubdtype(dtype, jnp.integer) and dtype != jnp.bool_):
        raise ValueError(f"tokens must be integer ids, got dtype {dtype}")
    t = shape[1]
    if (cached or config.pos_encoding == "learned") and t > config.block_size:
        why = "the KV cache" if cached else "learned positions"
        raise ValueError(
            f"sequence of {t} tokens is longer than block_size={config.block_size}, the limit of "
            f"{why}: crop to the last {config.block_size} tokens"
        )


def _check_cache(config: GPTConfig, cache: KVCache, batch_size: int) -> None:
    want = (batch_size, config.block_size, config.n_head, config.head_size)
    if len(cache.k) != config.n_layer or len(cache.v) != config.n_layer:
        raise ValueError(f"cache has {len(cache.k)} layers, the model {config.n_layer}")
    for a in (*cache.k, *cache.v):
        if a.shape != want:
            raise ValueError(
                f"cache arrays must have shape {want} (batch, block_size, heads, head size), got "
                f"{a.shape}: build it with init_cache(config, batch_size={batch_size})"
            )


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``.

    With ``mlp_ratio=0`` the second branch is left out: ``x + attn(norm(x))`` alone.

    Attributes:
      config: the model configuration.
    """

    config: GPTConfig

    @nn.compact
    def __call__(self, x_BTD, mask_TS, rope_TH, kv_BSNH, index, deterministic):
        """Args and returns as ``MultiHeadAttention``: (x_BTD, new kv_BSNH or None)."""
        cfg = self.config
        h_BTD, new_kv = MultiHeadAttention(cfg, name="attn")(
            make_norm(cfg, "ln_1")(x_BTD), mask_TS, rope_TH, kv_BSNH, index, deterministic
        )
        x_BTD = x_BTD + h_BTD
        if cfg.mlp_width:
            x_BTD = x_BTD + MLP(cfg, name="mlp")(make_norm(cfg, "ln_2")(x_BTD), deterministic)
        return x_BTD, new_kv


class GPT(nn.Module):
    """Decoder-only transformer language model.

    Attributes:
      config: the model configuration.
    """

    config: GPTConfig

    def setup(self):
        cfg = self.config
        dtype, param_dtype = cfg.jnp_dtype, cfg.jnp_param_dtype
        # setup rather than compact: the token table serves twice, to embed and (tied) to project.
        self.wte = TokenEmbedding(
            cfg.vocab_size,
            cfg.n_embd,
            dtype=dtype,
            param_dtype=param_dtype,
            embedding_init=embedding_init(),
        )
        if cfg.pos_encoding == "learned":
            self.wpe = LearnedPositions(cfg.block_size, cfg.n_embd, dtype, param_dtype)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = [Block(cfg) for _ in range(cfg.n_layer)]
        self.ln_f = make_norm(cfg)
        if not cfg.tie_embeddings:
            self.lm_head = LMHead(cfg.vocab_size, dtype, param_dtype)

    def __call__(
        self, tokens_BT: jax.Array, deterministic: bool = True, cache: KVCache | None = None
    ):
        """Logits for every position (and the updated cache when one is given).

        Args:
          tokens_BT: integer ids in [0, vocab_size); check concrete ids with ``check_tokens``.
          deterministic: True (eval) disables dropout; False needs ``rngs={"dropout": key}``.
          cache: None for a plain forward pass; a ``KVCache`` to decode, the tokens taking
            positions ``cache.index .. cache.index+T-1`` (the caller keeps that below block_size).

        Returns:
          logits_BTV (float32) without a cache; ``(logits_BTV, new_cache)`` with one, where
          ``new_cache.index == cache.index + T``.
        """
        cfg = self.config
        _check_shape_dtype(cfg, tokens_BT.shape, tokens_BT.dtype, cached=cache is not None)
        b, t = tokens_BT.shape
        if cache is None:
            index = jnp.int32(0)
            num_keys = t
        else:
            _check_cache(cfg, cache, b)
            index = jnp.asarray(cache.index, jnp.int32)
            num_keys = cfg.block_size
        # Masks and position tables: built once here, shared by every layer and head.
        positions_T = index + jnp.arange(t, dtype=jnp.int32)
        mask_TS = causal_mask(positions_T, num_keys)
        rope_TH = rope_tables(positions_T, cfg.head_size) if cfg.pos_encoding == "rope" else None

        x_BTD = self.wte(tokens_BT.astype(jnp.int32))
        if cfg.pos_encoding == "learned":
            x_BTD = x_BTD + self.wpe(positions_T)[None]
        elif cfg.pos_encoding == "sinusoidal":
            # The table's entries are of order 1 while the token embeddings (normal 0.02) are 50x
            # smaller: added as is, position would swamp the token after the first norm and the
            # model stalls. Vaswani et al. (section 3.4) scale the embeddings by sqrt(D); so do we.
            x_BTD = x_BTD * jnp.sqrt(jnp.asarray(cfg.n_embd, x_BTD.dtype))
            x_BTD = x_BTD + sinusoidal_encoding(positions_T, cfg.n_embd).astype(x_BTD.dtype)[None]
        x_BTD = self.drop(x_BTD, deterministic=deterministic)

        new_k, new_v = [], []
        for i, block in enumerate(self.blocks):
            kv_BSNH = None if cache is None else (cache.k[i], cache.v[i])
            x_BTD, new_kv = block(x_BTD, mask_TS, rope_TH, kv_BSNH, index, deterministic)
            if cache is not None:
                new_k.append(new_kv[0])
                new_v.append(new_kv[1])

        x_BTD = self.ln_f(x_BTD)
        logits_BTV = self.wte.attend(x_BTD) if cfg.tie_embeddings else self.lm_head(x_BTD)
        if cache is None:
            return logits_BTV
        return logits_BTV, KVCache(k=tuple(new_k), v=tuple(new_v), index=index + t)
