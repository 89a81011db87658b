"""Parity with tiktoken on the real corpora, token list for token list (gptjax.tokenizer.bridge
and encoder): GPT-2's published ranks, and vocabularies trained here with both patterns."""

import functools
from pathlib import Path

import numpy as np
import pytest
import tiktoken
from tiktoken.load import load_tiktoken_bpe
from tiktoken_ext.openai_public import r50k_pat_str

from gptjax import tokenizer as tk

CORPORA = [
    "tinyshakespeare.txt",
    "hugo_miserables_fr.txt",
    "hugo_notredame_fr.txt",
    "unicode_stress.txt",
]
# Published GPT-2 token counts (shared data README, from tiktoken 0.14.0 with r50k_base).
GPT2_TOKENS = {
    "tinyshakespeare.txt": 338_025,
    "hugo_miserables_fr.txt": 1_211_394,
    "hugo_notredame_fr.txt": 385_700,
    "unicode_stress.txt": 24_749,
}


@functools.cache
def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@functools.cache
def _r50k(path: Path) -> tiktoken.Encoding:
    # Built from tiktoken's own loader and pattern: nothing of gptjax's import code in it.
    return tiktoken.Encoding(
        "r50k_base",
        pat_str=r50k_pat_str,
        mergeable_ranks=load_tiktoken_bpe(str(path)),
        special_tokens={"<|endoftext|>": 50256},
    )


@pytest.mark.parametrize("name", CORPORA)
def test_gpt2_ranks_full_corpus_parity(data_file, name):
    ranks_path = data_file("gpt2.tiktoken")
    tok = tk.load_tiktoken(ranks_path, "gpt2", {"<|endoftext|>": 50256})
    text = _read(data_file(name))
    expected = _r50k(ranks_path).encode_ordinary(text)
    assert len(expected) == GPT2_TOKENS[name]
    assert tk.encode_ordinary(tok, text) == expected
    ids_T = tk.encode_corpus(tok, text)
    assert ids_T.dtype == np.uint16 and ids_T.shape == (len(expected),)
    assert np.array_equal(ids_T, np.asarray(expected))


@functools.cache
def _train(paths: tuple[Path, ...], vocab_size: int, pattern: str) -> tk.Tokenizer:
    return tk.train([_read(p) for p in paths], vocab_size, pattern)


@pytest.mark.parametrize(
    ("vocab_size", "pattern", "train_on"),
    [
        (300, "gpt2", ("tinyshakespeare.txt",)),
        (1024, "gpt4", ("tinyshakespeare.txt",)),
        (4096, "gpt2", ("hugo_notredame_fr.txt", "unicode_stress.txt")),
        (4096, "gpt4", ("tinyshakespeare.txt", "unicode_stress.txt")),
        (2000, "gpt4", ("hugo_miserables_fr.txt",)),
    ],
)
def test_trained_vocabulary_full_corpus_parity(data_file, vocab_size, pattern, train_on):
    tok = _train(tuple(data_file(n) for n in train_on), vocab_size, pattern)
    assert tok.vocab_size == vocab_size
    enc = tk.to_tiktoken(tok)
    assert enc.n_vocab == vocab_size and enc.max_token_value == vocab_size - 1
    for name in CORPORA:
        text = _read(data_file(name))
        ours = tk.encode_ordinary(tok, text)
        assert ours == enc.encode_ordinary(text), name
        assert np.array_equal(tk.encode_corpus(tok, text), np.asarray(ours, dtype=np.uint16))


def test_tiktoken_handles_the_special_id_gap(data_file):
    tok = _train((data_file("tinyshakespeare.txt"),), 1024, "gpt4")
    enc = tk.to_tiktoken(tok)
    text = "<bos>To be, or not to be<eos><pad><unk>"
    ids = enc.encode(text, allowed_special="all")
    assert ids[0] == 258 and ids[-3:] == [259, 256, 257]
    assert ids == tk.encode(tok, text, allowed_special="all")
    assert enc.decode([258, 259]) == "<bos><eos>" == tk.decode(tok, [258, 259])
    # Bytes 0-255 are ids 0-255 and the first merge is 260, in both engines.
    assert enc.encode_single_token(b"A") == 65 and enc.decode_single_token_bytes(260) == (
        tok.token_bytes(260)
    )


def test_encode_corpus_uses_uint32_beyond_65536_ids():
    # Every byte pair a token of its own, ids counting down so that "\x00\x00" gets the last,
    # 65791: a gap-free vocabulary of 65,792 ids, past what uint16 holds.
    ranks = {bytes([b]): b for b in range(256)}
    ranks.update(
        {bytes([a, b]): 256 + 65535 - (a * 256 + b) for a in range(256) for b in range(256)}
    )
    tok = tk.Tokenizer("none", ranks, {})
    text = "\x00\x00 ab\x00\x00"
    ids_T = tk.encode_corpus(tok, text)
    assert ids_T.dtype == np.uint32 and 65791 in ids_T.tolist()
    assert ids_T.tolist() == tk.encode_ordinary(tok, text)
