"""The speed kernels: faster computations of what the tutorial modules compute plainly.

Nothing here is part of the tutorial. Each function or layer below computes the same thing as a
plain counterpart in ``gptjax.model`` or ``gptjax.training`` (tested equal, in values and in
gradients), only faster on some backend. ``GPTConfig.kernels`` chooses:

* ``"plain"``: the tutorial's code everywhere (``nn.DenseGeneral``, ``jax.nn.gelu``, attention as
  scores, mask, softmax, weighted sum, ``optax.clip_by_global_norm``, XLA's default compile).
* ``"fast"``: the kernels of this module wherever they apply.

  kernel                    plain counterpart                 what it changes
  DenseGeneral              nn.DenseGeneral                   backward pass written as x^T g
  gelu                      jax.nn.gelu(approximate=True)     backward pass recomputes tanh
  chunked_attention         attention over a whole KV cache   reads only the filled slots
  cudnn_causal_attention    attention (scores, softmax, mix)  cuDNN's fused kernel (GPU, 16-bit)
  clip_by_global_norm       optax.clip_by_global_norm         one multiply, not a division
  muon_kernel.muon          optax.contrib.muon                2-D matmuls, not a vmap of 1
  compiler_options          XLA's defaults                    XLA:CPU options for the steps
  check_compiler_options    XLA's defaults                    quicker compiles of exact checks

What ``"fast"`` gives up: `DenseGeneral` and `gelu` are ``jax.custom_vjp`` functions, which have
no forward-mode derivative, so ``jax.jvp``, ``jax.jacfwd`` and Hessian-vector products
(forward-over-reverse) fail through the model ("can't apply forward-mode autodiff (jvp) to a
custom_vjp function"); `chunked_attention` is a ``fori_loop`` with a traced trip count, so it has
no reverse-mode derivative either (it only serves decoding, which needs none). Use ``"plain"``
for curvature, sharpness or any other forward-mode study. The results differ from the plain ones
only by float rounding. Measured speed-ups, with their commands and machines, are in
docs/performance.md.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

KERNELS = ("plain", "fast")


# --- Dense layer -------------------------------------------------------------------------------


@jax.custom_vjp
def matmul(x_MK: jax.Array, w_KN: jax.Array) -> jax.Array:
    """``x @ w`` for 2-D operands, with the kernel gradient computed as ``x^T g``.

    JAX's own rule computes the kernel gradient as ``(g^T x)^T``; XLA's CPU backend turns that
    into a copy that transposes the cotangent g, fused with whatever elementwise backward produced
    g (the GELU's, in the MLP) into a loop that is not vectorised. ``x^T g`` runs as one matmul
    with no copy.
    """
    return jnp.dot(x_MK, w_KN)


def _matmul_fwd(x_MK, w_KN):
    return matmul(x_MK, w_KN), (x_MK, w_KN)


def _matmul_bwd(residuals, g_MN):
    x_MK, w_KN = residuals
    dx_MK = jax.lax.dot_general(g_MN, w_KN, (((1,), (1,)), ((), ())))
    dw_KN = jax.lax.dot_general(x_MK, g_MN, (((0,), (0,)), ((), ())))  # x^T g, x first
    return dx_MK, dw_KN


matmul.defvjp(_matmul_fwd, _matmul_bwd)


class DenseGeneral(nn.Module):
    """``nn.DenseGeneral`` over trailing axes, computed through `matmul`.

    A drop-in for the attributes used here: the parameters (``kernel`` of shape
    ``(*in_shape, *features)`` drawn flat then reshaped, ``bias`` of shape ``features``), their
    initial values and the result are those of ``nn.DenseGeneral``; any leading axes are
    flattened into one, so every product is 2-D.

    Attributes:
      features: output shape, e.g. D, or (N, H) for the heads of an attention projection.
      axis: the trailing input axes contracted: -1, or (-2, -1).
      use_bias: add a bias.
      dtype: compute dtype; input, kernel and bias are cast to it.
      param_dtype: dtype of the parameters.
      kernel_init: initialiser of the kernel, called with the flat (K, N) shape.
      bias_init: initialiser of the bias.
    """

    features: int | tuple[int, ...]
    axis: int | tuple[int, ...] = -1
    use_bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Args: x of shape (..., *in_shape). Returns: (..., *features), in ``dtype``."""
        features = (self.features,) if isinstance(self.features, int) else tuple(self.features)
        axis = (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
        in_dims = len(axis)
        if sorted(a % x.ndim for a in axis) != list(range(x.ndim - in_dims, x.ndim)):
            raise ValueError(f"axis={self.axis} must name the trailing axes of the input")
        lead, in_shape = x.shape[:-in_dims], x.shape[-in_dims:]
        k, n = math.prod(in_shape), math.prod(features)

        def flat_init(rng, shape, dtype):  # as nn.DenseGeneral: draw (K, N), then reshape
            kernel = self.kernel_init(rng, (k, n), dtype)
            if isinstance(kernel, nn.meta.AxisMetadata):
                return nn.meta.replace_boxed(kernel, kernel.unbox().reshape(shape))
            return kernel.reshape(shape)

        kernel = self.param("kernel", flat_init, in_shape + features, self.param_dtype)
        y_MN = matmul(x.reshape(-1, k).astype(self.dtype), kernel.reshape(k, n).astype(self.dtype))
        y = y_MN.reshape(*lead, *features)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, features, self.param_dtype)
            y = y + bias.astype(self.dtype).reshape((1,) * len(lead) + features)
        return y


# --- GELU --------------------------------------------------------------------------------------

_GELU_C = math.sqrt(2.0 / math.pi)


@jax.custom_vjp
def gelu(x: jax.Array) -> jax.Array:
    """``jax.nn.gelu(x, approximate=True)`` with its derivative written out.

    JAX's own rule keeps the tanh of the forward pass for the backward one, so XLA:CPU writes it
    to memory in a pass of its own beside the output; recomputing it in the backward pass costs a
    few operations per element and saves that pass.
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


# --- Attention ---------------------------------------------------------------------------------

# Key slots per iteration of `chunked_attention`. Caches of at most this many slots are read whole
# by the plain attention: the loop's overhead would then buy nothing.
DECODE_CHUNK = 128


def chunked_attention(
    q_BTNH: jax.Array,
    k_BSNH: jax.Array,
    v_BSNH: jax.Array,
    q_positions_T: jax.Array,
    chunk: int,
) -> jax.Array:
    """Causal attention over a KV cache that reads only the slots written so far.

    The same result as ``reference_attention(q, k, v, causal_mask(q_positions_T, S))``, computed
    chunk by chunk of key slots with a running (online) softmax, for only as many chunks as the
    last query position needs. The trip count is a traced value, so one compiled step serves every
    cache length while the work grows with the current length, not with S. Forward only.

    Args:
      q_BTNH: queries of the new tokens.
      k_BSNH: the whole key cache, new keys already written.
      v_BSNH: the whole value cache.
      q_positions_T: int32 absolute positions of the queries, increasing.
      chunk: key slots per iteration (at most S).

    Returns:
      out_BTNH in the dtype of the values.
    """
    b, t, n, h = q_BTNH.shape
    num_slots = k_BSNH.shape[1]
    assert chunk <= num_slots, (chunk, num_slots)
    scale = 1.0 / jnp.sqrt(jnp.float32(h))
    num_chunks = q_positions_T[-1] // chunk + 1

    def body(i, carry):
        max_BNT, sum_BNT, acc_BTNH = carry
        # The last chunk may overhang the cache: slide it back and mask the slots seen already.
        first = jnp.minimum(i * chunk, num_slots - chunk)
        k_chunk = jax.lax.dynamic_slice_in_dim(k_BSNH, first, chunk, axis=1)
        v_chunk = jax.lax.dynamic_slice_in_dim(v_BSNH, first, chunk, axis=1)
        slots_S = first + jnp.arange(chunk, dtype=jnp.int32)
        mask_TS = (slots_S[None, :] <= q_positions_T[:, None]) & (slots_S[None, :] >= i * chunk)
        scores_BNTS = jnp.einsum(
            "BTNH,BSNH->BNTS", q_BTNH, k_chunk, preferred_element_type=jnp.float32
        )
        scores_BNTS = jnp.where(mask_TS[None, None], scores_BNTS * scale, -jnp.inf)
        new_max_BNT = jnp.maximum(max_BNT, scores_BNTS.max(axis=-1))
        # Chunk 0 always holds slot 0, which every query sees, so new_max is finite from there on.
        probs_BNTS = jnp.exp(scores_BNTS - new_max_BNT[..., None])
        rescale_BNT = jnp.exp(max_BNT - new_max_BNT)
        sum_BNT = sum_BNT * rescale_BNT + probs_BNTS.sum(axis=-1)
        acc_BTNH = acc_BTNH * jnp.transpose(rescale_BNT, (0, 2, 1))[..., None] + jnp.einsum(
            "BNTS,BSNH->BTNH", probs_BNTS, v_chunk.astype(jnp.float32)
        )
        return new_max_BNT, sum_BNT, acc_BTNH

    init = (
        jnp.full((b, n, t), -jnp.inf, jnp.float32),
        jnp.zeros((b, n, t), jnp.float32),
        jnp.zeros((b, t, n, h), jnp.float32),
    )
    _, sum_BNT, acc_BTNH = jax.lax.fori_loop(0, num_chunks, body, init)
    return (acc_BTNH / jnp.transpose(sum_BNT, (0, 2, 1))[..., None]).astype(v_BSNH.dtype)


def cudnn_applies(q_BTNH: jax.Array) -> bool:
    """Whether cuDNN's fused attention takes these queries: a GPU, 16-bit floats, head size ok."""
    head_size = q_BTNH.shape[-1]
    return (
        jax.default_backend() == "gpu"
        and q_BTNH.dtype in (jnp.bfloat16, jnp.float16)
        and head_size % 8 == 0
        and head_size <= 128
    )


def cudnn_causal_attention(q_BTNH: jax.Array, k_BTNH: jax.Array, v_BTNH: jax.Array) -> jax.Array:
    """Plain causal attention (query t sees keys 0..t) through cuDNN's fused kernel.

    Call it only where `cudnn_applies`; it has no dropout of its own.
    """
    return jax.nn.dot_product_attention(
        q_BTNH, k_BTNH, v_BTNH, is_causal=True, implementation="cudnn"
    )


# --- Optimizer ---------------------------------------------------------------------------------


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """``optax.clip_by_global_norm`` as one scalar factor ``min(1, max_norm / norm)``.

    optax divides every element by the norm, and XLA:CPU does not copy a division into each of its
    consumers, so each parameter's clipped gradient became one more pass over memory before
    AdamW's moment updates read it. One factor, computed once, fuses into those updates instead.
    Equal to optax's below ``max_norm``, equal to float rounding above it; the state is optax's
    (empty), so checkpoints are interchangeable.
    """

    def update(updates, state, params=None):
        del params
        norm = optax.tree.norm(updates)
        factor = jnp.where(norm < max_norm, 1.0, max_norm / norm)
        return jax.tree.map(lambda g: g * factor.astype(g.dtype), updates), state

    return optax.GradientTransformation(optax.init_empty_state, update)


# --- Compiler options --------------------------------------------------------------------------

# Initialisation runs once, but its compile time is part of every run, most of it LLVM optimising
# the random-number code of each initialiser. LLVM's level 1 compiles it faster and gives
# bit-identical parameters (tested); level 0 is faster still but changes them.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}

# XLA:CPU vectorises its own loops (elementwise operations, reductions) 256 bits wide by default,
# also where AVX-512 registers hold 512. 512 is faster for the training and evaluation steps; only
# the order in which vectorised sums add up changes (tested).
STEP_COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": 512}


# Checks whose results are integers or booleans (checkpoint checksums, "is every parameter
# finite") come out the same whatever LLVM does with them, so they compile at its level 0, the
# fastest to compile (docs/performance.md has the figures).
CHECK_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def check_compiler_options() -> dict[str, Any] | None:
    """XLA options for the integer and boolean checks: `CHECK_COMPILER_OPTIONS` on CPU."""
    return CHECK_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None


def compiler_options(what: str, kernels: str) -> dict[str, Any] | None:
    """XLA options for compiling ``what`` ("init" or "step"): only under "fast", only on CPU.

    Args:
      what: "init" (`create_train_state`) or "step" (training and evaluation steps).
      kernels: ``GPTConfig.kernels``.

    Returns:
      The options for ``jax.jit(..., compiler_options=...)``, or None for XLA's defaults.
    """
    options = {"init": INIT_COMPILER_OPTIONS, "step": STEP_COMPILER_OPTIONS}[what]
    return options if kernels == "fast" and jax.default_backend() == "cpu" else None
