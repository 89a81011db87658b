"""Evaluation: the exact loss of a model on a whole split, in bounded memory (tutorial part 9).

The validation loss is the mean cross-entropy over *every* target token of the validation
split, not an estimate from random windows: the same checkpoint always gives the same number,
and two runs on the same split are compared on the same tokens.

The split (token ids ``x_0 .. x_{N-1}``) is cut into non-overlapping windows of ``T`` inputs,
``x_{s} .. x_{s+T-1}`` predicting ``x_{s+1} .. x_{s+T}``, starting at ``s = 0, T, 2T, ...``. The
targets left over at the end (fewer than ``T``) get one last window, ending at the split's
end, whose first targets (already counted) have weight 0: every target ``x_1 .. x_{N-1}`` is
counted exactly once. With a token budget (``eval.max_tokens``), whole windows spread evenly
over the split are taken instead, ``budget // T`` of them.

The windows go through one jitted step ``eval.device_batch_size`` per device at a time (the last
micro-batch is padded with weight-0 rows), and the step returns four sums: memory does not grow
with the amount evaluated, and the host adds the sums up in float64.

  loss = nats / tokens                       (nats per token)
  perplexity = exp(loss)
  bits per byte = text_nats / ln 2 / text_bytes   (special tokens, 0 bytes, left out)
"""

import dataclasses
import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from gptjax.training import sharding
from gptjax.training.metrics import eval_summary
from gptjax.training.step import token_losses

# Micro-batches dispatched ahead of the one being read: enough to keep the device busy while
# the host cuts the next windows, few enough that the inputs on the device stay bounded.
_IN_FLIGHT = 2


@dataclasses.dataclass(frozen=True)
class Windows:
    """Where each evaluation window starts, and how many of its first targets to skip.

    Attributes:
      starts: ``starts[i]`` is the first input id of window i (its targets start one later).
      skip: ``skip[i]`` leading targets of window i have weight 0 (counted by an earlier window;
        only the last window of a whole split has any).
      block_size: T, the inputs (and targets) of each window.
    """

    starts: np.ndarray
    skip: np.ndarray
    block_size: int

    @property
    def tokens(self) -> int:
        """How many targets the windows count: ``block_size`` each, less the skipped ones."""
        return int(self.block_size * len(self.starts) - self.skip.sum())


def windows(n_ids: int, block_size: int, max_tokens: int = 0) -> Windows:
    """The evaluation windows of a split of ``n_ids`` token ids (see the module docstring).

    Args:
      n_ids: the split's length; it must hold one window, ``block_size + 1`` ids.
      block_size: T, the inputs per window.
      max_tokens: 0 for every target of the split; else about this many targets, in
        ``max_tokens // block_size`` (at least one) whole windows spread evenly over the split.
    """
    T = block_size
    full = (n_ids - 1) // T  # whole windows at 0, T, 2T, ...
    assert full >= 1, f"a split of {n_ids} ids holds no window of {T + 1}"
    if max_tokens and max_tokens // T < full:
        k = max(1, max_tokens // T)
        picked = (np.arange(k, dtype=np.int64) * full) // k  # k of the full windows, spread out
        return Windows(picked * T, np.zeros(k, np.int64), T)
    starts = np.arange(full, dtype=np.int64) * T
    skip = np.zeros(full, np.int64)
    rest = (n_ids - 1) - full * T  # targets after the last whole window
    if rest:
        starts = np.append(starts, n_ids - 1 - T)
        skip = np.append(skip, T - rest)
    return Windows(starts, skip, T)


def micro_batches(
    ids_N: np.ndarray, w: Windows, block_size: int, batch_size: int, rows: slice | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """The windows as micro-batches ``{"inputs", "targets": int32 [B, T], "weights": f32 [B, T]}``.

    Args:
      ids_N: the split's token ids.
      w: its windows.
      block_size: T.
      batch_size: B, windows per micro-batch (the whole mesh's); the last is padded with rows of
        weight 0.
      rows: the rows of each micro-batch this host builds (`sharding.host_rows`); all by default.
    """
    T = block_size
    offsets = np.arange(T + 1)
    position = np.arange(T)
    for first in range(0, len(w.starts), batch_size):
        starts = w.starts[first : first + batch_size]
        skip = w.skip[first : first + batch_size]
        pad = batch_size - len(starts)
        windows_BT1 = ids_N[starts[:, None] + offsets].astype(np.int32)
        weights_BT = (position[None, :] >= skip[:, None]).astype(np.float32)
        windows_BT1 = np.concatenate([windows_BT1, np.zeros((pad, T + 1), np.int32)])
        weights_BT = np.concatenate([weights_BT, np.zeros((pad, T), np.float32)])
        batch = {
            "inputs": windows_BT1[:, :-1],
            "targets": windows_BT1[:, 1:],
            "weights": weights_BT,
        }
        yield {k: v[rows] for k, v in batch.items()} if rows is not None else batch


def eval_sums(params, batch: dict[str, jax.Array], byte_lengths_V: jax.Array, *, apply_fn):
    """Weighted loss sums over one micro-batch, without dropout.

    Args:
      params: model parameters.
      batch: ``{"inputs", "targets", "weights"}``, each ``[B, T]``.
      byte_lengths_V: UTF-8 bytes per token, 0 for special tokens.
      apply_fn: the model's apply.

    Returns:
      ``nats`` and ``tokens`` over the weighted targets (their ratio is the mean loss),
      ``text_nats`` and ``text_bytes`` over those that are not special tokens.
    """
    losses_BT = token_losses(apply_fn, params, batch["inputs"], batch["targets"])
    weights_BT = batch["weights"]
    bytes_BT = byte_lengths_V[batch["targets"]] * weights_BT
    return {
        "nats": (losses_BT * weights_BT).sum(),
        "tokens": weights_BT.sum(),
        "text_nats": jnp.where(bytes_BT > 0, losses_BT, 0.0).sum(),
        "text_bytes": bytes_BT.sum(),
    }


class Evaluator:
    """Evaluates parameters on windows of a split, one jitted micro-batch at a time.

    Args:
      apply_fn: the model's apply.
      byte_lengths_V: UTF-8 bytes per token id (0 for specials), padded to the model's V.
      mesh: the device mesh; each micro-batch is split over its data-parallel devices.
      block_size: T.
      device_batch_size: windows per device in one micro-batch.
      compiler_options: XLA options for the step (``kernels.compiler_options``).
    """

    def __init__(self, apply_fn, byte_lengths_V, mesh, block_size: int, device_batch_size: int,
                 compiler_options=None):  # fmt: skip
        self.mesh = mesh
        self.block_size = block_size
        self.batch_size = device_batch_size * sharding.data_parallel_size(mesh)
        self.bytes_V = sharding.replicated(np.asarray(byte_lengths_V), mesh)
        self.step = jax.jit(
            functools.partial(eval_sums, apply_fn=apply_fn), compiler_options=compiler_options
        )

    def sums(self, params, ids_N: np.ndarray, w: Windows) -> dict[str, float]:
        """The four sums of `eval_sums` over every window of ``w``, added up in float64."""
        rows = sharding.host_rows(self.batch_size)
        results, total = [], dict.fromkeys(("nats", "tokens", "text_nats", "text_bytes"), 0.0)
        for batch in micro_batches(ids_N, w, self.block_size, self.batch_size, rows):
            batch = sharding.global_batch(batch, self.mesh)
            results.append(self.step(params, batch, self.bytes_V))
            if len(results) > _IN_FLIGHT:  # wait for an older one: bounded inputs in flight
                for key, value in jax.device_get(results.pop(0)).items():
                    total[key] += float(value)
        for sums in jax.device_get(results):
            for key, value in sums.items():
                total[key] += float(value)
        return total

    def __call__(self, params, ids_N: np.ndarray, w: Windows) -> dict[str, float]:
        """Loss (nats per token), perplexity, bits per byte and the tokens counted."""
        sums = self.sums(params, ids_N, w)
        return {**eval_summary(sums), "tokens": int(sums["tokens"])}
