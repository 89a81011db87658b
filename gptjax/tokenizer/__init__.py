"""Byte-level BPE tokenization, tutorial part 1: text becomes numbers.

Pure functions over a frozen ``Tokenizer`` value, matching OpenAI's tiktoken token for token::

    from gptjax import tokenizer as tk

    tok = tk.train(texts, vocab_size=512, pattern="gpt4")
    tk.train_plain(texts, vocab_size=512, pattern="gpt4")  # the same value, as taught (slow)
    ids = tk.encode(tok, "Le chat")            # tiktoken's special-token semantics
    text = tk.decode(tok, ids)
    tk.save(tok, "tokenizer.bpe"); tok = tk.load("tokenizer.bpe")
    tok.separator_id                           # 259 (<eos>): joins documents, starts generation
    enc = tk.to_tiktoken(tok)                  # a tiktoken.Encoding, identical ids
    ids_T = tk.encode_corpus(tok, corpus)      # bulk, numpy, through tiktoken's engine

A part-1 reader starts with ``plain``: the trainer as the tutorial teaches it (count every pair,
merge the most frequent, repeat), with its worked example. ``trainer`` learns the same merges in
the same order, fast; both take ``on_merge`` to report each merge as it is learned.

Modules: ``patterns`` (pre-tokenization regexes), ``vocab`` (the value and the id layout),
``plain`` (the trainer as taught), ``trainer`` (the fast trainer), ``encoder`` (the reference
encoder and decoder), ``serialization`` (gptjax's file format and tiktoken rank files), ``bridge``
(tiktoken), ``__main__`` (the CLI).
"""

from gptjax.tokenizer.bridge import encode_corpus, to_tiktoken
from gptjax.tokenizer.encoder import decode, decode_bytes, encode, encode_ordinary
from gptjax.tokenizer.patterns import PATTERNS
from gptjax.tokenizer.plain import train_plain
from gptjax.tokenizer.serialization import (
    file_format,
    load,
    load_tiktoken,
    read_ranks,
    read_utf8,
    save,
    save_tiktoken,
)
from gptjax.tokenizer.trainer import train
from gptjax.tokenizer.vocab import (
    BOS,
    DEFAULT_SPECIALS,
    EOS,
    FIRST_MERGE_ID,
    PAD,
    UNK,
    Tokenizer,
    parse_specials,
    suggest_specials,
)

__all__ = [
    "BOS",
    "DEFAULT_SPECIALS",
    "EOS",
    "FIRST_MERGE_ID",
    "PAD",
    "PATTERNS",
    "UNK",
    "Tokenizer",
    "decode",
    "decode_bytes",
    "encode",
    "encode_corpus",
    "encode_ordinary",
    "file_format",
    "load",
    "load_tiktoken",
    "parse_specials",
    "read_ranks",
    "read_utf8",
    "save",
    "save_tiktoken",
    "suggest_specials",
    "to_tiktoken",
    "train",
    "train_plain",
]
