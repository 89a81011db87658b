"""Compile time of the run's exact checks, at XLA's default and at LLVM level 0.

  python experiments/benchmarks/bench_check_compile.py

The training loop checks that the parameters and optimizer state are finite before each
evaluation and save, and each checkpoint stores a checksum per array; both results are booleans
or integers, so `gptjax.model.kernels.CHECK_COMPILER_OPTIONS` (LLVM level 0) compiles them. This
prints how long each takes to compile both ways on the train state of configs/speedrun_char.py
(Muon), one compilation each (after the train state's own, so LLVM is warm).
"""

import sys
import time
from pathlib import Path

import jax

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from gptjax.model import GPT, kernels  # noqa: E402
from gptjax.model.config import GPTConfig  # noqa: E402
from gptjax.runs import checkpoint  # noqa: E402
from gptjax.runs.experiment import config_from_file  # noqa: E402
from gptjax.training import step as ts  # noqa: E402
from gptjax.training.metrics import all_finite  # noqa: E402


def compile_seconds(fn, args, options) -> float:
    """Seconds to compile ``fn`` for ``args`` with ``options``, once (JAX caches the result, so
    a second compilation of the same function and options would cost nothing)."""
    start = time.perf_counter()
    jax.jit(fn, compiler_options=options).lower(*args).compile()
    return time.perf_counter() - start


def main() -> None:
    config = config_from_file(REPO / "configs/speedrun_char.py")
    model_config = GPTConfig(**config.model)
    tx, _ = ts.make_optimizer(**config.opt, total_steps=config.train.steps, kernels="fast")
    init = lambda: ts.create_train_state(GPT(model_config), tx, seed=0, block_size=64)  # noqa: E731
    state = jax.jit(init)()
    items = state.checkpoint_items()
    flat = {jax.tree_util.keystr(p): x for p, x in jax.tree.leaves_with_path(items)}
    print(f"the train state: {len(flat)} arrays")
    for name, fn, args in (
        ("all_finite (parameters and optimizer state)", all_finite, ((items["params"],
                                                                     items["opt_state"]),)),
        ("checkpoint checksums (every array)", checkpoint._checksums, (flat,)),
    ):  # fmt: skip
        default = compile_seconds(fn, args, None)
        quick = compile_seconds(fn, args, kernels.CHECK_COMPILER_OPTIONS)
        print(f"  {name}: {default:.2f} s at XLA's default, {quick:.2f} s at LLVM level 0")


if __name__ == "__main__":
    main()
