"""Tests of the trainer as the tutorial teaches it (gptjax.tokenizer.plain): the worked example of
its docstring, and agreement with an even more naive trainer that recounts every chunk occurrence
instead of each distinct chunk once with its frequency. (The fast trainer is tested equal to this
one in test_trainer.py.)"""

import doctest
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptjax import tokenizer as tk
from gptjax.tokenizer import patterns, plain


def naive_train(texts, n_merges, pattern):
    """The tutorial's trainer, written independently: recount every pair of every chunk
    occurrence after each merge; max count, ties to the smallest (left bytes, right bytes);
    pairs whose bytes are already a token are not candidates. Stops early when no pair is left."""
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


def test_docstring_examples_hold():
    result = doctest.testmod(plain)
    assert result.attempted >= 7 and result.failed == 0


@pytest.mark.parametrize("pattern", ["none", "gpt2", "gpt4"])
def test_worked_example_abab_is_9_then_5_then_3_tokens(pattern):
    a, b, space = ord("a"), ord("b"), ord(" ")
    steps = [
        tk.encode(tk.train_plain("abab abab", v, pattern), "abab abab") for v in (260, 261, 262)
    ]
    assert steps == [
        [a, b, a, b, space, a, b, a, b],
        [260, 260, space, 260, 260],
        [261, space, 261],
    ]
    learned = []
    tok = tk.train_plain("abab abab", 262, pattern, on_merge=lambda *m: learned.append(m))
    assert tok.merges == ((a, b, 260), (260, 260, 261))
    # (new id, left, right, count): (a, b) occurs 4 times, then (ab, ab) twice, with any pattern.
    assert learned == [(260, a, b, 4), (261, 260, 260, 2)]


def test_ties_go_to_the_smallest_bytes_and_counts_come_first():
    assert tk.train_plain("zy xw ba", 261, "none").token_bytes(260) == b" b"  # all counts 1
    assert tk.train_plain("zy zy ba", 261, "gpt2").token_bytes(260) == b"zy"  # count 2 wins
    tok = tk.train_plain(["ca", "cb", "ab"], 263, "gpt2")
    assert [tok.token_bytes(i) for i in (260, 261, 262)] == [b"ab", b"ca", b"cb"]


def test_a_pair_whose_bytes_are_a_token_is_not_chosen():
    token_bytes = {i: bytes([i]) for i in range(256)} | {260: b"ab", 261: b"bc", 262: b"abc"}
    c, x, y = ord("c"), ord("x"), ord("y")
    pair_counts = Counter({(260, c): 9, (x, y): 5, (260, x): 5})
    assert plain.best_pair(pair_counts, token_bytes) == (260, x)  # b"ab" < b"x"
    assert plain.best_pair(Counter({(260, c): 9}), token_bytes) is None


def test_each_distinct_chunk_counts_with_its_frequency():
    # "ab" occurs 3 times and "cd" once: two distinct chunks, weighted 3 and 1.
    learned = []
    tk.train_plain(["ab", "cd", "ab", "ab"], 261, "gpt2", on_merge=lambda *m: learned.append(m))
    assert learned == [(260, ord("a"), ord("b"), 3)]


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.text(alphabet="ab c\né'", max_size=40), min_size=1, max_size=4),
    pattern=st.sampled_from(["gpt2", "gpt4", "none"]),
    n_merges=st.integers(1, 30),
)
def test_plain_trainer_equals_the_naive_trainer_on_generated_text(texts, pattern, n_merges):
    expected = naive_train(texts, n_merges, pattern)
    if not "".join(texts) or len(expected) < n_merges:
        with pytest.raises(ValueError):
            tk.train_plain(texts, 260 + n_merges, pattern)
    else:
        assert tk.train_plain(texts, 260 + n_merges, pattern).merges == expected


def test_plain_trainer_equals_the_naive_trainer_on_french(data_file):
    text = data_file("hugo_miserables_fr.txt").read_text(encoding="utf-8")[:10_000]
    assert tk.train_plain(text, 360, "gpt4").merges == naive_train([text], 100, "gpt4")
