"""Tests of the Tokenizer value's contracts (gptjax.tokenizer.vocab): the document separator, ids
without gaps, special tokens a file can hold, and the ``NAME=ID`` list of ``tokenizer.specials``."""

import pytest

from gptjax import tokenizer as tk

BYTES = {bytes([b]): b for b in range(256)}


def _tok(specials, ranks=BYTES):
    return tk.Tokenizer("gpt4", ranks, specials)


@pytest.mark.parametrize(
    ("specials", "separator"),
    [
        (tk.DEFAULT_SPECIALS, "<eos>"),  # a gptjax vocabulary
        ({"<|endoftext|>": 256}, "<|endoftext|>"),  # GPT-2
        ({"<|im_end|>": 256}, "<|im_end|>"),  # the only special, whatever its name
        ({"<|fim|>": 256, "<|endoftext|>": 257}, "<|endoftext|>"),
        ({"<|endoftext|>": 256, "<eos>": 257}, "<eos>"),
        ({"<a>": 256, "<b>": 257}, None),  # several, neither name: no rule picks one
        ({}, None),
    ],
)
def test_the_separator_rule(specials, separator):
    tok = _tok(specials)
    assert tok.separator == separator
    assert tok.separator_id == (None if separator is None else specials[separator])


def test_a_trained_vocabulary_separates_with_eos():
    tok = tk.train("abab abab", 262, "gpt4")
    assert (tok.separator, tok.separator_id) == ("<eos>", 259) == ("<eos>", tok.eos_id)


def test_ids_with_a_gap_are_refused_naming_the_first_missing_id():
    ranks = {**BYTES, b"ab": 258}
    with pytest.raises(ValueError, match="no token has id 256, yet ids run up to 258") as info:
        _tok({}, ranks)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="no token has id 257"):
        _tok({"<|endoftext|>": 256}, ranks)
    assert _tok({"<a>": 256, "<b>": 257}, ranks).vocab_size == 259  # filled: accepted


@pytest.mark.parametrize("name", ["<a\nb>", "<eos>\n", "\r<x>", "<a\r\nb>"])
def test_a_special_token_with_a_line_break_is_refused(name):
    with pytest.raises(ValueError, match="contains a line break") as info:
        _tok({name: 256})
    assert "\n" not in str(info.value)


def test_a_special_token_with_spaces_and_symbols_round_trips(tmp_path):
    # Only line breaks are refused: the rest of a 'special' line is the token's text.
    tok = _tok({" <| a = b, c |> ": 256})
    tk.save(tok, tmp_path / "t.bpe")
    assert tk.load(tmp_path / "t.bpe") == tok


@pytest.mark.parametrize(
    ("text", "specials"),
    [
        ("", {}),
        ("<|endoftext|>=50256", {"<|endoftext|>": 50256}),
        ("<a>=300, <b>=301", {"<a>": 300, "<b>": 301}),
        (" <a>=300 ,<b>=301 ", {"<a>": 300, "<b>": 301}),
        ("<x=y>=7", {"<x=y>": 7}),  # the id follows the last "="
    ],
)
def test_parse_specials(text, specials):
    assert tk.parse_specials(text) == specials


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<|endoftext|>", "expects NAME=ID pairs .* got '<|endoftext|>'"),
        ("=5", "got '=5'"),
        ("<a>=", "got '<a>='"),
        ("<a>=-1", "got '<a>=-1'"),
        ("<a>=²", "got '<a>=²'"),
        ("<a>=1,", "got ''"),
        ("<a>=1,<a>=2", "names the special token '<a>' twice"),
        ("<a>=1,<b>=1", "gives id 1 to both '<a>' and '<b>'"),
    ],
)
def test_parse_specials_refuses_with_one_line_naming_the_flag(text, message):
    with pytest.raises(ValueError, match=message) as info:
        tk.parse_specials(text, "--config.tokenizer.specials")
    assert str(info.value).startswith("--config.tokenizer.specials ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("ids", "suggestion"),
    [
        (range(50256), "<|endoftext|>=50256"),
        ([*range(256), *range(260, 300)], "<pad>=256,<unk>=257,<bos>=258,<eos>=259"),
        ([*range(10), 12, 14], "<|endoftext|>=10,<|unused_11|>=11,<|unused_13|>=13"),
        ([*range(10), 100], None),
    ],
)
def test_suggest_specials(ids, suggestion):
    assert tk.suggest_specials(ids) == suggestion


def test_suggested_specials_give_back_an_exported_vocabulary(tmp_path):
    tok = tk.train("Le chat mange la souris. " * 20, 270, "gpt4")
    tk.save_tiktoken(tok, tmp_path / "t.tiktoken")  # ranks only: 256..259 left unused
    suggestion = tk.suggest_specials(tk.read_ranks(tmp_path / "t.tiktoken").values())
    back = tk.load_tiktoken(tmp_path / "t.tiktoken", "gpt4", tk.parse_specials(suggestion))
    assert back.special_tokens == tok.special_tokens and back.separator_id == tok.separator_id


def test_suggested_special_follows_gapless_ranks():
    ranks = {**BYTES, **{f"t{i}".encode(): i for i in range(256, 300)}}
    tok = _tok(tk.parse_specials(tk.suggest_specials(ranks.values())), ranks)
    assert (tok.separator, tok.separator_id, tok.vocab_size) == ("<|endoftext|>", 300, 301)
