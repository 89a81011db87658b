"""Feed-forward network and normalization (tutorial part 7).

After attention has mixed information across positions, each position thinks on its own through a
two-layer MLP, ``D -> F -> D`` with a GELU in between (F = 4 D in GPT-2). Normalization keeps the
activations of the residual stream at a sane scale.

Choices:

* GELU is the tanh approximation ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, the form
  GPT-2's own code used (``gelu_new`` in Hugging Face's port), so a GPT-2 checkpoint sees the
  activation it was trained with. It differs from the exact erf form (PyTorch's ``nn.GELU()``
  default, nanoGPT's choice) by at most 4.8e-4. It is also cheaper on CPU: XLA computes erf and
  its derivative as long polynomials, and the exact form cost 12% of the shakespeare_char step
  (52 -> 46 CPU-ms per step), and that recipe's validation loss at step 2000 is the same
  (1.8833, against 1.8832 with erf). Its derivative is written out (`gelu`), which saves a pass
  over memory per layer.
* The output projection is a residual projection: it gets GPT-2's scaled initialisation
  normal(0.02 / sqrt(2 L)), since each of the 2 L residual branches adds to the same stream.
* ``make_norm`` gives LayerNorm (GPT-2; bias following ``GPTConfig.bias``) or RMSNorm (no mean
  subtraction, no bias; Zhang & Sennrich 2019). Epsilon is 1e-5, PyTorch's LayerNorm default.
  Flax computes the statistics in float32 whatever the compute dtype.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

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


_GELU_C = math.sqrt(2.0 / math.pi)


@jax.custom_vjp
def gelu(x: jax.Array) -> jax.Array:
    """GELU, tanh form: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    The value is `jax.nn.gelu`'s (``approximate=True``); the gradient is written out. JAX's own
    rule keeps the tanh of the forward pass for the backward one, so XLA:CPU writes it to memory
    in a pass of its own beside the output. Recomputing it in the backward pass costs a few
    operations per element and saves that pass: 0.1-0.2 ms per shakespeare_char step, about 1%
    (2-core CPU, interleaved in one process).
    """
    return jax.nn.gelu(x, approximate=True)


def _gelu_fwd(x):
    return gelu(x), x


def _gelu_bwd(x, g):
    # With u = c (x + 0.044715 x^3) and t = tanh(u):
    # d/dx [0.5 x (1 + t)] = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2).
    x2 = x * x
    t = jnp.tanh(_GELU_C * (x + 0.044715 * x * x2))
    slope = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _GELU_C * (1.0 + 3 * 0.044715 * x2)
    return (g * slope,)


gelu.defvjp(_gelu_fwd, _gelu_bwd)


@jax.custom_vjp
def _matmul(x_MK: jax.Array, w_KN: jax.Array) -> jax.Array:
    return jnp.dot(x_MK, w_KN)


def _matmul_fwd(x_MK, w_KN):
    return _matmul(x_MK, w_KN), (x_MK, w_KN)


def _matmul_bwd(residuals, g_MN):
    x_MK, w_KN = residuals
    dx_MK = jax.lax.dot_general(g_MN, w_KN, (((1,), (1,)), ((), ())))
    # x^T g, x first: XLA's CPU backend runs it without copying the cotangent g (see Linear).
    dw_KN = jax.lax.dot_general(x_MK, g_MN, (((0,), (0,)), ((), ())))
    return dx_MK, dw_KN


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


class Linear(nn.Module):
    """A dense layer from the trailing ``in_dims`` axes of the input to ``features``.

    The parameters, their names (``kernel``, ``bias``), shapes and initial values are those of
    ``nn.DenseGeneral`` (kernel ``(*in_shape, *features)``, initialised flat then reshaped); so is
    the result. The difference is the backward pass, which is written out: JAX's own rule
    computes the kernel gradient as ``(g^T x)^T``, and XLA's CPU backend turns that into a copy
    that transposes the cotangent g, fused with whatever elementwise backward produced g (the
    GELU's, in the MLP) into a slow loop that is not vectorised (25% of the step time of the
    shakespeare_char recipe). ``x^T g`` instead runs as one matmul with no copy (the step went
    from 46 to 31.6 CPU-ms). Any leading axes are flattened into one, so every matmul is 2-D.

    Attributes:
      features: output shape, e.g. D, or (N, H) for the heads of an attention projection.
      kernel_axes: logical axis names of the kernel (input axes then feature axes).
      bias_axes: logical axis names of the bias (the feature axes).
      in_dims: how many trailing axes of the input are contracted.
      std: standard deviation of the normal kernel initialisation.
      use_bias: add a (zero-initialised) bias.
      dtype: compute dtype; the input, kernel and bias are cast to it.
      param_dtype: dtype of the parameters.
    """

    features: int | tuple[int, ...]
    kernel_axes: tuple[str, ...]
    bias_axes: tuple[str, ...]
    in_dims: int = 1
    std: float = INIT_STD
    use_bias: bool = True
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Args: x of shape (..., *in_shape). Returns: (..., *features), in ``dtype``."""
        features = (self.features,) if isinstance(self.features, int) else tuple(self.features)
        lead, in_shape = x.shape[: -self.in_dims], x.shape[-self.in_dims :]
        k, n = math.prod(in_shape), math.prod(features)
        kernel_init = dense_init(self.kernel_axes, self.std)

        def flat_init(rng, shape, dtype):  # as nn.DenseGeneral: draw (K, N), then reshape
            box = kernel_init(rng, (k, n), dtype)
            return nn.meta.replace_boxed(box, box.unbox().reshape(shape))

        kernel = self.param("kernel", flat_init, in_shape + features, self.param_dtype)
        y_MN = _matmul(x.reshape(-1, k).astype(self.dtype), kernel.reshape(k, n).astype(self.dtype))
        y = y_MN.reshape(*lead, *features)
        if self.use_bias:
            bias = self.param("bias", zeros_init(self.bias_axes), features, self.param_dtype)
            y = y + bias.astype(self.dtype)
        return y


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
        dense = dict(use_bias=cfg.bias, dtype=cfg.jnp_dtype, param_dtype=cfg.jnp_param_dtype)
        h_BTF = Linear(cfg.mlp_width, ("embed", "mlp"), ("mlp",), name="fc", **dense)(x_BTD)
        h_BTF = gelu(h_BTF)
        y_BTD = Linear(
            cfg.n_embd, ("mlp", "embed"), ("embed",), std=residual_std(cfg), name="proj", **dense
        )(h_BTF)
        return nn.Dropout(cfg.dropout)(y_BTD, deterministic=deterministic).astype(
            jnp.dtype(cfg.dtype)
        )
