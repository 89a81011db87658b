"""Command line for the tokenizer (tutorial part 1: byte-level BPE).

  python -m gptjax.tokenizer train --input FILE... --vocab-size N --pattern gpt4 --out tok.bpe
  python -m gptjax.tokenizer train ... --verbose         (also print each merge as it is learned)
  python -m gptjax.tokenizer encode --tokenizer tok.bpe [--input FILE]     (ids on stdout)
  python -m gptjax.tokenizer decode --tokenizer tok.bpe < ids.txt          (text on stdout)
  python -m gptjax.tokenizer show --tokenizer tok.bpe --text "xkzbrt"
  python -m gptjax.tokenizer parity --tokenizer tok.bpe --input FILE...

``--tokenizer`` takes a gptjax file or a tiktoken rank file; for the latter add ``--pattern`` and
``--special NAME=ID`` (e.g. GPT-2: ``--pattern gpt2 --special '<|endoftext|>=50256'``).
User mistakes (`gptjax.errors.UserError`) print one ``error:`` line and exit with status 2; a
parity mismatch exits 1; any other error is a bug and keeps its traceback.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from gptjax import tokenizer as tk
from gptjax.errors import UserError, as_user_error

# Background colours cycled over tokens when stdout is a terminal.
_COLOURS = ["\x1b[48;5;153m", "\x1b[48;5;222m", "\x1b[48;5;151m", "\x1b[48;5;217m"]
_RESET = "\x1b[0m"


def _load(args) -> tk.Tokenizer:
    """The ``--tokenizer`` file, with ``--pattern`` and ``--special`` for a rank file only."""
    with as_user_error():
        # Repeated flags and comma-separated pairs alike: --special a=1 --special b=2, or a=1,b=2.
        specials = tk.parse_specials(",".join(args.special), "--special")
        if tk.file_format(args.tokenizer) == "bpe":
            if args.pattern is not None or specials:
                raise UserError(
                    f"{args.tokenizer} is a gptjax .bpe file, which records its own pattern and "
                    "special tokens: drop --pattern and --special"
                )
            return tk.load(args.tokenizer)
        if args.pattern is None:
            raise UserError(
                f"{args.tokenizer} is a tiktoken rank file, which carries no pattern: add "
                "--pattern (gpt2, gpt4 or none) and its special tokens, e.g. "
                "--pattern gpt2 --special '<|endoftext|>=50256' for GPT-2"
            )
        return tk.load_tiktoken(args.tokenizer, args.pattern, specials)


def _read_input(path: str | None) -> str:
    """The text of ``--input``, or of stdin without one."""
    if path is None:
        data = sys.stdin.buffer.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(
                f"stdin is not UTF-8: byte {e.start} (0x{data[e.start]:02x}) cannot be decoded. "
                "Convert it to UTF-8 first (e.g. iconv -f latin1 -t utf-8)"
            ) from None
    with as_user_error():
        return tk.read_utf8(path)


def _check_text(text: str, flag: str) -> None:
    """Refuses a command-line argument that held bytes that are not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        # Python hands such bytes over as lone surrogates, which no tokenizer can encode.
        raise UserError(
            f"{flag} is not valid UTF-8 text (character {e.start}); give UTF-8 text"
        ) from None


# Whitespace made visible in ``readable``; the tutorial writes a space as ␠.
_VISIBLE = str.maketrans({" ": "␠", "\n": "\\n", "\t": "\\t", "\r": "\\r"})


def readable(token: bytes) -> str:
    """A token's bytes for a person: its text if they are UTF-8, else each byte in hex.

    Whitespace is made visible (space as ␠, newline as \\n). A token cut inside a character, or
    holding an invisible one (a no-break space), shows its bytes: ``readable(b"\\xc3") == "0xC3"``.
    """
    try:
        text = token.decode("utf-8").translate(_VISIBLE)
    except UnicodeDecodeError:
        text = ""
    if text and text.isprintable():
        return text
    return " ".join(f"0x{b:02X}" for b in token)


def merge_printer():
    """An ``on_merge`` callback for the trainers that prints each merge as it is learned."""
    token_bytes = {b: bytes([b]) for b in range(256)}

    def on_merge(new: int, left: int, right: int, count: int) -> None:
        token_bytes[new] = token_bytes[left] + token_bytes[right]
        parts = f"{readable(token_bytes[left])} + {readable(token_bytes[right])}"
        rank = new - tk.FIRST_MERGE_ID + 1
        print(f"merge {rank} (id {new}): {parts} -> {readable(token_bytes[new])}  count {count:,}")

    return on_merge


def _check_out(out_text: str) -> None:
    """Refuses an ``--out`` that cannot be written before training, not after."""
    out = Path(out_text)
    if out.is_dir():
        raise UserError(
            f"--out {out_text} is a folder; give the path of the file to write, e.g. "
            f"--out {out / 'tok.bpe'}"
        )
    if not out.parent.is_dir():
        problem = "is a file, not a folder" if out.parent.exists() else "does not exist"
        advice = "choose another path" if out.parent.exists() else f"mkdir -p {out.parent} first"
        raise UserError(f"--out {out_text}: the folder {out.parent} {problem}; {advice}")


def cmd_train(args) -> int:
    _check_out(args.out)
    texts = [_read_input(p) for p in args.input]
    on_merge = merge_printer() if args.verbose else None
    start = time.perf_counter()
    with as_user_error():  # a vocab_size the corpus cannot give, an empty corpus
        tok = tk.train(texts, args.vocab_size, args.pattern, on_merge=on_merge)
    seconds = time.perf_counter() - start
    try:
        tk.save(tok, args.out)
    except OSError as e:
        raise UserError(f"cannot write --out {args.out}: {e.strerror}") from None
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    print(
        f"trained {len(tok.merges)} merges (vocab_size {tok.vocab_size}, pattern {tok.pattern}) "
        f"on {n_bytes:,} bytes in {seconds:.2f} s -> {args.out}"
    )
    return 0


def _first_special(tok: tk.Tokenizer, text: str) -> tuple[int, str] | None:
    """The first special-token text in ``text`` and where it starts, or None."""
    found = [(text.find(s), s) for s in tok.special_tokens if s in text]
    return min(found, key=lambda f: (f[0], -len(f[1]))) if found else None


def cmd_encode(args) -> int:
    tok = _load(args)
    text = _read_input(args.input)
    if not args.allow_special and (found := _first_special(tok, text)):
        index, special = found
        raise UserError(
            f"the text contains the special token {special!r} at character {index}: pass "
            f"--allow-special to encode it as its id ({tok.special_tokens[special]})"
        )
    allowed = "all" if args.allow_special else frozenset()
    ids = tk.encode(tok, text, allowed_special=allowed, disallowed_special=())
    print(" ".join(map(str, ids)))
    return 0


def cmd_decode(args) -> int:
    tok = _load(args)
    words = _read_input(args.input).split()
    # isdigit alone accepts "²", which int() refuses.
    bad = next((w for w in words if not (w.isascii() and w.isdigit())), None)
    if bad is not None:
        raise UserError(f"decode reads token ids separated by spaces; {bad!r} is not an id")
    ids = [int(w) for w in words]
    bad_id = next((i for i in ids if i >= tok.vocab_size), None)
    if bad_id is not None:
        raise UserError(
            f"id {bad_id} is not in this vocabulary, whose ids are 0..{tok.vocab_size - 1}: "
            "decode with the tokenizer that encoded the ids"
        )
    sys.stdout.write(tk.decode(tok, ids))
    return 0


def render(tok: tk.Tokenizer, ids: list[int], colour: bool) -> str:
    """The text with token boundaries visible: colours, or [brackets] around each token."""
    pieces = []
    for k, i in enumerate(ids):
        # A token may hold part of a UTF-8 character: show such bytes as replacement characters.
        text = tok.token_bytes(i).decode("utf-8", errors="replace")
        text = text.replace("\n", "\\n").replace("\t", "\\t")
        pieces.append(f"{_COLOURS[k % len(_COLOURS)]}{text}{_RESET}" if colour else f"[{text}]")
    return "".join(pieces)


def cmd_show(args) -> int:
    tok = _load(args)
    _check_text(args.text, "--text")
    ids = tk.encode(tok, args.text, allowed_special="all")
    n_bytes = len(args.text.encode("utf-8"))
    print(render(tok, ids, colour=sys.stdout.isatty()))
    print(f"ids: {' '.join(map(str, ids))}")
    per = f"{n_bytes / len(ids):.2f}" if ids else "-"
    print(f"{len(ids)} tokens, {n_bytes} bytes, {per} bytes/token")
    return 0


def cmd_parity(args) -> int:
    tok = _load(args)
    enc = tk.to_tiktoken(tok)
    ok = True
    for path in args.input:
        text = _read_input(path)
        ours = tk.encode_ordinary(tok, text)
        theirs = enc.encode_ordinary(text)
        if ours == theirs:
            verdict = "identical"
        else:
            ok = False
            k = next(
                (j for j, (x, y) in enumerate(zip(ours, theirs, strict=False)) if x != y), None
            )
            k = min(len(ours), len(theirs)) if k is None else k
            context = tk.decode(tok, ours[max(0, k - 5) : k + 5])
            verdict = (
                f"MISMATCH at token {k}: gptjax {ours[k : k + 3]} vs tiktoken {theirs[k : k + 3]}"
                f" near {context!r}"
            )
        name = os.path.basename(path)
        print(f"{name}: {len(text.encode('utf-8')):,} bytes, {len(ours):,} tokens, {verdict}")
    return 0 if ok else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gptjax.tokenizer", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="learn a vocabulary from text files")
    train.add_argument("--input", nargs="+", required=True, metavar="FILE")
    train.add_argument("--vocab-size", type=int, required=True)
    train.add_argument("--pattern", default="gpt4", help="gpt2, gpt4 or none (default gpt4)")
    train.add_argument("--out", required=True, help="where to write the tokenizer (.bpe)")
    train.add_argument(
        "--verbose", action="store_true", help="print each merge as it is learned, with its count"
    )
    train.set_defaults(func=cmd_train)

    def with_tokenizer(name, func, help_):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--tokenizer", required=True, help="gptjax .bpe file or .tiktoken rank file")
        p.add_argument("--pattern", default=None, help="for a .tiktoken file: gpt2, gpt4 or none")
        p.add_argument(
            "--special",
            action="append",
            default=[],
            metavar="NAME=ID",
            help="for a .tiktoken file: a special token, repeatable (or NAME=ID,NAME=ID)",
        )
        p.set_defaults(func=func)
        return p

    enc = with_tokenizer("encode", cmd_encode, "print the ids of a text (stdin or --input)")
    enc.add_argument("--input", default=None, metavar="FILE")
    enc.add_argument(
        "--allow-special", action="store_true", help="encode special-token text as specials"
    )
    dec = with_tokenizer("decode", cmd_decode, "print the text of ids (stdin or --input)")
    dec.add_argument("--input", default=None, metavar="FILE")
    show = with_tokenizer("show", cmd_show, "show token boundaries in a text")
    show.add_argument("--text", required=True)
    par = with_tokenizer("parity", cmd_parity, "compare the pure encoder with tiktoken on files")
    par.add_argument("--input", nargs="+", required=True, metavar="FILE")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns the exit status (2 for a user mistake)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "train" and args.pattern not in tk.PATTERNS:
        parser.error(f"unknown pattern {args.pattern!r}: use one of {', '.join(tk.PATTERNS)}")
    try:
        return args.func(args)
    except UserError as e:
        print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
