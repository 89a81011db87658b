"""Benchmark of text generation (part 10): KV-cache decoding against full recomputation.

  python experiments/benchmarks/bench_generate.py [--config configs/shakespeare.py]
      [--new-tokens 256] [--samples 1 8] [--repeats 3]

Builds the model of the config's ``model`` group with random weights (speed does not depend on
the values) and generates greedily from a one-token prompt:

* KV cache: ``gptjax.decode`` (prefill, then the compiled ``lax.while_loop``), for each batch
  size in ``--samples``: the first call's time (compilation included), the steady time (best of
  ``--repeats``) and tokens/s = samples x new tokens / steady time.
* Full recomputation, batch 1: every step runs the model on the whole context window (the last
  ``block_size`` tokens, right-padded to a fixed shape so it compiles once), in a ``lax.fori_loop``:
  the quadratic cost the cache removes.

Past ``block_size`` both slide their context (the cache by half a window, the recomputation by
one token), so the comparison is of the same model on the same amount of context.
"""

import argparse
import functools
import importlib.util
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from gptjax import decode, generate
from gptjax.config import GPTConfig
from gptjax.model import GPT

ROOT = Path(__file__).resolve().parents[2]


def load_model_config(path: Path) -> GPTConfig:
    spec = importlib.util.spec_from_file_location("bench_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return GPTConfig(**module.get_config().model.to_dict())


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


def timed(fn, repeats: int) -> tuple[float, float]:
    """(first call seconds, best of ``repeats`` later calls seconds)."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return first, best


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
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    cfg = load_model_config(args.config)
    variables = GPT(cfg).init(jax.random.key(0), jnp.zeros((1, cfg.block_size), jnp.int32))
    params = nn.unbox(variables["params"])
    n_params = sum(p.size for p in jax.tree.leaves(params))
    print(f"device: {jax.devices()[0].device_kind}  ({jax.device_count()} device(s))")
    print(
        f"model: {cfg.n_layer} layers, width {cfg.n_embd}, block {cfg.block_size}, "
        f"vocab {cfg.vocab_size}, {n_params / 1e6:.1f}M parameters; {args.new_tokens} new tokens"
    )
    n = args.new_tokens
    rates = {}
    for samples in args.samples:
        prompt_BP = np.zeros((samples, 1), np.int32)
        first, best = timed(lambda p=prompt_BP: kv_cache_greedy(cfg, params, p, n), args.repeats)
        rates[samples] = samples * n / best
        print(
            f"kv cache, {samples} sample(s): {rates[samples]:8.1f} tokens/s  "
            f"(steady {best:.3f} s; first call {first:.2f} s, so compile ~{first - best:.2f} s)"
        )
    prompt_BP = jnp.zeros((1, 1), jnp.int32)
    first, best = timed(
        lambda: recompute_greedy(cfg, params, prompt_BP, n), max(1, args.repeats - 2)
    )
    print(
        f"full recomputation, 1 sample: {n / best:8.1f} tokens/s  "
        f"(steady {best:.3f} s; first call {first:.2f} s)"
    )
    head = cfg.block_size - 1  # tokens before the first slide: both see the same context
    cached = kv_cache_greedy(cfg, params, np.zeros((1, 1), np.int32), n)[:, :head]
    same = np.array_equal(cached, recompute_greedy(cfg, params, prompt_BP, n)[:, :head])
    print(f"same greedy tokens before the first slide: {same}")
    if 1 in rates:
        print(f"speed-up of the KV cache at 1 sample: {rates[1] / (n / best):.1f}x")


if __name__ == "__main__":
    main()
