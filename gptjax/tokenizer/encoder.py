"""The reference BPE encoder and the decoder (tutorial part 1: byte-level BPE).

This is the readable definition of encoding, written to give exactly tiktoken's token lists:

1. Special tokens: text matching a disallowed special raises; allowed specials become their
   single id; the text between them is encoded as ordinary text.
2. The pre-tokenization regex cuts ordinary text into chunks.
3. A chunk whose bytes are a token is that token. Otherwise it starts as single bytes, and the
   adjacent pair whose concatenation has the lowest rank is merged, again and again, until no
   adjacent concatenation is a token. Ties between equal ranks go to the leftmost position.

Step 3 ranks a pair by the bytes it would produce, not by a list of (left, right) merges: that is
tiktoken's rule, and the reason a vocabulary must not hold two ids for one byte string.

Natural text repeats its words, so results are cached per chunk. Bulk encoding of whole corpora
goes through tiktoken's engine instead (``gptjax.tokenizer.bridge``): same function, Rust speed.
"""

import heapq
from collections.abc import Collection, Iterable, Set
from typing import Literal

import regex

from gptjax.tokenizer import patterns
from gptjax.tokenizer.vocab import Tokenizer

# Pieces longer than this merge through a heap (O(n log n)) rather than by rescanning (O(n^2)).
_LONG_PIECE = 48
_CACHE_LIMIT = 1 << 17


def bpe_scan(piece: bytes, ranks) -> list[int]:
    """Byte-pair merge of one chunk by rescanning, exactly as tiktoken's ``byte_pair_merge``.

    >>> bpe_scan(b"abab", {bytes([i]): i for i in range(256)} | {b"ab": 256, b"abab": 257})
    [257]

    Args:
      piece: the chunk's UTF-8 bytes.
      ranks: token bytes -> id, lower ids merge first.

    Returns:
      The token ids, one per final part.
    """
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best_rank, best_i = None, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and (best_rank is None or rank < best_rank):
                best_rank, best_i = rank, i
        if best_i < 0:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return [ranks[p] for p in parts]


def bpe_heap(piece: bytes, ranks) -> list[int]:
    """The same merge as ``bpe_scan`` with a heap of (rank, start) over a linked list of parts.

    Stale heap entries (a part that has since grown or vanished) are skipped when popped. Ordering
    by (rank, start byte) picks the lowest rank and, among equals, the leftmost pair: the scan's
    rule, in O(n log n) for long chunks (long whitespace runs, pattern "none").
    """
    n = len(piece)
    if n < 2:
        return [ranks[piece]] if n else []
    end = list(range(1, n + 1))  # end[s]: end of the part starting at byte s (parts by start)
    prev = list(range(-1, n - 1))
    alive = [True] * n
    heap = []
    for s in range(n - 1):
        rank = ranks.get(piece[s : s + 2])
        if rank is not None:
            heap.append((rank, s, s + 2))
    heapq.heapify(heap)
    while heap:
        rank, s, stop = heapq.heappop(heap)
        # Valid only if the part at s and its right neighbour still span exactly [s, stop).
        if not alive[s] or end[s] >= n or end[end[s]] != stop:
            continue
        right = end[s]
        alive[right] = False
        end[s] = stop
        if stop < n:
            prev[stop] = s
            r = ranks.get(piece[s : end[stop]])
            if r is not None:
                heapq.heappush(heap, (r, s, end[stop]))
        if prev[s] >= 0:
            left = prev[s]
            r = ranks.get(piece[left:stop])
            if r is not None:
                heapq.heappush(heap, (r, left, stop))
    out, s = [], 0
    while s < n:
        out.append(ranks[piece[s : end[s]]])
        s = end[s]
    return out


def _encode_chunk(tok: Tokenizer, chunk: str) -> list[int]:
    ranks = tok.mergeable_ranks
    piece = chunk.encode("utf-8")
    token = ranks.get(piece)
    if token is not None:
        return [token]
    return bpe_scan(piece, ranks) if len(piece) <= _LONG_PIECE else bpe_heap(piece, ranks)


def _check_valid_unicode(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"text has a lone surrogate {text[e.start]!r} at index {e.start}: it is not valid "
            "Unicode and has no UTF-8 bytes. Fix the text (e.g. read files with "
            "errors='replace', or .encode('utf-16', 'surrogatepass').decode('utf-16'))"
        ) from None


def encode_ordinary(tok: Tokenizer, text: str) -> list[int]:
    """Encodes text, treating special-token text as plain text (tiktoken's ``encode_ordinary``).

    Args:
      tok: the tokenizer.
      text: any valid Unicode string (a lone surrogate raises ValueError).

    Returns:
      Token ids, a list of length T.
    """
    if not isinstance(text, str):
        raise ValueError(f"encode expects a str, got {type(text).__name__}")
    cache = tok.__dict__.setdefault("_chunk_cache", {})
    out: list[int] = []
    for chunk in patterns.compiled(tok.pattern).findall(text):
        ids = cache.get(chunk)
        if ids is None:
            try:
                ids = _encode_chunk(tok, chunk)
            except UnicodeEncodeError:
                _check_valid_unicode(text)
                raise
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[chunk] = ids
        out += ids
    return out


def _special_regex(names: Iterable[str]) -> regex.Pattern:
    # Longest first, so that a special that is a prefix of another never wins over it.
    return regex.compile("|".join(regex.escape(s) for s in sorted(names, key=len, reverse=True)))


def encode(
    tok: Tokenizer,
    text: str,
    *,
    allowed_special: Literal["all"] | Set[str] = frozenset(),
    disallowed_special: Literal["all"] | Collection[str] = "all",
) -> list[int]:
    """Encodes text with tiktoken's ``Encoding.encode`` semantics for special tokens.

    By default any special-token text (``<eos>``, ``<|endoftext|>``...) raises ValueError, since
    it usually means untrusted text is trying to inject control tokens.

    Args:
      tok: the tokenizer.
      text: any valid Unicode string.
      allowed_special: special tokens to encode as their single id, or "all".
      disallowed_special: special tokens whose text raises, or "all" (= all not allowed);
        ``()`` lets the others through as plain text.

    Returns:
      Token ids, a list of length T.
    """
    specials = set(tok.special_tokens)
    if allowed_special == "all":
        allowed_special = specials
    if disallowed_special == "all":
        disallowed_special = specials - set(allowed_special)
    if disallowed_special:
        match = _special_regex(disallowed_special).search(text)
        if match:
            token = match.group()
            raise ValueError(
                f"text contains the special token {token!r} at index {match.start()}. To encode "
                f"it as the special token pass allowed_special={{{token!r}}}; to encode it as "
                "plain text pass disallowed_special=() or use encode_ordinary"
            )
    if not allowed_special or not specials:
        return encode_ordinary(tok, text)
    # As tiktoken: find the next occurrence of any special; keep it if allowed, else look again
    # one character further, and encode the stretch before it as ordinary text.
    finder = _special_regex(specials)
    out: list[int] = []
    start = 0
    while True:
        find_from = start
        while (match := finder.search(text, find_from)) and match.group() not in allowed_special:
            find_from = match.start() + 1
        stop = match.start() if match else len(text)
        out += encode_ordinary(tok, text[start:stop])
        if not match:
            return out
        out.append(tok.special_tokens[match.group()])
        start = match.end()


def decode_bytes(tok: Tokenizer, ids: Iterable[int]) -> bytes:
    """The bytes of a token sequence (special tokens give their text's UTF-8 bytes).

    Args:
      tok: the tokenizer.
      ids: token ids, length T (a list, tuple or 1-D integer array).

    Returns:
      The concatenated bytes; any slice of a valid encoding may cut a UTF-8 character in two.
    """
    decoder = tok.decoder
    try:
        return b"".join([decoder[int(i)] for i in ids])
    except KeyError as e:
        raise ValueError(
            f"token id {e.args[0]} is not in this vocabulary (vocab_size {tok.vocab_size})"
        ) from None


def decode(tok: Tokenizer, ids: Iterable[int]) -> str:
    """Decodes ids to text, replacing invalid UTF-8 with U+FFFD as tiktoken's ``decode`` does."""
    return decode_bytes(tok, ids).decode("utf-8", errors="replace")
