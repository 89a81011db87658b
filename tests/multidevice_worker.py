"""Runs short trainings in a fresh process, so the test can choose how many CPU devices JAX sees.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/multidevice_worker.py JOBS_JSON

JOBS_JSON is a list of ``{"workdir": ..., "overrides": {"train.steps": 8, ...}}``; each job
trains `tiny_config()` with its overrides into its workdir. With ``"shards": true`` the job also
prints, as one JSON line, the global and per-device shapes of the parameters and Adam moments;
with ``"expect_error": true`` a ValueError is printed (``ERROR ...``) instead of raised.
"""

import json
import sys

import flax.linen as nn
import jax
import optax

from gptjax.model import GPT
from gptjax.runs.experiment import apply_overrides, config_from_file
from gptjax.training import sharding
from gptjax.training.loop import train_and_evaluate
from gptjax.training.run_config import check_config
from gptjax.training.step import create_train_state, make_optimizer

# A model small enough to compile quickly, wide enough (32) to split 8 ways along `embed`.
TINY = {
    "tokenizer.vocab_size": 260,
    "model.n_layer": 2,
    "model.n_head": 2,
    "model.n_embd": 32,
    "model.block_size": 16,
    "train.batch_size": 16,
    "train.steps": 8,
    "train.steps_per_call": 2,
    "train.eval_every": 4,
    "eval.device_batch_size": 2,
    "eval.val_tokens": 128,
    "eval.train_tokens": 64,
    "train.log_every": 1,
    "train.checkpoint_every": 4,
    "train.keep_checkpoints": 3,
    "sample.num_samples": 0,
}


def tiny_config(overrides):
    config = config_from_file("configs/tiny.py")
    return apply_overrides(config, {**TINY, **overrides})


def shard_shapes(config):
    """Global and first-device shapes of every parameter and first Adam moment."""
    model_config = check_config(config)
    model = GPT(model_config)
    tx, _ = make_optimizer(**config.opt, total_steps=config.train.steps)

    def init():
        return create_train_state(model, tx, seed=0, block_size=model_config.block_size)

    mesh = sharding.make_mesh(config.mesh)
    tokens = jax.ShapeDtypeStruct((1, model_config.block_size), jax.numpy.int32)
    boxed = jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens)["params"]
    shardings = sharding.train_state_shardings(jax.eval_shape(init), boxed, mesh)
    state = jax.jit(init, out_shardings=shardings)()
    arrays = {"params": state.params, "adam_mu": optax.tree_utils.tree_get(state.opt_state, "mu")}
    return {
        group: {
            jax.tree_util.keystr(path): [list(a.shape), list(a.addressable_shards[0].data.shape)]
            for path, a in jax.tree_util.tree_leaves_with_path(tree)
        }
        for group, tree in arrays.items()
    } | {"names": {
        jax.tree_util.keystr(path): list(box.names)
        for path, box in jax.tree_util.tree_leaves_with_path(
            boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned)
        )
    }}  # fmt: skip


def main(jobs_json: str) -> None:
    for job in json.loads(jobs_json):
        config = tiny_config(job["overrides"])
        if job.get("shards"):
            print("SHARDS " + json.dumps(shard_shapes(config)), flush=True)
        try:
            train_and_evaluate(config, job["workdir"])
        except ValueError as error:
            if not job.get("expect_error"):
                raise
            print(f"ERROR {error}", flush=True)
    print(f"devices={jax.device_count()}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
