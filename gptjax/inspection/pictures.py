"""The pictures of ``python -m gptjax.inspect``: one PNG per measurement (tutorial parts 1-10).

Each function draws what ``gptjax.inspection.probes`` measured and writes it to a PNG, with
matplotlib's Agg backend (no display needed), and returns the picture's size in pixels. Figure
sizes are whole multiples of half an inch at 100 dots per inch, so the size in pixels is exact.
Labels are in French, the language of the course.
"""

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

DPI = 100
# Background colours cycled over tokens, as in the terminal.
TOKEN_COLOURS = ("#aed8f5", "#f8d49a", "#b5dfb5", "#f5b4b4", "#d9c4ee")
# Token rows wrap after this many characters.
_ROW_CHARS = 110


def _inches(value: float) -> float:
    """``value`` rounded up to half an inch, so that ``inches * DPI`` is a whole number."""
    return math.ceil(value * 2) / 2


def _save(fig, path: Path) -> tuple[int, int]:
    """Writes ``fig`` as a PNG and closes it; returns its (width, height) in pixels."""
    width, height = fig.get_size_inches()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return round(width * DPI), round(height * DPI)


def draw_tokens(rows: Sequence[tuple[str, Sequence[str], Sequence[int]]], path: Path):
    """Rows of coloured tokens with their ids underneath: one row per BPE step.

    Args:
      rows: (title, token labels, token ids) per row, e.g. the bytes, then after each merge.
      path: the PNG to write.

    Returns:
      (width, height) in pixels.
    """
    # Lay every row out in character units first: a token is as wide as its label or its id.
    layout, y = [], 0.0
    for title, labels, ids in rows:
        layout.append(("title", y, title, None, None))
        y += 1.2
        x = 0.0
        for k, (label, token_id) in enumerate(zip(labels, ids, strict=True)):
            width = max(len(label), len(str(token_id))) + 1
            if x and x + width > _ROW_CHARS:
                x, y = 0.0, y + 2.4
            layout.append(("token", y, label, token_id, (x, width, k)))
            x += width + 0.3
        y += 2.8
    fig = plt.figure(figsize=(_inches(_ROW_CHARS * 0.115 + 0.5), _inches(0.26 * y + 0.5)))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98))
    ax.set_xlim(-0.5, _ROW_CHARS + 0.5)
    ax.set_ylim(y, -0.5)
    ax.axis("off")
    for kind, top, label, token_id, place in layout:
        if kind == "title":
            ax.text(0, top + 0.5, label, fontsize=11, fontweight="bold", va="center")
            continue
        x, width, k = place
        colour = TOKEN_COLOURS[k % len(TOKEN_COLOURS)]
        ax.add_patch(Rectangle((x, top), width, 1.1, facecolor=colour, edgecolor="#555555"))
        ax.text(x + width / 2, top + 0.55, label, ha="center", va="center", family="monospace")
        ax.text(
            x + width / 2, top + 1.6, str(token_id), ha="center", va="center", fontsize=8,
            family="monospace", color="#333333",
        )  # fmt: skip
    return _save(fig, path)


def draw_merges(labels: Sequence[str], values: Sequence[int], value_name: str, path: Path):
    """A horizontal bar per merge, the first merge at the top.

    Args:
      labels: one label per merge, e.g. ``"0xC3 + 0xA9 → é"``.
      values: a bar length per merge (the pair's count, or the new token's length).
      value_name: what the bars measure, for the axis.
      path: the PNG to write.

    Returns:
      (width, height) in pixels.
    """
    n = len(labels)
    fig, ax = plt.subplots(figsize=(10, _inches(0.32 * n + 1.5)), layout="constrained")
    ax.barh(range(n), values, color="#4c72b0")
    ax.set_yticks(range(n), labels, family="monospace")
    ax.invert_yaxis()
    ax.set_xlabel(value_name)
    ax.set_title(f"Les {n} premières fusions BPE apprises (dans l'ordre)")
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


def draw_attention(weights_LNTT: np.ndarray, labels: Sequence[str], path: Path):
    """A heatmap of the attention weights per layer (rows) and head (columns).

    Args:
      weights_LNTT: ``weights[l, n, t, s]``, query t's weight on key s.
      labels: the T tokens' labels, on both axes.
      path: the PNG to write.

    Returns:
      (width, height) in pixels.
    """
    n_layer, n_head, t, _ = weights_LNTT.shape
    # Panels grow with the text, up to what keeps a big model's grid a few thousand pixels wide.
    side = max(1.5, min(0.28 * t + 1.2, 8.0, 36.0 / max(n_layer, n_head)))
    fig, axes = plt.subplots(
        n_layer, n_head, squeeze=False, layout="constrained",
        figsize=(_inches(side * n_head + 1.5), _inches(side * n_layer + 0.8)),
    )  # fmt: skip
    image = None
    for layer in range(n_layer):
        for head in range(n_head):
            ax = axes[layer, head]
            image = ax.imshow(weights_LNTT[layer, head], cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_title(f"couche {layer}, tête {head}", fontsize=9)
            ax.set_xticks(range(t), labels, rotation=90, fontsize=7)
            ax.set_yticks(range(t), labels, fontsize=7)
            if layer == n_layer - 1:
                ax.set_xlabel("clé (le token regardé)", fontsize=8)
            if head == 0:
                ax.set_ylabel("requête (le token qui regarde)", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.6, label="poids d'attention")
    fig.suptitle(
        "Poids d'attention : chaque ligne est un softmax (somme 1, rien après la diagonale)"
    )
    return _save(fig, path)


def draw_positions(table_TW: np.ndarray, similarity_TT: np.ndarray, title: str, path: Path):
    """The positional encoding as a heatmap, and the cosine similarity between positions.

    Args:
      table_TW: one row per position.
      similarity_TT: cosine similarity of the rows.
      title: what the table is (e.g. "sinusoïdal, D = 64").
      path: the PNG to write.

    Returns:
      (width, height) in pixels.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 6), layout="constrained")
    bound = float(np.max(np.abs(table_TW))) or 1.0
    image = left.imshow(table_TW, aspect="auto", cmap="RdBu_r", vmin=-bound, vmax=bound)
    left.set_xlabel("dimension")
    left.set_ylabel("position")
    left.set_title(f"Encodage positionnel ({title})")
    fig.colorbar(image, ax=left, shrink=0.8)
    image = right.imshow(similarity_TT, cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    right.set_xlabel("position")
    right.set_ylabel("position")
    right.set_title("Similarité cosinus entre positions")
    fig.colorbar(image, ax=right, shrink=0.8)
    return _save(fig, path)


def draw_embeddings(
    coords_R2: np.ndarray,
    kinds: Sequence[str],
    labels: dict[int, str],
    explained_2: np.ndarray,
    path: Path,
):
    """The tokens' embeddings projected on their two principal directions.

    Args:
      coords_R2: one point per token.
      kinds: one kind per token (``octet``, ``fusion``, ``spécial``), which sets its colour.
      labels: point index -> label, for the tokens to name on the picture.
      explained_2: the fraction of the variance of each direction, for the axes.
      path: the PNG to write.

    Returns:
      (width, height) in pixels.
    """
    fig, ax = plt.subplots(figsize=(11, 9), layout="constrained")
    colours = {"octet": "#9aa5b1", "fusion": "#4c72b0", "spécial": "#c44e52"}
    for kind, colour in colours.items():
        rows = [i for i, k in enumerate(kinds) if k == kind]
        if rows:
            ax.scatter(*coords_R2[rows].T, s=9, color=colour, alpha=0.6, label=kind)
    for row, label in labels.items():
        ax.scatter(*coords_R2[row], s=30, color="black")
        ax.annotate(label, coords_R2[row], xytext=(3, 3), textcoords="offset points", fontsize=9)
    ax.set_xlabel(f"composante principale 1 ({explained_2[0]:.0%} de la variance)")
    ax.set_ylabel(f"composante principale 2 ({explained_2[1]:.0%} de la variance)")
    ax.set_title("Embeddings des tokens, projetés en 2 D (ACP)")
    ax.legend(loc="best")
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def draw_next(labels: Sequence[str], probs: Sequence[float], prompt: str, path: Path):
    """The most likely next tokens as horizontal bars, the most likely at the top.

    Args:
      labels: the tokens' labels.
      probs: their probabilities.
      prompt: the text they would follow, for the title.
      path: the PNG to write.

    Returns:
      (width, height) in pixels.
    """
    k = len(labels)
    fig, ax = plt.subplots(figsize=(9, _inches(0.4 * k + 1.5)), layout="constrained")
    ax.barh(range(k), probs, color="#55a868")
    ax.set_yticks(range(k), labels, family="monospace")
    ax.invert_yaxis()
    for i, p in enumerate(probs):
        ax.text(p, i, f" {p:.1%}", va="center", fontsize=9)
    ax.set_xlim(0, min(1.0, max(probs, default=1.0) * 1.2 + 0.02))
    ax.set_xlabel("probabilité du token suivant")
    ax.set_title(f"Après « {prompt} »", fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)
