"""Feed-forward network and normalization (tutorial part 7).

After attention has mixed information across positions, each position thinks on its own through a
two-layer MLP, ``D -> F -> D`` with a GELU in between (F = 4 D in GPT-2)::

    h_BTF = gelu(x_BTD @ W_fc + b_fc)
    y_BTD = h_BTF @ W_proj + b_proj

Normalization keeps the activations of the residual stream at a sane scale.

Choices:

* The dense layers are Flax's ``nn.DenseGeneral``: ``y = x W + b`` over the trailing axes of x
  (one axis here; the attention's output projection contracts two, heads and head size).
* GELU is the tanh approximation ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``
  (``jax.nn.gelu(x, approximate=True)``), the form GPT-2's own code used (``gelu_new`` in Hugging
  Face's port), so a GPT-2 checkpoint sees the activation it was trained with. It differs from
  the exact erf form (PyTorch's ``nn.GELU()`` default, nanoGPT's choice) by at most 4.8e-4, and
  it is cheaper to compute on a CPU.
* ``GPTConfig.activation = "relu2"`` swaps the GELU for ``relu(x)**2`` (So et al. 2021), cheaper
  to compute and, in short trainings, often better (``experiments/speedrun``).
* The output projection is a residual projection: it gets GPT-2's scaled initialisation
  normal(0.02 / sqrt(2 L)), since each of the 2 L residual branches adds to the same stream.
* ``make_norm`` gives LayerNorm (GPT-2; bias following ``GPTConfig.bias``) or RMSNorm (no mean
  subtraction, no bias; Zhang & Sennrich 2019). Epsilon is 1e-5, PyTorch's LayerNorm default.
  Flax computes the statistics in float32 whatever the compute dtype.
* With ``GPTConfig.kernels = "fast"`` the dense layers and the GELU are those of
  ``gptjax.model.kernels``: the same values, a faster backward pass on CPU.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from gptjax.model import kernels
from gptjax.model.config import GPTConfig

INIT_STD = 0.02
NORM_EPS = 1e-5


def dense_init(names: tuple[str, ...], std: float = INIT_STD):
    """normal(std) kernel initialiser carrying logical axis names."""
    return nn.with_logical_partitioning(nn.initializers.normal(std), names)


def zeros_init(names: tuple[str, ...]):
    """Zero initialiser (biases) carrying logical axis names."""
    return nn.with_logical_partitioning(nn.initializers.zeros_init(), names)


def residual_std(config: GPTConfig) -> float:
    """GPT-2's init std for projections that write into the residual stream: 0.02 / sqrt(2 L)."""
    return INIT_STD / math.sqrt(2 * config.n_layer)


def dense(
    config: GPTConfig,
    features: int | tuple[int, ...],
    kernel_axes: tuple[str, ...],
    *,
    axis: int | tuple[int, ...] = -1,
    std: float = INIT_STD,
    name: str,
) -> nn.Module:
    """A dense layer ``y = x W + b`` from the ``axis`` axes of x to ``features``.

    Args:
      config: the model configuration (bias, dtypes, kernels).
      features: output shape, e.g. D, or (N, H) for the heads of an attention projection.
      kernel_axes: logical axis names of the kernel, input axes then feature axes; the bias gets
        the feature axes' names.
      axis: the input axes contracted, -1 or (-2, -1).
      std: standard deviation of the normal kernel initialisation.
      name: the parameter scope ("fc", "query", ...).

    Returns:
      ``nn.DenseGeneral``, or under ``kernels="fast"`` its drop-in ``kernels.DenseGeneral``.
    """
    layer = kernels.DenseGeneral if config.kernels == "fast" else nn.DenseGeneral
    n_features = 1 if isinstance(features, int) else len(features)
    return layer(
        features=features,
        axis=axis,
        use_bias=config.bias,
        dtype=config.jnp_dtype,
        param_dtype=config.jnp_param_dtype,
        kernel_init=dense_init(kernel_axes, std),
        bias_init=zeros_init(kernel_axes[-n_features:]),
        name=name,
    )


def gelu(config: GPTConfig, x: jax.Array) -> jax.Array:
    """GELU, tanh form: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""
    if config.kernels == "fast":
        return kernels.gelu(x)
    return jax.nn.gelu(x, approximate=True)


def activation(config: GPTConfig, x: jax.Array) -> jax.Array:
    """The MLP's nonlinearity: `gelu`, or ``relu(x)**2`` for ``activation="relu2"``."""
    if config.activation == "relu2":
        return jnp.square(jax.nn.relu(x))
    return gelu(config, x)


def make_norm(config: GPTConfig, name: str | None = None) -> nn.Module:
    """The normalization layer named by ``config.norm``, over the last axis (width D).

    ``name`` is for ``@nn.compact`` callers; inside ``setup`` the attribute names the module.
    """
    scale_init = nn.with_logical_partitioning(nn.initializers.ones_init(), ("embed",))
    if config.norm == "rmsnorm":
        return nn.RMSNorm(
            epsilon=NORM_EPS,
            dtype=config.jnp_dtype,
            param_dtype=config.jnp_param_dtype,
            scale_init=scale_init,
            name=name,
        )
    return nn.LayerNorm(
        epsilon=NORM_EPS,
        use_bias=config.bias,
        dtype=config.jnp_dtype,
        param_dtype=config.jnp_param_dtype,
        scale_init=scale_init,
        bias_init=zeros_init(("embed",)),
        name=name,
    )


class MLP(nn.Module):
    """Position-wise feed-forward network ``D -> F -> GELU -> D -> dropout``.

    Attributes:
      config: the model configuration.
    """

    config: GPTConfig

    @nn.compact
    def __call__(self, x_BTD: jax.Array, deterministic: bool = True) -> jax.Array:
        """Args: x_BTD; deterministic: no dropout when True. Returns: y_BTD."""
        cfg = self.config
        h_BTF = dense(cfg, cfg.mlp_width, ("embed", "mlp"), name="fc")(x_BTD)
        h_BTF = activation(cfg, h_BTF)
        y_BTD = dense(cfg, cfg.n_embd, ("mlp", "embed"), std=residual_std(cfg), name="proj")(h_BTF)
        y_BTD = nn.Dropout(cfg.dropout)(y_BTD, deterministic=deterministic)
        return y_BTD.astype(cfg.jnp_dtype)
