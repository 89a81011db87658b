"""The KV-cache decode loop: predict the next token, append it, repeat (part 10).

"Le chat" → "mange" → "la" → "souris": each new token needs the keys and values of every token
before it. Recomputing them at every step costs a full forward pass over the context per token;
the KV cache keeps them, so a step only runs the new token through the model. Generation is:

1. **prefill**: one forward pass over the prompt fills the cache and predicts the first token;
2. **decode**: a ``jax.lax.while_loop`` samples a token, writes it into a fixed-size token buffer
   and feeds it back through the model, one position at a time. The loop is compiled once per
   (batch size, ``max_new_tokens``, block size): no Python per token, no recompilation per token,
   and none when the prompt, the sampling settings or the seed change.

The loop knows nothing of GPT: it takes ``logits_fn(tokens_BT, cache) -> (logits_BTV, cache)``
and ``init_cache_fn(batch_size) -> cache``, so tests drive it with a fake model whose answer is
known. Pass them as ``jax.tree_util.Partial`` (the parameters as its arguments) so that they are
traced inputs rather than constants baked into the compiled code; a plain function is wrapped.

**Sliding window.** The cache holds at most ``block_size`` positions. When it is full and one more
token must be fed, the context slides: the cache is emptied and re-filled (one prefill) with the
last ``block_size // 2`` tokens, the new one included. The model thus always sees between half a
window and a full window of context, with positions counted from the window's start, exactly as a
model recomputing logits from scratch on that window would; sliding by half a window (rather than
by one token, which would re-prefill at every step) amortises a prefill over block_size/2 steps.

**Stopping.** A row that samples ``eos_id`` is finished: it keeps stepping with the batch but its
later tokens are ``eos_id`` and the host drops them. The loop stops at ``max_new_tokens`` or when
every row is finished. For streaming the host runs it in chunks (``stop_at`` a few steps ahead):
the same compiled loop, and the same tokens, since the key of step i is ``fold_in(key, i)``
whatever the chunking.
"""

import functools
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from gptjax.generation import sampling


class DecodeState(NamedTuple):
    """What the loop carries from one step (and one compiled call) to the next."""

    tokens_BM: jax.Array  # int32, the prompt window then the new tokens; M = block + max_new
    length: jax.Array  # int32 scalar, tokens written in tokens_BM
    start: jax.Array  # int32 scalar, the cache holds positions [start, length) of tokens_BM
    cache: Any  # the model's KV cache
    logits_BV: jax.Array  # float32, the prediction for position `length`
    done_B: jax.Array  # bool, the row has sampled eos
    step: jax.Array  # int32 scalar, tokens sampled so far per row


class Settings(NamedTuple):
    """Sampling settings as traced scalars: changing them does not recompile."""

    key: jax.Array
    temperature: jax.Array
    top_k: jax.Array
    top_p: jax.Array
    eos_id: jax.Array  # -1 when the vocabulary has no end-of-sequence token


def slide_keep(block_size: int) -> int:
    """Tokens kept (the new one included) when the context slides: half a window, at least 1."""
    return max(1, block_size // 2)


def _as_partial(fn: Callable) -> Partial:
    return fn if isinstance(fn, Partial) else Partial(fn)


@functools.partial(jax.jit, static_argnames=("block_size", "max_new_tokens"))
def prefill(
    logits_fn: Partial,
    init_cache_fn: Partial,
    prompt_BP: jax.Array,
    *,
    block_size: int,
    max_new_tokens: int,
) -> DecodeState:
    """Runs the prompt through the model into a fresh cache (compiled once per prompt length).

    Args:
      logits_fn: ``(tokens_BT, cache) -> (logits_BTV, cache)``.
      init_cache_fn: ``batch_size -> cache``, an empty cache of ``block_size`` positions.
      prompt_BP: int32 prompt tokens, 1 <= P <= block_size.
      block_size: the model's context length.
      max_new_tokens: room to leave in the token buffer.

    Returns:
      The state before the first sampled token.
    """
    B, P = prompt_BP.shape
    assert 1 <= P <= block_size, (P, block_size)
    logits_BPV, cache = logits_fn(prompt_BP, init_cache_fn(B))
    tokens_BM = jnp.zeros((B, block_size + max_new_tokens), jnp.int32)
    tokens_BM = tokens_BM.at[:, :P].set(prompt_BP)
    return DecodeState(
        tokens_BM=tokens_BM,
        length=jnp.int32(P),
        start=jnp.int32(0),
        cache=cache,
        logits_BV=logits_BPV[:, -1].astype(jnp.float32),
        done_B=jnp.zeros((B,), bool),
        step=jnp.int32(0),
    )


@functools.partial(jax.jit, static_argnames=("block_size",))
def decode(
    logits_fn: Partial,
    init_cache_fn: Partial,
    state: DecodeState,
    settings: Settings,
    stop_at: jax.Array,
    *,
    block_size: int,
) -> DecodeState:
    """Samples tokens until ``state.step == stop_at`` or every row is finished.

    Args:
      logits_fn: ``(tokens_BT, cache) -> (logits_BTV, cache)``.
      init_cache_fn: ``batch_size -> cache``, used when the context slides.
      state: from ``prefill`` or a previous ``decode``.
      settings: sampling settings.
      stop_at: int32 scalar, at most the buffer's ``max_new_tokens``.
      block_size: the model's context length (the cache size).

    Returns:
      The state after the last sampled token.
    """
    B = state.tokens_BM.shape[0]
    keep = slide_keep(block_size)

    def feed_one(s: DecodeState, next_B: jax.Array, length: jax.Array):
        logits_B1V, cache = logits_fn(next_B[:, None], s.cache)
        return logits_B1V[:, -1].astype(jnp.float32), cache, s.start

    def slide(s: DecodeState, next_B: jax.Array, length: jax.Array):
        del next_B  # already in tokens_BM, at position length - 1
        window_BK = jax.lax.dynamic_slice(s.tokens_BM, (0, length - keep), (B, keep))
        logits_BKV, cache = logits_fn(window_BK, init_cache_fn(B))
        return logits_BKV[:, -1].astype(jnp.float32), cache, length - keep

    def body(s: DecodeState) -> DecodeState:
        key = jax.random.fold_in(settings.key, s.step)
        next_B = sampling.sample(
            key, s.logits_BV, settings.temperature, settings.top_k, settings.top_p
        )
        next_B = jnp.where(s.done_B, settings.eos_id, next_B)
        s = s._replace(
            tokens_BM=jax.lax.dynamic_update_slice(s.tokens_BM, next_B[:, None], (0, s.length))
        )
        length = s.length + 1
        cache_full = s.length - s.start == block_size
        logits_BV, cache, start = jax.lax.cond(cache_full, slide, feed_one, s, next_B, length)
        return s._replace(
            length=length,
            start=start,
            cache=cache,
            logits_BV=logits_BV,
            done_B=s.done_B | (next_B == settings.eos_id),
            step=s.step + 1,
        )

    def cond(s: DecodeState) -> jax.Array:
        return (s.step < stop_at) & ~jnp.all(s.done_B)

    return jax.lax.while_loop(cond, body, state)


def generate_chunks(
    logits_fn: Callable,
    init_cache_fn: Callable,
    prompt_BP: np.ndarray,
    *,
    block_size: int,
    max_new_tokens: int,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    eos_id: int | None = None,
    chunk_size: int | None = None,
) -> Iterator[list[list[int]]]:
    """Generates from a batch of prompts, yielding the new tokens of each row chunk by chunk.

    Rows stop at ``eos_id`` (not yielded) or after ``max_new_tokens``. With ``chunk_size`` None the
    whole generation is one compiled call and one chunk; otherwise each chunk is one call of the
    same compiled loop covering ``chunk_size`` steps, which is what streaming needs. The tokens do
    not depend on the chunking.

    Args:
      logits_fn: ``(tokens_BT, cache) -> (logits_BTV, cache)``, ideally a ``Partial``.
      init_cache_fn: ``batch_size -> cache``, ideally a ``Partial``.
      prompt_BP: int prompt tokens, 1 <= P <= block_size (the caller truncates longer prompts).
      block_size: the model's context length.
      max_new_tokens: tokens to sample per row, at most.
      temperature, top_k, top_p: see ``gptjax.generation.sampling.sample``.
      seed: the samples are a function of (seed, prompt, settings).
      eos_id: end-of-sequence token, None for none.
      chunk_size: steps per compiled call, None for all of them in one.

    Yields:
      One list of new token ids per row, for each chunk.
    """
    sampling.check_sampling_args(temperature, top_k, top_p)
    prompt_BP = np.asarray(prompt_BP, np.int32)
    B, P = prompt_BP.shape
    if not 1 <= P <= block_size:
        raise ValueError(f"the prompt must have 1 to block_size={block_size} tokens, got {P}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    if max_new_tokens == 0:
        return
    logits_fn, init_cache_fn = _as_partial(logits_fn), _as_partial(init_cache_fn)
    settings = Settings(
        key=jax.random.key(seed),
        temperature=jnp.float32(temperature),
        top_k=jnp.int32(top_k),
        top_p=jnp.float32(top_p),
        eos_id=jnp.int32(-1 if eos_id is None else eos_id),
    )
    state = prefill(
        logits_fn, init_cache_fn, prompt_BP, block_size=block_size, max_new_tokens=max_new_tokens
    )
    finished = [False] * B
    done = 0
    while done < max_new_tokens and not all(finished):
        stop_at = max_new_tokens if chunk_size is None else min(done + chunk_size, max_new_tokens)
        state = decode(
            logits_fn, init_cache_fn, state, settings, jnp.int32(stop_at), block_size=block_size
        )
        new_BC = np.asarray(state.tokens_BM[:, P + done : P + stop_at])
        chunk = []
        for row, tokens in enumerate(new_BC.tolist()):
            kept = []
            for token in tokens:
                if finished[row]:
                    break
                if token == eos_id:
                    finished[row] = True
                else:
                    kept.append(token)
            chunk.append(kept)
        done = stop_at
        yield chunk
