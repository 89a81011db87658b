"""What an optimizer costs per training step on the speedrun's model: AdamW, optax's Muon, ours.

  python experiments/benchmarks/bench_optimizer_step.py [--batch-size 12] [--steps 100]

Times the jitted training step of configs/speedrun_char.py's model (4 layers, width 128, rotary
positions, the fast model kernels, batch 12 x 64 tokens, 25 steps per call as one ``lax.scan``) on
random tokens, with three optimizers: AdamW, ``optax.contrib.muon`` (what ``kernels="plain"``
runs) and ``gptjax.model.muon_kernel.muon`` (``kernels="fast"``, the same update). Then it times
Muon's Newton-Schulz iteration alone over the model's 24 block matrices (16 of 128 x 128, 8 of
128 x 512) three ways: one plain 2-D chain per matrix (ours), the matrices stacked into two
batched iterations, and the plain chains in bfloat16. Prints the float32 matmul peak first.
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from gptjax.model import GPT, kernels, muon_kernel  # noqa: E402
from gptjax.model.config import GPTConfig  # noqa: E402
from gptjax.runs.experiment import config_from_file  # noqa: E402
from gptjax.training import step as ts  # noqa: E402
from gptjax.training.metrics import measure_matmul_flops  # noqa: E402

PER_CALL = 25


def best_of(fn, repeats: int) -> float:
    """The best wall time of ``repeats`` calls of ``fn`` (after a warm-up call), in seconds."""
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def step_ms(model_config: GPTConfig, opt: dict, optimizer: str, which: str, batch: int,
            calls: int) -> float:  # fmt: skip
    """Milliseconds per training step with ``optimizer`` run by ``which`` kernels."""
    tx, _ = ts.make_optimizer(
        **{**opt, "optimizer": optimizer}, total_steps=1000, kernels=which
    )  # fmt: skip
    init = lambda: ts.create_train_state(GPT(model_config), tx, seed=0, block_size=64)  # noqa: E731
    state = jax.jit(init)()
    options = kernels.compiler_options("step", model_config.kernels)
    run = jax.jit(ts.train_steps, compiler_options=options)
    tokens = np.random.default_rng(0).integers(0, 256, (PER_CALL, batch, 65), dtype=np.int32)
    batches = {"inputs": jnp.asarray(tokens[..., :-1]), "targets": jnp.asarray(tokens[..., 1:])}
    return 1e3 * best_of(lambda: run(state, batches)[1]["loss"], calls) / PER_CALL


def newton_schulz_ms(repeats: int) -> dict[str, float]:
    """Milliseconds for the iteration over the model's 24 block matrices, three ways."""
    rng = np.random.default_rng(0)
    square = [jnp.asarray(rng.normal(size=(128, 128)), jnp.float32) for _ in range(16)]
    wide = [jnp.asarray(rng.normal(size=(128, 512)), jnp.float32) for _ in range(8)]
    a, b, c = muon_kernel.NS_COEFFS

    def batched(x):
        x = x / (jnp.linalg.norm(x, axis=(-2, -1), keepdims=True) + 1e-8)
        for _ in range(5):
            gram = x @ jnp.swapaxes(x, -1, -2)
            x = a * x + (b * gram + c * gram @ gram) @ x
        return x

    one_by_one = jax.jit(lambda ms: [muon_kernel._newton_schulz(m, 5, 1e-8) for m in ms])
    stacked = jax.jit(lambda s, w: (batched(s), batched(w)))
    every = square + wide
    half = [m.astype(jnp.bfloat16) for m in every]
    s, w = jnp.stack(square), jnp.stack(wide)
    return {
        "one 2-D chain per matrix, float32 (ours)": best_of(lambda: one_by_one(every), repeats),
        "stacked, two batched iterations": best_of(lambda: stacked(s, w), repeats),
        "one 2-D chain per matrix, bfloat16": best_of(lambda: one_by_one(half), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--calls", type=int, default=5, help="timed calls, best kept")
    args = parser.parse_args()
    config = config_from_file(REPO / "configs/speedrun_char.py")
    model_config = GPTConfig(**config.model)
    opt = {k: v for k, v in config.opt.items() if k != "optimizer"}
    peak = measure_matmul_flops()
    print(f"float32 matmul peak (2048^3, measured now): {peak / 1e9:,.0f} GFLOP/s")
    print(f"training step, batch {args.batch_size} x 64, fast model kernels, best of "
          f"{args.calls} calls of {PER_CALL} steps:")  # fmt: skip
    for name, optimizer, which in (
        ("AdamW", "adamw", "fast"),
        ("Muon, optax.contrib.muon (kernels=plain)", "muon", "plain"),
        ("Muon, gptjax.model.muon_kernel.muon (kernels=fast)", "muon", "fast"),
    ):
        ms = step_ms(model_config, opt, optimizer, which, args.batch_size, args.calls)
        print(f"  {name}: {ms:.1f} ms/step")
    print("Newton-Schulz iteration alone (5 steps), the 24 block matrices:")
    for name, seconds in newton_schulz_ms(20).items():
        print(f"  {name}: {1e3 * seconds:.1f} ms")


if __name__ == "__main__":
    main()
