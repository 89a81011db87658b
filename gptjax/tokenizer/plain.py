"""The BPE trainer as the tutorial teaches it (tutorial part 1: byte-level BPE).

Start from the 256 bytes, then repeat: count every adjacent pair, merge the most frequent pair
into a new token everywhere, record the merge. Nothing more: every pair is recounted after every
merge, so each merge costs a pass over the whole corpus. ``trainer.train`` learns the same merges
in the same order, incrementally, and is the one to use on real corpora; the tests check that the
two agree.

The tutorial's worked example, with pattern ``none`` (no pre-tokenization: the whole text is one
chunk, as in the tutorial)::

    "abab abab" as bytes, 9 tokens:        a  b  a  b  ␠  a  b  a  b
    pair counts: (a, b) 4, (b, a) 2, (b, ␠) 1, (␠, a) 1
    merge (a, b) -> ab, id 260, 5 tokens:  ab ab ␠ ab ab
    pair counts: (ab, ab) 2, (ab, ␠) 1, (␠, ab) 1
    merge (ab, ab) -> abab, id 261, 3 tokens: abab ␠ abab

>>> tok = train_plain("abab abab", vocab_size=262, pattern="none")
>>> tok.merges
((97, 98, 260), (260, 260, 261))
>>> from gptjax.tokenizer.encoder import encode
>>> encode(tok, "abab abab")
[261, 32, 261]

With ``gpt2`` or ``gpt4`` the text is first cut into the chunks "abab" and " abab", and no pair
crosses a chunk: (b, ␠) is never counted, so the counts differ a little, but the same two merges
are learned and "abab abab" is again 9, 5 and 3 tokens.

Two rules make "the most frequent pair" a single pair, and they are the fast trainer's:

- Tie-break: among pairs with the same count, the smallest (left token bytes, right token bytes)
  wins, bytes compared lexicographically (b"ab" < b"b" < b"ba"). It depends only on the text, not
  on ids or on the order of the texts.
- A pair whose concatenation already is a token is never merged (two ids for one byte string
  would break tiktoken parity); the next best pair is taken.

Like the fast trainer, each distinct chunk is kept once with its frequency: " the" occurring 500
times is one chunk whose pairs count 500 times each, which gives the same counts as recounting the
500 copies.
"""

from collections import Counter
from collections.abc import Iterable

from gptjax.tokenizer.trainer import (
    OnMerge,
    check_vocab_size,
    chunk_to_bytes,
    count_chunks,
    out_of_pairs,
    tokenizer_from_merges,
)
from gptjax.tokenizer.vocab import FIRST_MERGE_ID, N_BYTES, Tokenizer


def train_plain(
    texts: str | Iterable[str],
    vocab_size: int,
    pattern: str = "gpt4",
    on_merge: OnMerge | None = None,
) -> Tokenizer:
    """Learns a byte-level BPE vocabulary the plain way: recount, merge the best pair, repeat.

    Args:
      texts: one text or an iterable of texts.
      vocab_size: total number of ids, at least 260 (256 bytes + 4 specials); the number of
        merges is ``vocab_size - 260``.
      pattern: pre-tokenization pattern, ``gpt2``, ``gpt4`` or ``none``.
      on_merge: if given, called as ``on_merge(new_id, left_id, right_id, count)`` for each merge.

    Returns:
      The same Tokenizer as ``trainer.train(texts, vocab_size, pattern)``.
    """
    n_merges = check_vocab_size(vocab_size)
    chunk_counts = count_chunks(texts, pattern)
    if not chunk_counts:
        raise ValueError("cannot train on an empty corpus: give at least one non-empty text")
    words = [list(chunk_to_bytes(chunk)) for chunk in chunk_counts]  # each chunk as byte ids
    freqs = list(chunk_counts.values())
    token_bytes = {b: bytes([b]) for b in range(N_BYTES)}
    merges = []
    while len(merges) < n_merges:
        pair_counts = count_pairs(words, freqs)
        pair = best_pair(pair_counts, token_bytes)
        if pair is None:
            raise out_of_pairs(n_merges, len(merges))
        new = FIRST_MERGE_ID + len(merges)
        merges.append((*pair, new))
        token_bytes[new] = token_bytes[pair[0]] + token_bytes[pair[1]]
        if on_merge is not None:
            on_merge(new, *pair, pair_counts[pair])
        words = [merge(word, pair, new) for word in words]
    return tokenizer_from_merges(pattern, merges)


def count_pairs(words: list[list[int]], freqs: list[int]) -> Counter:
    """Counts adjacent pairs over all chunks, each chunk weighted by its frequency.

    >>> count_pairs([[1, 2, 1, 2], [2, 1]], [1, 10])
    Counter({(2, 1): 11, (1, 2): 2})
    """
    counts: Counter = Counter()
    for word, freq in zip(words, freqs, strict=True):
        for pair in zip(word, word[1:], strict=False):
            counts[pair] += freq
    return counts


def best_pair(pair_counts: Counter, token_bytes: dict[int, bytes]) -> tuple[int, int] | None:
    """The pair to merge next: the highest count, ties to the smallest (left bytes, right bytes).

    Pairs whose concatenation is already a token are skipped. Returns None when none is left.

    >>> best_pair(Counter({(98, 97): 3, (97, 98): 3, (97, 99): 1}), {97: b"a", 98: b"b", 99: b"c"})
    (97, 98)
    """
    known = set(token_bytes.values())
    candidates = [
        (-count, token_bytes[a], token_bytes[b], (a, b))
        for (a, b), count in pair_counts.items()
        if token_bytes[a] + token_bytes[b] not in known
    ]
    return min(candidates)[3] if candidates else None


def merge(word: list[int], pair: tuple[int, int], new: int) -> list[int]:
    """Replaces every occurrence of ``pair`` in ``word`` by ``new``, left to right.

    >>> merge([97, 97, 97, 98], (97, 97), 260)  # "aaab": the first two a's merge, not the last two
    [260, 97, 98]
    """
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out
