"""Tests of BPE training (gptjax.tokenizer.trainer): the tutorial's golden example, agreement with
a naive full-recount trainer, the tie-break rule, order independence, unique token bytes and
the errors for bad input."""

import heapq
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptjax import tokenizer as tk
from gptjax.tokenizer import patterns, trainer


def naive_train(texts, n_merges, pattern):
    """The tutorial's trainer, written independently: recount every pair of every chunk
    occurrence after each merge; max count, ties to the smallest (left bytes, right bytes);
    pairs whose bytes are already a token are not candidates."""
    words = [list(c.encode()) for t in texts for c in patterns.split(t, pattern)]
    token_bytes = {i: bytes([i]) for i in range(256)}
    merges = []
    while len(merges) < n_merges:
        counts = Counter(p for w in words for p in zip(w, w[1:], strict=False))
        existing = set(token_bytes.values())
        candidates = [
            (-c, token_bytes[a], token_bytes[b], a, b)
            for (a, b), c in counts.items()
            if token_bytes[a] + token_bytes[b] not in existing
        ]
        if not candidates:
            break
        _, _, _, a, b = min(candidates)
        new = 260 + len(merges)
        token_bytes[new] = token_bytes[a] + token_bytes[b]
        merges.append((a, b, new))
        for k, w in enumerate(words):
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[k] = out
    return tuple(merges)


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4", "none"])
def test_golden_example_abab(pattern):
    tok = tk.train("abab abab", vocab_size=262, pattern=pattern)
    a, b = ord("a"), ord("b")
    assert tok.merges == ((a, b, 260), (260, 260, 261))
    assert tok.token_bytes(260) == b"ab" and tok.token_bytes(261) == b"abab"
    ids = tk.encode(tok, "abab abab")
    no_merges = tk.train("abab abab", vocab_size=260, pattern=pattern)
    assert len(tk.encode(no_merges, "abab abab")) == 9  # 9 tokens become 3
    assert ids == [261, ord(" "), 261]
    assert tok.vocab_size == 256 + 4 + len(tok.merges) == 262


def test_vocab_layout_and_size_formula(data_file):
    text = data_file("tinyshakespeare.txt").read_text(encoding="utf-8")[:200_000]
    for vocab_size in (260, 300, 777):
        tok = tk.train(text, vocab_size, "gpt2")
        assert tok.vocab_size == vocab_size == 256 + 4 + len(tok.merges)
        assert dict(tok.special_tokens) == {"<pad>": 256, "<unk>": 257, "<bos>": 258, "<eos>": 259}
        assert (tok.bos_id, tok.eos_id) == (258, 259)
        assert all(tok.mergeable_ranks[bytes([i])] == i for i in range(256))
        assert [m[2] for m in tok.merges] == list(range(260, vocab_size))
        assert set(tok.decoder) == set(range(vocab_size))


@pytest.mark.parametrize(
    ("name", "chars", "n_merges", "pattern"),
    [
        ("tinyshakespeare.txt", 30_000, 200, "gpt2"),
        ("hugo_notredame_fr.txt", 20_000, 200, "gpt4"),
        ("unicode_stress.txt", 6_000, 150, "gpt4"),
        ("hugo_miserables_fr.txt", 2_000, 120, "none"),
    ],
)
def test_incremental_trainer_equals_naive_trainer(data_file, name, chars, n_merges, pattern):
    text = data_file(name).read_text(encoding="utf-8")[:chars]
    tok = tk.train(text, 260 + n_merges, pattern)
    assert tok.merges == naive_train([text], n_merges, pattern)


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.text(alphabet="ab c\né'", max_size=40), min_size=1, max_size=4),
    pattern=st.sampled_from(["gpt2", "gpt4", "none"]),
    n_merges=st.integers(1, 30),
)
def test_incremental_trainer_equals_naive_trainer_on_generated_text(texts, pattern, n_merges):
    expected = naive_train(texts, n_merges, pattern)
    if not "".join(texts) or len(expected) < n_merges:
        with pytest.raises(ValueError):
            tk.train(texts, 260 + n_merges, pattern)
    else:
        assert tk.train(texts, 260 + n_merges, pattern).merges == expected


def test_tie_break_takes_smallest_bytes():
    # Every pair occurs once: the winner is the smallest (left bytes, right bytes).
    tok = tk.train("zy xw ba", 261, "none")
    assert tok.token_bytes(260) == b" b"
    # Counts beat bytes: "zy" occurs twice.
    tok = tk.train("zy zy ba", 261, "gpt2")
    assert tok.token_bytes(260) == b"zy"
    # Equal counts compare the left token's bytes first, then the right's.
    tok = tk.train(["ca", "cb", "ab"], 263, "gpt2")
    assert [tok.token_bytes(i) for i in (260, 261, 262)] == [b"ab", b"ca", b"cb"]


def test_merges_do_not_depend_on_text_order(data_file):
    lines = data_file("hugo_notredame_fr.txt").read_text(encoding="utf-8").split("\n")[:400]
    reference = tk.train(lines, 600, "gpt4")
    for seed in range(3):
        shuffled = lines[:]
        random.Random(seed).shuffle(shuffled)
        assert shuffled != lines
        assert tk.train(shuffled, 600, "gpt4") == reference
        assert tk.train(iter(shuffled), 600, "gpt4") == reference  # any iterable of texts


def test_a_pair_that_would_duplicate_a_token_is_skipped():
    # The state after learning "abc" as (a, bc): the best pair (ab, c) would give "abc" again.
    ab, bc, abc, c = 260, 261, 262, ord("c")
    token_bytes = {ab: b"ab", bc: b"bc", abc: b"abc", c: b"c", ord("x"): b"x", ord("y"): b"y"}
    pair_counts = {(ab, c): 9, (ord("x"), ord("y")): 5, (ab, ord("x")): 5}
    heap = [(-n, token_bytes[a], token_bytes[b], a, b) for (a, b), n in pair_counts.items()]
    heapq.heapify(heap)
    known = set(token_bytes.values())
    # Next best: count 5, and b"ab" < b"x" for the left bytes.
    assert trainer.pop_best(heap, pair_counts, known) == (ab, ord("x"), b"abx")
    assert trainer.pop_best(heap, pair_counts, known) == (ord("x"), ord("y"), b"xy")
    assert trainer.pop_best(heap, pair_counts, known) is None


@settings(max_examples=40, deadline=None)
@given(
    texts=st.lists(st.text(alphabet="aab c", min_size=1, max_size=60), min_size=1, max_size=5),
    pattern=st.sampled_from(["gpt2", "gpt4", "none"]),
)
def test_trained_token_bytes_are_unique_and_match_tiktoken(texts, pattern):
    n = len(naive_train(texts, 10_000, pattern))  # as far as the corpus goes
    tok = tk.train(texts, 260 + n, pattern)
    token_bytes = [tok.token_bytes(i) for i in range(tok.vocab_size) if i not in range(256, 260)]
    assert len(set(token_bytes)) == len(token_bytes) == tok.vocab_size - 4
    enc = tk.to_tiktoken(tok)
    for text in texts:
        assert tk.encode_ordinary(tok, text) == enc.encode_ordinary(text)


@pytest.mark.parametrize("vocab_size", [259, 0, -5])
def test_vocab_size_below_260_is_rejected(vocab_size):
    with pytest.raises(ValueError, match="vocab_size >= 260"):
        tk.train("hello world", vocab_size, "gpt2")


@pytest.mark.parametrize("vocab_size", ["512", 512.0, True])
def test_vocab_size_must_be_an_int(vocab_size):
    with pytest.raises(ValueError, match="vocab_size must be an int"):
        tk.train("hello world", vocab_size, "gpt2")


def test_vocab_size_beyond_the_corpus_says_how_far_it_can_go():
    # "hello": h-e, e-l, l-l, l-o, then 3 more merges up to "hello": 4 merges, 264 tokens at most.
    assert tk.train("hello", 264, "none").token_bytes(263) == b"hello"
    with pytest.raises(ValueError, match="largest reachable vocab_size is 264"):
        tk.train("hello", 265, "none")


@pytest.mark.parametrize("texts", ["", [], ["", ""]])
def test_empty_corpus_is_rejected(texts):
    with pytest.raises(ValueError, match="empty corpus"):
        tk.train(texts, 300, "gpt2")


def test_unknown_pattern_is_rejected():
    with pytest.raises(ValueError, match="unknown pre-tokenization pattern 'gpt3'.*gpt2, gpt4"):
        tk.train("hello", 300, "gpt3")


def test_non_text_items_and_lone_surrogates_are_rejected():
    with pytest.raises(ValueError, match="item 1 is bytes"):
        tk.train(["ok", b"bytes"], 261, "gpt2")
    with pytest.raises(ValueError, match="lone surrogate"):
        tk.train("abc \ud800 abc", 261, "gpt2")
