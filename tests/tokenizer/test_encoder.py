"""Tests of the reference encoder and decoder (gptjax.tokenizer.encoder): round trips, special
tokens against tiktoken's own ``encode``, generated strings against tiktoken, the two byte-pair
merge implementations against each other, and the errors for bad input."""

import functools
from pathlib import Path

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiktoken.load import load_tiktoken_bpe
from tiktoken_ext.openai_public import r50k_pat_str

from gptjax import tokenizer as tk
from gptjax.tokenizer import encoder

# The fixtures below return values built once, so sharing them across examples is safe.
_FIXTURES = [HealthCheck.function_scoped_fixture]

ROUND_TRIPS = [
    "",
    "a",
    "é",
    "Le cœur a ses raisons.",
    "👩‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👨🏽‍💻 coder",  # ZWJ sequences and modifiers
    "\n\n  \t x\r\n",
    "e\u0301\u0327 \u200b\u202e",
    "\U0010ffff\ufffe",
]


@functools.cache
def _trained(notredame: Path, stress: Path) -> dict[str, tk.Tokenizer]:
    texts = [notredame.read_text(encoding="utf-8")[:300_000], stress.read_text(encoding="utf-8")]
    return {p: tk.train(texts, 1500, p) for p in ("gpt2", "gpt4")}


@functools.cache
def _gpt2(path: Path) -> tuple[tk.Tokenizer, tiktoken.Encoding]:
    tok = tk.load_tiktoken(path, "gpt2", {"<|endoftext|>": 50256})
    # tiktoken's own loader and pattern: independent of gptjax's import code.
    enc = tiktoken.Encoding(
        "r50k_base",
        pat_str=r50k_pat_str,
        mergeable_ranks=load_tiktoken_bpe(str(path)),
        special_tokens={"<|endoftext|>": 50256},
    )
    return tok, enc


@pytest.fixture
def trained(data_file):
    """Vocabularies of 1500 trained on real French and Unicode text, per pattern (built once)."""
    return _trained(data_file("hugo_notredame_fr.txt"), data_file("unicode_stress.txt"))


@pytest.fixture
def gpt2(data_file):
    """GPT-2's published ranks: gptjax's import and tiktoken's own Encoding (built once)."""
    return _gpt2(data_file("gpt2.tiktoken"))


@pytest.mark.parametrize("text", ROUND_TRIPS)
def test_round_trip(trained, gpt2, text):
    for tok in (*trained.values(), gpt2[0]):
        ids = tk.encode(tok, text)
        assert tk.decode(tok, ids) == text
        assert tk.decode_bytes(tok, ids) == text.encode("utf-8")


def test_one_character_and_two_byte_character(trained):
    tok = tk.train("xyz", 260, "gpt2")  # bytes only
    assert tk.encode(tok, "é") == list("é".encode()) == [0xC3, 0xA9]
    assert tk.encode(tok, "a") == [97]
    assert tk.encode(trained["gpt4"], "é") == [trained["gpt4"].mergeable_ranks["é".encode()]]


def test_round_trip_unicode_stress_file(data_file, trained, gpt2):
    text = data_file("unicode_stress.txt").read_text(encoding="utf-8")
    for tok in (*trained.values(), gpt2[0]):
        assert tk.decode(tok, tk.encode_ordinary(tok, text)) == text


def test_unk_is_never_emitted(data_file, trained):
    text = data_file("unicode_stress.txt").read_text(encoding="utf-8")
    strange = "".join(map(chr, range(0, 0x3000, 7))).replace("\ud800", "")
    for tok in trained.values():
        for t in (text, strange, "xkzbrt ʘ‿ʘ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"):
            assert tk.UNK not in t
            assert 257 not in tk.encode(tok, t, allowed_special="all")


def test_lone_surrogate_is_a_clear_error(trained):
    tok = trained["gpt2"]
    for f in (tk.encode, tk.encode_ordinary, tk.encode_corpus):
        with pytest.raises(ValueError, match=r"lone surrogate '\\ud83d' at index 6"):
            f(tok, "hello \ud83d world")


def test_non_str_input_is_rejected(trained):
    with pytest.raises(ValueError, match="expects a str, got bytes"):
        tk.encode_ordinary(trained["gpt2"], b"hello")


SPECIAL_TEXTS = [
    "plain text",
    "<bos>Il était une fois<eos>",
    "<eos><eos> <pad>x<unk>",
    "<eo<eos>s> <bos",
    "<|endoftext|> and <eos>",
]
SPECIAL_ARGS = [
    {},
    {"allowed_special": "all"},
    {"allowed_special": {"<eos>"}},
    {"allowed_special": {"<eos>"}, "disallowed_special": ()},
    {"disallowed_special": ()},
    {"disallowed_special": {"<pad>"}},
    {"allowed_special": {"<bos>", "<|endoftext|>"}, "disallowed_special": ()},
]


@pytest.mark.parametrize("kwargs", SPECIAL_ARGS)
@pytest.mark.parametrize("text", SPECIAL_TEXTS)
def test_special_tokens_behave_as_tiktoken(trained, gpt2, text, kwargs):
    args = kwargs  # names a vocabulary lacks are simply never found, in both libraries
    for tok, enc in ((trained["gpt4"], tk.to_tiktoken(trained["gpt4"])), gpt2):
        try:
            expected = enc.encode(text, **args)
        except ValueError:
            with pytest.raises(ValueError, match="special token"):
                tk.encode(tok, text, **args)
        else:
            assert tk.encode(tok, text, **args) == expected
            assert tk.decode(tok, expected) == text
        assert tk.encode_ordinary(tok, text) == enc.encode_ordinary(text)


def test_allowed_specials_encode_to_single_ids(trained):
    tok = trained["gpt4"]
    ids = tk.encode(tok, "<bos>salut<eos>", allowed_special="all")
    assert ids[0] == tok.bos_id == 258 and ids[-1] == tok.eos_id == 259
    assert tk.decode(tok, ids) == "<bos>salut<eos>"
    assert 259 not in tk.encode_ordinary(tok, "<bos>salut<eos>")


def test_decode_replaces_invalid_utf8_like_tiktoken(gpt2):
    tok, enc = gpt2
    ids = tk.encode(tok, "café 👩‍👩‍👧")
    for k in range(len(ids) + 1):
        assert tk.decode(tok, ids[:k]) == enc.decode(ids[:k])
        assert tk.decode_bytes(tok, ids[:k]) == enc.decode_bytes(ids[:k])
    assert "\ufffd" in tk.decode(tok, ids[:-1])


def test_decode_unknown_id_is_a_clear_error(trained):
    with pytest.raises(ValueError, match="token id 1500 is not in this vocabulary"):
        tk.decode(trained["gpt2"], [72, 1500])


@settings(max_examples=300, deadline=None, suppress_health_check=_FIXTURES)
@given(text=st.text())
def test_generated_strings_match_tiktoken(trained, gpt2, text):
    for tok, enc in (*((t, tk.to_tiktoken(t)) for t in trained.values()), gpt2):
        assert tk.encode_ordinary(tok, text) == enc.encode_ordinary(text)


# Characters that stress the regexes: contractions, the long s and Kelvin sign that
# case-insensitive matching folds, digits, CR/LF runs, Unicode spaces and marks.
_TRICKY = "'sStTdDmMlLvVrReE ſ\u212ak 0123456789\r\n\t \u00a0\u2028\u3000.,!?-_«»é\u0301😀\u200d"


@settings(max_examples=300, deadline=None, suppress_health_check=_FIXTURES)
@given(text=st.text(alphabet=_TRICKY, max_size=40))
def test_tricky_strings_match_tiktoken(trained, gpt2, text):
    for tok, enc in (*((t, tk.to_tiktoken(t)) for t in trained.values()), gpt2):
        assert tk.encode_ordinary(tok, text) == enc.encode_ordinary(text)


@settings(max_examples=200, deadline=None, suppress_health_check=_FIXTURES)
@given(piece=st.binary(min_size=1, max_size=300) | st.text(alphabet="ab e\n", max_size=300))
def test_heap_merge_equals_scan_merge(trained, gpt2, piece):
    piece = piece.encode() if isinstance(piece, str) else piece
    for tok in (trained["gpt4"], gpt2[0]):
        ranks = tok.mergeable_ranks
        expected = encoder.bpe_scan(piece, ranks)
        assert encoder.bpe_heap(piece, ranks) == expected
        assert b"".join(tok.token_bytes(i) for i in expected) == piece


def test_long_pieces_match_tiktoken(gpt2):
    tok, enc = gpt2
    for text in (" " * 1000 + "x", "=" * 777, "ab" * 500, "\n" * 300 + "a" * 300):
        assert tk.encode_ordinary(tok, text) == enc.encode_ordinary(text)
    none = tk.Tokenizer("none", tok.mergeable_ranks, tok.special_tokens)
    text = "Longtemps, je me suis couché de bonne heure. " * 20
    assert tk.encode_ordinary(none, text) == tk.to_tiktoken(none).encode_ordinary(text)
