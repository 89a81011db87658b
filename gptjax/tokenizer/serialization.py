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
rest of the line, which is why a special token cannot hold a line break). Loading checks
everything and names the line of the first problem; a file whose line endings became Windows'
``\r\n`` reads as the original.

tiktoken's rank format (``.tiktoken``) is ``BASE64 RANK`` per line, mergeable tokens only: it
carries neither the pattern nor the special tokens, so importing one needs both. A token or a
rank listed twice is refused (tiktoken would silently keep one of the two), and so is a special
token whose id is a rank of the file.
"""

import base64
import binascii
import os
from collections.abc import Mapping

from gptjax.tokenizer import patterns
from gptjax.tokenizer.vocab import Tokenizer, suggest_specials

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


def _read_bytes(path, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"cannot read {what} {os.fspath(path)!r}: {e.strerror}") from None


def read_utf8(path, what: str = "file") -> str:
    """Reads a UTF-8 text file; one ValueError naming the file and the first bad byte otherwise.

    Args:
      path: the file.
      what: how the message names it ("file", "corpus file").
    """
    data = _read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{what} {os.fspath(path)!r} is not UTF-8: byte {e.start} (0x{data[e.start]:02x}) "
            "cannot be decoded. Convert it to UTF-8 first (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def _not_a_tokenizer_file(where: str, why: str) -> ValueError:
    return ValueError(
        f"{where!r} is not a tokenizer file (neither a gptjax .bpe file, first line "
        f"'{MAGIC} {VERSION}', nor a tiktoken rank file of 'BASE64 RANK' lines): {why}"
    )


def _read_tokenizer_file(path) -> tuple[str, str]:
    """The text of a tokenizer file and its format, ``"bpe"`` or ``"tiktoken"``."""
    data = _read_bytes(path, "tokenizer file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        # Both formats are text: a byte that is not UTF-8 means a model, an archive, a database.
        why = f"byte {e.start} (0x{data[e.start]:02x}) is not text"
        raise _not_a_tokenizer_file(os.fspath(path), why) from None
    if text.startswith(MAGIC + " "):
        return text, "bpe"
    first_line = text.split("\n", 1)[0]
    fields = first_line.split()
    if len(fields) == 2 and fields[1].isdigit():
        return text, "tiktoken"
    why = f"its first line is {first_line[:40]!r}" if text else "it is empty"
    raise _not_a_tokenizer_file(os.fspath(path), why)


def file_format(path: str | os.PathLike) -> str:
    """``"bpe"`` for a gptjax tokenizer file, ``"tiktoken"`` for a rank file.

    Raises:
      ValueError: the file cannot be read or is neither (a binary file, another text).
    """
    return _read_tokenizer_file(path)[1]


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
    text, kind = _read_tokenizer_file(path)
    if kind == "bpe":
        if pattern is not None or special_tokens:
            raise ValueError(
                f"{os.fspath(path)!r} is a gptjax tokenizer file, which records its own pattern "
                "and special tokens: do not pass pattern or special_tokens"
            )
        return _parse(text, os.fspath(path))
    if pattern is None:
        raise ValueError(
            f"{os.fspath(path)!r} is a tiktoken rank file, which carries no pattern: pass "
            "pattern (gpt2, gpt4 or none) and special_tokens, e.g. "
            "pattern='gpt2', special_tokens={'<|endoftext|>': 50256} for GPT-2"
        )
    return _tokenizer_from_ranks(
        _parse_ranks(text, os.fspath(path)), pattern, special_tokens, os.fspath(path)
    )


def _corrupt(where: str, lineno: int, what: str) -> ValueError:
    return ValueError(
        f"{where}, line {lineno}: {what}. The tokenizer file is corrupted: re-create it with "
        "`python -m gptjax.tokenizer train` or restore a good copy"
    )


def _parse(text: str, where: str) -> Tokenizer:
    lines = text.split("\n")
    if lines[0].endswith("\r"):
        # Windows line endings (an editor, git's autocrlf). Reading them is exact: no record
        # ends in "\r" (ids, base64, pattern names; a special token cannot hold a line break).
        lines = [line.removesuffix("\r") for line in lines]
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
    ranks: dict[bytes, int] = {}
    line_of_token: dict[bytes, int] = {}
    token_of_rank: dict[int, tuple[bytes, int]] = {}
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            token_text, rank_text = line.split()  # split() also drops a Windows "\r"
            token, rank = base64.b64decode(token_text, validate=True), int(rank_text)
        except (ValueError, binascii.Error):
            raise ValueError(
                f"{where}, line {lineno}: expected 'BASE64 RANK', got {line[:60]!r}; "
                "the rank file is corrupted"
            ) from None
        # tiktoken reads a rank file into a dict: a token listed twice would silently lose one
        # of its ranks, and that id would have no token.
        if token in line_of_token:
            raise ValueError(
                f"{where}: lines {line_of_token[token]} and {lineno} both hold the token "
                f"{token!r} (ranks {ranks[token]} and {rank}); a rank file lists each token once: "
                "the rank file is corrupted"
            )
        if rank in token_of_rank:
            other, other_line = token_of_rank[rank]
            raise ValueError(
                f"{where}: lines {other_line} and {lineno} both give rank {rank} (to {other!r} "
                f"and {token!r}); each rank names one token: the rank file is corrupted"
            )
        ranks[token], line_of_token[token], token_of_rank[rank] = rank, lineno, (token, lineno)
    return ranks


def _tokenizer_from_ranks(ranks, pattern, special_tokens, where: str) -> Tokenizer:
    pattern = patterns.check_pattern(pattern)
    specials = dict(special_tokens or {})
    token_of_rank = {rank: token for token, rank in ranks.items()}
    suggestion = suggest_specials(ranks.values())
    example = f" (for this file: {suggestion})" if suggestion else ""
    for name, i in specials.items():
        if i in token_of_rank:
            raise ValueError(
                f"special token {name!r} has id {i}, which {where} gives to the token "
                f"{token_of_rank[i]!r} (rank {i}): give the special an id the file does not "
                f"use{example}"
            )
    every_id = sorted(set(ranks.values()) | set(specials.values()))
    if every_id and every_id[-1] != len(every_id) - 1:
        gap = next(k for k, i in enumerate(every_id) if k != i)
        raise ValueError(
            f"{where}: no token has id {gap}, yet ids run up to {every_id[-1]}: a vocabulary "
            f"has one token per id, so name a special token for each id the ranks leave "
            f"unused{example}"
        )
    try:
        return Tokenizer(pattern, ranks, specials)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def read_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """The token bytes -> rank table of a tiktoken rank file, as tiktoken's ``load_tiktoken_bpe``.

    Raises:
      ValueError: the file is not a rank file, or lists a token or a rank twice.
    """
    text, kind = _read_tokenizer_file(path)
    if kind == "bpe":
        raise ValueError(
            f"{os.fspath(path)!r} is a gptjax tokenizer file, not a tiktoken rank file: read it "
            "with load, which takes its pattern and special tokens from the file"
        )
    return _parse_ranks(text, os.fspath(path))


def load_tiktoken(
    path: str | os.PathLike, pattern: str, special_tokens: Mapping[str, int] | None = None
) -> Tokenizer:
    """Imports a tiktoken rank file (``BASE64 RANK`` per line), e.g. GPT-2's ranks.

    Args:
      path: the ``.tiktoken`` file.
      pattern: its pre-tokenization pattern name (``gpt2`` for GPT-2's ranks).
      special_tokens: special token text -> id (``{"<|endoftext|>": 50256}`` for GPT-2); their
        ids must not be ranks of the file, and must fill every id the ranks leave unused.

    Returns:
      A Tokenizer whose ids are the file's ranks (no merges recorded).
    """
    return _tokenizer_from_ranks(read_ranks(path), pattern, special_tokens, os.fspath(path))


def save_tiktoken(tok: Tokenizer, path: str | os.PathLike) -> None:
    """Exports the mergeable ranks in tiktoken's rank format (pattern and specials not included)."""
    with open(path, "wb") as f:
        for token, rank in sorted(tok.mergeable_ranks.items(), key=lambda kv: kv[1]):
            f.write(base64.b64encode(token) + b" " + str(rank).encode() + b"\n")
