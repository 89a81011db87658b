"""Every shipped config fits its target device: its train step and its evaluation step, compiled
on abstract shapes (nothing allocated), need no more memory than the device has.

XLA's `memory_analysis` of the compiled step gives its buffers: arguments, outputs (less those
that reuse a donated argument) and temporaries. It is measured here with the CPU compiler, a
proxy for an accelerator's (whose fusions usually need less), on one device holding the whole
micro-batch, the largest share any device of a data-parallel mesh holds.

These compilations take a minute (GPT-2's train step most of it), so they carry their own
marker; ``.ci/run`` runs them.
"""

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from gptjax.model import GPT
from gptjax.runs.experiment import config_from_file
from gptjax.training.evaluation import eval_sums
from gptjax.training.run_config import check_config
from gptjax.training.step import create_train_state, make_optimizer, train_steps

pytestmark = pytest.mark.memory

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GB = 1e9
# The device each config is written for, and its memory. A new config must say which.
TARGETS = {
    "tiny": ("this 2-core CPU machine", 24 * GB),
    "french_tiny": ("this 2-core CPU machine", 24 * GB),
    "shakespeare_char": ("this 2-core CPU machine", 24 * GB),
    "shakespeare_small": ("this 2-core CPU machine", 24 * GB),
    "speedrun_char": ("this 2-core CPU machine", 24 * GB),
    "shakespeare": ("a 16 GB GPU", 16 * GB),
    "gpt2": ("a 40 GB A100, nanoGPT's GPU", 40 * GB),
    "gpt2_finetune": ("a 40 GB A100, nanoGPT's GPU", 40 * GB),
}


def _needed(compiled) -> float:
    m = compiled.memory_analysis()
    return (
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        - m.alias_size_in_bytes
        + m.temp_size_in_bytes
    )


def _abstract(name):
    config = config_from_file(CONFIGS / f"{name}.py")
    model_config = check_config(config)
    model = GPT(model_config)
    tx, _ = make_optimizer(
        **config.opt, total_steps=config.train.steps, kernels=model_config.kernels
    )
    init = functools.partial(
        create_train_state, model, tx, seed=0, block_size=model_config.block_size,
        grad_accum=config.train.grad_accum,
    )  # fmt: skip
    return config, model_config, model, jax.eval_shape(init)


def _eval_memory(model, model_config, state, rows) -> float:
    T = model_config.block_size
    batch = {
        "inputs": jax.ShapeDtypeStruct((rows, T), jnp.int32),
        "targets": jax.ShapeDtypeStruct((rows, T), jnp.int32),
        "weights": jax.ShapeDtypeStruct((rows, T), jnp.float32),
    }
    bytes_V = jax.ShapeDtypeStruct((model_config.vocab_size,), jnp.int32)
    step = jax.jit(functools.partial(eval_sums, apply_fn=model.apply))
    return _needed(step.lower(state.params, batch, bytes_V).compile())


def test_every_config_has_a_target_device():
    assert sorted(p.stem for p in CONFIGS.glob("*.py")) == sorted(TARGETS)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_train_and_evaluation_steps_fit_the_target_device(name):
    if not (CONFIGS / f"{name}.py").is_file():
        pytest.fail(f"configs/{name}.py is listed in TARGETS but does not exist")
    device, memory = TARGETS[name]
    config, model_config, model, state = _abstract(name)
    T = model_config.block_size
    one_call = jax.ShapeDtypeStruct((1, config.train.batch_size, T), jnp.int32)
    train = jax.jit(train_steps, donate_argnums=0).lower(
        state, {"inputs": one_call, "targets": one_call}
    )
    needed = {
        "train step": _needed(train.compile()),
        "evaluation step": _eval_memory(model, model_config, state, config.eval.device_batch_size),
    }
    for what, size in needed.items():
        assert size < memory, f"{name}: the {what} needs {size / GB:.1f} GB; {device} has less"


def test_the_bound_catches_an_evaluation_of_a_whole_batch_at_once():
    # What evaluation did before it streamed micro-batches: GPT-2's 512 sequences in one call
    # (its logits alone are 512 x 1024 x 50,304 floats, 105 GB).
    _, model_config, model, state = _abstract("gpt2")
    assert _eval_memory(model, model_config, state, 512) > TARGETS["gpt2"][1]
