"""The token ledger: how many tokens a run has trained on (tutorial part 9).

One definition, used by the trainer's ``tokens_seen`` and by the experiments' training budget,
so that the two always agree. ``train.batch_size`` is the whole batch of one optimisation step,
in sequences of ``model.block_size`` tokens; ``train.grad_accum`` only cuts that batch into
micro-batches, so it does not multiply the count.

This module imports nothing, so the reports can count tokens without loading JAX.
"""

from collections.abc import Mapping
from typing import Any


def tokens_per_step(batch_size: int, block_size: int) -> int:
    """Tokens one optimisation step trains on: ``batch_size`` sequences of ``block_size``.

    >>> tokens_per_step(16, 64), tokens_per_step(8, 64)   # 16 x 1 and 8 x 2 micro-batches
    (1024, 512)
    """
    return batch_size * block_size


def tokens_seen(config: Mapping[str, Any], step: int) -> int:
    """Tokens trained on after ``step`` steps of a run, from its flattened config.

    Args:
      config: the config flattened to dotted keys (``"train.batch_size" -> 16``), as
        ``gptjax.runs.run.flatten`` gives it.
      step: optimisation steps done.
    """
    return step * tokens_per_step(config["train.batch_size"], config["model.block_size"])
