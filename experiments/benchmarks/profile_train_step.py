"""Where the time of a training step goes, operation by operation (XLA:CPU).

  python experiments/benchmarks/profile_train_step.py [--config configs/shakespeare_char.py]

Compiles ``train_steps`` for the config's model, batch and ``train.steps_per_call``, with the
training loop's compiler options (random token batches: the speed of a step does not depend on the
text), runs a few calls under ``jax.profiler`` and adds up, per step, the time of every XLA
operation. Each operation is named in the compiled HLO with the source operation it comes from,
which gives its group:

* matmuls of the forward and backward passes: the attention projections (q, k, v, out), the
  attention scores and mix (the two einsums of ``gptjax.attention``), the MLP, the output layer;
* the other operations of the attention (mask, softmax, layout copies), the norms, the MLP's
  activation, the residual adds and the loss;
* the optimizer: everything outside the loss and its gradient (clipping, AdamW, the update).

It also prints the wall time per step and the sum of the operations' times. The two differ:
operations that do not depend on each other run at the same time on different threads (the sum
is then larger), and the gaps between operations are in the wall time only.

XLA:CPU only: its runtime marks each operation in the trace (``xla_cpu_enable_xprof_traceme``).
Timings are only meaningful on an otherwise idle machine.
"""

import argparse
import collections
import functools
import gzip
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from gptjax.model import GPT, kernels  # noqa: E402
from gptjax.runs.experiment import config_from_file  # noqa: E402
from gptjax.training.run_config import check_config  # noqa: E402
from gptjax.training.step import create_train_state, make_optimizer, train_steps  # noqa: E402

ATTENTION_EINSUMS = ("BTNH,BSNH->BNTS", "BNTS,BSNH->BTNH")


def op_sources(hlo_text: str) -> dict[str, str]:
    """HLO operation name -> the ``op_name`` metadata of the source operation it computes."""
    pattern = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = .*?metadata=\{op_name="([^"]*)"')
    return dict(m.groups() for m in map(pattern.match, hlo_text.splitlines()) if m)


def group(source: str) -> str:
    """The group of an operation, from its source ``op_name`` (see the module docstring)."""
    if "jvp(" not in source:
        return "optimizer (clipping, AdamW, update)"
    source = re.sub(r"blocks_\d+", "block", source)
    side = "backward" if "transpose(jvp(" in source else "forward"
    if source.endswith("dot_general"):
        if any(e in source for e in ATTENTION_EINSUMS):
            part = "attention scores and mix"
        elif "/attn/" in source:
            part = "attention projections"
        elif "/mlp/" in source:
            part = "MLP"
        else:
            part = "output layer"
        return f"matmul {side:8s} {part}"
    if "/attn/" in source:
        return "attention: mask, softmax, copies"
    if "/ln_" in source:
        return "norms"
    if "/mlp/" in source:
        return "MLP activation"
    return "other (embeddings, residual adds, loss)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs/shakespeare_char.py"))
    parser.add_argument("--calls", type=int, default=4, help="profiled calls")
    args = parser.parse_args()
    if jax.default_backend() != "cpu":
        sys.exit("this profile reads XLA:CPU's trace events; run it on the CPU backend")
    config = config_from_file(args.config)
    model_config = check_config(config)
    k, b, t = config.train.steps_per_call, config.train.batch_size, model_config.block_size

    tx, _ = make_optimizer(
        **config.opt, total_steps=config.train.steps, kernels=model_config.kernels
    )
    init = functools.partial(
        create_train_state, GPT(model_config), tx, seed=config.seed, block_size=t,
        grad_accum=config.train.grad_accum,
    )  # fmt: skip
    state = jax.jit(init)()
    rng = np.random.default_rng(0)
    batches = {
        name: jnp.asarray(rng.integers(0, model_config.vocab_size, (k, b, t)), jnp.int32)
        for name in ("inputs", "targets")
    }
    options = kernels.compiler_options("step", model_config.kernels) or {}
    step_fn = (
        jax.jit(train_steps, donate_argnums=0)
        .lower(state, batches)
        .compile({**options, "xla_cpu_enable_xprof_traceme": True})
    )
    sources = op_sources(step_fn.as_text())

    for _ in range(2):  # warm up
        state, metrics = step_fn(state, batches)
    jax.block_until_ready(metrics)
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
        start = time.perf_counter()
        for _ in range(args.calls):
            state, metrics = step_fn(state, batches)
        jax.block_until_ready(metrics)
        wall_ms = 1e3 * (time.perf_counter() - start) / (args.calls * k)
        jax.profiler.stop_trace()
        (trace_file,) = Path(trace_dir).rglob("perfetto_trace.json.gz")
        trace = json.loads(gzip.decompress(trace_file.read_bytes()))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace

    per_group: collections.Counter = collections.Counter()
    per_op: collections.Counter = collections.Counter()
    runs: collections.Counter = collections.Counter()
    for event in events:
        op = event.get("args", {}).get("hlo_op")
        if event.get("ph") == "X" and op in sources and event.get("name") == op:
            per_group[group(sources[op])] += event["dur"]
            per_op[op] += event["dur"]
            runs[op] += 1
    # Most operations run once per step. The trace buffer can fill up and drop the last events,
    # so count the steps it holds rather than assume all of them.
    steps = statistics.median(runs.values())
    total_ms = sum(per_group.values()) / 1e3 / steps

    print(f"\n{Path(args.config).name}: batch {b} x {t} tokens, {k} steps per call, "
          f"{steps:.0f} of {args.calls * k} profiled steps in the trace")  # fmt: skip
    print(f"wall time per step {wall_ms:.2f} ms (under the profiler); sum of the operations' "
          f"times {total_ms:.2f} ms, {len(per_op)} operations per step\n")  # fmt: skip
    for name, us in sorted(per_group.items(), key=lambda item: -item[1]):
        ms = us / 1e3 / steps
        print(f"  {name:45s} {ms:6.2f} ms  {ms / total_ms:5.1%}")
    print("\nlongest operations (ms per step, source):")
    for op, us in per_op.most_common(8):
        where = sources[op].split("closed_call/")[-1]  # drop the scan and step wrappers
        print(f"  {us / 1e3 / steps:6.3f}  {op:20s} {where}")


if __name__ == "__main__":
    main()
