"""The frozen ``Tokenizer`` value and the vocabulary layout (tutorial part 1: byte-level BPE).

Layout of a vocabulary trained by gptjax, as in the tutorial:

  ids 0-255    the 256 raw bytes (id == byte value)
  256 <pad>, 257 <unk>, 258 <bos>, 259 <eos>
  260 ...      learned merges, in the order they were learned
  vocab_size = 256 + 4 + number of merges

``<unk>`` exists for the tutorial's layout only: byte-level BPE never needs it, since every string
is a sequence of bytes and every byte is a token, so ``encode`` never emits it.

A ``Tokenizer`` is what tiktoken calls an encoding: ``mergeable_ranks`` maps each token's bytes to
its id (the id is also its merge priority: lower merges first), and ``special_tokens`` maps special
token text to its id. Imported vocabularies (GPT-2's rank file) use the same value with their own
ids: there the single bytes are not in byte order and the only special is ``<|endoftext|>``.

Every id from 0 to ``vocab_size - 1`` names exactly one token: the model has one embedding row
per id, and an id without a token would be a row that no text ever fills.

The document separator (``Tokenizer.separator``) is the one special-token contract that data and
generation share. The training stream joins documents with it, and an empty prompt starts from
it, so the model begins a generation where it saw documents begin: after the separator. This is
GPT-2's convention, where ``<|endoftext|>`` both ends a document and starts the next one. It is
``<eos>`` in a gptjax vocabulary, else ``<|endoftext|>``, else the only special token.
"""

import dataclasses
import functools
import types
from collections.abc import Iterable, Mapping

from gptjax.tokenizer import patterns

N_BYTES = 256
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
DEFAULT_SPECIALS = {PAD: 256, UNK: 257, BOS: 258, EOS: 259}
FIRST_MERGE_ID = 260
# GPT-2's one special token plays both roles when a vocabulary has no <bos>/<eos>.
ENDOFTEXT = "<|endoftext|>"
# Characters a special token's text cannot hold: the tokenizer file has one record per line.
_LINE_BREAKS = ("\n", "\r")


@dataclasses.dataclass(frozen=True)
class Tokenizer:
    """A byte-level BPE vocabulary: an immutable value that the pure functions of this package use.

    Attributes:
      pattern: pre-tokenization pattern name, ``gpt2``, ``gpt4`` or ``none``.
      mergeable_ranks: token bytes -> id, read-only; every single byte is present.
      special_tokens: special token text -> id, read-only.
      merges: ``(left_id, right_id, new_id)`` for each learned merge in order; empty for a
        vocabulary imported from a rank file (which records ranks, not merges).
    """

    pattern: str
    mergeable_ranks: Mapping[bytes, int]
    special_tokens: Mapping[str, int]
    merges: tuple[tuple[int, int, int], ...] = ()

    def __post_init__(self):
        patterns.check_pattern(self.pattern)
        ranks = types.MappingProxyType(dict(self.mergeable_ranks))
        specials = types.MappingProxyType(dict(self.special_tokens))
        merges = tuple(tuple(int(x) for x in m) for m in self.merges)
        object.__setattr__(self, "mergeable_ranks", ranks)
        object.__setattr__(self, "special_tokens", specials)
        object.__setattr__(self, "merges", merges)
        _validate(ranks, specials, merges)

    def __hash__(self):
        return hash((self.pattern, len(self.mergeable_ranks), self.merges))

    def __reduce__(self):
        # mappingproxy does not pickle; rebuild from plain dicts.
        args = (self.pattern, dict(self.mergeable_ranks), dict(self.special_tokens), self.merges)
        return (Tokenizer, args)

    def __repr__(self):
        return (
            f"Tokenizer(pattern={self.pattern!r}, vocab_size={self.vocab_size}, "
            f"merges={len(self.merges)}, special_tokens={dict(self.special_tokens)})"
        )

    @functools.cached_property
    def vocab_size(self) -> int:
        """Largest id + 1 (tiktoken's ``n_vocab``); 260 + merges for a gptjax vocabulary."""
        return 1 + max(max(self.mergeable_ranks.values()), *self.special_tokens.values(), -1)

    @property
    def bos_id(self) -> int | None:
        """Id of ``<bos>``, else of ``<|endoftext|>``, else None (data and generation use
        ``separator_id``, never this)."""
        return self.special_tokens.get(BOS, self.special_tokens.get(ENDOFTEXT))

    @property
    def eos_id(self) -> int | None:
        """Id of ``<eos>``, else of ``<|endoftext|>``, else None (data and generation use
        ``separator_id``)."""
        return self.special_tokens.get(EOS, self.special_tokens.get(ENDOFTEXT))

    @property
    def separator(self) -> str | None:
        """The special token that separates documents and starts an empty prompt, or None.

        ``<eos>`` (a gptjax vocabulary), else ``<|endoftext|>`` (GPT-2), else the only special
        token; None for a vocabulary with no special token, or with several and neither name.
        """
        for name in (EOS, ENDOFTEXT):
            if name in self.special_tokens:
                return name
        if len(self.special_tokens) == 1:
            return next(iter(self.special_tokens))
        return None

    @property
    def separator_id(self) -> int | None:
        """The id of ``separator``, or None."""
        name = self.separator
        return None if name is None else self.special_tokens[name]

    @property
    def pat_str(self) -> str:
        """The pre-tokenization regex, as tiktoken's ``pat_str``."""
        return patterns.PATTERNS[self.pattern]

    @functools.cached_property
    def decoder(self) -> Mapping[int, bytes]:
        """id -> bytes for every id, special tokens included (their UTF-8 text)."""
        table = {i: b for b, i in self.mergeable_ranks.items()}
        table.update({i: s.encode("utf-8") for s, i in self.special_tokens.items()})
        return types.MappingProxyType(table)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token id; ValueError if the id is not in the vocabulary."""
        try:
            return self.decoder[token_id]
        except KeyError:
            raise ValueError(
                f"token id {token_id!r} is not in this vocabulary (ids 0..{self.vocab_size - 1}"
                " that are assigned)"
            ) from None


def _validate(ranks: Mapping[bytes, int], specials: Mapping[str, int], merges) -> None:
    """Raises ValueError unless the vocabulary is one tiktoken and the BPE encoder can use."""
    missing = [b for b in range(N_BYTES) if bytes([b]) not in ranks]
    if missing:
        raise ValueError(
            f"vocabulary lacks {len(missing)} single-byte tokens (first: byte {missing[0]}); "
            "byte-level BPE needs all 256 bytes as tokens"
        )
    ids = list(ranks.values())
    if len(set(ids)) != len(ids):
        raise ValueError("two mergeable tokens share one id; each id must name one byte string")
    if any(not isinstance(i, int) or i < 0 for i in ids + list(specials.values())):
        raise ValueError("token ids must be non-negative integers")
    clash = set(ids) & set(specials.values())
    if clash or len(set(specials.values())) != len(specials):
        raise ValueError(f"special token ids collide with other tokens: {sorted(clash)[:5]}")
    if any(not s for s in specials):
        raise ValueError("a special token cannot be the empty string")
    broken = next((s for s in specials if any(c in s for c in _LINE_BREAKS)), None)
    if broken is not None:
        raise ValueError(
            f"special token {broken!r} contains a line break, which a tokenizer file (one record "
            "per line) cannot hold: choose a name without \\n or \\r"
        )
    every_id = sorted(set(ids) | set(specials.values()))
    if every_id[-1] != len(every_id) - 1:
        gap = next(k for k, i in enumerate(every_id) if k != i)
        raise ValueError(
            f"no token has id {gap}, yet ids run up to {every_id[-1]}: the ids of a vocabulary "
            f"must be 0..{every_id[-1]} without gaps, one token each"
        )
    if merges:
        decoder = {i: b for b, i in ranks.items()}
        for left, right, new in merges:
            parts = decoder.get(left), decoder.get(right)
            if None in parts or parts[0] + parts[1] != decoder.get(new):
                raise ValueError(
                    f"merge ({left}, {right}) -> {new} does not match the tokens' bytes"
                )


def parse_specials(text: str, flag: str = "tokenizer.specials") -> dict[str, int]:
    """Reads special tokens written as ``NAME=ID`` pairs separated by commas.

    ``"<|endoftext|>=50256"`` gives ``{"<|endoftext|>": 50256}``, ``"<a>=300, <b>=301"`` gives
    ``{"<a>": 300, "<b>": 301}`` and ``""`` gives ``{}``. A name holds anything but a comma (and a
    line break, which ``Tokenizer`` refuses); the spaces around a pair are dropped, and the id
    follows the last ``=``, so a name may contain one.

    Args:
      text: the pairs.
      flag: the setting as the user writes it (``--config.tokenizer.specials``), for the errors.

    Returns:
      Special token text -> id, in the order given.

    Raises:
      ValueError: a pair that is not NAME=ID, or a name or an id given twice.
    """
    specials: dict[str, int] = {}
    for pair in text.split(",") if text.strip() else []:
        name, sep, value = pair.strip().rpartition("=")
        # isdigit alone accepts "²", which int() refuses.
        if not sep or not name or not (value.isascii() and value.isdigit()):
            raise ValueError(
                f"{flag} expects NAME=ID pairs separated by commas (e.g. '<|endoftext|>=50256'), "
                f"got {pair.strip()!r}"
            )
        if name in specials:
            raise ValueError(f"{flag} names the special token {name!r} twice; give it once")
        if int(value) in specials.values():
            other = next(n for n, i in specials.items() if i == int(value))
            raise ValueError(
                f"{flag} gives id {value} to both {other!r} and {name!r}: each special token "
                "needs its own id"
            )
        specials[name] = int(value)
    return specials


def suggest_specials(rank_ids: Iterable[int]) -> str | None:
    """Special tokens that make a rank file's ids a vocabulary, as ``NAME=ID`` pairs.

    A rank file has no special token, yet a vocabulary needs one id per token without gaps, and a
    separator. Ranks without gaps (GPT-2's 0..50255) get ``<|endoftext|>`` right after them; the
    ranks of a gptjax vocabulary exported with ``save_tiktoken`` (no 256..259) get gptjax's four
    specials back; a few other gaps get ``<|endoftext|>`` on the first and a placeholder on each
    other one. Many gaps get None: such a file is hardly a vocabulary.

    Args:
      rank_ids: the ranks of the file.

    Returns:
      E.g. ``"<|endoftext|>=50256"`` for GPT-2's ranks, or None.
    """
    ids = set(rank_ids)
    top = max(ids, default=-1)
    gaps = [i for i in range(top) if i not in ids]
    if not gaps:
        return f"{ENDOFTEXT}={top + 1}"
    if gaps == sorted(DEFAULT_SPECIALS.values()):
        return ",".join(f"{name}={i}" for name, i in DEFAULT_SPECIALS.items())
    if len(gaps) > 8:
        return None
    return ",".join([f"{ENDOFTEXT}={gaps[0]}", *(f"<|unused_{i}|>={i}" for i in gaps[1:])])
