"""``python -m gptjax.inspect`` and ``gptjax.inspection``: each view against an independent truth.

The model checks build parameters with ``GPT(config).init`` (then shake them, so that biases and
norm scales matter); the command-line checks read one tiny trained run, trained once for the
module (a 300-token BPE, 2 layers, on the Python reference text).
"""

import re
from collections import Counter

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from tiny_runs import assert_valid_png, train_tiny

from gptjax import inspect as command
from gptjax import tokenizer as tk
from gptjax.inspection import probes
from gptjax.model import GPT, GPTConfig
from gptjax.tokenizer.patterns import split
from gptjax.training import data

# --- the tokenizer views ------------------------------------------------------------------


def test_bpe_steps_reproduce_the_tutorial_example_counted_by_hand():
    tok = tk.train_plain("abab abab", vocab_size=262, pattern="none")
    steps = probes.bpe_steps(tok, "abab abab")
    # By hand: 9 bytes; (a, b) occurs 4 times, so 4 merges give 5 tokens; then (ab, ab) occurs
    # twice, so 2 merges give 3 tokens.
    tokens = list("abab abab")
    assert Counter(zip(tokens, tokens[1:], strict=False)).most_common(1) == [(("a", "b"), 4)]
    assert [len(s.ids) for s in steps] == [9, 5, 3]
    assert [s.occurrences for s in steps] == [0, 4, 2]
    assert steps[0].ids == tuple(b"abab abab")
    assert [tok.token_bytes(s.token_id) for s in steps[1:]] == [b"ab", b"abab"]


def test_the_tokens_command_prints_9_5_3(tmp_path, capsys):
    out = tmp_path / "t.png"
    command.main(["tokens", "--text", "abab abab", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "Étape 0 : les octets UTF-8, 9 tokens" in printed
    assert "Fusion 1 : a + b -> ab (id 260), 4 fois : 9 -> 5 tokens" in printed
    assert "Fusion 2 : ab + ab -> abab (id 261), 2 fois : 5 -> 3 tokens" in printed
    _assert_picture(out, printed)


@pytest.fixture(scope="module")
def french_tok():
    """A 400-token BPE trained on the French excerpt's training split, as french_tiny does."""
    train_docs, _ = data.split_documents(data.load_documents("hugo_extrait"), 0.1)
    return tk.train(train_docs, vocab_size=400, pattern="gpt4")


def test_bpe_steps_end_at_the_encoders_tokens(french_tok):
    text = data.load_documents("hugo_extrait")[0][-3000:]
    for line in text.splitlines()[:40]:
        steps = probes.bpe_steps(french_tok, line)
        assert steps[-1].ids == tuple(tk.encode_ordinary(french_tok, line))
        assert bytes(steps[0].ids) == line.encode("utf-8")
        for before, after in zip(steps, steps[1:], strict=False):
            assert len(before.ids) - len(after.ids) == after.occurrences > 0


def test_e_acute_is_two_bytes_and_quinoa_known_pieces(french_tok, tmp_path, capsys):
    assert probes.bpe_steps(french_tok, "é")[0].ids == (195, 169)
    assert probes.bpe_steps(french_tok, "é")[-1].ids == (french_tok.mergeable_ranks["é".encode()],)
    final = probes.bpe_steps(french_tok, "quinoa")[-1].ids
    assert 1 < len(final) < 6 and tk.UNK not in {french_tok.decoder[i] for i in final}
    assert tk.decode(french_tok, final) == "quinoa"
    command.main(["tokens", "--text", "é", "--out", str(tmp_path / "e.png")])
    printed = capsys.readouterr().out
    assert "« é » s'écrit sur plusieurs octets : 195 + 169" in printed
    assert "Fusion 1 : 0xC3 + 0xA9 -> é (id 260), 1 fois : 2 -> 1 token" in printed


def test_merges_counts_match_counting_by_hand(tmp_path, capsys):
    out = tmp_path / "m.png"
    command.main(["merges", "--corpus", "hugo_extrait", "-n", "5", "--out", str(out)])
    printed = capsys.readouterr().out
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+(\S+) \+ (\S+)\s+-> (\S+)\s+([\d,]+)$", printed, re.M)
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5]
    train_docs, _ = data.split_documents(data.load_documents("hugo_extrait"), 0.1)
    chunks = [c.encode() for doc in train_docs for c in split(doc, "gpt4")]
    # The first merge's pair, counted directly in the chunks (its two bytes differ, so
    # occurrences cannot overlap).
    first = rows[0][2].replace("␠", " ").encode() + rows[0][3].replace("␠", " ").encode()
    assert int(rows[0][5].replace(",", "")) == sum(c.count(first) for c in chunks)
    # é is learned early: no earlier merge on this corpus touches its two bytes.
    (e_acute,) = [r for r in rows if r[4] == "é"]
    assert (e_acute[2], e_acute[3]) == ("0xC3", "0xA9")
    assert int(e_acute[5].replace(",", "")) == sum(c.count("é".encode()) for c in chunks)
    _assert_picture(out, printed)


# --- the model views, on initialised parameters --------------------------------------------


CONFIG = GPTConfig(vocab_size=300, block_size=12, n_layer=2, n_head=3, n_embd=24)


def shaken_params(config, seed=0):
    """Initial parameters plus noise, so that no bias is zero and no norm scale is one."""
    tokens = jnp.zeros((1, config.block_size), jnp.int32)
    params = nn.unbox(GPT(config).init(jax.random.key(seed), tokens)["params"])
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    noisy = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(tree, noisy)


def numpy_layer0_attention(params, ids):
    """Layer 0's attention weights from the parameters alone, in NumPy float64."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    x = p["wte"]["embedding"][ids] + p["wpe"]["embedding"][: len(ids)]
    ln, attn = p["blocks_0"]["ln_1"], p["blocks_0"]["attn"]
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    h = (x - mean) / np.sqrt(var + 1e-5) * ln["scale"] + ln["bias"]
    q = np.einsum("TD,DNH->NTH", h, attn["query"]["kernel"]) + attn["query"]["bias"][:, None]
    k = np.einsum("TD,DNH->NTH", h, attn["key"]["kernel"]) + attn["key"]["bias"][:, None]
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
    scores = np.where(np.tri(len(ids), dtype=bool), scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    return weights / weights.sum(-1, keepdims=True)


def test_attention_weights_are_causal_softmax_rows_equal_to_a_recomputation():
    params = shaken_params(CONFIG)
    ids = [5, 17, 260, 3, 99, 42, 7]
    weights = probes.attention_weights(CONFIG, params, ids)
    assert weights.shape == (2, 3, 7, 7)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    assert np.all(weights[..., np.triu_indices(7, 1)[0], np.triu_indices(7, 1)[1]] == 0.0)
    np.testing.assert_allclose(weights[0], numpy_layer0_attention(params, ids), atol=2e-5)
    # The fast kernels have the same parameters; their weights are read through the plain path.
    fast = probes.attention_weights(GPTConfig(**{**vars(CONFIG), "kernels": "fast"}), params, ids)
    np.testing.assert_allclose(fast, weights, atol=1e-6)


def test_next_token_probs_are_the_softmax_of_the_last_logits():
    params = shaken_params(CONFIG)
    ids = [5, 17, 260, 3]
    logits = np.asarray(GPT(CONFIG).apply({"params": params}, jnp.asarray([ids])), np.float64)
    expected = np.exp(logits[0, -1] - logits[0, -1].max())
    expected /= expected.sum()
    probs = probes.next_token_probs(CONFIG, params, ids)
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    best = probes.top_k(probs, 5)
    assert [i for i, _ in best] == list(np.argsort(-expected)[:5])


@pytest.mark.parametrize("kind, width", [("sinusoidal", 16), ("rope", 8)])
def test_position_similarity_is_a_function_of_the_distance(kind, width):
    table = probes.position_table(kind, 20, width)
    similarity = probes.cosine_similarity(table)
    # Closed form: both tables hold (cos, sin) of p * w_i, so the cosine of rows p and p' is
    # mean_i cos((p - p') w_i), with w_i = 10000^(-2i / width).
    w = 10000.0 ** (-np.arange(0, width, 2) / width)
    distance = np.arange(20)[:, None] - np.arange(20)[None, :]
    expected = np.cos(distance[..., None] * w).mean(-1)
    np.testing.assert_allclose(similarity, expected, atol=1e-5)


def test_learned_positions_are_the_run_table_and_pca_finds_the_top_variance():
    params = shaken_params(CONFIG)
    np.testing.assert_array_equal(
        probes.position_table("learned", 12, 24, params), params["wpe"]["embedding"]
    )
    rows = np.asarray(params["wte"]["embedding"], np.float64)
    coords, explained = probes.pca_2d(rows)
    eigenvalues = np.linalg.eigvalsh(np.cov(rows.T))[::-1]
    np.testing.assert_allclose(explained, eigenvalues[:2] / eigenvalues.sum(), rtol=1e-6)
    np.testing.assert_allclose(coords.var(0, ddof=1), eigenvalues[:2], rtol=1e-6)


def test_nearest_neighbours_by_cosine():
    rows = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0], [2.0, 0.5]])
    assert [i for i, _ in probes.nearest(rows, 0, 2, np.arange(5))] == [1, 4]
    (only,) = probes.nearest(rows, 0, 1, np.array([2, 3]))
    assert only == (2, 0.0)


# --- the command on a trained run ----------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GPTJAX_CACHE_DIR", str(root / "cache"))
        return train_tiny(root / "run", {"tokenizer.vocab_size": 300, "model.n_layer": 2})


def _assert_picture(path, printed):
    """A valid PNG plot, of the size the command printed."""
    assert_valid_png(path)
    said = re.search(rf"image : {re.escape(str(path))} \((\d+) x (\d+) pixels\)", printed)
    width, height = said.groups()
    with Image.open(path) as image:
        assert image.size == (int(width), int(height))


def _run(capsys, *argv):
    command.main([str(a) for a in argv])
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["tokens", "--text", "Le chat mange la"],
        ["merges", "-n", "8"],
        ["attention", "--text", "def f(x):"],
        ["positions"],
        ["embeddings", "--neighbours", "e"],
        ["next", "--prompt", "The "],
    ],
)
def test_every_view_of_a_run_prints_and_draws(run, tmp_path, capsys, argv):
    out = tmp_path / f"{argv[0]}.png"
    printed = _run(capsys, *argv, "--workdir", run, "--out", out)
    _assert_picture(out, printed)


def test_next_prints_the_softmax_table(run, tmp_path, capsys):
    from gptjax.runs.checkpoint import load_for_inference

    config, params, tok = load_for_inference(run)
    printed = _run(capsys, "next", "--workdir", run, "--prompt", "def ", "-k", "4", "--out",
                   tmp_path / "n.png")  # fmt: skip
    rows = re.findall(r"^\s+\d+\s+(\d+)  .*?\s([\d.]+)%", printed, re.M)
    ids = tk.encode(tok, "def ")
    logits = np.asarray(GPT(config).apply({"params": params}, jnp.asarray([ids])))[0, -1]
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert [int(i) for i, _ in rows] == list(np.argsort(-probs)[:4])
    np.testing.assert_allclose(
        [float(p) / 100 for _, p in rows], np.sort(probs)[::-1][:4], atol=6e-5
    )


def test_merges_of_a_run_are_recounted_and_never_grow(run, tmp_path, capsys):
    printed = _run(capsys, "merges", "--workdir", run, "-n", "12", "--out", tmp_path / "m.png")
    counts = [int(c.replace(",", "")) for c in re.findall(r" ([\d,]+)$", printed, re.M)]
    # A merge only lowers the counts of existing pairs and makes new pairs rarer than itself.
    assert len(counts) == 12 and counts == sorted(counts, reverse=True)


def _error(capsys, *argv):
    with pytest.raises(SystemExit) as exit_:
        command.main([str(a) for a in argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_user_mistakes_are_one_line(run, tmp_path, capsys):
    out = ["--out", tmp_path / "x.png"]
    assert "not a run directory" in _error(capsys, "attention", "--workdir", tmp_path, "--text",
                                           "a", *out)  # fmt: skip
    assert "does not exist" in _error(
        capsys, "next", "--workdir", run, "--out", tmp_path / "missing" / "n.png"
    )
    assert "not one token" in _error(capsys, "embeddings", "--workdir", run, "--neighbours",
                                     "xqzv", *out)  # fmt: skip
    assert "empty" in _error(capsys, "attention", "--workdir", run, "--text", "", *out)
    assert ".png" in _error(capsys, "positions", "--out", tmp_path / "p.jpg")
    assert not (tmp_path / "x.png").exists()


def test_a_text_longer_than_the_context_is_cut_with_a_warning(run, tmp_path, capsys):
    out = tmp_path / "a.png"
    command.main(["attention", "--workdir", str(run), "--text", "x = 1; " * 20, "--out", str(out)])
    printed = capsys.readouterr()
    assert "keeping its first 16 tokens" in printed.err
    assert printed.out.startswith("Texte : 16 tokens")
    _assert_picture(out, printed.out)
