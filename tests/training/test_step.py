"""gptjax.training.step: schedule, decay mask, AdamW, accumulation, scan, overfit, evaluation."""

import collections
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gptjax.model import GPT
from gptjax.model.config import GPTConfig
from gptjax.training import step as ts

CFG = GPTConfig(vocab_size=300, block_size=16, n_layer=2, n_head=2, n_embd=32, bias=True)
OPT = dict(
    lr=1e-3, min_lr=1e-4, warmup_steps=3, weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0
)


def _state(cfg=CFG, grad_accum=1, total_steps=20, **opt):
    tx, schedule = ts.make_optimizer(**{**OPT, **opt}, total_steps=total_steps)
    init = lambda: ts.create_train_state(  # noqa: E731
        GPT(cfg), tx, seed=0, block_size=cfg.block_size, grad_accum=grad_accum
    )
    return jax.jit(init)(), schedule


def _batch(b, t=16, seed=0, v=300):
    x = np.random.default_rng(seed).integers(0, v, size=(b, t + 1), dtype=np.int32)
    return {"inputs": jnp.asarray(x[:, :-1]), "targets": jnp.asarray(x[:, 1:])}


def test_learning_rate_matches_closed_form():
    kw = dict(lr=1.0, min_lr=0.1, warmup_steps=10, total_steps=110)
    for step in (0, 4, 9):
        assert float(ts.learning_rate(step, **kw)) == pytest.approx((step + 1) / 11)
    for step in (10, 35, 60, 85, 110):
        want = 0.1 + 0.5 * (1 + math.cos(math.pi * (step - 10) / 100)) * 0.9
        assert float(ts.learning_rate(step, **kw)) == pytest.approx(want, rel=1e-6)
    assert float(ts.learning_rate(500, **kw)) == pytest.approx(0.1)


def test_decay_mask_selects_matrices_of_the_real_model():
    state, _ = _state()
    mask = ts.decay_mask(state.params)
    flat = {jax.tree_util.keystr(p): m for p, m in jax.tree_util.tree_leaves_with_path(mask)}
    shapes = {
        jax.tree_util.keystr(p): x.shape
        for p, x in jax.tree_util.tree_leaves_with_path(state.params)
    }
    decayed = {k for k, m in flat.items() if m}
    matrices = {k for k, s in shapes.items() if len(s) >= 2 and "bias" not in k}
    assert decayed == matrices
    # the model has 2-D biases (per head): the rule is about matrices, not only about ndim
    assert any("bias" in k and len(s) == 2 for k, s in shapes.items())
    assert any("bias" in k for k in flat) and not any("bias" in k for k in decayed)
    assert any("scale" in k for k in flat) and not any("scale" in k for k in decayed)
    assert any("kernel" in k for k in decayed) and any("embedding" in k for k in decayed)


def test_weight_decay_applies_to_matrices_only():
    # With zero gradients, Adam's update is 0 and only decoupled decay moves parameters:
    # p <- p * (1 - lr * wd) for decayed ones, unchanged for the others.
    tx, _ = ts.make_optimizer(**{**OPT, "warmup_steps": 0, "grad_clip": 0.0}, total_steps=10)
    params = {"w": jnp.ones((3, 4)), "b": jnp.ones((4,)), "scale": jnp.ones((4,))}
    opt_state = tx.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, opt_state, params)
    new = jax.tree.map(lambda p, u: p + u, params, updates)
    np.testing.assert_allclose(new["w"], 1 - 1e-3 * 0.1, rtol=1e-6)
    np.testing.assert_array_equal(new["b"], params["b"])
    np.testing.assert_array_equal(new["scale"], params["scale"])


@pytest.mark.parametrize("kernels", ["plain", "fast"])
def test_train_step_matches_a_numpy_adamw(kernels):
    # Four steps of clipping + AdamW written out in float64 NumPy from the published update
    # (Loshchilov & Hutter; optax.adamw's docstring): eps outside the square root, the decay
    # decoupled from the moments and scaled by the step's rate. Only the gradients come from JAX.
    cfg = GPTConfig(vocab_size=64, block_size=8, n_layer=2, n_head=2, n_embd=16)
    lr, min_lr, b1, b2, eps, wd, max_norm = 1e-2, 1e-3, 0.9, 0.95, 1e-8, 0.1, 1.1
    tx, _ = ts.make_optimizer(
        lr=lr, min_lr=min_lr, warmup_steps=2, total_steps=6, weight_decay=wd, beta1=b1,
        beta2=b2, grad_clip=max_norm, kernels=kernels,
    )  # fmt: skip
    state = jax.jit(lambda: ts.create_train_state(GPT(cfg), tx, seed=0, block_size=8))()
    # Steps 0, 1: warm-up lr * (s + 1) / 3; steps 2, 3: cosine from lr at step 2 to min_lr at 6.
    rates = [lr / 3, 2 * lr / 3, lr, min_lr + 0.5 * (1 + math.cos(math.pi / 4)) * (lr - min_lr)]

    def gradients(state, batch):
        # The gradient train_step takes, computed the same way and, like train_step below, not
        # jitted, so it is the same to the bit. It has to be: the key biases' exact gradient is 0
        # (a shift of every score of a query), so theirs is rounding noise of about 1e-12, and
        # Adam's g / (|g| + eps) of two different noises differs by a few percent of the rate.
        key = jax.random.fold_in(state.rng, state.step)
        x_BT, y_BT = batch["inputs"], batch["targets"]
        loss = lambda p: ts.token_losses(state.apply_fn, p, x_BT, y_BT, key).mean()
        return [np.asarray(g, np.float64) for g in jax.tree.leaves(jax.grad(loss)(state.params))]

    paths = [path for path, _ in jax.tree_util.tree_leaves_with_path(state.params)]
    p = [np.asarray(x, np.float64) for x in jax.tree.leaves(state.params)]
    decayed = [
        x.ndim >= 2 and path[-1].key not in ("bias", "scale")
        for path, x in zip(paths, p, strict=True)
    ]
    assert sum(decayed) == 2 + 6 * cfg.n_layer  # wte, wpe; q, k, v, proj, fc, mlp proj per layer
    m, v = [np.zeros_like(x) for x in p], [np.zeros_like(x) for x in p]
    norms = []
    for t, rate in enumerate(rates, start=1):
        batch = _batch(4, t=8, seed=t, v=64)
        g = gradients(state, batch)
        norm = math.sqrt(sum((x**2).sum() for x in g))
        norms.append(norm)
        g = [x * min(1.0, max_norm / norm) for x in g]
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g, strict=True)]
        v = [b2 * vi + (1 - b2) * gi**2 for vi, gi in zip(v, g, strict=True)]
        p = [
            pi - rate * (mi / (1 - b1**t) / (np.sqrt(vi / (1 - b2**t)) + eps) + wd * pi * di)
            for pi, mi, vi, di in zip(p, m, v, decayed, strict=True)
        ]
        logits_BTV = np.asarray(state.apply_fn({"params": state.params}, batch["inputs"]), float)
        logp_BTV = logits_BTV - np.log(np.exp(logits_BTV).sum(-1, keepdims=True))
        nats = -np.take_along_axis(logp_BTV, np.asarray(batch["targets"])[..., None], -1).mean()
        state, metrics = ts.train_step(state, batch)
        assert float(metrics["loss"]) == pytest.approx(nats, rel=1e-6)
        assert float(metrics["grad_norm"]) == pytest.approx(norm, rel=1e-6)
        for path, got, want in zip(paths, jax.tree.leaves(state.params), p, strict=True):
            # float32 keeps the parameters to 1e-7 relative, 1e-8 absolute at their scale of 0.1
            # (measured: a fifth of this tolerance at most). A mistake of the smallest kind,
            # decaying a bias (of size ~rate after one step), moves it by rate * wd * rate ~ 2e-6,
            # 25 times the tolerance.
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=5e-8, err_msg=f"{t}{path}")
    assert max(norms) > max_norm > min(norms)  # both sides of min(1, max_norm / norm) were taken


def test_initial_loss_is_about_log_vocab():
    state, _ = _state()
    _, metrics = ts.train_step(state, _batch(8))
    assert float(metrics["loss"]) == pytest.approx(math.log(300), abs=0.15)


def test_gradient_accumulation_equals_one_large_batch():
    # Plain SGD with rate 1 makes the update equal to minus the gradient, so the comparison is of
    # gradients (Adam's first step would amplify rounding noise on near-zero gradients to +-lr).
    batch = _batch(8)
    states = {
        a: jax.jit(
            lambda a=a: ts.create_train_state(
                GPT(CFG), optax.sgd(1.0), seed=0, block_size=16, grad_accum=a
            )
        )()
        for a in (1, 4)
    }
    start = jax.tree.leaves(states[1].params)
    new1, m1 = jax.jit(ts.train_step)(states[1], batch)
    new4, m4 = jax.jit(ts.train_step)(states[4], batch)
    assert float(m1["loss"]) == pytest.approx(float(m4["loss"]), rel=1e-6)
    assert float(m1["grad_norm"]) == pytest.approx(float(m4["grad_norm"]), rel=1e-5)
    leaves1, leaves4 = jax.tree.leaves(new1.params), jax.tree.leaves(new4.params)
    for p0, a, b in zip(start, leaves1, leaves4, strict=True):
        np.testing.assert_allclose(p0 - a, p0 - b, rtol=1e-4, atol=1e-7)
    assert float(m1["grad_norm"]) > 0.1  # the gradients compared are not all tiny


def test_scan_of_steps_equals_steps_one_by_one_and_unjitted():
    batches = [_batch(4, seed=s) for s in range(3)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *batches)
    cfg = GPTConfig(**{**CFG.__dict__, "dropout": 0.1})  # exercise the per-step dropout keys
    scanned, _ = _state(cfg)
    scanned, m_scan = jax.jit(ts.train_steps)(scanned, stacked)
    single, _ = _state(cfg)
    losses = []
    for b in batches:
        single, m = ts.train_step(single, b)  # not jitted
        losses.append(float(m["loss"]))
    np.testing.assert_allclose(m_scan["loss"], losses, rtol=1e-5)
    assert int(scanned.step) == int(single.step) == 3
    for a, b in zip(jax.tree.leaves(scanned.params), jax.tree.leaves(single.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_dropout_key_depends_on_step_only():
    cfg = GPTConfig(**{**CFG.__dict__, "dropout": 0.5})
    state, _ = _state(cfg)
    batch = _batch(4)
    _, m_a = ts.train_step(state, batch)
    _, m_b = ts.train_step(state, batch)
    later = state.replace(step=state.step + 1)
    _, m_c = ts.train_step(later, batch)
    assert float(m_a["loss"]) == float(m_b["loss"])  # same step, same key
    assert float(m_a["loss"]) != float(m_c["loss"])  # another step, another mask


def test_overfit_one_batch():
    # One batch of random tokens, seen 100 times: the model memorises it. Every row starts with the
    # same token (as documents start with a BOS), so the four first targets share their context
    # and no causal model can tell them apart; every later prefix occurs once. The floor is then
    # the entropy of the targets within each group of identical prefixes, here ln(4) on 4 of the
    # 64 targets (the first targets are distinct): 0.087 nats, against ln(64) = 4.16 at the start.
    cfg = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)
    tokens = np.random.default_rng(0).integers(0, 64, size=(4, 17), dtype=np.int32)
    tokens[:, 0] = 0
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    groups = collections.defaultdict(list)
    for b, t in np.ndindex(targets.shape):
        groups[tuple(inputs[b, : t + 1])].append(targets[b, t])
    floor = 0.0
    for ys in groups.values():
        counts = np.array(list(collections.Counter(ys).values()))
        floor -= (counts * np.log(counts / len(ys))).sum() / targets.size
    assert len(set(targets[:, 0])) == 4 and floor == pytest.approx(4 * math.log(4) / 64)
    steps = 100
    tx, _ = ts.make_optimizer(
        lr=2e-2, min_lr=2e-3, warmup_steps=10, total_steps=steps, weight_decay=0.0, beta1=0.9,
        beta2=0.99, grad_clip=1.0,
    )  # fmt: skip
    state = jax.jit(lambda: ts.create_train_state(GPT(cfg), tx, seed=0, block_size=16))()
    batch = {"inputs": jnp.asarray(inputs), "targets": jnp.asarray(targets)}
    batches = jax.tree.map(lambda a: jnp.broadcast_to(a, (steps, *a.shape)), batch)
    _, metrics = jax.jit(ts.train_steps)(state, batches)
    first, last = float(metrics["loss"][0]), float(metrics["loss"][-1])
    assert first == pytest.approx(math.log(64), abs=0.1)  # uniform predictions at the start
    # The margin of 0.1 nats asks the 60 memorisable targets a probability of about 0.9 each.
    assert last < floor + 0.1 and last < 0.25 * first
    # No causal model goes below the floor: one that did would see the token it predicts.
    assert last > floor - 1e-3


def test_the_matmul_peak_is_measured_in_the_compute_dtype(monkeypatch):
    from gptjax.training import metrics

    seen = []
    ones = jnp.ones
    monkeypatch.setattr(metrics.jnp, "ones", lambda shape, dtype: seen.append(dtype) or ones(
        shape, dtype
    ))  # fmt: skip
    assert metrics.measure_matmul_flops(64, repeats=1, dtype="bfloat16") > 0
    assert [jnp.dtype(d) for d in seen] == [jnp.bfloat16]


def test_wsd_schedule_matches_closed_form():
    # Warm-up over 10 steps, then lr held until the last half (55 steps) decays in a straight
    # line to min_lr at step 110.
    kw = dict(lr=1.0, min_lr=0.1, warmup_steps=10, total_steps=110, schedule="wsd", cooldown=0.5)
    for step in (0, 4, 9):
        assert float(ts.learning_rate(step, **kw)) == pytest.approx((step + 1) / 11)
    for step in (10, 30, 55):
        assert float(ts.learning_rate(step, **kw)) == pytest.approx(1.0)
    for step in (56, 80, 109, 110):
        want = 1.0 + (step - 55) / 55 * (0.1 - 1.0)
        assert float(ts.learning_rate(step, **kw)) == pytest.approx(want, rel=1e-6)
    assert float(ts.learning_rate(500, **kw)) == pytest.approx(0.1)
    # cooldown=1: the decay starts where the warm-up ends
    whole = dict(kw, cooldown=1.0)
    assert float(ts.learning_rate(60, **whole)) == pytest.approx(1.0 + 50 / 100 * (0.1 - 1.0))


def test_muon_dimensions_of_the_real_model():
    cfg = GPTConfig(vocab_size=64, block_size=8, n_layer=2, n_head=2, n_embd=16, bias=True,
                    tie_embeddings=False)  # fmt: skip
    params = jax.eval_shape(lambda: GPT(cfg).init(jax.random.key(0), jnp.zeros((1, 8), int)))
    dims = ts.muon_dimensions(nn.unbox(params["params"]))
    found = {
        jax.tree_util.keystr(path): (d.reduction_axis, d.output_axis)
        for path, d in jax.tree_util.tree_flatten_with_path(
            dims, is_leaf=lambda x: isinstance(x, optax.contrib.MuonDimensionNumbers)
        )[0]
        if d is not None
    }
    want = {}
    for i in range(2):
        for name in ("query", "key", "value"):
            want[f"['blocks_{i}']['attn']['{name}']['kernel']"] = (0, (1, 2))
        want[f"['blocks_{i}']['attn']['proj']['kernel']"] = ((0, 1), 2)
        want[f"['blocks_{i}']['mlp']['fc']['kernel']"] = (0, 1)
        want[f"['blocks_{i}']['mlp']['proj']['kernel']"] = (0, 1)
    assert found == want  # no embedding, head, bias or scale


def _newton_schulz(m, steps=5, coeffs=(3.4445, -4.7750, 2.0315)):
    """The quintic Newton-Schulz iteration of Jordan et al. (2024), in float64 NumPy."""
    a, b, c = coeffs
    x = m / (np.linalg.norm(m) + 1e-8)
    wide = x.shape[0] <= x.shape[1]
    x = x if wide else x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.T


def test_newton_schulz_nearly_orthogonalises():
    # What the iteration is for: the singular values of the result lie near 1 (within the band
    # of about 0.7 to 1.2 that its coefficients trade for speed), whatever the input's.
    m = np.random.default_rng(0).normal(size=(16, 48)) * np.geomspace(0.1, 1, 16)[:, None]
    s = np.linalg.svd(_newton_schulz(m), compute_uv=False)
    assert s.min() > 0.6 and s.max() < 1.25, s
    before = np.linalg.svd(m, compute_uv=False)
    assert before.max() / before.min() > 10  # the input's are far from equal


def test_muon_steps_match_a_numpy_muon():
    # Three steps of Muon written out in float64 NumPy (Jordan et al. 2024, as optax.contrib
    # implements it): momentum with Nesterov's look-ahead and bias correction, the quintic
    # Newton-Schulz iteration of the matrix (the attention's (D, N, H) kernels seen as
    # D x (N H), its (N, H, D) output as (N H) x D), scaled by sqrt(max(1, fan_out / fan_in)),
    # plus decoupled decay. The other parameters take AdamW, checked against the same formula
    # as in test_train_step_matches_a_numpy_adamw.
    cfg = GPTConfig(vocab_size=64, block_size=8, n_layer=1, n_head=2, n_embd=16, mlp_ratio=2)
    lr, muon_lr, beta, b1, b2, wd, eps = 1e-2, 0.05, 0.9, 0.9, 0.95, 0.1, 1e-8
    tx, _ = ts.make_optimizer(
        lr=lr, min_lr=lr, warmup_steps=0, total_steps=3, weight_decay=wd, beta1=b1, beta2=b2,
        grad_clip=0.0, optimizer="muon", muon_lr=muon_lr, muon_momentum=beta,
    )  # fmt: skip
    state = jax.jit(lambda: ts.create_train_state(GPT(cfg), tx, seed=0, block_size=8))()
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state.params)]
    p = [np.asarray(x, np.float64) for x in jax.tree.leaves(state.params)]
    m, v = [np.zeros_like(x) for x in p], [np.zeros_like(x) for x in p]
    step = jax.jit(ts.train_step)
    grads = jax.jit(jax.grad(lambda params, b: ts._loss(params, state.apply_fn, b, None)))
    for t in range(1, 4):
        batch = _batch(4, t=8, seed=t, v=64)
        g = [np.asarray(x, np.float64) for x in jax.tree.leaves(grads(state.params, batch))]
        state, _ = step(state, batch)
        for i, (path, gi) in enumerate(zip(paths, g, strict=True)):
            if "blocks_0" in path and "kernel" in path:
                m[i] = beta * m[i] + (1 - beta) * gi
                look = beta * m[i] / (1 - beta ** (t + 1)) + (1 - beta) * gi / (1 - beta**t)
                shape = p[i].shape
                if "['attn']['proj']" in path:
                    matrix = look.reshape(-1, shape[-1])
                else:
                    matrix = look.reshape(shape[0], -1)
                fan_in, fan_out = matrix.shape
                o = _newton_schulz(matrix).reshape(shape) * math.sqrt(max(1.0, fan_out / fan_in))
                p[i] = p[i] - muon_lr * (o + wd * p[i])
            else:  # AdamW with Nesterov's look-ahead, no decay
                m[i] = b1 * m[i] + (1 - b1) * gi
                v[i] = b2 * v[i] + (1 - b2) * gi**2
                look = b1 * m[i] / (1 - b1 ** (t + 1)) + (1 - b1) * gi / (1 - b1**t)
                p[i] = p[i] - lr * look / (np.sqrt(v[i] / (1 - b2**t)) + eps)
        for path, want, got in zip(paths, p, jax.tree.leaves(state.params), strict=True):
            np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6, err_msg=path)
