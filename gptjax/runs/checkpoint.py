"""What a checkpoint holds: saving, restoring, loading for inference (tutorial part 9).

Each checkpoint ``WORKDIR/checkpoints/<step>/`` holds two items: ``state`` (the whole
`TrainState`: step, parameters, optimizer moments, dropout key) and ``meta`` (JSON: the wall time
so far), so a resumed run continues exactly where the saved one stopped. Where checkpoints live,
which of them are complete and how many are kept is the run directory's business
(``gptjax.runs.rundir.RunDir``: `RunDir.checkpoint_manager`, `RunDir.latest_step`); this module
says what goes into a checkpoint and how it comes back out.

Saves are asynchronous: the arrays are copied off the training buffers, then written in a
background thread while training goes on. A save is atomic: orbax writes into a temporary folder
and renames it to ``<step>`` only once every file is complete, so a crash or Ctrl-C during a save
leaves a temporary folder that `RunDir.latest_step` never lists (and the next run deletes), never
a half-written checkpoint that looks finished.
"""

from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from gptjax.errors import UserError
from gptjax.model.config import GPTConfig
from gptjax.runs.rundir import RunDir


def save(manager: ocp.CheckpointManager, state, meta: dict[str, Any]) -> None:
    """Starts an asynchronous save of ``state`` (a `TrainState`) at ``state.step``.

    Args:
      manager: from `RunDir.checkpoint_manager`.
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
      manager: from `RunDir.checkpoint_manager`.
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
      workdir: the run directory written by ``python -m gptjax.main``; a config saved by an
        earlier gptjax is read through `rundir.upgrade_config`.
      step: which checkpoint; the latest when None.

    Returns:
      (GPTConfig, params, Tokenizer): params unboxed, float32, on the default device.

    Raises:
      UserError: ``workdir`` is not a run directory, or has no complete checkpoint.
    """
    run_dir = RunDir(workdir)
    saved = run_dir.read_config()  # raises when workdir is not a run directory
    step = run_dir.latest_step() if step is None else step
    if step is None:
        raise UserError(f"{workdir} has no complete checkpoint yet; train it first.")
    model_config = GPTConfig(**saved["model"])
    target = {"params": _abstract_params(model_config)}
    checkpointer = ocp.Checkpointer(ocp.PyTreeCheckpointHandler())
    restored = checkpointer.restore(
        run_dir.checkpoint_item(step, "state"),
        args=ocp.args.PyTreeRestore(
            item=target,
            restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True,
        ),
    )
    params = jax.tree.map(lambda p: p.astype(jnp.float32), restored["params"])
    return model_config, params, run_dir.load_tokenizer()
