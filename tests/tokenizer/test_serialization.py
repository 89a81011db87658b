"""Tests of saving and loading (gptjax.tokenizer.serialization) and of the command line
(``python -m gptjax.tokenizer``): round trips, tiktoken rank files both ways, corrupted files,
and one clear error line for each user mistake."""

import base64

import pytest
from tiktoken.load import load_tiktoken_bpe

from gptjax import tokenizer as tk

TEXT = "Il était une fois, dans un pays lointain, un roi et une reine. Ils étaient là. " * 5


@pytest.fixture
def tok():
    return tk.train(TEXT, 300, "gpt4")


def test_save_load_round_trip(tmp_path, tok):
    path = tmp_path / "tokenizer.bpe"
    tk.save(tok, path)
    assert path.read_text(encoding="utf-8").startswith("gptjax-bpe 1\npattern gpt4\n")
    loaded = tk.load(path)
    assert loaded == tok
    assert loaded.merges == tok.merges and loaded.vocab_size == 300
    assert tk.encode(loaded, TEXT) == tk.encode(tok, TEXT)


def test_tiktoken_rank_file_round_trip(tmp_path, tok):
    path = tmp_path / "tok.tiktoken"
    tk.save_tiktoken(tok, path)
    assert load_tiktoken_bpe(str(path)) == dict(tok.mergeable_ranks)  # tiktoken reads it
    back = tk.load_tiktoken(path, "gpt4", dict(tok.special_tokens))
    assert back.mergeable_ranks == tok.mergeable_ranks and back.merges == ()
    assert tk.encode(back, TEXT) == tk.encode(tok, TEXT)
    assert tk.load(path, pattern="gpt4", special_tokens=tok.special_tokens) == back


def test_gpt2_rank_file_import(tmp_path, data_file):
    path = data_file("gpt2.tiktoken")
    gpt2 = tk.load_tiktoken(path, "gpt2", {"<|endoftext|>": 50256})
    assert dict(gpt2.mergeable_ranks) == load_tiktoken_bpe(str(path))
    # Single bytes are not in byte order in GPT-2's ranks: "!" is 0, "a" is 64.
    assert gpt2.mergeable_ranks[b"!"] == 0 and gpt2.mergeable_ranks[b"a"] == 64
    assert gpt2.vocab_size == 50257 and gpt2.bos_id == gpt2.eos_id == 50256
    assert tk.encode(gpt2, "Hello world") == [15496, 995]  # tiktoken's documented example
    saved = tmp_path / "gpt2.bpe"
    tk.save(gpt2, saved)
    assert tk.load(saved) == gpt2
    exported = tmp_path / "gpt2.tiktoken"
    tk.save_tiktoken(gpt2, exported)
    assert exported.read_bytes() == path.read_bytes()


def test_rank_file_without_pattern_or_unknown_file_is_a_clear_error(tmp_path, tok):
    ranks = tmp_path / "tok.tiktoken"
    tk.save_tiktoken(tok, ranks)
    with pytest.raises(ValueError, match="tiktoken rank file, which carries no pattern"):
        tk.load(ranks)
    other = tmp_path / "notes.txt"
    other.write_text("hello\n", encoding="utf-8")
    with pytest.raises(ValueError, match="neither a gptjax tokenizer file"):
        tk.load(other)
    with pytest.raises(ValueError, match="cannot read tokenizer file"):
        tk.load(tmp_path / "missing.bpe")
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\x00\xff\xfe junk")
    with pytest.raises(ValueError, match="is not UTF-8: byte 1"):
        tk.load(binary)


def _corrupt(tmp_path, tok, edit):
    path = tmp_path / "tokenizer.bpe"
    tk.save(tok, path)
    lines = path.read_text(encoding="utf-8").split("\n")
    path.write_text("\n".join(edit(lines)), encoding="utf-8")
    return path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ls: ["gptjax-bpe 7", *ls[1:]], "format version '7'"),
        (lambda ls: [ls[0], "pattern gpt3", *ls[2:]], r"line 2: unknown pre-tokenization pattern"),
        (lambda ls: [ls[0], *ls[2:]], "no 'pattern' line"),
        (lambda ls: [*ls[:10], "token 8 !!!notbase64", *ls[11:]], "line 11"),
        (lambda ls: [*ls[:10], "token eight " + _b64(b"\x08"), *ls[11:]], "line 11"),
        (lambda ls: [*ls[:10], "tokken 8 CA==", *ls[11:]], "line 11: unknown record 'tokken'"),
        (lambda ls: ls[:-12], "truncated"),
        (
            lambda ls: [ls[0], ls[1], *ls[6:]],
            "announces 4 specials and 296 tokens, but the file holds 0 and 296",
        ),
        (lambda ls: [*ls[:-3], "token 299 " + _b64(b"zzz") + " 97 98", *ls[-2:]], "not match"),
        (lambda ls: [*ls[:11], ls[10], *ls[12:]], "appear twice"),
        (lambda ls: [*ls[:-2], "token 300 " + _b64(b"A"), *ls[-2:]], "appear twice"),
        (lambda ls: [*ls[:-1], "token 300 " + _b64(b"Az"), ""], "follows the 'end' line"),
        (lambda ls: [*ls[:6], "token 256 " + _b64(b"\x00"), *ls[7:]], "collide|appear twice"),
    ],
)
def test_corrupted_file_is_a_clear_error(tmp_path, tok, edit, message):
    path = _corrupt(tmp_path, tok, edit)
    with pytest.raises(ValueError, match=message) as info:
        tk.load(path)
    assert str(path) in str(info.value)
