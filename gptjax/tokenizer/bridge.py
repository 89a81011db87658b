"""The bridge to tiktoken's Rust engine (tutorial part 1: byte-level BPE).

``to_tiktoken`` turns a Tokenizer into a ``tiktoken.Encoding`` with the same ranks, specials and
pattern, so both give the same ids (the tests check it token for token). Since parity makes them
the same function, whole corpora are encoded through tiktoken at its speed, while the pure encoder
in ``gptjax.tokenizer.encoder`` stays the readable reference.

The gap at ids 256-259 (specials between the bytes and the merges) is fine for tiktoken: it keys
tokens by bytes and uses ranks only to order merges and as output ids; it never assumes that ranks
are contiguous.
"""

import numpy as np
import tiktoken

from gptjax.tokenizer.encoder import _check_valid_unicode
from gptjax.tokenizer.vocab import Tokenizer


def to_tiktoken(tok: Tokenizer) -> tiktoken.Encoding:
    """A ``tiktoken.Encoding`` that behaves exactly as ``tok`` (built once per value, then cached).

    Args:
      tok: the tokenizer.

    Returns:
      The Encoding, named ``gptjax-<pattern>-<vocab_size>``.
    """
    enc = tok.__dict__.get("_tiktoken")
    if enc is None:
        enc = tiktoken.Encoding(
            f"gptjax-{tok.pattern}-{tok.vocab_size}",
            pat_str=tok.pat_str,
            mergeable_ranks=dict(tok.mergeable_ranks),
            special_tokens=dict(tok.special_tokens),
        )
        tok.__dict__["_tiktoken"] = enc  # a cache, not state: the value itself is unchanged
    return enc


def encode_corpus(tok: Tokenizer, text: str) -> np.ndarray:
    """Encodes a whole corpus as ordinary text (special-token text is plain text) via tiktoken.

    Args:
      tok: the tokenizer.
      text: the corpus, any valid Unicode string.

    Returns:
      Token ids of shape (T,), uint16 when ``vocab_size <= 65536``, else uint32; identical to
      ``encode_ordinary(tok, text)``.
    """
    if not isinstance(text, str):
        raise ValueError(f"encode_corpus expects a str, got {type(text).__name__}")
    _check_valid_unicode(text)  # tiktoken would silently replace a lone surrogate
    ids_T = to_tiktoken(tok).encode_to_numpy(text, disallowed_special=())
    dtype = np.uint16 if tok.vocab_size <= 1 << 16 else np.uint32
    return ids_T.astype(dtype)
