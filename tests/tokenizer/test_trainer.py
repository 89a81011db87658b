"""Tests of BPE training (gptjax.tokenizer.trainer): the tutorial's golden example, agreement with
the plain trainer as taught (gptjax.tokenizer.plain, itself tested against a naive trainer in
test_plain.py), the on_merge callback, the tie-break rule, order independence, unique token bytes
and the errors for bad input."""

import heapq
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptjax import tokenizer as tk
from gptjax.tokenizer import trainer


def both_trainers(texts, vocab_size, pattern):
    """Trains with the fast and the plain trainer; returns both results and both merge logs."""
    fast_log, plain_log = [], []
    fast = tk.train(texts, vocab_size, pattern, on_merge=lambda *m: fast_log.append(m))
    slow = tk.train_plain(texts, vocab_size, pattern, on_merge=lambda *m: plain_log.append(m))
    return fast, slow, fast_log, plain_log


def assert_trainers_agree(texts, vocab_size, pattern):
    """Same merges in the same order (so the same Tokenizer), with the same counts."""
    fast, slow, fast_log, plain_log = both_trainers(texts, vocab_size, pattern)
    assert fast.merges == slow.merges
    assert fast == slow
    assert fast_log == plain_log
    assert [m[0] for m in fast_log] == list(range(260, vocab_size))
    return fast


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


def test_fast_trainer_equals_plain_trainer_on_the_worked_example():
    for pattern in ("none", "gpt2", "gpt4"):
        tok = assert_trainers_agree("abab abab", 262, pattern)
        assert tok.merges == ((ord("a"), ord("b"), 260), (260, 260, 261))


def test_fast_trainer_equals_plain_trainer_on_a_french_sentence():
    text = "Les élèves étudient l'été près de la forêt, où ça se déroule à côté de l'école."
    tok = assert_trainers_agree(text, 275, "gpt4")
    # "é" is the two bytes 195, 169: the most frequent pair here (7 times), so the first merge.
    assert "é".encode() == bytes([195, 169]) and tok.merges[0] == (195, 169, 260)


@pytest.mark.parametrize(
    ("name", "chars", "n_merges", "pattern"),
    [
        ("tinyshakespeare.txt", 30_000, 200, "gpt2"),
        ("hugo_notredame_fr.txt", 20_000, 200, "gpt4"),
        ("hugo_miserables_fr.txt", 30_000, 140, "gpt4"),
        ("unicode_stress.txt", 6_000, 150, "gpt4"),
        ("hugo_miserables_fr.txt", 2_000, 120, "none"),
    ],
)
def test_fast_trainer_equals_plain_trainer_on_real_text(data_file, name, chars, n_merges, pattern):
    text = data_file(name).read_text(encoding="utf-8")[:chars]
    assert_trainers_agree(text, 260 + n_merges, pattern)


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_fast_trainer_equals_plain_trainer_on_the_python_reference(pattern):
    # Part of every CPython install, so this runs on a fresh clone without the shared data.
    from pydoc_data.topics import topics

    text = "".join(topics[key] for key in sorted(topics))[:30_000]
    assert_trainers_agree(text, 400, pattern)


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.text(alphabet="ab c\né'🙂", max_size=40), min_size=1, max_size=4),
    pattern=st.sampled_from(["gpt2", "gpt4", "none"]),
    n_merges=st.integers(0, 30),
)
def test_fast_trainer_equals_plain_trainer_on_generated_text(texts, pattern, n_merges):
    try:
        expected = tk.train_plain(texts, 260 + n_merges, pattern)
    except ValueError as e:  # an empty corpus, or one that runs out of pairs: the same error
        with pytest.raises(ValueError, match=re.escape(str(e))):
            tk.train(texts, 260 + n_merges, pattern)
    else:
        assert expected == assert_trainers_agree(texts, 260 + n_merges, pattern)


def test_without_a_callback_training_learns_the_same_merges(data_file):
    text = data_file("hugo_notredame_fr.txt").read_text(encoding="utf-8")[:20_000]
    fast, _, fast_log, _ = both_trainers(text, 300, "gpt4")
    assert tk.train(text, 300, "gpt4") == fast
    assert [(left, right, new) for new, left, right, _ in fast_log] == list(fast.merges)


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
    learned = []  # every merge the corpus can give: train until it runs out of pairs
    with pytest.raises(ValueError, match="ran out of pairs"):
        tk.train_plain(texts, 10_000, pattern, on_merge=lambda *m: learned.append(m))
    n = len(learned)
    tok = tk.train(texts, 260 + n, pattern)
    token_bytes = [tok.token_bytes(i) for i in range(tok.vocab_size) if i not in range(256, 260)]
    assert len(set(token_bytes)) == len(token_bytes) == tok.vocab_size - 4
    enc = tk.to_tiktoken(tok)
    for text in texts:
        assert tk.encode_ordinary(tok, text) == enc.encode_ordinary(text)


# The errors for bad input, from both trainers alike.
TRAINERS = pytest.mark.parametrize("train", [tk.train, tk.train_plain], ids=["fast", "plain"])


@TRAINERS
@pytest.mark.parametrize("vocab_size", [259, 0, -5])
def test_vocab_size_below_260_is_rejected(train, vocab_size):
    with pytest.raises(ValueError, match="vocab_size >= 260"):
        train("hello world", vocab_size, "gpt2")


@TRAINERS
@pytest.mark.parametrize("vocab_size", ["512", 512.0, True])
def test_vocab_size_must_be_an_int(train, vocab_size):
    with pytest.raises(ValueError, match="vocab_size must be an int"):
        train("hello world", vocab_size, "gpt2")


@TRAINERS
def test_vocab_size_beyond_the_corpus_says_how_far_it_can_go(train):
    # "hello": h-e, e-l, l-l, l-o, then 3 more merges up to "hello": 4 merges, 264 tokens at most.
    assert train("hello", 264, "none").token_bytes(263) == b"hello"
    with pytest.raises(ValueError, match="largest reachable vocab_size is 264"):
        train("hello", 265, "none")


@TRAINERS
@pytest.mark.parametrize("texts", ["", [], ["", ""]])
def test_empty_corpus_is_rejected(train, texts):
    with pytest.raises(ValueError, match="empty corpus"):
        train(texts, 300, "gpt2")


@TRAINERS
def test_unknown_pattern_is_rejected(train):
    with pytest.raises(ValueError, match="unknown pre-tokenization pattern 'gpt3'.*gpt2, gpt4"):
        train("hello", 300, "gpt3")


@TRAINERS
def test_non_text_items_and_lone_surrogates_are_rejected(train):
    with pytest.raises(ValueError, match="item 1 is bytes"):
        train(["ok", b"bytes"], 261, "gpt2")
    with pytest.raises(ValueError, match="lone surrogate"):
        train("abc \ud800 abc", 261, "gpt2")
