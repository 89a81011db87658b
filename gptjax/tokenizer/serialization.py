"""Saving and loading tokenizers (tutorial part 1: byte-level BPE).

gptjax's own format (``tokenizer.bpe`` in a run directory) is UTF-8 text, one record per line::

    gptjax-bpe 1
    pattern gpt4
    special 256 <pad>
    ...
    token 97 YQ==
    token 260 YWI= 97 98
    end 4 262

The first line names the format and its version; the last counts the specials and tokens, so a
truncated file is caught. ``token ID BASE64`` gives a token's bytes; a
learned token adds the two ids it was merged from. Specials are ``special ID TEXT`` (TEXT is the
rest of the line). Loading checks everything and names the line of the first problem.

tiktoken's rank format (``.tiktoken``) is ``BASE64 RANK`` per line, mergeable tokens only: it
carries neither the pattern nor the special tokens, so importing one needs both.
"""

import base64
import binascii
import os
from collections.abc import Mapping

from gptjax.tokenizer import patterns
from gptjax.tokenizer.vocab import Tokenizer

MAGIC = "gptjax-bpe"
VERSION = 1


def save(tok: Tokenizer, path: str | os.PathLike) -> None:
    """Writes ``tok`` in gptjax's versioned text format."""
    parents = {new: (left, right) for left, right, new in tok.merges}
    lines = [f"{MAGIC} {VERSION}", f"pattern {tok.pattern}"]
    for text, i in sorted(tok.special_tokens.items(), key=lambda kv: kv[1]):
        lines.append(f"special {i} {text}")
    for token, i in sorted(tok.mergeable_ranks.items(), key=lambda kv: kv[1]):
        line = f"token {i} {base64.b64encode(token).decode('ascii')}"
        if i in parents:
            line += " {} {}".format(*parents[i])
        lines.append(line)
    lines.append(f"end {len(tok.special_tokens)} {len(tok.mergeable_ranks)}")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def read_utf8(path, what: str = "file") -> str:
    """Reads a UTF-8 text file; one ValueError naming the file and the first bad byte otherwise.

    Args:
      path: the file.
      what: how the message names it ("file", "corpus file", "tokenizer file").
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot read {what} {os.fspath(path)!r}: {e.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{what} {os.fspath(path)!r} is not UTF-8: byte {e.start} (0x{data[e.start]:02x}) "
            "cannot be decoded. Convert it to UTF-8 first (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def _is_rank_file(text: str) -> bool:
    first = text.split("\n", 1)[0].split()
    return len(first) == 2 and first[1].isdigit()


def load(
    path: str | os.PathLike,
    pattern: str | None = None,
    special_tokens: Mapping[str, int] | None = None,
) -> Tokenizer:
    """Loads a gptjax tokenizer file, or a tiktoken rank file when pattern is given.

    Args:
      path: a file written by ``save`` or a ``.tiktoken`` rank file.
      pattern: for a rank file only: its pre-tokenization pattern name.
      special_tokens: for a rank file only: special token text -> id.

    Returns:
      The Tokenizer.
    """
    text = read_utf8(path, "tokenizer file")
    if text.startswith(MAGIC + " "):
        if pattern is not None or special_tokens:
            raise ValueError(
                f"{os.fspath(path)!r} is a gptjax tokenizer file, which records its own pattern "
                "and special tokens: do not pass pattern or special_tokens"
            )
        return _parse(text, os.fspath(path))
    if _is_rank_file(text):
        if pattern is None:
            raise ValueError(
                f"{os.fspath(path)!r} is a tiktoken rank file, which carries no pattern: pass "
                "pattern (gpt2, gpt4 or none) and special_tokens, e.g. "
                "pattern='gpt2', special_tokens={'<|endoftext|>': 50256} for GPT-2"
            )
        return _tokenizer_from_ranks(_parse_ranks(text, os.fspath(path)), pattern, special_tokens)
    raise ValueError(
        f"{os.fspath(path)!r} is neither a gptjax tokenizer file (first line "
        f"'{MAGIC} {VERSION}') nor a tiktoken rank file ('BASE64 RANK' lines)"
    )


def _corrupt(where: str, lineno: int, what: str) -> ValueError:
    return ValueError(
        f"{where}, line {lineno}: {what}. The tokenizer file is corrupted: re-create it with "
        "`python -m gptjax.tokenizer train` or restore a good copy"
    )


def _parse(text: str, where: str) -> Tokenizer:
    lines = text.split("\n")
    version = lines[0].split(" ", 1)[1]
    if version != str(VERSION):
        raise ValueError(
            f"{where} is a gptjax tokenizer file of format version {version!r}; this gptjax "
            f"reads version {VERSION}: re-create it with this version"
        )
    pattern, specials, ranks, merges, end = None, {}, {}, [], None
    for lineno, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        try:
            if kind == "pattern":
                pattern = patterns.check_pattern(rest)
            elif kind == "special":
                i, name = rest.split(" ", 1)
                if name in specials:
                    raise ValueError(f"special token {name!r} appears twice")
                specials[name] = int(i)
            elif kind == "token":
                fields = rest.split(" ")
                if len(fields) not in (2, 4):
                    raise ValueError("expected 'token ID BASE64 [LEFT RIGHT]'")
                token = base64.b64decode(fields[1], validate=True)
                if token in ranks:
                    raise ValueError(f"token bytes {token!r} appear twice")
                ranks[token] = int(fields[0])
                if len(fields) == 4:
                    merges.append((int(fields[2]), int(fields[3]), int(fields[0])))
            elif kind == "end":
                end = tuple(int(n) for n in rest.split(" "))
                if end != (len(specials), len(ranks)):
                    raise ValueError(
                        f"the 'end' line announces {end[0]} specials and {end[-1]} tokens, "
                        f"but the file holds {len(specials)} and {len(ranks)}"
                    )
            else:
                raise ValueError(f"unknown record {kind!r}")
            if end is not None and kind != "end":
                raise ValueError("a record follows the 'end' line")
        except (ValueError, binascii.Error) as e:
            raise _corrupt(where, lineno, str(e)) from None
    if pattern is None:
        raise _corrupt(where, len(lines), "no 'pattern' line")
    if end is None:
        raise _corrupt(where, len(lines), "no 'end' line: the file is truncated")
    try:
        return Tokenizer(pattern, ranks, specials, tuple(sorted(merges, key=lambda m: m[2])))
    except ValueError as e:
        raise ValueError(f"{where}: {e}. The tokenizer file is corrupted") from None


def _parse_ranks(text: str, where: str) -> dict[bytes, int]:
    ranks = {}
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise ValueError(
                f"{where}, line {lineno}: expected 'BASE64 RANK', got {line[:60]!r}; "
                "the rank file is corrupted"
            ) from None
    return ranks


def _tokenizer_from_ranks(ranks, pattern, special_tokens) -> Tokenizer:
    return Tokenizer(patterns.check_pattern(pattern), ranks, dict(special_tokens or {}))


def load_tiktoken(
    path: str | os.PathLike, pattern: str, special_tokens: Mapping[str, int] | None = None
) -> Tokenizer:
    """Imports a tiktoken rank file (``BASE64 RANK`` per line), e.g. GPT-2's ranks.

    Args:
      path: the ``.tiktoken`` file.
      pattern: its pre-tokenization pattern name (``gpt2`` for GPT-2's ranks).
      special_tokens: special token text -> id (``{"<|endoftext|>": 50256}`` for GPT-2).

    Returns:
      A Tokenizer whose ids are the file's ranks (no merges recorded).
    """
    return _tokenizer_from_ranks(
        _parse_ranks(read_utf8(path, "tokenizer file"), os.fspath(path)), pattern, special_tokens
    )


def save_tiktoken(tok: Tokenizer, path: str | os.PathLike) -> None:
    """Exports the mergeable ranks in tiktoken's rank format (pattern and specials not included)."""
    with open(path, "wb") as f:
        for token, rank in sorted(tok.mergeable_ranks.items(), key=lambda kv: kv[1]):
            f.write(base64.b64encode(token) + b" " + str(rank).encode() + b"\n")
