"""From a prompt to text with a trained GPT (tutorial part 10).

The model predicts the next token, it is appended, and again: "Le chat" → "mange" → "la" →
"souris". The token-level machinery lives in two pure modules: ``gptjax.generation.sampling``
(greedy, temperature, top-k, top-p) and ``gptjax.generation.decode`` (KV-cache prefill and the
compiled decode loop, with the sliding window past ``block_size``). This module adds text: the
prompt (a too long one keeps its last window, with a warning), the decoding of new tokens and
streaming. The command line is ``gptjax/generate.py``.

The tokenizer's document separator (``tok.separator``: ``<eos>`` in a gptjax vocabulary,
``<|endoftext|>`` in GPT-2's) is the token the training stream puts between documents. So an
empty prompt starts from it, where the model saw every document begin, and a sample stops when
the model produces it, where the model saw every document end.

Streaming runs the compiled loop a few tokens per call and decodes on the host as tokens arrive.
A token is a byte sequence, and a multi-byte UTF-8 character ("é", "→") may be split across two
tokens, so each sample goes through an incremental UTF-8 decoder that holds an incomplete
character back until its last byte arrives; a naive per-chunk decode would print "\\ufffd"
instead. The samples do not depend on streaming: the same seed gives the same text either way.
"""

import codecs
import functools
import warnings
from collections.abc import Callable, Iterable, Iterator

import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from gptjax import tokenizer as tk
from gptjax.generation import decode
from gptjax.generation.sampling import check_sampling_args
from gptjax.model import GPT, check_tokens, init_cache
from gptjax.model.config import GPTConfig

STREAM_CHUNK = 8  # tokens per compiled call when streaming: fast enough to look live


@functools.cache
def model_fns(config: GPTConfig, num_tokens: int | None = None) -> tuple[Callable, Callable]:
    """The GPT as the decode loop's ``logits_fn(params, tokens_BT, cache)`` and ``init_cache_fn``.

    Cached per arguments, so that the same function objects (hence the same compiled loop) serve
    every call; the parameters travel as arguments of a ``Partial``.

    Args:
      config: the model configuration.
      num_tokens: the tokenizer's vocabulary size when the model's is padded beyond it (GPT-2's
        50,257 ids in a 50,304-row table): the padding ids get logit -inf, so they are never drawn.
    """
    model = GPT(config)

    def logits_fn(params, tokens_BT, cache):
        logits_BTV, cache = model.apply({"params": params}, tokens_BT, cache=cache)
        if num_tokens is not None and num_tokens < config.vocab_size:
            logits_BTV = logits_BTV.at[..., num_tokens:].set(-jnp.inf)
        return logits_BTV, cache

    def init_cache_fn(batch_size):
        return init_cache(config, batch_size)

    return logits_fn, init_cache_fn


def prompt_ids(tok: tk.Tokenizer, prompt: str, block_size: int) -> list[int]:
    """Encodes a prompt for generation: the separator when empty, its last window when too long.

    Special-token text in the prompt ("<eos>") is encoded as plain text.

    Args:
      tok: the tokenizer.
      prompt: any text.
      block_size: the model's context length.

    Returns:
      1 to block_size token ids.
    """
    ids = tk.encode(tok, prompt, disallowed_special=())
    if not ids:
        if tok.separator_id is None:
            raise ValueError(
                "an empty prompt starts from the document separator, and this vocabulary has "
                "none (no <eos> or <|endoftext|>): give a prompt"
            )
        ids = [tok.separator_id]
    if len(ids) > block_size:
        warnings.warn(
            f"the prompt has {len(ids)} tokens, more than the model's context of {block_size}: "
            f"keeping its last {block_size} tokens",
            stacklevel=3,
        )
        ids = ids[-block_size:]
    return ids


def stream_text(
    model_config: GPTConfig,
    params,
    tok: tk.Tokenizer,
    prompt: str,
    *,
    max_new_tokens: int,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
    num_samples: int = 1,
    seed: int = 0,
    chunk_size: int | None = STREAM_CHUNK,
) -> Iterator[list[str]]:
    """Generates continuations of ``prompt``, yielding the new text of each sample as it comes.

    Args:
      model_config: the model's configuration.
      params: the model's parameters (the ``params`` collection).
      tok: the tokenizer the model was trained with.
      prompt: the text to continue; "" starts from the separator (``<eos>``).
      max_new_tokens: tokens per sample, at most (a sample stops early at the separator).
      temperature: 0 for greedy, else the softmax temperature.
      top_k: keep the k most likely tokens, 0 for all.
      top_p: nucleus sampling threshold in (0, 1], 1 for all.
      num_samples: samples generated together, in one batch.
      seed: same seed, same samples.
      chunk_size: tokens per compiled call; None generates everything in one call.

    Yields:
      A list of ``num_samples`` strings per chunk: the text completed since the previous one.
    """
    check_sampling_args(temperature, top_k, top_p)
    for name, value, low in [
        ("max_new_tokens", max_new_tokens, 0),
        ("num_samples", num_samples, 1),
    ]:
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value}")
    if tok.vocab_size > model_config.vocab_size:
        raise ValueError(
            f"the tokenizer has {tok.vocab_size} tokens but the model only "
            f"{model_config.vocab_size}: load the tokenizer the model was trained with"
        )
    prompt_BP = np.array([prompt_ids(tok, prompt, model_config.block_size)] * num_samples)
    check_tokens(model_config, prompt_BP)
    logits_fn, init_cache_fn = model_fns(model_config, tok.vocab_size)
    chunks = decode.generate_chunks(
        Partial(logits_fn, params),
        Partial(init_cache_fn),
        prompt_BP,
        block_size=model_config.block_size,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        eos_id=tok.separator_id,
        chunk_size=chunk_size,
    )
    yield from decode_stream(tok, chunks, num_samples)


def decode_stream(
    tok: tk.Tokenizer, chunks: Iterable[list[list[int]]], num_samples: int
) -> Iterator[list[str]]:
    """Decodes chunks of new token ids to text incrementally, one UTF-8 decoder per sample.

    Args:
      tok: the tokenizer.
      chunks: for each chunk, a list of ``num_samples`` lists of token ids.
      num_samples: the number of samples.

    Yields:
      For each chunk, the text of each sample whose characters are complete; then a last list
      with what is left, an incomplete final character becoming U+FFFD (as ``tk.decode`` does).
    """
    decoders = [codecs.getincrementaldecoder("utf-8")(errors="replace") for _ in range(num_samples)]
    for chunk in chunks:
        yield [d.decode(tk.decode_bytes(tok, ids)) for d, ids in zip(decoders, chunk, strict=True)]
    yield [d.decode(b"", final=True) for d in decoders]


def generate_text(
    model_config: GPTConfig,
    params,
    tok: tk.Tokenizer,
    prompt: str,
    *,
    max_new_tokens: int,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
    num_samples: int = 1,
    seed: int = 0,
) -> list[str]:
    """Generates ``num_samples`` continuations of ``prompt`` in one compiled call.

    Args:
      As ``stream_text``.

    Returns:
      ``num_samples`` strings, each the prompt followed by its continuation (without the final
      separator).
    """
    texts = [prompt] * num_samples
    for pieces in stream_text(
        model_config,
        params,
        tok,
        prompt,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        num_samples=num_samples,
        seed=seed,
        chunk_size=None,
    ):
        texts = [t + p for t, p in zip(texts, pieces, strict=True)]
    return texts
