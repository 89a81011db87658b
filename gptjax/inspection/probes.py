"""The measurements behind ``python -m gptjax.inspect``, as pure functions (tutorial parts 1-10).

Each function takes what it looks at (a tokenizer, a model's config and parameters, a text) and
returns plain NumPy arrays or small records; drawing and printing are elsewhere
(``gptjax.inspection.pictures``, ``gptjax.inspect``). The model's internals are read the way Flax
intends, never by patching it: the attention sows its weights into the ``intermediates``
collection (``gptjax.model.multihead``), and ``attention_weights`` asks for that collection with
``apply(..., mutable=["intermediates"])``.
"""

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from gptjax import tokenizer as tk
from gptjax.model import GPT, GPTConfig
from gptjax.model.positional import rope_tables, sinusoidal_encoding
from gptjax.tokenizer.patterns import split
from gptjax.tokenizer.trainer import tokenizer_from_merges

# Whitespace made visible in labels; the tutorial writes a space as ␠. Pictures use ␣ instead,
# which matplotlib's default font has (it lacks ␠).
_VISIBLE = {" ": "␠", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def token_label(token: bytes, space: str = "␠") -> str:
    """A token's bytes for a person: its text if they are UTF-8, else each byte in hex.

    >>> token_label(b" chat"), token_label(b"\\xc3"), token_label("é".encode())
    ('␠chat', '0xC3', 'é')

    Args:
      token: the token's bytes.
      space: how a space is shown.

    Returns:
      The text with whitespace made visible, or ``0xC3 0xA9``-style bytes for a token that is
      not whole UTF-8 characters (or holds an invisible one).
    """
    try:
        text = token.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    text = "".join(space if c == " " else _VISIBLE.get(c, c) for c in text)
    if text and text.isprintable():
        return text
    return " ".join(f"0x{b:02X}" for b in token)


# --- Tokens (part 1) ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BpeStep:
    """The text's tokens after one merge (or before any, for the first step).

    Attributes:
      token_id: the token this step creates, None for the starting bytes.
      occurrences: how many times it was formed in the text (0 for the starting bytes).
      ids: the text's token ids after this step.
    """

    token_id: int | None
    occurrences: int
    ids: tuple[int, ...]


def bpe_steps(tok: tk.Tokenizer, text: str) -> list[BpeStep]:
    """Encodes ``text`` one merge at a time, as the encoder does: the bytes, then each merge.

    The text is cut into chunks by the tokenizer's pattern and each chunk starts as its UTF-8
    bytes. At every step the adjacent pair whose concatenation is the lowest-ranked token (the
    earliest merge learned) is merged everywhere it occurs, left to right; the steps stop when no
    adjacent concatenation is a token. The last step's ids are ``tk.encode_ordinary(tok, text)``
    (special-token text is plain text here).

    >>> tok = tk.train_plain("abab abab", vocab_size=262, pattern="none")
    >>> [len(step.ids) for step in bpe_steps(tok, "abab abab")]
    [9, 5, 3]

    Args:
      tok: the tokenizer.
      text: any valid Unicode text.

    Returns:
      The steps, the first one holding the bytes.
    """
    ranks = tok.mergeable_ranks
    chunks = [[bytes([b]) for b in chunk.encode("utf-8")] for chunk in split(text, tok.pattern)]

    def ids() -> tuple[int, ...]:
        return tuple(ranks[part] for parts in chunks for part in parts)

    steps = [BpeStep(None, 0, ids())]
    while True:
        found = [
            ranks[a + b]
            for parts in chunks
            for a, b in zip(parts, parts[1:], strict=False)
            if a + b in ranks
        ]
        if not found:
            return steps
        best = min(found)
        merged = tok.token_bytes(best)
        occurrences = 0
        for parts in chunks:
            i = 0
            while i < len(parts) - 1:
                if parts[i] + parts[i + 1] == merged:
                    parts[i : i + 2] = [merged]
                    occurrences += 1
                i += 1
        steps.append(BpeStep(best, occurrences, ids()))


@dataclasses.dataclass(frozen=True)
class Merge:
    """One merge the tokenizer learned.

    Attributes:
      rank: 1 for the first merge learned.
      new_id: the id of the token it makes.
      left: the bytes of the left token.
      right: the bytes of the right token.
      count: how often the pair occurred when it was learned; None when unknown.
    """

    rank: int
    new_id: int
    left: bytes
    right: bytes
    count: int | None


def learned_merges(tok: tk.Tokenizer, n: int, counts: dict[int, int] | None = None) -> list[Merge]:
    """The first ``n`` merges of a tokenizer, in the order they were learned.

    Args:
      tok: a tokenizer that records its merges (trained by gptjax).
      n: how many.
      counts: new id -> count of the pair, as a trainer's ``on_merge`` reports it, if known.

    Returns:
      At most ``n`` merges.
    """
    counts = counts or {}
    return [
        Merge(rank, new, tok.token_bytes(left), tok.token_bytes(right), counts.get(new))
        for rank, (left, right, new) in enumerate(tok.merges[:n], start=1)
    ]


def train_counted(
    texts: str | Sequence[str], pattern: str, n: int, train=tk.train
) -> tuple[tk.Tokenizer, dict[int, int]]:
    """Learns up to ``n`` merges, fewer if the texts run out of pairs, and counts each pair.

    Args:
      texts: a text or texts.
      pattern: the pre-tokenization pattern.
      n: how many merges at most.
      train: ``tk.train`` (fast) or ``tk.train_plain`` (as taught): the same merges.

    Returns:
      (the tokenizer of the merges learned, new id -> count of its pair when it was merged).

    Raises:
      ValueError: an empty text, or one with no pair at all to merge.
    """
    learned = []

    def on_merge(new: int, left: int, right: int, count: int) -> None:
        learned.append((left, right, new, count))

    try:
        train(texts, tk.FIRST_MERGE_ID + n, pattern, on_merge=on_merge)
    except ValueError:
        if not learned:
            raise
        # The texts ran out of pairs after len(learned) merges: those are the answer.
    tok = tokenizer_from_merges(pattern, [(left, right, new) for left, right, new, _ in learned])
    return tok, {new: count for _, _, new, count in learned}


def find_token(tok: tk.Tokenizer, text: str) -> int | None:
    """The id of the one token whose text is ``text`` (␠ standing for a space), else None."""
    raw = text.replace("␠", " ").replace("\\n", "\n")
    if raw in tok.special_tokens:
        return tok.special_tokens[raw]
    return tok.mergeable_ranks.get(raw.encode("utf-8"))


# --- The model: attention (parts 3-5) and next token (part 10) ---------------------------------


def attention_weights(config: GPTConfig, params, ids: list[int]) -> np.ndarray:
    """The attention weights of every layer and head for one sequence of tokens.

    The model runs with the plain kernels, whose attention forms its weights and sows them into
    the ``intermediates`` collection; the fast kernels have the same parameters but may fuse the
    weights away (cuDNN), so they are not used here.

    Args:
      config: the model's configuration.
      params: its parameters.
      ids: T token ids, 1 <= T <= block_size.

    Returns:
      weights_LNTT, float32: ``weights[l, n, t, s]`` is how much query t of head n in layer l
      takes from key s; each row sums to 1 and is 0 for s > t.
    """
    plain = dataclasses.replace(config, kernels="plain")
    tokens_BT = jnp.asarray([ids], jnp.int32)
    _, state = GPT(plain).apply({"params": params}, tokens_BT, mutable=["intermediates"])
    layers = state.get("intermediates", {})
    # One sown value per call: the tuple ``(probs_BNTS,)`` of each block's attention.
    sown = [layers[f"blocks_{i}"]["attn"]["attention_weights"][0] for i in range(config.n_layer)]
    empty = np.zeros((0, config.n_head, len(ids), len(ids)), np.float32)  # n_layer = 0
    return np.stack([np.asarray(probs_BNTS[0]) for probs_BNTS in sown]) if sown else empty


def next_token_probs(config: GPTConfig, params, ids: list[int]) -> np.ndarray:
    """The model's distribution of the token that follows ``ids``.

    Args:
      config: the model's configuration.
      params: its parameters.
      ids: T token ids, 1 <= T <= block_size.

    Returns:
      probs_V, float64: ``softmax(logits)`` at the last position (temperature 1).
    """
    logits_BTV = GPT(config).apply({"params": params}, jnp.asarray([ids], jnp.int32))
    logits_V = np.asarray(logits_BTV[0, -1], np.float64)
    exp_V = np.exp(logits_V - logits_V.max())
    return exp_V / exp_V.sum()


def top_k(probs_V: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` most likely ids and their probabilities, most likely first (ties by id)."""
    order = np.lexsort((np.arange(probs_V.shape[0]), -probs_V))[:k]
    return [(int(i), float(probs_V[i])) for i in order]


# --- Positions (part 6) ------------------------------------------------------------------------


def position_table(kind: str, block_size: int, width: int, params=None) -> np.ndarray:
    """The positional encoding of each position 0..block_size-1, one row per position.

    Args:
      kind: ``learned`` (the run's trained table, from ``params``), ``sinusoidal`` (the fixed
        table added to the embeddings) or ``rope`` (the rotation angles of q and k: row p is
        ``[cos(p w_0), ..., cos(p w_{H/2-1}), sin(p w_0), ..., sin(p w_{H/2-1})]``).
      block_size: T, the number of positions.
      width: D for ``learned`` and ``sinusoidal``, the head size H for ``rope``; even.
      params: the model's parameters (``learned`` only).

    Returns:
      table_TW, float32.
    """
    positions_T = jnp.arange(block_size, dtype=jnp.int32)
    if kind == "learned":
        return np.asarray(params["wpe"]["embedding"], np.float32)[:block_size]
    if kind == "sinusoidal":
        return np.asarray(sinusoidal_encoding(positions_T, width))
    assert kind == "rope", kind
    cos_TH, sin_TH = rope_tables(positions_T, width)
    half = width // 2
    return np.concatenate([np.asarray(cos_TH[:, :half]), np.asarray(sin_TH[:, :half])], axis=1)


def cosine_similarity(rows_RW: np.ndarray) -> np.ndarray:
    """The cosine similarity of every pair of rows: ``sim[i, j] = r_i . r_j / (|r_i| |r_j|)``.

    For the sinusoidal and RoPE tables this is ``mean_i cos((p - p') w_i)``, a function of the
    distance p - p' alone, which is what lets attention read relative positions.
    """
    rows = np.asarray(rows_RW, np.float64)
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


# --- Embeddings (part 2) -----------------------------------------------------------------------


def token_table(params) -> np.ndarray:
    """The token embedding table, table_VD (float32)."""
    return np.asarray(params["wte"]["embedding"], np.float32)


def pca_2d(rows_RW: np.ndarray, fit_on: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Projects rows on the two principal directions of some of them.

    Args:
      rows_RW: the vectors, e.g. token embeddings.
      fit_on: the indices of the rows whose variance defines the directions (all by default).

    Returns:
      (coords_R2, explained_2): every row's coordinates along the two directions of largest
      variance of the ``fit_on`` rows (centred on their mean), and the fraction of that
      variance each direction explains.
    """
    rows = np.asarray(rows_RW, np.float64)
    fit = rows if fit_on is None else rows[np.asarray(fit_on)]
    mean = fit.mean(axis=0, keepdims=True)
    _, singular, directions = np.linalg.svd(fit - mean, full_matrices=False)
    variance = singular**2
    return (rows - mean) @ directions[:2].T, variance[:2] / variance.sum()


def nearest(
    rows_RW: np.ndarray, row: int, k: int, candidates: np.ndarray
) -> list[tuple[int, float]]:
    """The ``k`` rows most similar (cosine) to one row, among ``candidates``, itself excluded.

    Returns:
      (row index, cosine similarity) pairs, most similar first.
    """
    rows = np.asarray(rows_RW, np.float64)
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    others = np.asarray([c for c in candidates if c != row], np.int64)
    similarity = unit[others] @ unit[row]
    order = np.lexsort((others, -similarity))[:k]
    return [(int(others[i]), float(similarity[i])) for i in order]
