"""gptjax.model.kernels: every fast kernel equals its plain counterpart, in values and gradients.

Also: the model under ``kernels="fast"`` equals the model under ``"plain"`` (logits, loss
gradients, KV-cache decoding), and only the plain model has forward-mode derivatives (the
Hessian-vector product of the loss is checked against a finite difference of gradients).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gptjax.model import GPT, attention, init_cache, kernels
from gptjax.model.config import GPTConfig
from gptjax.training import step as ts

V, BLOCK = 64, 16


def tiny(**overrides) -> GPTConfig:
    fields = dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=4, n_embd=32)
    return GPTConfig(**{**fields, **overrides})


def qkv(t, s, n=2, h=8, seed=0):
    keys = jax.random.split(jax.random.key(seed), 3)
    return (
        jax.random.normal(keys[0], (2, t, n, h)),
        jax.random.normal(keys[1], (2, s, n, h)),
        jax.random.normal(keys[2], (2, s, n, h)),
    )


@functools.cache
def model_and_params(**overrides):
    """A random GPT (its unboxed params and a batch of tokens) under the plain kernels."""
    model = GPT(tiny(**overrides))
    tokens = jax.random.randint(jax.random.key(1), (2, BLOCK), 0, V)
    params = nn.unbox(model.init(jax.random.key(0), tokens))["params"]
    return params, tokens


def random_direction(params, seed: int):
    """A random direction in parameter space, of the parameters' own scale (normal(0.02))."""
    leaves = jax.tree.leaves(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    steps = [0.02 * jax.random.normal(k, p.shape) for k, p in zip(keys, leaves, strict=True)]
    return jax.tree.unflatten(jax.tree.structure(params), steps)


def loss_fn(config: GPTConfig, params, tokens):
    """Mean next-token cross-entropy of a model under ``config``."""
    logits = GPT(config).apply({"params": params}, tokens[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()


# --- each kernel against its plain counterpart -------------------------------------------------


@pytest.mark.parametrize(
    "features, axis, use_bias, dtype",
    [(24, -1, True, "float32"), ((4, 8), -1, False, "float32"), (24, (-2, -1), True, "float32"),
     (24, -1, True, "bfloat16")],
)  # fmt: skip
def test_dense_general_is_flax_dense_general_with_the_same_gradients(
    features, axis, use_bias, dtype
):
    # kernels.DenseGeneral writes out its backward pass (the kernel gradient as x^T g): same
    # parameters, same initial values, same outputs and gradients as nn.DenseGeneral.
    x = jax.random.normal(jax.random.key(0), (2, 5, 4, 8) if axis == (-2, -1) else (2, 5, 32))
    layer = dict(
        features=features, axis=axis, use_bias=use_bias, dtype=jnp.dtype(dtype),
        kernel_init=nn.initializers.normal(0.02),
    )  # fmt: skip
    ours, theirs = kernels.DenseGeneral(**layer), nn.DenseGeneral(**layer)
    variables = ours.init(jax.random.key(1), x)
    jax.tree.map(np.testing.assert_array_equal, variables, theirs.init(jax.random.key(1), x))
    shape = (features,) if isinstance(features, int) else features
    bias = {"bias": jax.random.normal(jax.random.key(2), shape)} if use_bias else {}
    params = {"params": {**variables["params"], **bias}}

    def loss(module, params, x):
        return jnp.sum(jnp.sin(module.apply(params, x).astype(jnp.float32)))

    tol = dict(rtol=2e-2, atol=2e-2) if dtype == "bfloat16" else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), **tol)
    got = jax.grad(functools.partial(loss, ours), argnums=(0, 1))(params, x)
    want = jax.grad(functools.partial(loss, theirs), argnums=(0, 1))(params, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **tol), got, want)


def test_dense_general_refuses_axes_that_are_not_trailing():
    x = jnp.ones((2, 3, 4))
    with pytest.raises(ValueError, match="trailing axes"):
        kernels.DenseGeneral(5, axis=0).init(jax.random.key(0), x)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gelu_is_jax_gelu_with_the_same_gradient(dtype):
    # Same values as jax.nn.gelu (tanh form), and the same gradient as JAX's own rule, over the
    # range where the slope goes from 0 to 1 and beyond.
    x = jnp.linspace(-8.0, 8.0, 4001).astype(dtype)
    want_fn = functools.partial(jax.nn.gelu, approximate=True)
    np.testing.assert_array_equal(kernels.gelu(x), want_fn(x))
    got = jax.vmap(jax.grad(kernels.gelu))(x)
    want = jax.vmap(jax.grad(want_fn))(x)
    assert got.dtype == want.dtype == jnp.dtype(dtype)
    # float32: 3e-6 apart at most, where the slope crosses 0 and its terms cancel
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == "bfloat16" else dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), **tol)
    assert float(want.astype(np.float32).min()) < -0.1  # the slope dips below 0 near x = -0.75


@pytest.mark.parametrize("t, start, chunk", [(1, 9, 4), (3, 4, 4), (1, 15, 5), (16, 0, 16)])
def test_chunked_attention_matches_reference(t, start, chunk):
    q, k, v = qkv(t, 16, seed=start)
    positions = start + jnp.arange(t)
    want = attention.reference_attention(q, k, v, attention.causal_mask(positions, 16))
    got = jax.jit(kernels.chunked_attention, static_argnums=4)(q, k, v, positions, chunk)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_chunked_attention_reads_only_the_chunks_it_needs():
    # Slots from 8 on hold NaN: the full masked product would spread it (0 * NaN = NaN), the
    # chunked one never reads those chunks while the queries sit below slot 8.
    q, k, v = qkv(2, 16)
    k, v = k.at[:, 8:].set(jnp.nan), v.at[:, 8:].set(jnp.nan)
    positions = jnp.array([6, 7])
    out = kernels.chunked_attention(q, k, v, positions, chunk=4)
    assert np.isfinite(np.asarray(out)).all()
    full = attention.reference_attention(q, k, v, attention.causal_mask(positions, 16))
    assert not np.isfinite(np.asarray(full)).all()


def test_fused_attention_is_plain_causal_attention():
    # cuDNN's kernel only runs on a GPU; here, the call it makes with the implementation left to
    # XLA checks the arguments (is_causal, the BTNH layout) against the plain attention.
    q, k, v = qkv(16, 16, n=4, h=16)
    want = attention.reference_attention(q, k, v, attention.causal_mask(jnp.arange(16), 16))
    got = jax.nn.dot_product_attention(q, k, v, is_causal=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert kernels.cudnn_applies(q.astype(jnp.bfloat16)) == (jax.default_backend() == "gpu")
    assert not kernels.cudnn_applies(q)  # float32 never goes to cuDNN


@pytest.mark.parametrize("scale", [0.1, 30.0])
def test_clip_by_global_norm_matches_optax(scale):
    # Below the threshold (scale 0.1: norm ~0.6) the gradients pass unchanged, bit for bit; above
    # it (norm ~180) they are scaled to norm 1, as optax's dividing version does, up to rounding.
    rng = np.random.default_rng(0)
    grads = {
        "w": jnp.asarray(scale * rng.normal(size=(5, 7)), jnp.float32),
        "b": {"x": jnp.asarray(scale * rng.normal(size=(7,)), jnp.float32)},
    }
    ours, _ = kernels.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
    theirs, _ = optax.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        if scale < 1:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-6)
    norm = float(optax.tree.norm(ours))
    assert norm == pytest.approx(min(float(optax.tree.norm(grads)), 1.0), rel=1e-6)
    assert (norm < 1.0) == (scale < 1)


def test_muon_is_optax_muon():
    # Three steps of the fast Muon and of optax.contrib.muon on a real model's parameters and
    # gradients (the attention's 3-D kernels included): the same parameters to float rounding.
    cfg = tiny(kernels="plain")
    params = GPT(cfg).init(jax.random.key(0), jnp.zeros((1, BLOCK), jnp.int32))["params"]
    params = nn.unbox(params)
    rng = np.random.default_rng(0)

    def loss(p, x):
        logits = GPT(cfg).apply({"params": p}, x[:, :-1], deterministic=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, x[:, 1:]).mean()

    batches = [jnp.asarray(rng.integers(0, V, size=(4, BLOCK + 1), dtype=np.int32)) for _ in "abc"]
    grad, results = jax.jit(jax.grad(loss)), {}
    for which in ("plain", "fast"):
        tx, _ = ts.make_optimizer(
            **{**OPT, "warmup_steps": 0}, total_steps=3, optimizer="muon", muon_lr=0.05,
            kernels=which,
        )  # fmt: skip
        p, state, update = params, tx.init(params), jax.jit(tx.update)
        for x in batches:
            updates, state = update(grad(p, x), state, p)
            p = optax.apply_updates(p, updates)
        results[which] = p
    moved = 0.0
    for a, b, p0 in zip(*(jax.tree.leaves(results[k]) for k in ("plain", "fast")),
                        jax.tree.leaves(params), strict=True):  # fmt: skip
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        moved = max(moved, float(jnp.abs(a - p0).max()))
    assert moved > 0.05  # Muon's steps of rate 0.05 moved the matrices


OPT = dict(
    lr=1e-3, min_lr=1e-4, warmup_steps=3, weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0
)


def _init(config):
    tx, _ = ts.make_optimizer(**OPT, total_steps=20, kernels=config.kernels)
    return lambda: ts.create_train_state(GPT(config), tx, seed=0, block_size=BLOCK)


def test_compiler_options_only_for_fast_kernels_on_cpu():
    on_cpu = jax.default_backend() == "cpu"
    assert kernels.compiler_options("step", "plain") is None
    assert kernels.compiler_options("init", "plain") is None
    assert (kernels.compiler_options("step", "fast") is not None) == on_cpu


def test_check_compiler_options_give_the_same_checksums_and_finiteness():
    from gptjax.runs import checkpoint
    from gptjax.training.metrics import all_finite

    state = jax.jit(_init(tiny(kernels="fast")))()
    flat = {jax.tree_util.keystr(p): x for p, x in jax.tree.leaves_with_path(state.params)}
    quick = kernels.CHECK_COMPILER_OPTIONS
    default = jax.jit(checkpoint._checksums)(flat)
    assert jax.jit(checkpoint._checksums, compiler_options=quick)(flat) == default
    assert checkpoint.fingerprints(state.params) == {k: int(v) for k, v in default.items()}
    broken = jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(jnp.nan), state.params)
    for tree, want in ((state.params, True), (broken, False)):
        for options in (None, quick):
            assert bool(jax.jit(all_finite, compiler_options=options)(tree)) is want
            assert bool(jax.jit(checkpoint._all_finite, compiler_options=options)(tree)) is want


def test_init_compiler_options_leave_the_state_bit_identical():
    init = _init(tiny(kernels="fast"))
    default = jax.jit(init)()
    cheap = jax.jit(init, compiler_options=kernels.INIT_COMPILER_OPTIONS)()
    leaves = jax.tree.leaves(default)
    assert len(leaves) > 10
    for a, b in zip(leaves, jax.tree.leaves(cheap), strict=True):
        np.testing.assert_array_equal(a, b)


def test_step_compiler_options_change_only_the_rounding():
    # Three steps with and without the options: the same losses and parameters up to rounding.
    state = jax.jit(_init(tiny(kernels="fast")))()
    rng = np.random.default_rng(0)
    x = rng.integers(0, V, size=(3, 4, BLOCK + 1), dtype=np.int32)
    batches = {"inputs": x[..., :-1], "targets": x[..., 1:]}
    default, m_default = jax.jit(ts.train_steps)(state, batches)
    options = kernels.STEP_COMPILER_OPTIONS
    tuned, m_tuned = jax.jit(ts.train_steps, compiler_options=options)(state, batches)
    np.testing.assert_allclose(m_tuned["loss"], m_default["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(tuned.params), jax.tree.leaves(default.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert float(m_default["loss"][-1]) < float(m_default["loss"][0])  # the steps did train


# --- the whole model: fast equals plain --------------------------------------------------------


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_fast_model_equals_plain_model_in_logits_and_gradients(pos):
    params, tokens = model_and_params(pos_encoding=pos)
    plain, fast = tiny(pos_encoding=pos), tiny(pos_encoding=pos, kernels="fast")
    np.testing.assert_allclose(
        GPT(fast).apply({"params": params}, tokens),
        GPT(plain).apply({"params": params}, tokens),
        rtol=1e-5,
        atol=1e-5,
    )
    want = jax.grad(functools.partial(loss_fn, plain))(params, tokens)
    got = jax.grad(functools.partial(loss_fn, fast))(params, tokens)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), got, want)


def test_fast_and_plain_train_the_same_way():
    # Same initial state, three AdamW steps each: the fast clip, dense layers and GELU change
    # nothing but rounding.
    states = {k: jax.jit(_init(tiny(kernels=k)))() for k in ("plain", "fast")}
    jax.tree.map(np.testing.assert_array_equal, states["plain"].params, states["fast"].params)
    rng = np.random.default_rng(1)
    x = rng.integers(0, V, size=(3, 4, BLOCK + 1), dtype=np.int32)
    batches = {"inputs": x[..., :-1], "targets": x[..., 1:]}
    out = {k: jax.jit(ts.train_steps)(s, batches) for k, s in states.items()}
    np.testing.assert_allclose(out["fast"][1]["loss"], out["plain"][1]["loss"], rtol=1e-5)
    np.testing.assert_allclose(out["fast"][1]["grad_norm"], out["plain"][1]["grad_norm"], rtol=1e-4)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        out["fast"][0].params,
        out["plain"][0].params,
    )


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_fast_kv_cache_decoding_equals_plain_full_forward(pos, monkeypatch):
    # Chunks of 5 slots over a 16-slot cache: several chunks, the last one overhanging, so the
    # fast decode path (chunked attention) runs.
    monkeypatch.setattr(kernels, "DECODE_CHUNK", 5)
    params, tokens = model_and_params(pos_encoding=pos)
    fast = GPT(tiny(pos_encoding=pos, kernels="fast"))
    full = GPT(tiny(pos_encoding=pos)).apply({"params": params}, tokens)
    call = jax.jit(lambda t, c: fast.apply({"params": params}, t, cache=c))
    logits, cache = call(tokens[:, :5], init_cache(fast.config, 2))
    pieces = [logits]
    for i in range(5, BLOCK):
        logits, cache = call(tokens[:, i : i + 1], cache)
        pieces.append(logits)
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full, rtol=1e-5, atol=1e-5)


# --- forward-mode autodiff: the plain model has it, the fast one gives it up -------------------


def test_jvp_of_the_plain_logits_is_the_finite_difference():
    params, tokens = model_and_params()
    model = GPT(tiny())
    direction = random_direction(params, seed=5)

    def logits(params):
        return model.apply({"params": params}, tokens)

    _, tangent = jax.jvp(logits, (params,), (direction,))
    eps = 1e-2
    step = lambda sign: jax.tree.map(lambda p, d: p + sign * eps * d, params, direction)  # noqa: E731
    central = (logits(step(1)) - logits(step(-1))) / (2 * eps)
    assert float(jnp.abs(tangent).max()) > 0.1  # the direction moves the logits
    np.testing.assert_allclose(tangent, central, rtol=2e-2, atol=2e-3)


def test_hessian_vector_product_of_the_plain_loss_is_a_difference_of_gradients():
    # Forward over reverse: H v = d/de grad(loss)(params + e v) at e = 0, against the central
    # difference (grad(params + eps v) - grad(params - eps v)) / (2 eps).
    params, tokens = model_and_params()
    grad = jax.jit(jax.grad(lambda p: loss_fn(tiny(), p, tokens)))
    direction = random_direction(params, seed=7)
    _, hvp = jax.jvp(grad, (params,), (direction,))
    eps = 1e-2
    shifted = lambda sign: jax.tree.map(lambda p, d: p + sign * eps * d, params, direction)  # noqa: E731
    central = jax.tree.map(lambda a, b: (a - b) / (2 * eps), grad(shifted(1)), grad(shifted(-1)))
    hvp_flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(hvp)])
    central_flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(central)])
    assert np.abs(hvp_flat).max() > 1e-2  # a real curvature, not zeros
    # Relative error over the whole vector: float32 central differences carry ~1e-3 of noise.
    error = np.linalg.norm(hvp_flat - central_flat) / np.linalg.norm(central_flat)
    assert error < 5e-3, error


def test_fast_kernels_give_up_forward_mode():
    params, tokens = model_and_params()
    fast = GPT(tiny(kernels="fast"))
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(lambda p: fast.apply({"params": p}, tokens), (params,), (params,))
