"""``python -m gptjax.inspect``: look inside the tokenizer and a trained model (parts 1 to 10).

  python -m gptjax.inspect tokens --text "abab abab"          (a tiny BPE trained on the text)
  python -m gptjax.inspect tokens --workdir runs/fr --text "Le quinoa"
  python -m gptjax.inspect merges --workdir runs/fr -n 20
  python -m gptjax.inspect attention --workdir runs/fr --text "Le chat mange la"
  python -m gptjax.inspect positions --kind sinusoidal --block-size 64 --dim 64
  python -m gptjax.inspect embeddings --workdir runs/fr --neighbours "␠la"
  python -m gptjax.inspect next --workdir runs/fr --prompt "Le chat mange la" -k 10

Each subcommand prints what it shows in the terminal and draws it in a PNG (``--out``, by default
``SUBCOMMAND.png`` in the current folder). The command line only: the measurements are
``gptjax.inspection.probes``, the pictures ``gptjax.inspection.pictures``. A space inside a token
is written ␠, as in the tutorial (``--tokens`` and ``--neighbours`` accept it too). A mistake the
user can fix (`gptjax.errors.UserError`) is one line ``error: ...`` and exit code 2; any other
error is a bug and keeps its traceback.
"""

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from gptjax import tokenizer as tk
from gptjax.errors import UserError, as_user_error
from gptjax.generation.text import prompt_ids
from gptjax.inspection import pictures, probes
from gptjax.inspection import text as forms
from gptjax.runs.rundir import RunDir
from gptjax.tokenizer.trainer import check_vocab_size
from gptjax.training import data

_MAX_STEPS = 20  # BPE steps shown token by token; beyond, only the merges are listed


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _check_out(out_text: str) -> Path:
    """The ``--out`` path, refused before any work if it cannot be written as a PNG."""
    out = Path(out_text)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out_text}: the picture is a PNG, give a name ending in .png")
    if out.is_dir():
        raise UserError(f"--out {out_text} is a folder; give the path of the file to write")
    if not out.parent.is_dir():
        problem = "is a file, not a folder" if out.parent.exists() else "does not exist"
        raise UserError(f"--out {out_text}: the folder {out.parent} {problem}; create it first")
    return out


def _say_picture(out: Path, size: tuple[int, int]) -> None:
    print(f"image : {out} ({size[0]} x {size[1]} pixels)")


def _load_run(workdir: str):
    """(GPTConfig, params, Tokenizer) of a trained run.

    Raises:
      UserError: not a run directory, no checkpoint, or a tokenizer larger than the model.
    """
    run_dir = RunDir(workdir)
    run_dir.read_model_config()  # a folder that is not a run, or a damaged config.json
    from gptjax.runs.checkpoint import load_for_inference  # orbax is slow to import

    config, params, tok = load_for_inference(Path(workdir))
    if tok.vocab_size > config.vocab_size:
        raise UserError(
            f"{run_dir.tokenizer_path} has {tok.vocab_size} tokens but the model only "
            f"{config.vocab_size}: restore the tokenizer this run trained with"
        )
    return config, params, tok


def _read_tokenizer(path: str) -> tk.Tokenizer:
    with as_user_error():
        if tk.file_format(path) != "bpe":
            raise UserError(f"--tokenizer {path} is not a gptjax .bpe file (which records merges)")
        return tk.load(path)


def _run_tokenizer(workdir: str) -> tk.Tokenizer:
    """The tokenizer of a run (which need not be trained yet): a UserError if it is not a run."""
    run_dir = RunDir(workdir)
    run_dir.read_config()
    return run_dir.load_tokenizer()


def _train(texts, pattern: str, n: int, train=tk.train):
    """`probes.train_counted`, its mistakes as `UserError`s."""
    with as_user_error():  # an empty text, a text without a single pair
        return probes.train_counted(texts, pattern, n, train)


def _token_id(tok: tk.Tokenizer, text: str, flag: str) -> int:
    """The id of the token written ``text`` (␠ for a space), or a UserError saying what it is."""
    token_id = probes.find_token(tok, text)
    if token_id is not None:
        return token_id
    ids = tk.encode(tok, text.replace("␠", " "), disallowed_special=())
    raise UserError(
        f"{flag} {text!r} is not one token of this vocabulary but {len(ids)}: "
        f"{' | '.join(forms.label(tok, i) for i in ids)} (a space is written ␠)"
    )


# --- tokens and merges (part 1) -----------------------------------------------------------------


def _tokenizer_for_tokens(args) -> tuple[tk.Tokenizer, str]:
    """The tokenizer ``tokens`` uses, and a sentence saying where it comes from."""
    if args.workdir:
        return _run_tokenizer(args.workdir), f"celui du run {args.workdir}"
    if args.tokenizer:
        return _read_tokenizer(args.tokenizer), f"le fichier {args.tokenizer}"
    corpus = args.text if args.train_on is None else args.train_on
    with as_user_error():  # a vocab_size below 260
        wanted = check_vocab_size(args.vocab_size)
    tok, _ = _train(corpus, args.pattern, wanted, tk.train_plain)
    where = "le texte lui-même" if args.train_on is None else f"« {corpus} »"
    fewer = ", le texte n'en permet pas plus" if len(tok.merges) < wanted else ""
    return tok, (
        f"BPE entraîné sur {where} par l'algorithme du cours (--vocab-size {args.vocab_size}, "
        f"motif {args.pattern}) : {forms.plural(len(tok.merges), 'fusion')}{fewer}"
    )


def cmd_tokens(args, out: Path) -> None:
    tok, where = _tokenizer_for_tokens(args)
    with as_user_error():  # a lone surrogate in --text
        steps = probes.bpe_steps(tok, args.text)
    n_bytes = len(args.text.encode("utf-8"))
    sizes = f"{forms.plural(len(args.text), 'caractère')}, {forms.plural(n_bytes, 'octet')}"
    print(f"Texte : {args.text!r} ({sizes})")
    print(f"Tokenizer : {where}")
    for char in dict.fromkeys(c for c in args.text if len(c.encode("utf-8")) > 1):
        codes = " + ".join(str(b) for b in char.encode("utf-8"))
        print(f"  « {char} » s'écrit sur plusieurs octets : {codes}")
    colour = sys.stdout.isatty()
    rows = []
    for number, (step, title) in enumerate(zip(steps, forms.step_titles(tok, steps), strict=True)):
        print(title)
        if len(steps) <= _MAX_STEPS + 1 or number in (0, len(steps) - 1):
            labels = [forms.label(tok, i) for i in step.ids]
            print("\n".join("  " + line for line in forms.token_rows(labels, step.ids, colour)))
            labels = [forms.label(tok, i, "␣") for i in step.ids]  # ␠ is not in the font
            rows.append((title.replace("␠", "␣"), labels, step.ids))
    final = steps[-1].ids
    print(
        f"Résultat : {forms.plural(len(final), 'token')} pour {forms.plural(n_bytes, 'octet')} "
        f"({n_bytes / max(len(final), 1):.2f} octets par token). Aucun <unk> : chaque octet "
        "est un token (ids 0-255), tout texte se découpe en morceaux connus."
    )
    _say_picture(out, pictures.draw_tokens(rows, out))


def _counts_from_run(workdir: str, tok: tk.Tokenizer, n: int) -> tuple[dict[int, int], str]:
    """The first ``n`` merges' counts, learned again on the run's corpus (the training split)."""
    config = RunDir(workdir).read_config()
    if config["tokenizer"].get("path"):  # a config from before tokenizer.path has none
        return {}, "effectifs inconnus (le run a lu son tokenizer dans un fichier)"
    corpus = config["data"]["corpus"]
    try:
        docs = data.load_documents(corpus)
        train_docs, _ = data.split_documents(docs, config["data"]["val_fraction"])
    except ValueError as error:
        return {}, f"effectifs inconnus (corpus {corpus!r} illisible ici : {error})"
    again, counts = _train(train_docs, tok.pattern, min(n, len(tok.merges)))
    if again.merges != tok.merges[: len(again.merges)]:
        return {}, f"effectifs inconnus (le corpus {corpus!r} ne redonne pas ces fusions)"
    return counts, f"effectifs recomptés sur la partie entraînement du corpus {corpus!r}"


def cmd_merges(args, out: Path) -> None:
    if args.n < 1:
        raise UserError(f"-n must be >= 1, got {args.n}")
    if args.workdir:
        tok = _run_tokenizer(args.workdir)
        counts, note = _counts_from_run(args.workdir, tok, args.n)
        where = f"du run {args.workdir}"
    elif args.tokenizer:
        tok, counts, note = _read_tokenizer(args.tokenizer), {}, "effectifs inconnus"
        where = f"de {args.tokenizer}"
    else:
        if args.corpus:
            with as_user_error():  # as the configs do: the first 90% of the text
                texts = data.split_documents(data.load_documents(args.corpus), 0.1)[0]
            where = f"apprises sur le corpus {args.corpus!r} (partie entraînement, 90 %)"
        else:
            texts, where = args.train_on, f"apprises sur « {args.train_on} »"
        tok, counts = _train(texts, args.pattern, args.n)
        note = "effectifs au moment de chaque fusion"
    if not tok.merges:
        raise UserError("this tokenizer records no merges (a byte-level vocabulary)")
    merges = probes.learned_merges(tok, args.n, counts)
    print(f"Les {len(merges)} premières fusions {where} ({tok.vocab_size} tokens) ; {note}")
    print("\n".join(forms.merge_lines(merges)))
    labels = [
        " + ".join(probes.token_label(b, "␣") for b in (m.left, m.right))
        + f" → {probes.token_label(m.left + m.right, '␣')}"
        for m in merges
    ]
    if counts:
        values, name = [m.count for m in merges], "effectif de la paire quand elle est fusionnée"
    else:
        values, name = [len(m.left + m.right) for m in merges], "longueur du token (octets)"
    _say_picture(out, pictures.draw_merges(labels, values, name, out))


# --- the model: attention, positions, embeddings, next token -------------------------------------


def _encode(tok: tk.Tokenizer, text: str, block_size: int, flag: str) -> list[int]:
    """The ids of a text for the model: at least one, the first ``block_size`` with a warning."""
    with as_user_error():
        ids = tk.encode(tok, text, disallowed_special=())
    if not ids:
        raise UserError(f"{flag} is empty: give some text")
    if len(ids) > block_size:
        _warn(
            f"{flag} has {len(ids)} tokens, more than the model's context of {block_size}: "
            f"keeping its first {block_size} tokens"
        )
        ids = ids[:block_size]
    return ids


def cmd_attention(args, out: Path) -> None:
    config, params, tok = _load_run(args.workdir)
    if config.n_layer == 0:
        raise UserError(f"{args.workdir} has no attention layer (n_layer 0, a bigram model)")
    ids = _encode(tok, args.text, config.block_size, "--text")
    weights_LNTT = probes.attention_weights(config, params, ids)
    labels = [forms.label(tok, i) for i in ids]
    print(f"Texte : {forms.plural(len(ids), 'token')} : {' | '.join(labels)}")
    print(
        f"{config.n_layer} couches x {config.n_head} têtes. Ligne = la requête (le token qui "
        "regarde), colonne = la clé (le token regardé) ; chaque ligne somme à 1."
    )
    print("\n".join(forms.attention_lines(weights_LNTT, labels)))
    labels = [forms.label(tok, i, "␣") for i in ids]
    _say_picture(out, pictures.draw_attention(weights_LNTT, labels, out))


def cmd_positions(args, out: Path) -> None:
    if args.workdir:
        config, params, _ = _load_run(args.workdir)
        kind, block_size = config.pos_encoding, config.block_size
        width = config.head_size if kind == "rope" else config.n_embd
        if kind == "none":
            raise UserError(f"{args.workdir} has no positional encoding (pos_encoding 'none')")
    else:
        kind, block_size, width, params = args.kind, args.block_size, args.dim, None
        if block_size < 1 or width < 2 or width % 2:
            raise UserError(
                f"--block-size must be >= 1 and --dim even and >= 2, got {block_size} and {width}"
            )
    table_TW = probes.position_table(kind, block_size, width, params)
    similarity_TT = probes.cosine_similarity(table_TW)
    what = {"learned": "appris", "sinusoidal": "sinusoïdal", "rope": "RoPE, angles de rotation"}
    dim = "H" if kind == "rope" else "D"
    title = f"{what[kind]}, {block_size} positions, {dim} = {width}"
    print(f"Encodage positionnel {title}")
    print("\n".join(forms.position_lines(table_TW, similarity_TT)))
    _say_picture(out, pictures.draw_positions(table_TW, similarity_TT, title, out))


def cmd_embeddings(args, out: Path) -> None:
    if args.k < 1:
        raise UserError(f"-k must be >= 1, got {args.k}")
    config, params, tok = _load_run(args.workdir)
    table_VD = probes.token_table(params)[: tok.vocab_size]
    shown = [_token_id(tok, t, "--tokens") for t in args.tokens or []]
    target = None if args.neighbours is None else _token_id(tok, args.neighbours, "--neighbours")
    # Fit on the tokens the training text holds: every merge, and the bytes merges are made of.
    # The others (unused bytes, specials) never enter the model; with tied embeddings the output
    # softmax only pushes them all the same way, and they would take the first direction.
    seen = sorted({i for merge in tok.merges for i in merge}) or list(range(tok.vocab_size))
    coords_V2, explained_2 = probes.pca_2d(table_VD, seen)
    if not shown:  # the letters and the first merges learned
        letters = [probes.find_token(tok, c) for c in "abcdefghijklmnopqrstuvwxyzéèàç"]
        shown = [i for i in letters if i in seen] + [new for _, _, new in tok.merges[:30]]
    print(
        f"Embeddings de {len(seen)} tokens sur {tok.vocab_size} (D = {config.n_embd}) : ceux du "
        "texte d'entraînement (les fusions et les octets qui les composent), projetés sur leurs 2 "
        f"directions de plus grande variance (ACP), qui en expliquent {explained_2[0]:.1%} et "
        f"{explained_2[1]:.1%}."
    )
    places = [
        f"{forms.label(tok, i)} ({coords_V2[i, 0]:+.2f}, {coords_V2[i, 1]:+.2f})" for i in shown
    ]
    print("  " + ", ".join(places[:12]) + (" ..." if len(places) > 12 else ""))
    specials = set(tok.special_tokens.values())
    if target is not None:
        candidates = [i for i in range(tok.vocab_size) if i not in specials]
        neighbours = probes.nearest(table_VD, target, args.k, candidates)
        print(
            f"Les {len(neighbours)} plus proches voisins de {forms.label(tok, target)} (cosinus) :"
        )
        print("\n".join(forms.neighbour_lines(tok, neighbours)))
        shown = [target, *shown]
    points = sorted(set(seen) | set(shown))
    kinds = ["spécial" if i in specials else "octet" if i < 256 else "fusion" for i in points]
    labels = {points.index(i): forms.label(tok, i, "␣") for i in shown}
    picture = pictures.draw_embeddings(coords_V2[points], kinds, labels, explained_2, out)
    _say_picture(out, picture)


def cmd_next(args, out: Path) -> None:
    if args.k < 1:
        raise UserError(f"-k must be >= 1, got {args.k}")
    config, params, tok = _load_run(args.workdir)
    with as_user_error(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = prompt_ids(tok, args.prompt, config.block_size)  # "" needs a separator token
    for warning in caught:  # a prompt cut to the context: one plain line
        _warn(str(warning.message))
    best = probes.top_k(probes.next_token_probs(config, params, ids), args.k)
    pieces = " | ".join(forms.label(tok, i) for i in ids)
    print(f"Prompt : {args.prompt!r}, {forms.plural(len(ids), 'token')} : {pieces}")
    print(
        f"Les {len(best)} tokens suivants les plus probables (softmax des logits, température 1) :"
    )
    print("\n".join(forms.probability_lines(tok, best)))
    labels = [forms.label(tok, i, "␣") for i, _ in best]
    _say_picture(out, pictures.draw_next(labels, [p for _, p in best], args.prompt, out))


# --- the command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gptjax.inspect",
        description="Look inside the tokenizer and a trained model: text and a PNG for each view.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, func, help_):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--out", default=f"{name}.png", help=f"PNG to write (default {name}.png)")
        p.set_defaults(func=func)
        return p

    tokens = command("tokens", cmd_tokens, "a text token by token, and the merges one by one")
    tokens.add_argument("--text", required=True, help="the text to tokenize")
    source = tokens.add_mutually_exclusive_group()
    source.add_argument("--workdir", help="use the tokenizer of this run")
    source.add_argument("--tokenizer", help="use this gptjax .bpe file")
    source.add_argument("--train-on", help="train a BPE on this text (default: on --text)")
    tokens.add_argument("--vocab-size", type=int, default=262, help="when training (default 262)")
    tokens.add_argument("--pattern", default="gpt4", choices=tk.PATTERNS, help="when training")

    merges = command("merges", cmd_merges, "the first merges learned, with their counts")
    source = merges.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="the run's tokenizer (counts from its corpus)")
    source.add_argument("--tokenizer", help="a gptjax .bpe file (no counts)")
    source.add_argument("--corpus", help="train on a corpus: a name (hugo_extrait) or a path")
    source.add_argument("--train-on", help="train on this text")
    merges.add_argument("-n", type=int, default=20, help="how many merges (default 20)")
    merges.add_argument("--pattern", default="gpt4", choices=tk.PATTERNS, help="when training")

    attention = command("attention", cmd_attention, "attention weights, every layer and head")
    attention.add_argument("--workdir", required=True, help="a run trained by gptjax.main")
    attention.add_argument("--text", required=True)

    positions = command("positions", cmd_positions, "positional encodings and their similarity")
    positions.add_argument("--workdir", help="a run (its own encoding); else --kind")
    positions.add_argument("--kind", default="sinusoidal", choices=("sinusoidal", "rope"))
    positions.add_argument("--block-size", type=int, default=64, help="number of positions")
    positions.add_argument("--dim", type=int, default=64, help="D (the head size H for rope)")

    embeddings = command("embeddings", cmd_embeddings, "token embeddings in 2-D, neighbours")
    embeddings.add_argument("--workdir", required=True, help="a run trained by gptjax.main")
    embeddings.add_argument("--tokens", nargs="+", help="tokens to name on the picture (␠la)")
    embeddings.add_argument("--neighbours", help="print this token's nearest neighbours")
    embeddings.add_argument("-k", type=int, default=10, help="how many neighbours (default 10)")

    following = command("next", cmd_next, "the next-token probabilities after a prompt")
    following.add_argument("--workdir", required=True, help="a run trained by gptjax.main")
    following.add_argument("--prompt", default="", help='text to continue ("": a new document)')
    following.add_argument("-k", type=int, default=10, help="how many tokens (default 10)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: one view, printed and drawn; a user mistake exits with status 2."""
    args = _parser().parse_args(argv)
    try:
        for name in ("text", "prompt", "train_on"):
            value = getattr(args, name, None)
            if value is not None and not _is_utf8(value):
                raise UserError(f"--{name.replace('_', '-')} is not valid UTF-8 text")
        out = _check_out(args.out)
        args.func(args, out)
    except UserError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(2)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


if __name__ == "__main__":
    main()
