"""What training reports: bits per byte, MFU and the metric writers (tutorial part 9).

* Bits per byte: total nats / ln 2 / total UTF-8 bytes of the evaluated text. A loss in nats per
  token depends on how much text a token holds; bits per byte does not, so runs with different
  vocabularies compare on one axis. Special tokens (``<eos>`` between documents) hold no text:
  their targets are left out of both the nats and the bytes.
* MFU (model FLOPs utilisation): achieved training FLOPs (``GPTConfig.flops_per_token`` times
  tokens per second) over the peak matrix-multiply throughput measured on this machine by
  `measure_matmul_flops`, not a datasheet figure: on a CPU there is no honest datasheet figure.
* Writers: one JSON object per line in ``metrics.jsonl`` plus TensorBoard event files in ``tb/``.
"""

import json
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"


def bits_per_byte(nats: float, num_bytes: float) -> float:
    """Converts a total loss in nats over ``num_bytes`` bytes of text into bits per byte."""
    return float(nats) / math.log(2) / float(num_bytes) if num_bytes else float("nan")


def eval_summary(sums: dict[str, float]) -> dict[str, float]:
    """Loss, perplexity and bits per byte from the sums of `train_step.eval_sums`."""
    loss = float(sums["nats"]) / float(sums["tokens"])
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),  # exp overflows past ~709
        "bpb": bits_per_byte(sums["text_nats"], sums["text_bytes"]),
    }


def mfu(flops_per_token: float, tokens_per_sec: float, peak_flops: float) -> float:
    """Model FLOPs utilisation, a fraction in [0, 1] (in principle)."""
    return flops_per_token * tokens_per_sec / peak_flops


def measure_matmul_flops(n: int = 2048, repeats: int = 5, dtype=jnp.float32) -> float:
    """Measures this device's float32 matrix-multiply throughput in FLOP/s.

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


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic | jax.Array):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN; "nan" and "inf" stay readable
    return value


class MetricsWriter:
    """Appends metrics to ``metrics.jsonl`` and TensorBoard event files.

    On resume from step s, lines after s (logged by a run that died before its next checkpoint)
    are dropped and TensorBoard purges them too, so every step appears once.
    """

    def __init__(self, workdir: Path, resume_step: int = 0):
        from tensorboardX import SummaryWriter

        self.path = Path(workdir) / METRICS_FILE
        if self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= resume_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
        self._file = open(self.path, "a")  # noqa: SIM115 (closed in close())
        self._tb = SummaryWriter(
            str(Path(workdir) / TB_DIR), purge_step=resume_step + 1 if resume_step else None
        )

    def write(self, step: int, values: dict[str, Any]) -> None:
        """Writes one record: ``{"step": step, **values}``."""
        record = {"step": int(step), **{k: _plain(v) for k, v in values.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float):
                self._tb.add_scalar(key, value, global_step=int(step))

    def close(self) -> None:
        self._file.close()
        self._tb.close()
