"""Draws every picture of the French course (docs/img/), from the project's own code.

  python docs/make_images.py --workdir runs/french_tiny --out docs/img

``--workdir`` is the course's training run (docs/CONCEPTS_LLM.md, "Avant de commencer"):

  python -m gptjax.main --config configs/french_tiny.py --workdir runs/french_tiny \\
      --config.train.steps=600

Run it from the repository root, or from any folder whose ``data/`` and ``configs/`` are the
repository's. ``IMAGES`` lists the files it writes; tests/test_course.py checks that the pages
show exactly these, and that this script writes exactly these. About 30 s on 2 CPU cores (BPE
trainings for the first picture, matplotlib for the others).
"""

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gptjax import tokenizer as tk  # noqa: E402
from gptjax.model.config import GPTConfig  # noqa: E402
from gptjax.model.feedforward import gelu, make_norm  # noqa: E402
from gptjax.model.gpt import GPT  # noqa: E402
from gptjax.model.positional import sinusoidal_encoding  # noqa: E402
from gptjax.runs.rundir import RunDir, read_metrics  # noqa: E402

EXCERPT = Path(__file__).resolve().parents[1] / "data" / "hugo_miserables_extrait.txt"
PROMPT = "Le chat mange la"
SENTENCE = "Le chat mange la souris, et l'évêque"

IMAGES = (
    "01-taille-vocabulaire.png",
    "02-embeddings.png",
    "03-attention.png",
    "04-scores-masque-softmax.png",
    "05-tetes.png",
    "06-positions.png",
    "07-gelu-layernorm.png",
    "08-parametres.png",
    "09-courbes.png",
    "10-prochain-token.png",
)


def _save(fig, out: Path, name: str) -> None:
    assert name in IMAGES, name
    fig.tight_layout()
    # No date or version in the file: the same picture gives the same bytes on one machine.
    fig.savefig(out / name, dpi=100, metadata={"Software": None})
    plt.close(fig)


def vocab_sizes(out: Path) -> None:
    text = EXCERPT.read_text(encoding="utf-8")
    sizes = [260, 512, 1024, 2048]
    lengths = [len(tk.encode_ordinary(tk.train(text, v, "gpt4"), text)) for v in sizes]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bars = ax.bar([str(v) for v in sizes], lengths, color="#4c72b0")
    ax.bar_label(bars, labels=[f"{n:,}".replace(",", " ") for n in lengths])
    ax.set_xlabel("vocab_size")
    ax.set_ylabel("tokens")
    ax.set_title(f"L'extrait de Hugo ({len(text.encode()):,} octets), encodé".replace(",", " "))
    _save(fig, out, "01-taille-vocabulaire.png")


def _tokens(tok, text):
    ids = tk.encode_ordinary(tok, text)
    labels = [tok.token_bytes(i).decode("utf-8", errors="replace").replace(" ", "·") for i in ids]
    return ids, labels


def _attention(model_config, params, ids):
    """probs_LNTS: the attention weights of every layer for one sequence."""
    _, state = GPT(model_config).apply(
        {"params": params}, jnp.asarray([ids], jnp.int32), mutable=["intermediates"]
    )
    inter = state["intermediates"]
    return np.stack(
        [
            np.asarray(inter[f"blocks_{i}"]["attn"]["attention_weights"][0][0])
            for i in range(model_config.n_layer)
        ]
    )


def embeddings(out: Path, params, tok) -> None:
    table_VD = np.asarray(params["wte"]["embedding"])
    words = [" le", " la", " les", " un", " une", " et", " il", " elle", " qu", " de", " à"]
    words += [" dit", " fait", " était", " avait", " évêque", " homme", " maison", " nuit"]
    words = [w for w in words if w.encode() in tok.mergeable_ranks]
    ids = [tok.mergeable_ranks[w.encode()] for w in words]
    centred = table_VD - table_VD.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.scatter(xy[:, 0], xy[:, 1], s=4, color="#cccccc", label="les 512 tokens")
    ax.scatter(xy[ids, 0], xy[ids, 1], s=14, color="#c44e52")
    for w, i in zip(words, ids, strict=True):
        ax.annotate(w.replace(" ", "·"), xy[i], fontsize=9)
    ax.set_title("Embeddings appris, projetés sur leurs 2 axes principaux")
    ax.legend(loc="upper left")
    _save(fig, out, "02-embeddings.png")


def attention_map(out: Path, model_config, params, tok) -> None:
    ids, labels = _tokens(tok, SENTENCE)
    probs = _attention(model_config, params, ids)[-1].mean(0)  # last layer, mean of the heads
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(probs, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(ids)), labels, rotation=90)
    ax.set_yticks(range(len(ids)), labels)
    ax.set_xlabel("token regardé (clé)")
    ax.set_ylabel("token qui regarde (requête)")
    ax.set_title(f"Attention, couche {model_config.n_layer - 1}, moyenne des têtes")
    _save(fig, out, "03-attention.png")


def scores_mask_softmax(out: Path, model_config, params, tok) -> None:
    ids, labels = _tokens(tok, PROMPT)
    probs = _attention(model_config, params, ids)[0, 0]  # layer 0, head 0
    # The scores before the softmax, up to a constant per row: log p.
    mask = np.tril(np.ones_like(probs, dtype=bool))
    scores = np.where(mask, np.log(np.maximum(probs, 1e-30)), np.nan)
    scores = scores - np.nanmax(scores, axis=1, keepdims=True)
    fig, axes = plt.subplots(1, 3, figsize=(11, 4))
    panels = [
        (mask.astype(float), "le masque causal (1 = permis)", "Greys"),
        (scores, "scores masqués (log, par ligne)", "viridis"),
        (probs, "softmax : les poids (somme 1)", "Blues"),
    ]
    for ax, (values, title, cmap) in zip(axes, panels, strict=True):
        ax.imshow(values, cmap=cmap)
        ax.set_xticks(range(len(ids)), labels, rotation=90)
        ax.set_yticks(range(len(ids)), labels)
        ax.set_title(title)
        for (r, c), v in np.ndenumerate(probs):
            if title.startswith("softmax") and mask[r, c]:
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7)
    _save(fig, out, "04-scores-masque-softmax.png")


def heads(out: Path, model_config, params, tok) -> None:
    ids, labels = _tokens(tok, SENTENCE)
    probs_LNTS = _attention(model_config, params, ids)
    n_layer, n_head = probs_LNTS.shape[:2]
    fig, axes = plt.subplots(n_layer, n_head, figsize=(3 * n_head, 3 * n_layer), squeeze=False)
    for (layer, head), ax in np.ndenumerate(axes):
        ax.imshow(probs_LNTS[layer, head], cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"couche {layer}, tête {head}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"« {SENTENCE} » : {len(ids)} tokens, chaque tête regarde autre chose")
    _save(fig, out, "05-tetes.png")


def positions(out: Path, model_config, params) -> None:
    table_TD = np.asarray(sinusoidal_encoding(jnp.arange(64), 128))
    learned_TD = np.asarray(params["wpe"]["embedding"])
    unit = learned_TD / np.linalg.norm(learned_TD, axis=1, keepdims=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    image = axes[0].imshow(table_TD, cmap="RdBu", aspect="auto", vmin=-1, vmax=1)
    axes[0].set_title("sinusoïdal (Vaswani et al.) : 64 positions x 128")
    axes[0].set_xlabel("dimension")
    axes[0].set_ylabel("position")
    fig.colorbar(image, ax=axes[0])
    image = axes[1].imshow(unit @ unit.T, cmap="RdBu", vmin=-1, vmax=1)
    axes[1].set_title("appris (ce modèle) : cosinus entre positions")
    axes[1].set_xlabel("position")
    axes[1].set_ylabel("position")
    fig.colorbar(image, ax=axes[1])
    _save(fig, out, "06-positions.png")


def gelu_layernorm(out: Path) -> None:
    cfg = GPTConfig(vocab_size=260, block_size=8, n_layer=1, n_head=1, n_embd=64)
    x = jnp.linspace(-4, 4, 401)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(x, jax.nn.relu(x), label="ReLU", color="#999999")
    axes[0].plot(x, gelu(cfg, x), label="GELU (gptjax)", color="#c44e52")
    axes[0].set_title("L'activation du feed-forward")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    x_TD = 3.0 + 5.0 * jax.random.normal(jax.random.key(0), (256, 64))
    norm = make_norm(cfg)
    y_TD = norm.apply(norm.init(jax.random.key(1), x_TD), x_TD)
    bins = np.linspace(-20, 20, 81)
    axes[1].hist(np.ravel(x_TD), bins=bins, alpha=0.6, label="avant : moyenne 3, écart 5")
    axes[1].hist(np.ravel(y_TD), bins=bins, alpha=0.6, label="après LayerNorm : 0 et 1")
    axes[1].set_title("LayerNorm recentre chaque vecteur")
    axes[1].legend()
    _save(fig, out, "07-gelu-layernorm.png")


def parameters(out: Path, params) -> None:
    groups: dict[str, int] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [p.key for p in path]
        if keys[0].startswith("blocks_"):
            name = {"attn": "attention", "mlp": "feed-forward"}.get(keys[1], "normalisations")
        else:
            name = {"wte": "embeddings (tokens)", "wpe": "positions"}.get(keys[0], "normalisations")
        groups[name] = groups.get(name, 0) + int(np.size(leaf))
    names = sorted(groups, key=groups.get)
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    bars = ax.barh(names, [groups[n] for n in names], color="#55a868")
    ax.bar_label(bars, labels=[f"{groups[n]:,}".replace(",", " ") for n in names])
    total = f"{sum(groups.values()):,}".replace(",", " ")
    ax.set_title(f"Les {total} paramètres du modèle du cours")
    ax.set_xlim(0, max(groups.values()) * 1.3)
    _save(fig, out, "08-parametres.png")


def curves(out: Path, workdir: Path) -> None:
    records = read_metrics(RunDir(workdir).metrics_path)
    train = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(*zip(*train, strict=True), label="entraînement (par lot)", alpha=0.7)
    ax.plot(*zip(*val, strict=True), "o-", label="validation")
    ax.axhline(np.log(512), color="#999999", ls="--", label="hasard : ln 512 = 6.24")
    ax.set_xlabel("pas")
    ax.set_ylabel("perte (nats par token)")
    ax.set_title("L'entraînement du cours")
    ax.legend()
    _save(fig, out, "09-courbes.png")


def next_token(out: Path, model_config, params, tok) -> None:
    ids = tk.encode_ordinary(tok, PROMPT)
    logits_V = GPT(model_config).apply({"params": params}, jnp.asarray([ids], jnp.int32))[0, -1]
    probs_V = np.asarray(jax.nn.softmax(logits_V))
    top = np.argsort(-probs_V)[:10]
    labels = [repr(tok.token_bytes(int(i)).decode("utf-8", errors="replace")) for i in top]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.barh(labels[::-1], probs_V[top][::-1], color="#8172b2")
    ax.set_xlabel("probabilité")
    ax.set_title(f"Après « {PROMPT} », les 10 tokens les plus probables")
    _save(fig, out, "10-prochain-token.png")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="the course's training run")
    parser.add_argument("--out", default=str(Path(__file__).with_name("img")))
    args = parser.parse_args(argv)
    from gptjax.runs.checkpoint import load_for_inference  # orbax is slow to import

    workdir = Path(args.workdir)
    model_config, params, tok = load_for_inference(workdir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vocab_sizes(out)
    embeddings(out, params, tok)
    attention_map(out, model_config, params, tok)
    scores_mask_softmax(out, model_config, params, tok)
    heads(out, model_config, params, tok)
    positions(out, model_config, params)
    gelu_layernorm(out)
    parameters(out, params)
    curves(out, workdir)
    next_token(out, model_config, params, tok)
    print(f"{len(IMAGES)} images -> {out}")


if __name__ == "__main__":
    main()
