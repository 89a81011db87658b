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

Verified restores: files can still be damaged after a save (a failing disk, a copy cut short,
an edit by hand). Each save records a checksum of every array (`fingerprints`) in ``meta``;
every restore recomputes them and checks that the parameters and optimizer moments are finite
(no non-finite state is ever saved). A resumed run skips a damaged checkpoint for the newest
intact one and sets the damaged one aside, never deleting it (`restore_newest_intact`).
"""

import functools
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from gptjax.errors import UserError
from gptjax.model import kernels
from gptjax.model.config import GPTConfig
from gptjax.runs.rundir import RunDir


class DamagedCheckpoint(RuntimeError):
    """A checkpoint that cannot be read, or whose arrays are not the ones that were saved."""


def fingerprints(tree) -> dict[str, int]:
    """One 32-bit checksum per array of ``tree``, keyed by its path (``"['params']['wte']..."``).

    The checksum of an array is the position-weighted sum of its 32-bit words,
    ``sum_i word_i * (2i + 1) mod 2**32`` (16- and 8-bit values are widened to a word each).
    Any single changed word changes it (each weight is odd, so invertible mod 2**32), and two
    swapped words change it too. Integer sums wrap around exactly in any order, so the checksum
    of a sharded array is the same on any mesh. Computed on the devices, it costs one reduction
    per array rather than a copy of the state to the host.
    """
    flat = {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree.leaves_with_path(tree)}
    sums = jax.device_get(_compiled(_checksums)(flat))
    return {key: int(value) for key, value in sums.items()}


@functools.cache
def _compiled(check):
    """``check`` jitted, with the options for exact checks (built on first use: they depend on
    the backend, which must not start at import)."""
    return jax.jit(check, compiler_options=kernels.check_compiler_options())


def _checksums(flat: dict[str, jax.Array]) -> dict[str, jax.Array]:
    def one(x):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        bits = {8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32}[jnp.dtype(x.dtype).itemsize * 8]
        words = jax.lax.bitcast_convert_type(x, bits).astype(jnp.uint32).reshape(-1)
        weights = 2 * jnp.arange(words.size, dtype=jnp.uint32) + 1
        return jnp.sum(words * weights, dtype=jnp.uint32)

    return jax.tree.map(one, flat)


def save(manager: ocp.CheckpointManager, state, meta: dict[str, Any]) -> None:
    """Starts an asynchronous save of ``state`` (a `TrainState`) at ``state.step``.

    The ``meta`` item also gets the `fingerprints` of every array, which `restore` checks.

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
    meta = {**meta, "checksums": fingerprints(items)}
    manager.save(
        int(jax.device_get(state.step)),
        args=ocp.args.Composite(state=ocp.args.PyTreeSave(items), meta=ocp.args.JsonSave(meta)),
        force=True,
    )


def _read(run_dir: RunDir, step: int, target: dict, partial: bool = False) -> tuple[dict, dict]:
    """Reads the state (into ``target``'s layout) and meta items of one checkpoint, verified.

    Raises:
      DamagedCheckpoint: an item cannot be read, an array differs from its saved checksum, or a
        parameter or optimizer moment is not finite (no checkpoint is saved with one).
    """
    try:
        meta = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(
            run_dir.checkpoint_item(step, "meta")
        )
        state = ocp.Checkpointer(ocp.PyTreeCheckpointHandler()).restore(
            run_dir.checkpoint_item(step, "state"),
            args=ocp.args.PyTreeRestore(
                item=target,
                restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                partial_restore=partial,
            ),
        )
    except Exception as err:  # orbax and tensorstore raise many types for unreadable files
        reason = " ".join(str(err).split())[:300]
        raise DamagedCheckpoint(f"unreadable: {type(err).__name__}: {reason}") from err
    saved = meta.get("checksums") if isinstance(meta, dict) else None
    if saved is not None:  # checkpoints of earlier versions have none: only finiteness is checked
        for key, value in fingerprints(state).items():
            if key not in saved:
                raise DamagedCheckpoint(f"{key} has no saved checksum")
            if saved[key] != value:
                raise DamagedCheckpoint(f"{key} differs from what was saved (checksum mismatch)")
    floats = {k: state[k] for k in ("params", "opt_state") if k in state}
    if not bool(_compiled(_all_finite)(floats)):
        raise DamagedCheckpoint("it holds non-finite parameters or optimizer moments")
    return state, dict(meta)


def _all_finite(tree) -> jax.Array:
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else True


def restore(run_dir: RunDir, state, step: int):
    """Restores the checkpoint at ``step`` into the structure, dtypes and devices of ``state``.

    Args:
      run_dir: the run directory.
      state: the target layout: a `TrainState` of arrays, or of `jax.ShapeDtypeStruct` with
        shardings (``jax.eval_shape`` of the initialiser), which allocates nothing to be replaced.
      step: which checkpoint.

    Returns:
      (restored state, meta dict).

    Raises:
      DamagedCheckpoint: the checkpoint is unreadable or differs from what was saved.
    """
    restored, meta = _read(run_dir, step, state.checkpoint_items())
    return state.replace(**restored), meta


def restore_newest_intact(run_dir: RunDir, state, say=print):
    """Restores the newest checkpoint that passes verification, setting damaged newer ones aside.

    A damaged checkpoint (see `restore`) is moved to ``damaged_checkpoints/`` by
    `RunDir.set_aside_checkpoint`, never deleted, with one line saying which and why; the run
    continues from the newest intact one, and will save the steps after it again.

    Args:
      run_dir: a run directory with at least one complete checkpoint.
      state: the target layout, as for `restore`.
      say: where the lines about damaged checkpoints go.

    Returns:
      (restored state, meta dict, its step).

    Raises:
      UserError: every checkpoint is damaged (then none is moved: nothing is changed).
    """
    damaged = []
    for step in reversed(run_dir.checkpoint_steps()):
        try:
            restored, meta = restore(run_dir, state, step)
        except DamagedCheckpoint as err:
            damaged.append((step, str(err)))
            continue
        for bad, why in damaged:
            if jax.process_index() == 0:  # one process moves the shared folder
                where = run_dir.set_aside_checkpoint(bad)
                say(f"checkpoint {bad} is damaged ({why}); moved to {where}; resuming from {step}")
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("gptjax: damaged checkpoints set aside")
        return restored, meta, step
    details = "; ".join(f"step {s}: {why}" for s, why in damaged)
    raise UserError(
        f"every checkpoint in {run_dir.checkpoint_dir} is damaged ({details}). Nothing was "
        "changed; train into a new --workdir (or restore the files from a backup)."
    )


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


def load_for_inference(workdir: str | Path, step: int | None = None, say=None):
    """Loads a trained model from a run directory: `load_checkpoint` without the step."""
    model_config, params, tok, _ = load_checkpoint(workdir, step, say)
    return model_config, params, tok


def load_checkpoint(workdir: str | Path, step: int | None = None, say=None):
    """Loads a trained model from a run directory, and says which checkpoint it came from.

    Only the parameters are read, and verified (see `restore`). Without ``step``, a damaged
    newest checkpoint is skipped, with one line, for the newest intact one; nothing is moved, as
    a reader may be looking at a run that trains.

    Args:
      workdir: the run directory written by ``python -m gptjax.main``; a config saved by an
        earlier gptjax is read through `rundir.upgrade_config`.
      step: which checkpoint; the newest intact one when None.
      say: where the line about a skipped checkpoint goes (standard error by default).

    Returns:
      (GPTConfig, params, Tokenizer, step): params unboxed, float32, on the default device.

    Raises:
      UserError: ``workdir`` is not a run directory, has no complete checkpoint, or no intact
        one (or ``step`` is damaged or absent).
    """
    import sys

    say = say or (lambda line: print(line, file=sys.stderr))
    run_dir = RunDir(workdir)
    model_config = run_dir.read_model_config()  # raises when workdir is not a run directory
    steps = run_dir.checkpoint_steps()
    if not steps:
        raise UserError(f"{workdir} has no complete checkpoint yet; train it first.")
    if step is not None and step not in steps:
        raise UserError(f"{workdir} has no checkpoint at step {step}; its steps are {steps}.")
    target = {"params": _abstract_params(model_config)}
    damaged = []
    for candidate in [step] if step is not None else reversed(steps):
        try:
            restored, _ = _read(run_dir, candidate, target, partial=True)
        except DamagedCheckpoint as err:
            damaged.append(f"checkpoint {candidate} is damaged ({err})")
            continue
        if damaged:
            say("; ".join(damaged) + f"; using step {candidate}")
        params = jax.tree.map(lambda p: p.astype(jnp.float32), restored["params"])
        return model_config, params, run_dir.load_tokenizer(), candidate
    raise UserError("; ".join(damaged) + f": {workdir} has no intact checkpoint to load.")
