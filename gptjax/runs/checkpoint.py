"""Checkpoints: an orbax `CheckpointManager` over the run directory (tutorial part 9).

``WORKDIR/checkpoints/<step>/`` holds two items: ``state`` (the whole `TrainState`: step,
parameters, optimizer moments, dropout key) and ``meta`` (JSON: tokens seen, wall time), so a
resumed run continues exactly where the saved one stopped. The tokenizer (``tokenizer.bpe``) and
the config (``config.json``) live beside ``checkpoints/`` in the run directory.

Saves are asynchronous: the arrays are copied off the training buffers, then written in a
background thread while training goes on. A save is atomic: orbax writes into a temporary folder
and renames it to ``<step>`` only once every file is complete, so a crash or Ctrl-C during a save
leaves a temporary folder that `latest_step` never lists (and the next run deletes), never a
half-written checkpoint that looks finished.
"""

import json
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from gptjax import tokenizer as tk
from gptjax.model.config import GPTConfig

CHECKPOINT_DIR = "checkpoints"
TOKENIZER_FILE = "tokenizer.bpe"
CONFIG_FILE = "config.json"


def make_manager(workdir: str | Path, *, keep: int) -> ocp.CheckpointManager:
    """A manager that keeps the ``keep`` most recent checkpoints of ``workdir``."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, cleanup_tmp_directories=True
    )
    return ocp.CheckpointManager(
        Path(workdir).absolute() / CHECKPOINT_DIR, options=options, item_names=("state", "meta")
    )


def save(manager: ocp.CheckpointManager, state, meta: dict[str, Any]) -> None:
    """Starts an asynchronous save of ``state`` (a `TrainState`) at ``state.step``.

    Args:
      manager: from `make_manager`.
      state: the train state; its buffers may be donated to the next step right after this call.
      meta: JSON-serialisable facts about the run at this step.
    """
    items = state.checkpoint_items()
    if jax.default_backend() == "cpu":
        # On CPU the "device to host" copy of an async save can alias the device buffer, which the
        # next (donating) train step overwrites; a copy decouples them. Accelerators copy anyway.
        items = jax.tree.map(jnp.copy, items)
    manager.save(
        int(jax.device_get(state.step)),
        args=ocp.args.Composite(state=ocp.args.PyTreeSave(items), meta=ocp.args.JsonSave(meta)),
        force=True,
    )


def restore(manager: ocp.CheckpointManager, state, step: int | None = None):
    """Restores a checkpoint into the structure, dtypes and devices of ``state``.

    Args:
      manager: from `make_manager`.
      state: the target layout: a `TrainState` of arrays, or of `jax.ShapeDtypeStruct` with
        shardings (``jax.eval_shape`` of the initialiser), which allocates nothing to be replaced.
      step: which checkpoint; the latest when None.

    Returns:
      (restored state, meta dict).
    """
    step = manager.latest_step() if step is None else step
    items = state.checkpoint_items()
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(
                item=items, restore_args=ocp.checkpoint_utils.construct_restore_args(items)
            ),
            meta=ocp.args.JsonRestore(),
        ),
    )
    return state.replace(**restored["state"]), dict(restored["meta"])


def latest_step(workdir: str | Path) -> int | None:
    """The step of the newest complete checkpoint in ``workdir``, or None when there is none."""
    directory = Path(workdir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return None
    steps = ocp.utils.checkpoint_steps(directory)  # finalised checkpoints only
    return max(steps) if steps else None


def _abstract_params(model_config: GPTConfig) -> Any:
    from gptjax.model import GPT

    tokens = jax.ShapeDtypeStruct((1, model_config.block_size), jnp.int32)
    shapes = jax.eval_shape(
        lambda x: GPT(model_config).init(jax.random.PRNGKey(0), x, deterministic=True), tokens
    )
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
        nn.unbox(shapes["params"]),
    )


def load_for_inference(workdir: str | Path, step: int | None = None):
    """Loads a trained model from a run directory.

    Args:
      workdir: the run directory written by ``python -m gptjax.main``.
      step: which checkpoint; the latest when None.

    Returns:
      (GPTConfig, params, Tokenizer): params unboxed, float32, on the default device.
    """
    workdir = Path(workdir)
    config_path = workdir / CONFIG_FILE
    if not config_path.is_file():
        raise ValueError(f"{workdir} is not a run directory: it has no {CONFIG_FILE}.")
    step = latest_step(workdir) if step is None else step
    if step is None:
        raise ValueError(f"{workdir} has no complete checkpoint yet; train it first.")
    model_config = GPTConfig(**json.loads(config_path.read_text())["model"])
    target = {"params": _abstract_params(model_config)}
    checkpointer = ocp.Checkpointer(ocp.PyTreeCheckpointHandler())
    restored = checkpointer.restore(
        (workdir / CHECKPOINT_DIR).absolute() / str(step) / "state",
        args=ocp.args.PyTreeRestore(
            item=target,
            restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True,
        ),
    )
    params = jax.tree.map(lambda p: p.astype(jnp.float32), restored["params"])
    return model_config, params, tk.load(workdir / TOKENIZER_FILE)
