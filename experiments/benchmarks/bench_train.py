"""Training speed on the shakespeare_char recipe (nanoGPT's CPU recipe), with MFU.

  python experiments/benchmarks/bench_train.py [--steps 2000] [--steps_per_call 25] [--dtype D]
      [--kernels plain|fast]

Runs the full ``configs/shakespeare_char.py`` training (tokenizer, compile, evaluations every 250
steps, checkpoints) into a temporary run directory and prints:

* the float32 matmul throughput measured on this machine in this run (the MFU denominator);
* steady-state tokens/s (median over logging intervals, compile and evaluations excluded) and the
  matching ms/step and MFU;
* the wall time of the whole run (compile and evaluations included) and the final validation loss,
  and where that wall time went: the steps at steady-state speed, compilation (tracing, lowering and
  XLA, summed from ``jax.monitoring``'s compile events) and the rest (9 evaluations, checkpoints,
  data, the matmul measurement, the first calls' warm-up);
* the CPU time of this process over the whole run, per step (all threads; compile, evaluations and
  the host side of the loop included): unlike wall time, it barely moves when other jobs share
  the cores, so it is the figure to compare code changes on a busy machine.

Reference (nanoGPT, PyTorch CPU, same 2-core machine): 33 ms/step, ~23,000 tokens/s, 71 s for the
2000 steps, validation loss 1.886. Needs tinyshakespeare (``$GPTJAX_DATA_DIR`` or a download).
Timings are only meaningful on an otherwise idle machine.
"""

import argparse
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from gptjax.runs.experiment import config_from_file  # noqa: E402
from gptjax.runs.run import load_run  # noqa: E402
from gptjax.training.loop import train_and_evaluate  # noqa: E402
from gptjax.training.metrics import measure_matmul_flops  # noqa: E402

NANOGPT = {"ms_per_step": 33.0, "tokens_per_sec": 23_000, "wall_s": 71.0, "val_loss": 1.886}
# jax.monitoring events that together make up the cost of compiling one function.
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--steps_per_call", type=int, default=None)
    parser.add_argument("--dtype", default=None, help="model compute dtype (float32, bfloat16)")
    parser.add_argument("--kernels", default=None, help="plain or fast (the config's: fast)")
    args = parser.parse_args()
    config = config_from_file(REPO / "configs/shakespeare_char.py")
    config.train.steps = args.steps
    if args.steps_per_call:
        config.train.steps_per_call = args.steps_per_call
    if args.dtype:
        config.model.dtype = args.dtype
    if args.kernels:
        config.model.kernels = args.kernels
    config.sample.num_samples = 0  # time the training, not the sampling

    peak = measure_matmul_flops()
    compile_s: collections.Counter = collections.Counter()

    def on_duration(event, duration, **kwargs):
        if event in COMPILE_EVENTS:
            compile_s[event] += duration

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    with tempfile.TemporaryDirectory() as workdir:
        start, cpu_start = time.perf_counter(), time.process_time()
        train_and_evaluate(config, workdir)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        run = load_run(workdir)
        rows, info = run.metrics, run.info
    # Every row logged by one call carries that call's rate; the first call's includes compilation.
    first_call = config.train.steps_per_call
    timed = [r for r in rows if "tokens_per_sec" in r]
    steady = statistics.median(
        [r["tokens_per_sec"] for r in timed if r["step"] > first_call]
        or [r["tokens_per_sec"] for r in timed]  # a run of one call
    )
    tokens_per_step = config.train.batch_size * config.model.block_size
    final = [r for r in rows if "val_loss" in r][-1]
    flops = info["flops_per_token"] * steady
    print(f"\nmodel dtype {config.model.dtype}, kernels {config.model.kernels}, "
          f"{config.train.steps_per_call} steps per call")  # fmt: skip
    print(f"machine: {info['device_kind']}, JAX {info['jax_version']}, {info['devices']}")
    print(f"matmul peak (float32, 2048^3, measured now): {peak / 1e9:,.0f} GFLOP/s")
    print(f"steady state: {steady:,.0f} tokens/s, {1e3 * tokens_per_step / steady:.1f} ms/step, "
          f"{flops / 1e9:,.0f} GFLOP/s, MFU {flops / peak:.1%}")  # fmt: skip
    print(f"whole run ({config.train.steps} steps, compile + evals + checkpoints): {wall:.1f} s")
    steps_s = config.train.steps * tokens_per_step / steady
    compiled = sum(compile_s.values())
    print(f"  = {config.train.steps} steps at steady speed {steps_s:.1f} s + compilation "
          f"{compiled:.1f} s (XLA {compile_s[COMPILE_EVENTS[2]]:.1f} s) + the rest "
          f"{wall - steps_s - compiled:.1f} s")  # fmt: skip
    print(f"process CPU time (all threads, whole run): {cpu:.1f} s, "
          f"{1e3 * cpu / config.train.steps:.1f} CPU-ms per step")  # fmt: skip
    print(f"validation loss at step {final['step']}: {final['val_loss']:.4f} "
          f"({final['val_bpb']:.4f} bits/byte)")  # fmt: skip
    print(f"nanoGPT reference: {NANOGPT}")
    print(
        f"vs reference: {steady / NANOGPT['tokens_per_sec']:.2f}x tokens/s, "
        f"{wall / NANOGPT['wall_s']:.2f}x wall time"
    )


if __name__ == "__main__":
    main()
