"""What training measures: bits per byte, MFU and the matmul peak behind it (tutorial part 9).

* Bits per byte: total nats / ln 2 / total UTF-8 bytes of the evaluated text. A loss in nats per
  token depends on how much text a token holds; bits per byte does not, so runs with different
  vocabularies compare on one axis. Special tokens (``<eos>`` between documents) hold no text:
  their targets are left out of both the nats and the bytes.
* MFU (model FLOPs utilisation): achieved training FLOPs (``GPTConfig.flops_per_token`` times
  tokens per second) over the peak matrix-multiply throughput measured on this machine by
  `measure_matmul_flops`, not a datasheet figure: on a CPU there is no honest datasheet figure.

* `all_finite`: whether a pytree (the parameters and optimizer moments) holds only finite
  floats, the check the loop makes before every checkpoint so that no NaN is ever saved.

The values are computed here; the run directory writes them (``RunDir.metrics_writer``).
"""

import math
import time

import jax
import jax.numpy as jnp


def bits_per_byte(nats: float, num_bytes: float) -> float:
    """Converts a total loss in nats over ``num_bytes`` bytes of text into bits per byte."""
    return float(nats) / math.log(2) / float(num_bytes) if num_bytes else float("nan")


def eval_summary(sums: dict[str, float]) -> dict[str, float]:
    """Loss, perplexity and bits per byte from the sums of ``gptjax.training.step.eval_sums``."""
    loss = float(sums["nats"]) / float(sums["tokens"])
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),  # exp overflows past ~709
        "bpb": bits_per_byte(sums["text_nats"], sums["text_bytes"]),
    }


def all_finite(tree) -> jax.Array:
    """True when every float leaf of ``tree`` is finite (a bool scalar; jit it: one reduction).

    Integer leaves (the step, the dropout key) are never NaN and are skipped.
    """
    checks = [
        jnp.isfinite(leaf).all()
        for leaf in jax.tree.leaves(tree)
        if jnp.issubdtype(leaf.dtype, jnp.inexact)
    ]
    return jnp.stack(checks).all() if checks else jnp.asarray(True)


def mfu(flops_per_token: float, tokens_per_sec: float, peak_flops: float) -> float:
    """Model FLOPs utilisation, a fraction in [0, 1] (in principle)."""
    return flops_per_token * tokens_per_sec / peak_flops


def measure_matmul_flops(n: int = 2048, repeats: int = 5, dtype=jnp.float32) -> float:
    """Measures this device's matrix-multiply throughput in ``dtype`` in FLOP/s.

    Times a jitted ``n x n`` by ``n x n`` product (after one warm-up call) and keeps the best of
    ``repeats`` runs: the throughput the hardware can reach on a large, well-shaped matmul.
    """
    a = jnp.ones((n, n), dtype)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best
