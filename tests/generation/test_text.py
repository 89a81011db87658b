"""gptjax.generation.text: a real tiny random GPT against full recomputation, prompts, text."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from gptjax import tokenizer as tk
from gptjax.generation import decode
from gptjax.generation import text as generate
from gptjax.model import GPT
from gptjax.model.config import GPTConfig
from gptjax.training import data

W = 16  # block size: 40 new tokens slide the context several times
TEXT = "Le chat mange la souris. L'élève répond : « où ? » → ici, café crème. " * 30


@pytest.fixture(scope="module")
def tok():
    return tk.train(TEXT, vocab_size=300, pattern="gpt4")


def make_model(vocab_size, **kwargs):
    cfg = GPTConfig(vocab_size=vocab_size, block_size=W, n_layer=2, n_head=2, n_embd=32, **kwargs)
    variables = GPT(cfg).init(jax.random.key(0), jnp.zeros((1, W), jnp.int32))
    return cfg, nn.unbox(variables["params"])


@pytest.fixture(scope="module")
def model(tok):
    return make_model(tok.vocab_size)


@functools.partial(jax.jit, static_argnames="cfg")
def _last_logits(cfg, params, window_1W, length):
    # A causal model's logits at position length - 1 ignore the padding after it, so one shape
    # (and one compilation) serves every window length.
    return GPT(cfg).apply({"params": params}, window_1W)[0, length - 1]


def reference_greedy(cfg, params, prompt, max_new_tokens, eos_id=None):
    """Greedy decoding by full recomputation (no cache), with decode's documented windowing."""
    tokens, start, keep = list(prompt), 0, decode.slide_keep(cfg.block_size)
    for _ in range(max_new_tokens):
        window = tokens[start:]
        padded_1W = jnp.array([window + [0] * (cfg.block_size - len(window))], jnp.int32)
        tokens.append(int(jnp.argmax(_last_logits(cfg, params, padded_1W, len(window)))))
        if tokens[-1] == eos_id:
            return tokens[len(prompt) : -1]
        if len(tokens) - start > cfg.block_size:
            start = len(tokens) - keep
    return tokens[len(prompt) :]


def cached_greedy(cfg, params, prompt, max_new_tokens):
    logits_fn, init_cache_fn = generate.model_fns(cfg)
    (chunk,) = decode.generate_chunks(
        Partial(logits_fn, params),
        Partial(init_cache_fn),
        np.array([prompt]),
        block_size=cfg.block_size,
        max_new_tokens=max_new_tokens,
        temperature=0.0,
    )
    return chunk[0]


@pytest.mark.parametrize("pos_encoding", ["learned", "rope"])
def test_kv_cache_greedy_equals_full_recomputation(pos_encoding):
    cfg, params = make_model(64, pos_encoding=pos_encoding, kernels="fast")
    prompt = [5, 17, 3, 60, 2]
    assert cached_greedy(cfg, params, prompt, 40) == reference_greedy(cfg, params, prompt, 40)


def test_greedy_text_is_the_prompt_and_the_decoded_reference(tok, model):
    cfg, params = model
    prompt = "Le chat mange la"
    (text,) = generate.generate_text(
        cfg, params, tok, prompt, max_new_tokens=24, temperature=0.0, num_samples=1
    )
    expected = reference_greedy(cfg, params, tk.encode(tok, prompt), 24, eos_id=tok.eos_id)
    assert text == prompt + tk.decode(tok, expected)


def _between_documents(tok, docs) -> int:
    """The token that the training stream puts after the first document, found in the stream."""
    stream = data.encode_documents(tok, docs)
    first = len(tk.encode_corpus(tok, docs[0]))
    assert tk.decode(tok, stream[first + 1 :].tolist()) == "".join(docs[1:])  # one token between
    return int(stream[first])


DOCS = ["Le chat mange la souris.", "L'élève répond : où ?"]


def test_empty_prompt_starts_from_the_token_between_training_documents(tok, model):
    cfg, params = model
    between = _between_documents(tok, DOCS)
    assert generate.prompt_ids(tok, "", W) == [between] == [tok.separator_id]
    (text,) = generate.generate_text(cfg, params, tok, "", max_new_tokens=12, temperature=0.0)
    assert text == tk.decode(tok, reference_greedy(cfg, params, [between], 12, between))


def test_empty_prompt_of_gpt2_and_single_special_vocabularies(data_file):
    gpt2 = tk.load_tiktoken(data_file("gpt2.tiktoken"), "gpt2", {"<|endoftext|>": 50256})
    assert generate.prompt_ids(gpt2, "", W) == [_between_documents(gpt2, DOCS)] == [50256]
    single = tk.Tokenizer("gpt4", {bytes([b]): b for b in range(256)}, {"<|im_end|>": 256})
    assert generate.prompt_ids(single, "", W) == [_between_documents(single, DOCS)] == [256]
    none = tk.Tokenizer("gpt4", {bytes([b]): b for b in range(256)}, {})
    with pytest.raises(ValueError, match="empty prompt .* has none .*: give a prompt"):
        generate.prompt_ids(none, "", W)
    assert generate.prompt_ids(none, "a", W) == [97]


def test_samples_stop_at_the_separator(model, monkeypatch):
    # A vocabulary whose one special is neither <eos> nor <|endoftext|>: its eos_id is None, yet
    # the model saw it end every document, so a sample must stop there too.
    single = tk.Tokenizer("gpt4", {bytes([b]): b for b in range(256)}, {"<|im_end|>": 256})
    assert single.eos_id is None
    seen = []

    def loop(*args, eos_id, **kwargs):  # the decode loop, as far as this test needs it
        seen.append(eos_id)
        return [[[ord("a")]]]

    monkeypatch.setattr(decode, "generate_chunks", loop)
    cfg, params = model
    assert generate.generate_text(cfg, params, single, "", max_new_tokens=2, temperature=0) == ["a"]
    assert seen == [256]


def test_long_prompt_keeps_its_last_window_and_says_so(tok, model):
    cfg, params = model
    prompt = TEXT[:200]
    ids = tk.encode(tok, prompt)
    assert len(ids) > W
    with pytest.warns(UserWarning, match=f"keeping its last {W} tokens"):
        (text,) = generate.generate_text(cfg, params, tok, prompt, max_new_tokens=8, temperature=0)
    assert text == prompt + tk.decode(tok, reference_greedy(cfg, params, ids[-W:], 8, tok.eos_id))


def test_streaming_equals_one_call(tok, model):
    cfg, params = model
    kwargs = dict(max_new_tokens=30, temperature=1.0, top_p=0.9, num_samples=3, seed=4)
    texts = generate.generate_text(cfg, params, tok, "Le chat", **kwargs)
    for chunk_size in [1, 7]:
        pieces = list(
            generate.stream_text(cfg, params, tok, "Le chat", chunk_size=chunk_size, **kwargs)
        )
        assert len(pieces) > 30 // chunk_size  # it did arrive in pieces
        assert ["Le chat" + "".join(p) for p in zip(*pieces, strict=True)] == texts


def test_decode_stream_prints_characters_split_across_tokens(tok):
    # Ids below 256 are single bytes: "é" is C3 A9 and "→" is E2 86 92, cut across chunks here.
    chunks = [[[0xC3]], [[0xA9, ord("a")]], [[0xE2, 0x86]], [[0x92]], [[0xC3]]]
    pieces = [p[0] for p in generate.decode_stream(tok, chunks, 1)]
    assert pieces == ["", "éa", "", "→", "", "\ufffd"]
    assert "".join(pieces) == tk.decode(tok, sum((c[0] for c in chunks), []))


def test_same_seed_same_samples_different_seed_different(tok, model):
    cfg, params = model
    kwargs = dict(max_new_tokens=20, temperature=1.0, num_samples=2)
    a = generate.generate_text(cfg, params, tok, "Le", seed=1, **kwargs)
    assert a == generate.generate_text(cfg, params, tok, "Le", seed=1, **kwargs)
    assert a != generate.generate_text(cfg, params, tok, "Le", seed=2, **kwargs)
    assert a[0] != a[1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=-1.0), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.01), "top_p"),
        (dict(top_k=-3), "top_k"),
        (dict(num_samples=0), "num_samples"),
        (dict(max_new_tokens=-1), "max_new_tokens"),
    ],
)
def test_bad_settings_are_rejected(tok, model, kwargs, match):
    cfg, params = model
    kwargs = {"max_new_tokens": 4, "temperature": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        list(generate.stream_text(cfg, params, tok, "Le", **kwargs))


def test_padding_ids_of_a_larger_model_vocabulary_are_never_drawn(tok):
    # 40 of 340 ids lie beyond the tokenizer: nearly flat sampling would hit them ~100 times.
    cfg, params = make_model(tok.vocab_size + 40)
    kwargs = dict(max_new_tokens=60, temperature=50.0, num_samples=2, seed=0)
    texts = generate.generate_text(cfg, params, tok, "Le", **kwargs)
    assert all(len(t) > 60 for t in texts)  # decoding would raise on an id without bytes
    with pytest.raises(ValueError, match="tokenizer has 300 tokens but the model only 290"):
        generate.generate_text(make_model(290)[0], params, tok, "Le", **kwargs)
