"""Benchmark of text generation (part 10): KV-cache decoding against full recomputation.

  python experiments/benchmarks/bench_generate.py [--config configs/shakespeare.py]
      [--new-tokens 256] [--prompt-tokens 1] [--samples 1 8] [--repeats 2]

Builds the model of the config's ``model`` group with random weights (speed does not depend on
the values) and generates greedily from a prompt of ``--prompt-tokens`` tokens (default 1):

* KV cache: ``gptjax.decode`` (prefill, then the compiled ``lax.while_loop``), for each batch
  size in ``--samples``: the first call's time (compilation included), the steady time (best of
  ``--repeats``) and tokens/s = samples x new tokens / steady time, in wall and in CPU seconds.
* Full recomputation, batch 1: every step runs the model on the context window (the last
  ``block_size`` tokens) in a ``lax.fori_loop``. The window is right-padded to ``block_size`` so
  that it compiles once (a causal model ignores the padding), so each token costs a forward pass
  over ``block_size`` positions. That is the exact cost once the context is full (a long prompt,
  ``--prompt-tokens 256``, or any generation past the first window); before that, a recomputation
  over the exact length would cost less, about half on average for a one-token prompt.

Past ``block_size`` both slide their context (the cache by half a window, the recomputation by
one token), so the comparison is of the same model on the same amount of context.
"""

import argparse
import functools
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from gptjax.generation import decode
from gptjax.generation import text as generate
from gptjax.model import GPT
from gptjax.model.config import GPTConfig
from gptjax.runs.experiment import config_from_file

ROOT = Path(__file__).resolve().parents[2]


def load_model_config(path: Path) -> GPTConfig:
    return GPTConfig(**config_from_file(path).model.to_dict())


@functools.partial(jax.jit, static_argnames=("cfg", "new_tokens"))
def recompute_greedy(cfg: GPTConfig, params, prompt_BP: jax.Array, new_tokens: int) -> jax.Array:
    """Greedy decoding without a cache: one forward pass over the context window per token."""
    B, P = prompt_BP.shape
    W = cfg.block_size
    tokens_BM = jnp.zeros((B, 2 * W + P + new_tokens), jnp.int32).at[:, W : W + P].set(prompt_BP)
    model = GPT(cfg)

    def step(i, tokens_BM):
        length = W + P + i  # tokens_BM starts with W unused slots so the window never starts < 0
        start = jnp.maximum(length - W, W)
        window_BW = jax.lax.dynamic_slice(tokens_BM, (0, start), (B, W))
        logits_BWV = model.apply({"params": params}, window_BW)
        next_B = jnp.argmax(logits_BWV[:, length - 1 - start], axis=-1).astype(jnp.int32)
        return jax.lax.dynamic_update_slice(tokens_BM, next_B[:, None], (0, length))

    return jax.lax.fori_loop(0, new_tokens, step, tokens_BM)[:, W + P : W + P + new_tokens]


def timed(fn, repeats: int) -> tuple[float, float, float]:
    """(first call seconds, best later call seconds, its CPU seconds), over ``repeats`` calls.

    CPU seconds (all threads of this process) are reported beside wall time because on a shared
    machine other processes slow the wall clock but not this process's own work.
    """
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    return first, best, best_cpu


def kv_cache_greedy(cfg: GPTConfig, params, prompt_BP: np.ndarray, new_tokens: int):
    logits_fn, init_cache_fn = generate.model_fns(cfg)
    logits_fn, init_cache_fn = Partial(logits_fn, params), Partial(init_cache_fn)
    settings = decode.Settings(
        jax.random.key(0), jnp.float32(0), jnp.int32(0), jnp.float32(1), jnp.int32(-1)
    )
    state = decode.prefill(
        logits_fn, init_cache_fn, prompt_BP, block_size=cfg.block_size, max_new_tokens=new_tokens
    )
    state = decode.decode(
        logits_fn, init_cache_fn, state, settings, jnp.int32(new_tokens), block_size=cfg.block_size
    )
    P = prompt_BP.shape[1]
    return state.tokens_BM[:, P : P + new_tokens]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "shakespeare.py")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=1)
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    cfg = load_model_config(args.config)
    variables = GPT(cfg).init(jax.random.key(0), jnp.zeros((1, cfg.block_size), jnp.int32))
    params = nn.unbox(variables["params"])
    n_params = sum(p.size for p in jax.tree.leaves(params))
    print(f"device: {jax.devices()[0].device_kind}  ({jax.device_count()} device(s))")
    print(
        f"model: {cfg.n_layer} layers, width {cfg.n_embd}, block {cfg.block_size}, "
        f"vocab {cfg.vocab_size}, {n_params / 1e6:.1f}M parameters; prompt {args.prompt_tokens} "
        f"tokens, {args.new_tokens} new tokens"
    )
    n = args.new_tokens
    rates = {}
    for samples in args.samples:
        prompt_BP = np.zeros((samples, args.prompt_tokens), np.int32)
        first, best, cpu = timed(
            lambda p=prompt_BP: kv_cache_greedy(cfg, params, p, n), args.repeats
        )
        rates[samples] = (samples * n / best, samples * n / cpu)
        print(
            f"kv cache, {samples} sample(s): {rates[samples][0]:7.1f} tokens/s, "
            f"{rates[samples][1]:7.1f} tokens per CPU-s  (steady {best:.3f} s; "
            f"first call {first:.2f} s, so compile ~{first - best:.2f} s)"
        )
    prompt_BP = jnp.zeros((1, args.prompt_tokens), jnp.int32)
    first, best, cpu = timed(lambda: recompute_greedy(cfg, params, prompt_BP, n), args.repeats)
    recompute = (n / best, n / cpu)
    print(
        f"full recomputation, 1 sample: {recompute[0]:7.1f} tokens/s, "
        f"{recompute[1]:7.1f} tokens per CPU-s  (steady {best:.3f} s; first call {first:.2f} s)"
    )
    head = cfg.block_size - args.prompt_tokens  # before the first slide: the same context
    if head > 0:
        cached = kv_cache_greedy(cfg, params, np.asarray(prompt_BP), n)[:, :head]
        same = np.array_equal(cached, recompute_greedy(cfg, params, prompt_BP, n)[:, :head])
        print(f"same greedy tokens before the first slide: {same}")
    if 1 in rates:
        print(
            f"speed-up of the KV cache at 1 sample: {rates[1][0] / recompute[0]:.1f}x wall, "
            f"{rates[1][1] / recompute[1]:.1f}x CPU"
        )


if __name__ == "__main__":
    main()
