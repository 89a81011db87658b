"""The full GPT: causality, KV-cache decoding, dtype policy, dropout, init, jit, bad input, and
the ablations (no block, no MLP)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jax_core

from gptjax.generation import decode
from gptjax.generation.text import model_fns
from gptjax.model import GPT, check_tokens, init_cache
from gptjax.model.config import GPTConfig
from gptjax.model.feedforward import NORM_EPS

V, BLOCK = 64, 16
POS = ("learned", "sinusoidal", "rope", "none")


def tiny(**overrides) -> GPTConfig:
    return GPTConfig(
        **{**dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=4, n_embd=32), **overrides}
    )


@functools.cache
def build(config: GPTConfig, seed: int = 0):
    """(model, boxed variables, tokens_BT) for a config; cached across tests."""
    model = GPT(config)
    tokens = jax.random.randint(jax.random.key(seed + 1), (2, BLOCK), 0, V)
    return model, model.init(jax.random.key(seed), tokens), tokens


@pytest.mark.parametrize("pos", POS)
def test_causality_by_gradient(pos):
    # Untied embeddings and distinct tokens: row tokens[u] of the input table is used only by
    # position u, so its gradient is the gradient with respect to input token u.
    config = tiny(pos_encoding=pos, tie_embeddings=False)
    model, variables, _ = build(config)
    tokens = jax.random.permutation(jax.random.key(3), V)[:BLOCK][None]
    params = nn.unbox(variables)["params"]
    t = 6

    def loss_at_t(params):
        logits = model.apply({"params": params}, tokens)
        return jax.nn.log_softmax(logits[0, t])[0]

    grads = jax.jit(jax.grad(loss_at_t))(params)
    per_position = np.abs(np.asarray(grads["wte"]["embedding"])[np.asarray(tokens[0])]).sum(-1)
    assert (per_position[t + 1 :] == 0).all(), per_position
    assert (per_position[: t + 1] > 0).all(), per_position
    if pos == "learned":
        per_slot = np.abs(np.asarray(grads["wpe"]["embedding"])).sum(-1)
        assert (per_slot[t + 1 :] == 0).all() and (per_slot[: t + 1] > 0).all()


@pytest.mark.parametrize(
    "overrides",
    [dict(pos_encoding=pos) for pos in POS] + [dict(n_layer=0), dict(mlp_ratio=0)],
    ids=[*POS, "no_block", "no_mlp"],
)
def test_kv_cache_decoding_matches_full_forward(overrides):
    config = tiny(**overrides)
    model, variables, tokens = build(config)
    full = model.apply(variables, tokens)

    call = jax.jit(lambda v, t, c: model.apply(v, t, cache=c))
    cache = init_cache(config, batch_size=2)
    logits, cache = call(variables, tokens[:, :5], cache)  # prefill
    pieces = [logits]
    logits, cache = call(variables, tokens[:, 5:8], cache)  # a chunk of 3
    pieces.append(logits)
    for i in range(8, BLOCK):  # then one token at a time, up to a full cache
        logits, cache = call(variables, tokens[:, i : i + 1], cache)
        pieces.append(logits)
    assert int(cache.index) == BLOCK
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full, rtol=1e-5, atol=1e-5)


def test_decode_step_traces_once():
    config = tiny(pos_encoding="rope")
    model, variables, tokens = build(config)
    traces = []

    @jax.jit
    def step(variables, token_B1, cache):
        traces.append(token_B1.shape)
        return model.apply(variables, token_B1, cache=cache)

    cache = init_cache(config, 2)
    for i in range(BLOCK):
        _, cache = step(variables, tokens[:, i : i + 1], cache)
    assert traces == [(2, 1)]

    forward_traces = []

    @jax.jit
    def forward(variables, tokens_BT):
        forward_traces.append(tokens_BT.shape)
        return model.apply(variables, tokens_BT)

    for seed in range(3):
        forward(variables, jax.random.randint(jax.random.key(seed), (2, BLOCK), 0, V))
    forward(variables, tokens[:, :4])
    assert forward_traces == [(2, BLOCK), (2, 4)]


def test_boxed_and_unboxed_variables_give_the_same_logits():
    model, variables, tokens = build(tiny())
    assert isinstance(variables["params"]["wte"]["embedding"], nn.LogicallyPartitioned)
    unboxed = nn.unbox(variables)
    np.testing.assert_array_equal(model.apply(unboxed, tokens), model.apply(variables, tokens))
    specs = nn.get_partition_spec(variables)["params"]
    assert tuple(specs["wte"]["embedding"]) == ("vocab", "embed")
    assert tuple(specs["wpe"]["embedding"]) == ("pos", "embed")
    attn = specs["blocks_0"]["attn"]
    assert tuple(attn["query"]["kernel"]) == ("embed", "heads", "head_dim")
    assert tuple(attn["proj"]["kernel"]) == ("heads", "head_dim", "embed")
    assert tuple(specs["blocks_1"]["mlp"]["fc"]["kernel"]) == ("embed", "mlp")
    assert tuple(specs["blocks_1"]["mlp"]["fc"]["bias"]) == ("mlp",)
    assert tuple(specs["ln_f"]["scale"]) == ("embed",)


def test_gpt2_initialisation():
    config = tiny(n_layer=8, n_embd=128, vocab_size=512, tie_embeddings=False)
    _, variables, _ = build(config)
    params = nn.unbox(variables)["params"]
    blocks = [params[f"blocks_{i}"] for i in range(8)]

    def std(arrays):
        return float(np.concatenate([np.ravel(a) for a in arrays]).std())

    assert std([b["attn"]["query"]["kernel"] for b in blocks]) == pytest.approx(0.02, rel=0.05)
    assert std([b["mlp"]["fc"]["kernel"] for b in blocks]) == pytest.approx(0.02, rel=0.05)
    assert std([params["wte"]["embedding"], params["lm_head"]["kernel"]]) == pytest.approx(
        0.02, rel=0.05
    )
    residual = 0.02 / np.sqrt(2 * 8)
    assert std([b["attn"]["proj"]["kernel"] for b in blocks]) == pytest.approx(residual, rel=0.05)
    assert std([b["mlp"]["proj"]["kernel"] for b in blocks]) == pytest.approx(residual, rel=0.05)
    for b in blocks:
        assert not np.any(b["attn"]["proj"]["bias"]) and not np.any(b["mlp"]["fc"]["bias"])
        np.testing.assert_array_equal(b["ln_1"]["scale"], 1.0)


def test_bfloat16_compute_keeps_softmax_logits_and_params_in_float32():
    config32 = tiny(pos_encoding="rope")
    model32, variables, tokens = build(config32)
    model = GPT(tiny(pos_encoding="rope", dtype="bfloat16"))
    fresh = model.init(jax.random.key(0), tokens)
    assert {x.dtype for x in jax.tree.leaves(nn.unbox(fresh))} == {jnp.dtype(jnp.float32)}

    logits = model.apply(variables, tokens)
    assert logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()
    # Same parameters, bfloat16 arithmetic: close to float32, but not identical (bf16 really ran).
    diff = np.abs(np.asarray(logits - model32.apply(variables, tokens)))
    assert 0 < diff.max() < 0.1
    # Every exp (the softmaxes) runs in float32, and the attention scores come out in float32.
    jaxpr = jax.make_jaxpr(model.apply)(variables, tokens)
    exps = list(_eqns(jaxpr.jaxpr, "exp"))
    assert exps and all(e.outvars[0].aval.dtype == jnp.float32 for e in exps)
    dots = [e.outvars[0].aval for e in _eqns(jaxpr.jaxpr, "dot_general")]
    assert any(a.dtype == jnp.bfloat16 for a in dots)
    assert all(a.dtype == jnp.float32 for a in dots if a.shape[-2:] == (BLOCK, BLOCK))
    # The decoding cache is in the compute dtype.
    _, cache = model.apply(variables, tokens[:, :3], cache=init_cache(model.config, 2))
    assert cache.k[0].dtype == jnp.bfloat16


def _eqns(jaxpr, name):
    """Every equation of a primitive, inside nested jaxprs (jit, custom_jvp) too."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == name:
            yield eqn
        for sub in jax_core.jaxprs_in_params(eqn.params):
            yield from _eqns(sub, name)


@pytest.mark.parametrize("kernels", ["plain", "fast"])
def test_dropout_only_in_training(kernels):
    config = tiny(dropout=0.2, kernels=kernels)
    model, variables, tokens = build(config)
    eval1 = model.apply(variables, tokens)
    np.testing.assert_array_equal(eval1, model.apply(variables, tokens, deterministic=True))
    train = functools.partial(model.apply, variables, tokens, deterministic=False)
    a = train(rngs={"dropout": jax.random.key(1)})
    np.testing.assert_array_equal(a, train(rngs={"dropout": jax.random.key(1)}))
    assert not np.allclose(a, train(rngs={"dropout": jax.random.key(2)}))
    assert not np.allclose(a, eval1)
    # The fast attention kernels have no dropout: training with dropout keeps the plain attention,
    # so both settings are the same model, dropout masks included.
    reference = GPT(tiny(dropout=0.2)).apply(
        variables, tokens, deterministic=False, rngs={"dropout": jax.random.key(1)}
    )
    np.testing.assert_array_equal(a, reference)
    no_dropout = GPT(tiny(kernels=kernels))
    np.testing.assert_array_equal(
        no_dropout.apply(
            variables, tokens, deterministic=False, rngs={"dropout": jax.random.key(1)}
        ),
        eval1,
    )


def test_check_tokens_rejects_bad_input():
    config = tiny()
    check_tokens(config, np.zeros((2, BLOCK), np.int64))
    check_tokens(config, jnp.full((1, 4), V - 1, jnp.int32), start=BLOCK - 4)
    with pytest.raises(ValueError, match="longer than block_size=16"):
        check_tokens(config, np.zeros((1, BLOCK + 1), np.int32))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, vocab_size=64\)"):
        check_tokens(config, np.array([[1, V]]))
    with pytest.raises(ValueError, match=r"got ids in \[-1, 3\]"):
        check_tokens(config, np.array([[3, -1]]))
    with pytest.raises(ValueError, match="integer ids, got dtype float32"):
        check_tokens(config, np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="integer ids, got dtype bool"):
        check_tokens(config, np.zeros((1, 4), bool))
    with pytest.raises(ValueError, match=r"shape \(batch, time\)"):
        check_tokens(config, np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="KV cache holds block_size=16"):
        check_tokens(config, np.zeros((1, 2), np.int32), start=BLOCK - 1)
    # Positions without a table extrapolate in a plain forward pass, but never past the cache.
    check_tokens(tiny(pos_encoding="rope"), np.zeros((1, BLOCK + 1), np.int32))
    with pytest.raises(ValueError, match="longer than block_size"):
        check_tokens(tiny(pos_encoding="rope"), np.zeros((1, BLOCK + 1), np.int32), start=0)
    with pytest.raises(ValueError, match="outside jax.jit"):
        jax.jit(lambda t: check_tokens(config, t))(np.zeros((1, 2), np.int32))


def test_model_checks_shapes_and_dtypes_at_trace_time():
    model, variables, tokens = build(tiny())
    with pytest.raises(ValueError, match="integer ids"):
        model.apply(variables, tokens.astype(jnp.float32))
    with pytest.raises(ValueError, match="longer than block_size"):
        jax.jit(model.apply)(variables, jnp.zeros((1, BLOCK + 1), jnp.int32))
    with pytest.raises(ValueError, match="init_cache"):
        model.apply(variables, tokens[:1, :2], cache=init_cache(model.config, 2))
    rope = GPT(tiny(pos_encoding="rope"))
    long_tokens = jnp.zeros((1, BLOCK + 4), jnp.int32)
    assert rope.apply(rope.init(jax.random.key(0), long_tokens), long_tokens).shape == (
        1,
        BLOCK + 4,
        V,
    )
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        init_cache(model.config, 0)


def test_sinusoidal_positions_are_added_to_embeddings_scaled_by_sqrt_width():
    from gptjax.model.positional import sinusoidal_encoding

    cfg = tiny(pos_encoding="sinusoidal")
    tokens = jnp.array([[3, 1, 4, 1, 5, 9]], jnp.int32)
    variables = GPT(cfg).init(jax.random.PRNGKey(0), tokens)
    _, state = GPT(cfg).apply(
        variables, tokens, capture_intermediates=True, mutable="intermediates"
    )
    x_BTD = state["intermediates"]["drop"]["__call__"][0]  # the input of the first block
    table_VD = nn.unbox(variables)["params"]["wte"]["embedding"]
    positions = sinusoidal_encoding(jnp.arange(tokens.shape[1]), cfg.n_embd)
    expected = table_VD[tokens] * np.sqrt(cfg.n_embd) + positions[None]
    np.testing.assert_allclose(x_BTD, expected, rtol=1e-6, atol=1e-6)


def test_no_block_logits_at_t_depend_on_token_t_alone():
    # n_layer=0, no positions, untied: the bigram model. Recomputed by hand from its parameters,
    # LayerNorm(table[token]) @ head, and blind to every other token.
    config = tiny(n_layer=0, pos_encoding="none", tie_embeddings=False)
    model, variables, tokens = build(config)
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), nn.unbox(variables)["params"])
    assert set(params) == {"wte", "ln_f", "lm_head"}
    x_BTD = params["wte"]["embedding"][np.asarray(tokens)]
    mean, var = x_BTD.mean(-1, keepdims=True), x_BTD.var(-1, keepdims=True)
    normed = (x_BTD - mean) / np.sqrt(var + NORM_EPS) * params["ln_f"]["scale"]
    expected = (normed + params["ln_f"]["bias"]) @ params["lm_head"]["kernel"]
    logits = model.apply(variables, tokens)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    # Every other token changed (the same token t in a new context): the logits at t are the same.
    t = 9
    others = (tokens + 1 + jnp.arange(BLOCK)[None]) % V
    changed = others.at[:, t].set(tokens[:, t])
    np.testing.assert_array_equal(model.apply(variables, changed)[:, t], logits[:, t])


def test_no_block_with_learned_positions_sees_token_and_position():
    config = tiny(n_layer=0)
    model, variables, tokens = build(config)
    logits = model.apply(variables, tokens)
    t = 9
    earlier = tokens.at[:, :t].set((tokens[:, :t] + 7) % V)
    np.testing.assert_array_equal(model.apply(variables, earlier)[:, t], logits[:, t])
    # The same token one position later: its logits change, through the position table only.
    shifted = jnp.roll(tokens, 1, axis=1)
    assert not np.allclose(model.apply(variables, shifted)[:, t + 1], logits[:, t])


def test_no_block_model_generates_its_greedy_bigram_chain():
    # Greedy decoding of a bigram model follows next = argmax(logits of the last token) from a
    # table computed once; max_new_tokens > block_size makes the context slide too.
    config = tiny(n_layer=0, pos_encoding="none", tie_embeddings=False)
    model, variables, _ = build(config)
    params = nn.unbox(variables)["params"]
    table_VV = np.asarray(model.apply(variables, jnp.arange(V)[None]))[0]
    assert init_cache(config, 1).k == ()
    logits_fn, init_cache_fn = model_fns(config)
    new_tokens = 3 * BLOCK
    prompt = np.array([[5, 17, 2]], np.int32)
    (generated,) = decode.generate_chunks(
        jax.tree_util.Partial(logits_fn, params),
        jax.tree_util.Partial(init_cache_fn),
        prompt,
        block_size=BLOCK,
        max_new_tokens=new_tokens,
        temperature=0.0,
    )
    chain = [int(prompt[0, -1])]
    for _ in range(new_tokens):
        chain.append(int(table_VV[chain[-1]].argmax()))
    assert generated == [chain[1:]]


def test_no_mlp_blocks_are_attention_only():
    # mlp_ratio=0: no mlp or ln_2 parameters, and each block adds attn(ln_1(x)) alone, so the
    # model equals the full one whose MLP output projection is zero (its branch then adds 0).
    model, variables, tokens = build(tiny(mlp_ratio=0))
    params = nn.unbox(variables)["params"]
    assert set(params["blocks_0"]) == {"ln_1", "attn"}
    full_model, full_variables, _ = build(tiny())
    full = nn.unbox(full_variables)["params"]
    for i in range(2):
        full[f"blocks_{i}"]["ln_1"] = params[f"blocks_{i}"]["ln_1"]
        full[f"blocks_{i}"]["attn"] = params[f"blocks_{i}"]["attn"]
        full[f"blocks_{i}"]["mlp"]["proj"]["kernel"] *= 0
    for name in ("wte", "wpe", "ln_f"):
        full[name] = params[name]
    np.testing.assert_allclose(
        model.apply({"params": params}, tokens),
        full_model.apply({"params": full}, tokens),
        rtol=1e-6,
        atol=1e-6,
    )


def test_relu2_mlp_is_the_square_of_the_relu():
    # activation="relu2": the MLP is relu(x W_fc + b_fc)**2 W_proj + b_proj, recomputed in NumPy.
    from gptjax.model.feedforward import MLP

    cfg = tiny(activation="relu2")
    x = jax.random.normal(jax.random.key(0), (2, BLOCK, 32))
    mlp = MLP(cfg)
    p = nn.unbox(mlp.init(jax.random.key(1), x))["params"]
    p = jax.tree.map(lambda a: a + 0.1, p)  # biases not zero
    y = mlp.apply({"params": p}, x)
    h = np.asarray(x, np.float64) @ np.asarray(p["fc"]["kernel"]) + np.asarray(p["fc"]["bias"])
    want = np.maximum(h, 0) ** 2 @ np.asarray(p["proj"]["kernel"]) + np.asarray(p["proj"]["bias"])
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    assert (h < 0).mean() > 0.2  # the ReLU did cut


@pytest.mark.parametrize("overrides", [dict(activation="relu2"), dict(qk_norm=True)])
def test_relu2_and_qk_norm_train_through_the_fast_kernels(overrides):
    # Same logits and gradients from the fast kernels as from the plain ones.
    plain_model, variables, tokens = build(tiny(**overrides))
    fast_model = GPT(tiny(kernels="fast", **overrides))

    def loss(model, params):
        return model.apply({"params": params}, tokens).astype(jnp.float32).std()

    params = nn.unbox(variables)["params"]
    g_plain = jax.grad(functools.partial(loss, plain_model))(params)
    g_fast = jax.grad(functools.partial(loss, fast_model))(params)
    for a, b in zip(jax.tree.leaves(g_plain), jax.tree.leaves(g_fast), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
