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
    assert gpt2.vocab_size == 50257 and gpt2.bos_id == gpt2.eos_id == gpt2.separator_id == 50256
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
    with pytest.raises(ValueError, match="is not a tokenizer file .*first line is 'hello'"):
        tk.load(other)
    with pytest.raises(ValueError, match="cannot read tokenizer file"):
        tk.load(tmp_path / "missing.bpe")


@pytest.mark.parametrize("load", [tk.load, lambda p: tk.load_tiktoken(p, "gpt2"), tk.file_format])
def test_a_binary_file_is_not_a_tokenizer_file(tmp_path, load):
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\x00\xff\xfe junk")
    with pytest.raises(ValueError) as info:
        load(binary)
    message = str(info.value)
    assert "\n" not in message and f"{str(binary)!r} is not a tokenizer file" in message
    assert "neither a gptjax .bpe file" in message and "byte 1 (0xff) is not text" in message


def test_file_format(tmp_path, tok):
    tk.save(tok, tmp_path / "t.bpe")
    tk.save_tiktoken(tok, tmp_path / "t.tiktoken")
    assert tk.file_format(tmp_path / "t.bpe") == "bpe"
    assert tk.file_format(tmp_path / "t.tiktoken") == "tiktoken"
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ValueError, match="not a tokenizer file .*: it is empty"):
        tk.file_format(tmp_path / "empty")
    with pytest.raises(ValueError, match="is a gptjax tokenizer file, not a tiktoken rank file"):
        tk.load_tiktoken(tmp_path / "t.bpe", "gpt4")


def test_windows_line_endings_read_as_the_original(tmp_path, tok):
    path = tmp_path / "tokenizer.bpe"
    tk.save(tok, path)
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))  # as a Windows editor saves it
    assert tk.load(path) == tok
    ranks = tmp_path / "tok.tiktoken"
    tk.save_tiktoken(tok, ranks)
    ranks.write_bytes(ranks.read_bytes().replace(b"\n", b"\r\n"))
    assert load_tiktoken_bpe(str(ranks)) == dict(tok.mergeable_ranks)  # tiktoken reads it too
    assert tk.read_ranks(ranks) == dict(tok.mergeable_ranks)


def _rank_lines(tmp_path, tok):
    path = tmp_path / "tok.tiktoken"
    tk.save_tiktoken(tok, path)
    return path, path.read_text(encoding="ascii").split("\n")[:-1]


def test_a_rank_file_with_a_token_twice_is_refused_naming_both_lines(tmp_path, tok):
    path, lines = _rank_lines(tmp_path, tok)
    last_rank = lines[-1].split()[1]
    lines[-1] = f"{lines[5].split()[0]} {last_rank}"  # the bytes of line 6 again, at another rank
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    # What tiktoken's own loader does with it: one of the two ranks silently vanishes.
    assert len(load_tiktoken_bpe(str(path))) == len(lines) - 1
    with pytest.raises(ValueError) as info:
        tk.load_tiktoken(path, "gpt4", dict(tok.special_tokens))
    assert f"lines 6 and {len(lines)} both hold the token b'\\x05' (ranks 5 and {last_rank})" in (
        str(info.value)
    )
    assert "\n" not in str(info.value)


def test_a_rank_file_with_a_rank_twice_is_refused_naming_both_lines(tmp_path, tok):
    path, lines = _rank_lines(tmp_path, tok)
    lines[-1] = f"{lines[-1].split()[0]} 7"
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    with pytest.raises(ValueError, match=f"lines 8 and {len(lines)} both give rank 7"):
        tk.read_ranks(path)


def test_a_special_id_that_is_a_rank_is_refused_naming_both(data_file):
    path = data_file("gpt2.tiktoken")
    token = {rank: b for b, rank in load_tiktoken_bpe(str(path)).items()}[50255]
    with pytest.raises(ValueError) as info:
        tk.load_tiktoken(path, "gpt2", {"<|endoftext|>": 50255})
    message = str(info.value)
    assert (
        f"special token '<|endoftext|>' has id 50255, which {path} gives to the token " in message
    )
    assert f"{token!r} (rank 50255)" in message and "<|endoftext|>=50256" in message


def test_ids_left_without_a_token_are_refused_at_load(tmp_path, tok, data_file):
    with pytest.raises(ValueError, match="no token has id 50256, yet ids run up to 70000"):
        tk.load_tiktoken(data_file("gpt2.tiktoken"), "gpt2", {"<|endoftext|>": 70_000})
    # A gptjax vocabulary exported as ranks leaves 256..259 to its specials.
    ranks, _ = _rank_lines(tmp_path, tok)
    with pytest.raises(ValueError, match="no token has id 256.*<pad>=256,<unk>=257") as info:
        tk.load_tiktoken(ranks, "gpt4", {"<|endoftext|>": 300})
    assert "\n" not in str(info.value)
    # A gptjax file with a token line gone (and its count fixed by hand).
    path = _corrupt(tmp_path, tok, lambda ls: [*ls[:-4], ls[-3], "end 4 295", ""])
    with pytest.raises(ValueError, match=f"{path}: no token has id 298, yet ids run up to 299"):
        tk.load(path)


def test_a_special_token_with_a_line_break_cannot_be_made(tmp_path, tok):
    path, _ = _rank_lines(tmp_path, tok)
    specials = {**tok.special_tokens, "<|a\nb|>": 300}
    with pytest.raises(ValueError, match="'<|a\\nb|>' contains a line break"):
        tk.load_tiktoken(path, "gpt4", specials)


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
