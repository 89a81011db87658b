"""GPTConfig: validation, the closed-form parameter count, FLOPs per token, GPT-2 sizes."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from gptjax.model import GPT
from gptjax.model.config import GPTConfig, gpt2_config

TINY = dict(vocab_size=61, block_size=16, n_layer=2, n_head=4, n_embd=32)


def tree_size(config: GPTConfig) -> int:
    """Parameters of GPT(config), counted from the abstract parameter tree (no memory)."""
    tokens = jax.ShapeDtypeStruct((1, 8), jnp.int32)
    shapes = jax.eval_shape(lambda t: GPT(config).init(jax.random.key(0), t), tokens)
    return sum(x.size for x in jax.tree.leaves(nn.unbox(shapes["params"])))


# Published counts (HF transformers / nanoGPT): vocab 50257, block 1024, tied, biases on.
@pytest.mark.parametrize(
    "size, published",
    [
        ("small", 124_439_808),
        ("medium", 354_823_168),
        ("large", 774_030_080),
        ("xl", 1_557_611_200),
    ],
)
def test_gpt2_sizes_match_published_counts(size, published):
    config = gpt2_config(size)
    assert config.param_count() == published
    assert tree_size(config) == published


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        dict(bias=False),
        dict(tie_embeddings=False),
        dict(norm="rmsnorm"),
        dict(pos_encoding="sinusoidal"),
        dict(pos_encoding="rope", norm="rmsnorm", bias=False, tie_embeddings=False),
        dict(pos_encoding="none", mlp_ratio=2.5),
        dict(n_layer=0),
        dict(n_layer=0, pos_encoding="none", tie_embeddings=False, norm="rmsnorm"),
        dict(mlp_ratio=0),
        dict(mlp_ratio=0, bias=False, norm="rmsnorm"),
    ],
)
def test_param_count_matches_parameter_tree(overrides):
    config = GPTConfig(**{**TINY, **overrides})
    assert config.param_count() == tree_size(config)


def test_param_count_of_the_ablations_by_hand():
    v, block, d, layers = TINY["vocab_size"], TINY["block_size"], TINY["n_embd"], TINY["n_layer"]
    # No block: the token table, the position table and the final LayerNorm (scale and bias).
    assert GPTConfig(**{**TINY, "n_layer": 0}).param_count() == v * d + block * d + 2 * d
    bigram = GPTConfig(**{**TINY, "n_layer": 0}, pos_encoding="none", tie_embeddings=False)
    assert bigram.param_count() == v * d + 2 * d + d * v
    # No MLP: each block loses ln_2 (2 D), fc (D x 4D + 4D) and proj (4D x D + D).
    full, attention_only = GPTConfig(**TINY), GPTConfig(**TINY, mlp_ratio=0)
    assert attention_only.mlp_width == 0
    lost = 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)
    assert full.param_count() - attention_only.param_count() == layers * lost


def test_flops_per_token_is_the_palm_estimate():
    # nanoGPT's estimate_mfu for GPT-2 small: N excludes the position table, 6N + 12 L H Q T.
    config = gpt2_config("small")
    n = 124_439_808 - 1024 * 768
    assert config.flops_per_token() == 6 * n + 12 * 12 * 12 * 64 * 1024
    assert config.flops_per_token(seq_len=256) == 6 * n + 12 * 12 * 12 * 64 * 256
    # Untied, the input table is a gather (no FLOPs); the head is a matmul and counts.
    untied = gpt2_config("small", tie_embeddings=False)
    assert untied.flops_per_token() == config.flops_per_token()


@pytest.mark.parametrize("overrides", [{}, dict(mlp_ratio=0), dict(n_layer=0)])
def test_flops_per_token_agrees_with_xla_cost_analysis(overrides):
    # An independent count: XLA's own FLOPs of the compiled forward pass, which is about a third
    # of the training estimate (backward ~ 2x forward). XLA also counts elementwise work and the
    # causal half is not skipped, so agreement is to ~15%, not exact.
    sizes = dict(vocab_size=256, block_size=64, n_layer=2, n_head=4, n_embd=64)
    config = GPTConfig(**{**sizes, **overrides})
    model = GPT(config)
    tokens = jnp.zeros((2, 64), jnp.int32)
    params = model.init(jax.random.key(0), tokens)
    compiled = jax.jit(model.apply).lower(params, tokens).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    forward_per_token = cost["flops"] / tokens.size
    assert forward_per_token == pytest.approx(config.flops_per_token() / 3, rel=0.15)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(n_embd=30, n_head=4), "not divisible by n_head"),
        (dict(n_embd=30, n_head=6, pos_encoding="rope"), "head size .* must be even"),
        (dict(n_embd=33, n_head=3, pos_encoding="sinusoidal"), "n_embd must be even"),
        (dict(pos_encoding="alibi"), "pos_encoding must be one of"),
        (dict(norm="batchnorm"), "norm must be one of"),
        (dict(kernels="flash"), "kernels must be one of"),
        (dict(dtype="float8"), "dtype must be one of"),
        (dict(param_dtype="int8"), "param_dtype must be one of"),
        (dict(n_layer=-1), "n_layer must be >= 0"),
        (dict(vocab_size=10.0), "vocab_size must be an int"),
        (dict(block_size=True), "block_size must be an int"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
        (dict(mlp_ratio=1.01), "mlp_ratio \\* n_embd must be a whole number >= 0"),
        (dict(mlp_ratio=-1), "mlp_ratio \\* n_embd must be a whole number >= 0"),
        (dict(mlp_ratio="4"), "mlp_ratio must be a number"),
        (dict(bias="yes"), "bias must be True or False"),
    ],
)
def test_invalid_configs_are_rejected(overrides, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**{**TINY, **overrides})


def test_config_is_frozen_and_exposes_dtypes():
    config = GPTConfig(**TINY, dtype="bfloat16")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_layer = 3
    assert config.jnp_dtype == jnp.bfloat16
    assert config.jnp_param_dtype == jnp.float32
    assert (config.head_size, config.mlp_width) == (8, 128)


def test_gpt2_config_rejects_unknown_size():
    with pytest.raises(ValueError, match="unknown GPT-2 size"):
        gpt2_config("huge")
