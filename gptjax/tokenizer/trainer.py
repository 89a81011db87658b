"""Training a byte-level BPE vocabulary, fast (tutorial part 1: byte-level BPE).

The algorithm is the tutorial's: start from the 256 bytes, count adjacent pairs, merge the most
frequent pair into a new token, repeat until the vocabulary is full. ``plain.train_plain`` does
exactly that, recounting every pair after every merge; read it first. This module learns the same
merges in the same order (tested), fast enough to train 4096 tokens on a few megabytes in pure
Python:

- Each distinct pre-token chunk is stored once with its frequency (" the" appears thousands of
  times but is counted once).
- Pair counts live in a dict with an index pair -> chunks containing it, so a merge touches only
  the chunks that hold the merged pair, never the whole corpus.
- The best pair comes from a heap with lazy invalidation. A pair's count only grows in the step
  that creates one of its tokens (and is pushed then); afterwards it can only shrink, so a popped
  entry whose count is out of date is pushed back with its current count and the true maximum
  surfaces.

Tie-break rule: among pairs with equal count, the pair whose (left token bytes, right token bytes)
is lexicographically smallest wins: the heap orders its entries by (-count, left bytes, right
bytes). It depends only on the multiset of chunks, so the merges do not depend on the order of the
input texts.

Duplicate bytes: two ids for one byte string would break tiktoken parity, since tiktoken knows a
token by its bytes. So a pair whose concatenation already is a token is never merged: ``pop_best``
drops it and takes the next best pair. Because every merge is applied to every chunk, left to
right, such a pair does not seem to arise from real counts (once "bc" is learned no single "b" is
left next to a single "c", so "ab" + "c" cannot meet after "a" + "bc"); an exhaustive search over
short strings and thousands of random corpora found none. The rule guards the invariant anyway,
and the tests exercise it directly.
"""

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

from gptjax.tokenizer import patterns
from gptjax.tokenizer.vocab import DEFAULT_SPECIALS, FIRST_MERGE_ID, N_BYTES, Tokenizer


def count_chunks(texts: str | Iterable[str], pattern: str) -> Counter:
    """Counts the distinct pre-token chunks of the texts: chunk -> frequency.

    Each text is cut separately, so no chunk spans two texts.
    """
    regex = patterns.compiled(patterns.check_pattern(pattern))
    if isinstance(texts, str):
        texts = [texts]
    counts: Counter = Counter()
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(
                f"train expects a str or an iterable of str; item {i} is {type(text).__name__}"
            )
        counts.update(regex.findall(text))
    return counts


def chunk_to_bytes(chunk: str) -> bytes:
    """A chunk's UTF-8 bytes, or a ValueError naming the lone surrogate that has none."""
    try:
        return chunk.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"training text has a lone surrogate {chunk[e.start]!r} in the chunk {chunk!r}: it is"
            " not valid Unicode. Fix the text before training"
        ) from None


def check_vocab_size(vocab_size: int) -> int:
    """The number of merges ``vocab_size`` asks for; a ValueError saying why if it is not valid."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise ValueError(f"vocab_size must be an int, got {vocab_size!r}")
    if vocab_size < FIRST_MERGE_ID:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: the 256 bytes and 4 special tokens already "
            f"take {FIRST_MERGE_ID} ids. Use vocab_size >= {FIRST_MERGE_ID} (260 = no merges)"
        )
    return vocab_size - FIRST_MERGE_ID


def out_of_pairs(n_merges: int, n_learned: int) -> ValueError:
    """The error for a corpus that ran out of pairs after ``n_learned`` of ``n_merges`` merges."""
    return ValueError(
        f"vocab_size={FIRST_MERGE_ID + n_merges} is more than this corpus can give: it "
        f"ran out of pairs to merge after {n_learned} merges, so the largest reachable "
        f"vocab_size is {FIRST_MERGE_ID + n_learned}. Use a smaller vocab_size or more text"
    )


def tokenizer_from_merges(pattern: str, merges: list[tuple[int, int, int]]) -> Tokenizer:
    """The Tokenizer of learned merges: the 256 bytes, the 4 specials, then one token per merge."""
    ranks = {bytes([b]): b for b in range(N_BYTES)}
    token_bytes = {b: bytes([b]) for b in range(N_BYTES)}
    for left, right, new in merges:
        token_bytes[new] = token_bytes[left] + token_bytes[right]
        ranks[token_bytes[new]] = new
    return Tokenizer(pattern, ranks, DEFAULT_SPECIALS, tuple(merges))


# Called once per merge as it is learned: (new_id, left_id, right_id, count of the pair).
OnMerge = Callable[[int, int, int, int], None]


def train(
    texts: str | Iterable[str],
    vocab_size: int,
    pattern: str = "gpt4",
    on_merge: OnMerge | None = None,
) -> Tokenizer:
    """Learns a byte-level BPE vocabulary of ``vocab_size`` tokens.

    The same merges, in the same order, as ``plain.train_plain`` (the trainer as the tutorial
    teaches it), only faster.

    Args:
      texts: one text or an iterable of texts (e.g. documents, files' contents).
      vocab_size: total number of ids, at least 260 (256 bytes + 4 specials); the number of
        merges is ``vocab_size - 260``.
      pattern: pre-tokenization pattern, ``gpt2``, ``gpt4`` or ``none``.
      on_merge: if given, called as ``on_merge(new_id, left_id, right_id, count)`` after each
        merge is chosen, ``count`` being how often the pair occurred (e.g. to print progress).

    Returns:
      A frozen Tokenizer with ``vocab_size`` ids and the tutorial's four special tokens.
    """
    n_merges = check_vocab_size(vocab_size)
    counts = count_chunks(texts, pattern)
    if not counts:
        raise ValueError("cannot train on an empty corpus: give at least one non-empty text")
    return tokenizer_from_merges(pattern, learn_merges(counts, n_merges, on_merge))


def learn_merges(
    counts: Counter, n_merges: int, on_merge: OnMerge | None = None
) -> list[tuple[int, int, int]]:
    """The incremental BPE loop over distinct chunks.

    Args:
      counts: chunk text -> frequency.
      n_merges: how many merges to learn.
      on_merge: called as ``on_merge(new_id, left_id, right_id, count)`` for each merge, if given.

    Returns:
      ``(left_id, right_id, new_id)`` per merge, new ids from 260 up.
    """
    if n_merges == 0:  # a byte-level vocabulary: no need to count the corpus's pairs
        return []
    words = [list(chunk_to_bytes(chunk)) for chunk in counts]
    freqs = list(counts.values())
    pair_counts: defaultdict[tuple[int, int], int] = defaultdict(int)
    where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, word in enumerate(words):
        f = freqs[wi]
        for pair in zip(word, word[1:], strict=False):
            pair_counts[pair] += f
            where[pair].add(wi)

    token_bytes = [bytes([b]) for b in range(N_BYTES)] + [b""] * (FIRST_MERGE_ID - N_BYTES)
    known = set(token_bytes[:N_BYTES])
    heap = [(-c, token_bytes[a], token_bytes[b], a, b) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int, int]] = []
    while len(merges) < n_merges:
        best = pop_best(heap, pair_counts, known)
        if best is None:
            raise out_of_pairs(n_merges, len(merges))
        a, b, merged = best
        new = len(token_bytes)
        merges.append((a, b, new))
        if on_merge is not None:  # one test per merge, nothing next to the merge's own work
            on_merge(new, a, b, pair_counts[(a, b)])
        token_bytes.append(merged)
        known.add(merged)
        for pair in _apply_merge(words, freqs, pair_counts, where, a, b, new):
            c = pair_counts[pair]
            heapq.heappush(heap, (-c, token_bytes[pair[0]], token_bytes[pair[1]], *pair))
    return merges


def pop_best(heap: list, pair_counts: dict, known: set[bytes]) -> tuple[int, int, bytes] | None:
    """Pops the pair to merge next: highest count, then smallest (left bytes, right bytes).

    Heap entries are ``(-count, left_bytes, right_bytes, left_id, right_id)``; an entry whose
    count is out of date is pushed back with the current count. A pair whose concatenation is
    already a token (in ``known``) is dropped, and the next best is taken.

    Returns:
      ``(left_id, right_id, merged_bytes)``, or None when no pair is left.
    """
    while heap:
        neg, left_bytes, right_bytes, a, b = heapq.heappop(heap)
        count = pair_counts.get((a, b), 0)
        if count != -neg:
            if count > 0:
                heapq.heappush(heap, (-count, left_bytes, right_bytes, a, b))
            continue
        merged = left_bytes + right_bytes
        if merged in known:  # a second id for these bytes would break parity: skip the pair
            continue
        return a, b, merged
    return None


def _apply_merge(words, freqs, pair_counts, where, a, b, new) -> set[tuple[int, int]]:
    """Replaces (a, b) by ``new`` in every chunk holding it and updates the pair counts in place.

    Returns:
      The pairs that contain ``new`` (their counts grew and must be pushed on the heap).
    """
    del pair_counts[(a, b)]
    created = set()
    for wi in where.pop((a, b)):
        word = words[wi]
        n = len(word)
        i, out = 0, []
        while i < n:
            # Left to right, non-overlapping: "aaa" with (a, a) gives [aa, a].
            if i < n - 1 and word[i] == a and word[i + 1] == b:
                out.append(new)
                i += 2
            else:
                out.append(word[i])
                i += 1
        if len(out) == n:  # stale index entry: the pair left this chunk in an earlier merge
            continue
        f = freqs[wi]
        for pair in zip(word, word[1:], strict=False):
            if pair != (a, b):
                pair_counts[pair] -= f
        for pair in zip(out, out[1:], strict=False):
            pair_counts[pair] += f
            if new in pair:
                where[pair].add(wi)
                created.add(pair)
        words[wi] = out
    return created
