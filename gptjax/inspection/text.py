"""The terminal forms of ``python -m gptjax.inspect``: what each view prints (parts 1 to 10).

Pure functions from what ``gptjax.inspection.probes`` measured to lines of text, in French, the
language of the course. A space inside a token is written ␠, as in the tutorial.
"""

from collections.abc import Sequence

import numpy as np

from gptjax import tokenizer as tk
from gptjax.inspection.probes import BpeStep, Merge, token_label

# Background colours cycled over tokens when the output is a terminal.
_COLOURS = ["\x1b[48;5;153m", "\x1b[48;5;222m", "\x1b[48;5;151m", "\x1b[48;5;217m"]
_RESET = "\x1b[0m"
WIDTH = 100  # terminal columns for rows of tokens
# Texts up to this many tokens print their attention as a matrix; longer ones, per query.
MATRIX_TOKENS = 16


def plural(n: int, word: str) -> str:
    """``n`` and ``word``, plural from 2 on, as in French: "1 token", "0 fusion", "9 tokens"."""
    return f"{n} {word}{'s' if n > 1 else ''}"


def label(tok: tk.Tokenizer, token_id: int, space: str = "␠") -> str:
    """A token's label (``token_label`` of its bytes); ids past the vocabulary say so."""
    if token_id >= tok.vocab_size:  # the model may have more rows than the tokenizer has ids
        return f"<id {token_id}, hors vocabulaire>"
    return token_label(tok.token_bytes(token_id), space)


def token_rows(labels: Sequence[str], ids: Sequence[int], colour: bool) -> list[str]:
    """Lines of tokens with their ids underneath, wrapped at `WIDTH` columns.

    Args:
      labels: the tokens' labels.
      ids: their ids.
      colour: each token on a coloured background (a terminal), else separated by spaces.

    Returns:
      Pairs of lines: the tokens, then their ids, each centred in a column.
    """
    lines, top, bottom, used = [], [], [], 0
    for k, (text, token_id) in enumerate(zip(labels, ids, strict=True)):
        width = max(len(text), len(str(token_id)))
        if used and used + width + 1 > WIDTH:
            lines += ["".join(top), "".join(bottom)]
            top, bottom, used = [], [], 0
        cell = text.center(width)
        top.append(f"{_COLOURS[k % len(_COLOURS)]}{cell}{_RESET} " if colour else f"{cell} ")
        bottom.append(f"{str(token_id).center(width)} ")
        used += width + 1
    return lines + ["".join(top), "".join(bottom)]


def step_titles(tok: tk.Tokenizer, steps: Sequence[BpeStep]) -> list[str]:
    """One title per BPE step: the bytes, then "Fusion k : a + b -> ab (id), n fois : x -> y"."""
    parts = {new: (left, right) for left, right, new in tok.merges}
    titles = [f"Étape 0 : les octets UTF-8, {plural(len(steps[0].ids), 'token')}"]
    for number, (before, step) in enumerate(zip(steps, steps[1:], strict=False), start=1):
        made = label(tok, step.token_id)
        if step.token_id in parts:  # a rank file records no merges: only the token is known
            left, right = parts[step.token_id]
            made = f"{label(tok, left)} + {label(tok, right)} -> {made}"
        titles.append(
            f"Fusion {number} : {made} (id {step.token_id}), {step.occurrences} fois : "
            f"{len(before.ids)} -> {plural(len(step.ids), 'token')}"
        )
    return titles


def merge_lines(merges: Sequence[Merge]) -> list[str]:
    """A table of merges: rank, id, left + right -> new token, count ("?" when unknown)."""
    lines = [f"{'rang':>4} {'id':>5}  {'gauche':>10} + {'droite':<10} -> {'nouveau':<14} effectif"]
    for m in merges:
        count = "?" if m.count is None else f"{m.count:,}"
        left, right, new = (token_label(b) for b in (m.left, m.right, m.left + m.right))
        lines.append(f"{m.rank:>4} {m.new_id:>5}  {left:>10} + {right:<10} -> {new:<14} {count}")
    return lines


def attention_lines(weights_LNTT: np.ndarray, labels: Sequence[str]) -> list[str]:
    """Each head's weights: a lower-triangular matrix, or each query's three strongest keys.

    Args:
      weights_LNTT: the attention weights of every layer and head.
      labels: the T tokens' labels.

    Returns:
      A block of lines per layer and head, the matrix rows being the queries.
    """
    n_layer, n_head, t, _ = weights_LNTT.shape
    short = [text[:7] for text in labels]
    lines = []
    for layer in range(n_layer):
        for head in range(n_head):
            lines += ["", f"couche {layer}, tête {head}"]
            weights_TT = weights_LNTT[layer, head]
            if t <= MATRIX_TOKENS:
                lines.append(" " * 8 + "".join(f"{s:>8}" for s in short))
                for q, row in enumerate(weights_TT):
                    lines.append(f"{short[q]:>8}" + "".join(f"{w:8.2f}" for w in row[: q + 1]))
                continue
            for q, row in enumerate(weights_TT):  # too wide for a terminal
                best = sorted(range(q + 1), key=lambda s: -row[s])[:3]
                keys = ", ".join(f"{labels[s]} ({row[s]:.2f})" for s in best)
                lines.append(f"{q:>4} {labels[q]:>10} -> {keys}")
    return lines


def position_lines(table_TW: np.ndarray, similarity_TT: np.ndarray) -> list[str]:
    """The table's first values, and the similarity of positions 0 and T/2 to those after them."""
    block_size = table_TW.shape[0]
    lines = ["Premières valeurs (positions 0-3, dimensions 0-7) :"]
    for p in range(min(4, block_size)):
        lines.append(f"  position {p} : " + " ".join(f"{v:+.3f}" for v in table_TW[p, :8]))
    distances = [d for d in (1, 2, 4, 8, 16, 32) if d < block_size]
    lines.append("Similarité cosinus entre la position p et p + d :")
    lines.append("        " + "".join(f"{'d = ' + str(d):>9}" for d in distances))
    for p in sorted({0, block_size // 2}):
        cells = "".join(
            f"{similarity_TT[p, p + d]:>9.3f}" if p + d < block_size else f"{'-':>9}"
            for d in distances
        )
        lines.append(f"  p = {p:<3}{cells}")
    return lines


def neighbour_lines(tok: tk.Tokenizer, neighbours: Sequence[tuple[int, float]]) -> list[str]:
    """One line per neighbour: rank, token, id, cosine similarity."""
    return [
        f"  {rank:>3}. {label(tok, i):<14} (id {i:>5})  {cos:+.3f}"
        for rank, (i, cos) in enumerate(neighbours, start=1)
    ]


def probability_lines(tok: tk.Tokenizer, best: Sequence[tuple[int, float]]) -> list[str]:
    """The next-token table: rank, id, token, probability and a bar, then their total."""
    lines = [f"{'rang':>4} {'id':>5}  {'token':<14} probabilité"]
    for rank, (i, p) in enumerate(best, start=1):
        lines.append(f"{rank:>4} {i:>5}  {label(tok, i):<14} {p:7.2%}  {'█' * round(40 * p)}")
    lines.append(f"Ensemble : {sum(p for _, p in best):.1%} de la probabilité.")
    return lines
