"""The fast Muon: ``optax.contrib.muon``'s update with each matrix as a plain 2-D matmul chain.

A speed kernel, like those of `gptjax.model.kernels` (whose table lists it): ``kernels="fast"``
runs Muon through `muon` below, ``kernels="plain"`` through optax's own (tests/model/test_kernels.py
checks that the two give the same parameters). Which parameters Muon updates is decided in
``gptjax.training.step.muon_dimensions``.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib

# Muon's quintic Newton-Schulz coefficients (Jordan et al. 2024; optax.contrib.muon's default).
NS_COEFFS = (3.4445, -4.7750, 2.0315)


class MuonState(NamedTuple):
    count: jax.Array  # int32 scalar: updates done
    mu: Any  # the momentum of each matrix


def _newton_schulz(x_MN: jax.Array, steps: int, eps: float) -> jax.Array:
    """The quintic Newton-Schulz iteration of one 2-D matrix, as plain 2-D matmuls."""
    a, b, c = NS_COEFFS
    wide = x_MN.shape[0] <= x_MN.shape[1]
    x = x_MN if wide else x_MN.T
    x = x / (jnp.linalg.norm(x) + eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x if wide else x.T


def _orthogonalize(x: jax.Array, dims: Any, steps: int, eps: float) -> jax.Array:
    """Newton-Schulz on ``x`` seen as (batch, inputs, outputs) matrices, scaled for width."""
    as_tuple = lambda a: tuple(i % x.ndim for i in ((a,) if isinstance(a, int) else a))  # noqa: E731
    reduction, output = as_tuple(dims.reduction_axis), as_tuple(dims.output_axis)
    batch = tuple(i for i in range(x.ndim) if i not in reduction + output)
    order = batch + reduction + output
    sizes = [math.prod(x.shape[i] for i in axes) for axes in (batch, reduction, output)]
    matrices = x.transpose(order).reshape(sizes)
    done = jnp.stack([_newton_schulz(m, steps, eps) for m in matrices])
    done = done * math.sqrt(max(1.0, sizes[2] / sizes[1]))
    return done.reshape([x.shape[i] for i in order]).transpose(np.argsort(order))


def scale_by_muon(
    beta: float, dimensions: Any, steps: int = 5, eps: float = 1e-8
) -> optax.GradientTransformation:
    """``optax.contrib.scale_by_muon`` then its width scaling, one 2-D matmul chain per matrix.

    The same update as optax's (Nesterov momentum with bias correction, the Newton-Schulz
    iteration of `NS_COEFFS`, ``sqrt(max(1, fan_out / fan_in))``), to float rounding. optax runs
    the iteration under ``jax.vmap``, so even a lone matrix goes through XLA's batched matmul,
    which XLA:CPU runs far slower than a plain one on the small matrices of a small model
    (experiments/benchmarks/bench_optimizer_step.py measures both).

    Args:
      beta: the momentum's decay.
      dimensions: params -> a tree of ``optax.contrib.MuonDimensionNumbers``, how each parameter
        is seen as a matrix.
      steps: Newton-Schulz iterations.
      eps: added to the Frobenius norm the iteration starts by dividing by.
    """

    def init(params):
        return MuonState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        mu = jax.tree.map(lambda m, g: beta * m + (1 - beta) * g, state.mu, updates)
        count = optax.safe_increment(state.count)
        t = count.astype(jnp.float32)
        look_ahead = jax.tree.map(
            lambda m, g: beta * (m / (1 - beta ** (t + 1))) + (1 - beta) * (g / (1 - beta**t)),
            mu, updates,
        )  # fmt: skip
        leaves, treedef = jax.tree.flatten(look_ahead)
        dims = treedef.flatten_up_to(dimensions(look_ahead))
        done = [_orthogonalize(x, d, steps, eps) for x, d in zip(leaves, dims, strict=True)]
        return treedef.unflatten(done), MuonState(count, mu)

    return optax.GradientTransformation(init, update)


def muon(
    learning_rate, *, beta: float, weight_decay: float, adam_learning_rate, adam_b1: float,
    adam_b2: float, dimensions: Any,
) -> optax.GradientTransformation:  # fmt: skip
    """``optax.contrib.muon`` (Nesterov, AdamW without decay for the rest) over `scale_by_muon`.

    Args:
      learning_rate: Muon's rate (a schedule).
      beta: Muon's momentum.
      weight_decay: decoupled decay of Muon's matrices.
      adam_learning_rate, adam_b1, adam_b2: AdamW's, for the parameters Muon does not update.
      dimensions: params -> ``MuonDimensionNumbers`` per parameter, None for AdamW's.
    """
    is_dims = lambda x: x is None or isinstance(x, optax.contrib.MuonDimensionNumbers)  # noqa: E731

    def labels(params):
        return jax.tree.map(
            lambda d: "adam" if d is None else "muon", dimensions(params), is_leaf=is_dims
        )

    adam = optax.adamw(adam_learning_rate, adam_b1, adam_b2, 1e-8, weight_decay=0.0, nesterov=True)
    return optax.partition(
        {
            "muon": optax.chain(
                scale_by_muon(beta, dimensions),
                optax.add_decayed_weights(weight_decay),
                optax.scale_by_learning_rate(learning_rate),
            ),
            "adam": adam,
        },
        labels,
    )
