"""The training loop: `train_and_evaluate(config, workdir)` (tutorial part 9).

This is the I/O edge of training. `train_and_evaluate` checks the config, takes the run
directory's lock (one trainer per directory), records the config there (or checks it against the
one the run's checkpoints were trained with), prepares the data and hands over to a `Trainer`,
which builds the state (or resumes it from the run directory's last checkpoint), then repeats

  run ``train.steps_per_call`` steps in one jitted call (a `lax.scan` over prefetched batches),
  log, evaluate, checkpoint,

and finally `train_and_evaluate` prints samples. Small models on a CPU spend much of a step in
per-call overhead (dispatch, argument handling, Python), so several steps per call pay off; the
host builds the next batches in a background thread and reads the previous call's metrics while
the current one runs. Every file is written through ``gptjax.runs.rundir.RunDir``.

Stopping: Ctrl-C (or SIGTERM) finishes the current call, saves a checkpoint and re-raises
`KeyboardInterrupt`; a second Ctrl-C stops at once. A non-finite loss or gradient norm, a
non-finite evaluation loss, or non-finite parameters or optimizer moments about to be saved stop
with `TrainingDiverged` before anything is saved, so every checkpoint is finite and the last one
is the last good state.
"""

import contextlib
import functools
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from gptjax.errors import UserError
from gptjax.model import GPT, kernels
from gptjax.model.config import GPTConfig
from gptjax.runs import checkpoint
from gptjax.runs.rundir import RunDir
from gptjax.training import data, evaluation, ledger, rundir_checks, sharding
from gptjax.training.evaluation import Evaluator
from gptjax.training.metrics import all_finite, measure_matmul_flops, mfu
from gptjax.training.prepare import PreparedData, prepare_data
from gptjax.training.run_config import check_config, run_info
from gptjax.training.step import create_train_state, make_optimizer, train_steps


class TrainingDiverged(RuntimeError):
    """The loss, the gradient norm, an evaluation loss or the train state stopped being finite."""


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> None:
    """Trains (or resumes) the run in ``workdir``, evaluates it, checkpoints it, prints samples.

    Args:
      config: a training config (see ``configs/``), checked before anything is compiled.
      workdir: the run directory; re-running with the same one resumes.

    Raises:
      UserError: a bad config, corpus or tokenizer; another run holds ``workdir``; a resume
        with a changed config.
      TrainingDiverged: the loss, an evaluation loss or the state became NaN/Inf (the last good
        checkpoint is kept).
      KeyboardInterrupt: after Ctrl-C, once the checkpoint is saved.
    """
    entered = time.perf_counter()
    sharding.maybe_initialize_distributed()  # before anything asks JAX for its devices
    model_config = check_config(config)
    source = rundir_checks.check_init_from(config, model_config)
    run_dir = RunDir(workdir)
    if rundir_checks.finished_read_only(config, run_dir):
        return
    # Every host of a multi-host job runs this with the same (shared) workdir: one lock per job.
    primary = jax.process_index() == 0
    with run_dir.lock() if primary else contextlib.nullcontext():
        if primary:
            rundir_checks.bind_config(config, run_dir)
            if source is not None and run_dir.latest_step() is None:
                # Fine-tuning: the starting run's token ids, so its parameters mean the same.
                run_dir.save_tokenizer(source.load_tokenizer())
                print(
                    f"starting from the parameters and the tokenizer of {source.path} "
                    "(train.init_from; the tokenizer group is not used)"
                )
            # The tokenizer is trained (or copied) once, here: the other hosts load this copy.
            prepared = prepare_data(config, model_config, run_dir)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("gptjax: the run directory is ready")
        if not primary:
            prepared = prepare_data(config, model_config, run_dir)
        trainer = Trainer(config, model_config, prepared, run_dir, entered=entered)
        try:
            steps = config.train.steps
            if trainer.step > steps:
                print(
                    f"{workdir} is already past train.steps={steps}: it has trained "
                    f"{trainer.step} steps, and its config.json keeps the config they were "
                    "trained with; samples:"
                )
            elif trainer.step == steps:
                print(f"{workdir} already finished {steps} steps (train.steps={steps}); samples:")
            else:
                trainer.run()
        finally:
            trainer.close()
        _write_samples(config, model_config, trainer.state.params, prepared.tok, run_dir)


class Trainer:
    """One training run: its state, its compiled functions, its clock and its unwritten metrics.

    Building it creates the train state (or restores it from the run directory's latest
    checkpoint) and records the run's provenance; `run` is the loop. Its other methods are the
    loop's parts: `batches` (called in the prefetch thread), `log_call` (reading a finished call's
    metrics), `evaluate`, `flush` (writing the metrics records) and `save`. `close` waits for the
    last checkpoint to be written.

    Attributes:
      state: the train state; each call donates it and gets the next one back.
      step: the step ``state`` has reached.
      last_saved: the step of the newest checkpoint, None until there is one.
      records: metrics by step, not written yet (a step's training and evaluation fields are
        merged into one record).
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        model_config: GPTConfig,
        prepared: PreparedData,
        run_dir: RunDir,
        *,
        entered: float,
    ):
        """Creates the train state, or restores it from the latest checkpoint of ``run_dir``.

        Args:
          config: the checked training config.
          model_config: ``check_config(config)``.
          prepared: the tokenizer and the encoded splits.
          run_dir: the run directory; its latest checkpoint, if any, is resumed.
          entered: `time.perf_counter` when `train_and_evaluate` started (wall time counts setup).
        """
        self.config = config
        self.model_config = model_config
        self.prepared = prepared
        self.run_dir = run_dir
        train = config.train
        tx, schedule = make_optimizer(
            **config.opt, total_steps=train.steps, kernels=model_config.kernels
        )
        self.mesh = sharding.make_mesh(config.mesh)
        # Restored before the manager opens: a damaged checkpoint is set aside first.
        self.state, state_sharding, meta, resume_step = _initial_state(
            config, model_config, tx, self.mesh, run_dir
        )
        self.manager = run_dir.checkpoint_manager(keep=train.keep_checkpoints)
        absl_logger = logging.getLogger("absl")
        if not any(isinstance(f, _QuietOrbaxErrors) for f in absl_logger.filters):
            absl_logger.addFilter(_QuietOrbaxErrors())
            logging.getLogger("asyncio").addFilter(_QuietOrbaxErrors())
            sys.unraisablehook = functools.partial(_quiet_closed_loops, sys.unraisablehook)
        if resume_step is not None:
            print(f"resumed {run_dir.path} from step {resume_step}")
        self.last_saved = resume_step
        # wall_time counts setup too, and is summed over resumes.
        self.wall_start = entered - meta["wall_time"]
        # MFU is against the peak of the dtype the model computes in (bfloat16 matmuls run at
        # several times the float32 rate on accelerators).
        self.peak_flops = measure_matmul_flops(
            2048 if jax.default_backend() == "cpu" else 8192, dtype=model_config.dtype
        )
        if jax.process_index() == 0:  # the first host writes the run's files, the others none
            run_dir.write_run_info(run_info(model_config, self.peak_flops, resume_step))

        # What the loop computes with. The state keeps its layout from call to call; batches
        # arrive already split (`batches`).
        options = kernels.compiler_options("step", model_config.kernels)
        self.multi_step = jax.jit(
            train_steps,
            donate_argnums=0,
            out_shardings=(state_sharding, None),
            compiler_options=options,
        )
        # Before each evaluation and save: one reduction.
        self.all_finite = jax.jit(all_finite, compiler_options=kernels.check_compiler_options())
        self.evaluator = Evaluator(
            self.state.apply_fn, prepared.byte_lengths, self.mesh, model_config.block_size,
            config.eval.device_batch_size, compiler_options=options,
        )  # fmt: skip
        # The same windows at every evaluation: the whole validation split (or its budget), and
        # a sample of the training split spread over all of it.
        self.eval_splits = {
            name: (ids, evaluation.windows(len(ids), model_config.block_size, budget))
            for name, ids, budget in (
                ("val", prepared.val_ids, config.eval.val_tokens),
                ("train", prepared.train_ids, config.eval.train_tokens),
            )
        }
        # The rate of every step in one compiled call: evaluating the schedule op by op on the
        # host would compile each of its operations the first time.
        self.lr_by_step = np.asarray(jax.jit(schedule)(np.arange(train.steps)))
        self.tokens_per_step = ledger.tokens_per_step(train.batch_size, model_config.block_size)
        self.flops_per_token = model_config.flops_per_token()
        self.records: dict[int, dict] = {}
        self.rate_start = time.perf_counter()  # when the steps of the next tokens/s began
        self.writer = self.bar = None  # open while `run` runs

    @property
    def step(self) -> int:
        return int(self.state.step)

    def run(self) -> None:
        """Trains from ``step`` to ``train.steps``: evaluates, logs and checkpoints on the way.

        Raises:
          TrainingDiverged: a non-finite loss, gradient norm, evaluation loss or state (nothing
            after it is saved).
          KeyboardInterrupt: after Ctrl-C or SIGTERM, once the current call is saved.
        """
        train, steps, start = self.config.train, self.config.train.steps, self.step
        plan = call_plan(
            start, steps, train.steps_per_call, (train.eval_every, train.checkpoint_every)
        )
        # Every host holds the same records (the metrics are replicated); the first writes them.
        primary = jax.process_index() == 0
        self.writer = self.run_dir.metrics_writer(resume_step=start) if primary else None
        self.bar = tqdm(total=steps, initial=start, unit="step", dynamic_ncols=True, smoothing=0.1)
        try:
            with _StopRequest() as stop:
                if start == 0 and self.config.eval.at_start:
                    self.evaluate(0)
                    self.flush()
                self.rate_start = time.perf_counter()  # the first call's rate counts compilation
                pending = None
                for first, n, batches in data.prefetch(self.batches, iter(plan)):
                    self.state, metrics = self.multi_step(self.state, batches)
                    if pending is not None:
                        self.log_call(*pending)  # the host reads call i-1 while the device runs i
                    pending = (first, n, metrics)
                    end = first + n
                    is_eval = end % train.eval_every == 0 or end == steps
                    is_save = end % train.checkpoint_every == 0 or end == steps
                    if is_eval or is_save or stop.requested:
                        self.log_call(*pending)
                        pending = None
                        if is_eval:
                            self.evaluate(end)
                        self.flush()
                        # A stop requested during the evaluation still saves this step.
                        if is_save or stop.requested:
                            self.save(end)
                        self.rate_start = time.perf_counter()
                    if stop.requested:
                        with self.writing_checkpoints():
                            self.manager.wait_until_finished()
                        self.bar.write(
                            f"interrupted: checkpoint saved at step {end}; rerun to resume."
                        )
                        raise KeyboardInterrupt
        finally:
            self.flush()
            if self.writer is not None:
                self.writer.close()
            self.bar.close()

    def batches(self, call: tuple[int, int]) -> tuple[int, int, dict]:
        """The training batches of one call, ``(first step, number of steps)``, on the mesh.

        Returns:
          (first step, number of steps, batches stacked as ``[steps, B, T]``).
        """
        first, n = call
        train = self.config.train
        batches = data.stacked_batches(
            self.prepared.train_ids, range(first, first + n), seed=self.config.seed,
            stream=data.TRAIN_STREAM, batch_size=train.batch_size,
            block_size=self.model_config.block_size, rows=sharding.host_rows(train.batch_size),
        )  # fmt: skip
        return first, n, sharding.global_batch(batches, self.mesh, batch_axis=1)

    def log_call(self, first: int, n: int, metrics: dict) -> None:
        """Reads the metrics of the call of steps ``first .. first+n-1`` and records them.

        Its tokens/s covers the time since the previous call was logged (or since the last
        evaluation or save), so the first call's rate includes its compilation.

        Raises:
          TrainingDiverged: a loss or gradient norm of the call is not finite.
        """
        host = jax.device_get(metrics)
        bad = ~(np.isfinite(host["loss"]) & np.isfinite(host["grad_norm"]))
        if bad.any():
            at = first + int(np.argmax(bad)) + 1
            self.diverged(
                f"the loss or gradient norm became non-finite at step {at} (loss "
                f"{host['loss'][bad][0]}, grad norm {host['grad_norm'][bad][0]})"
            )
        now = time.perf_counter()
        tokens_per_sec = n * self.tokens_per_step / max(now - self.rate_start, 1e-9)
        self.rate_start = now
        train = self.config.train
        for j in range(n):
            s = first + j + 1
            if s % train.log_every == 0 or s == train.steps:
                self._record(s).update(
                    train_loss=host["loss"][j], grad_norm=host["grad_norm"][j],
                    lr=self.lr_by_step[s - 1], tokens_per_sec=tokens_per_sec,
                    mfu=mfu(self.flops_per_token, tokens_per_sec, self.peak_flops),
                )  # fmt: skip
        self.bar.update(n)
        self.bar.set_postfix(loss=f"{float(host['loss'][-1]):.4f}", tok_s=f"{tokens_per_sec:,.0f}")

    def evaluate(self, step: int) -> None:
        """Evaluates the current parameters on the validation split and a training-split sample.

        Raises:
          TrainingDiverged: the state or an evaluation loss is not finite (nothing is recorded
            or saved).
        """
        self.check_state(step)  # the precise diagnosis, before a NaN evaluation says less
        val, tr = (
            self.evaluator(self.state.params, ids, windows)
            for ids, windows in (self.eval_splits["val"], self.eval_splits["train"])
        )
        if not (np.isfinite(val["loss"]) and np.isfinite(tr["loss"])):
            self.diverged(
                f"the evaluation loss became non-finite at step {step} (validation loss "
                f"{val['loss']}, training-set loss {tr['loss']})"
            )
        self._record(step).update(
            val_loss=val["loss"], val_perplexity=val["perplexity"], val_bpb=val["bpb"],
            train_eval_loss=tr["loss"], train_bpb=tr["bpb"],
        )  # fmt: skip
        self.bar.write(
            f"step {step}: val loss {val['loss']:.4f}, val bpb {val['bpb']:.4f}, "
            f"train loss {tr['loss']:.4f}"
        )

    def _record(self, step: int) -> dict:
        """The record of ``step``, started with its tokens seen and the wall time right now."""
        if step not in self.records:
            self.records[step] = {
                "tokens_seen": step * self.tokens_per_step,
                "wall_time": time.perf_counter() - self.wall_start,
            }
        return self.records[step]

    def flush(self) -> None:
        """Writes the pending records in step order."""
        for step in sorted(self.records):
            if self.writer is not None:
                self.writer.write(step, self.records[step])
        self.records.clear()

    def save(self, step: int) -> None:
        """Starts an asynchronous checkpoint of the state, which has reached ``step``.

        Raises:
          TrainingDiverged: a parameter or optimizer moment is not finite (nothing is saved).
        """
        self.check_state(step)
        with self.writing_checkpoints():  # orbax reports a failed earlier save here
            checkpoint.save(
                self.manager, self.state, {"wall_time": time.perf_counter() - self.wall_start}
            )
        self.last_saved = step

    @contextlib.contextmanager
    def writing_checkpoints(self) -> Iterator[None]:
        """Turns a checkpoint that could not be written (a full disk, a read-only folder) into
        one `UserError` saying which checkpoint is intact; any other error propagates as is.

        Saves are atomic, so the failed one left only a temporary folder (removed by the next
        run) and every earlier checkpoint is whole.
        """
        try:
            yield
        except Exception as error:
            if not _is_write_failure(error):
                raise
            intact = self.run_dir.latest_step()
            kept, then = "no checkpoint was completed", "it starts afresh"
            if intact is not None:
                kept, then = f"the checkpoint of step {intact} is intact", "it resumes from it"
            reason = " ".join(str(error).split())[:200]
            raise UserError(
                f"writing a checkpoint into {self.run_dir.checkpoint_dir} failed ({reason}); "
                f"{kept}. Free some disk space (or make the folder writable), then rerun the "
                f"same command: {then}."
            ) from error

    def check_state(self, step: int) -> None:
        """Raises `TrainingDiverged` unless every parameter and optimizer moment is finite.

        The losses can stay finite while the state is not: an update can leave an infinite
        parameter the next loss has not seen yet, or an infinite moment no loss ever sees.
        """
        if not bool(self.all_finite((self.state.params, self.state.opt_state))):
            self.diverged(
                f"the parameters or optimizer moments became non-finite by step {step}, though "
                "the losses were finite"
            )

    def diverged(self, what: str) -> None:
        """Raises `TrainingDiverged`: ``what`` went wrong, what was kept, and what to do.

        The advice differs with and without a checkpoint: a run resumes bit for bit, so
        resuming with the same config repeats the divergence, and ``opt.*`` cannot change on
        resume; a directory without a checkpoint takes a new config.
        """
        fix = "Lower opt.lr, raise opt.warmup_steps or set opt.grad_clip"
        if self.last_saved is None:
            raise TrainingDiverged(
                f"{what}; no checkpoint was saved. {fix}, then rerun: this --workdir has no "
                "checkpoint yet, so it starts afresh with the new config."
            )
        raise TrainingDiverged(
            f"{what}; nothing after step {self.last_saved} was saved, so the last checkpoint is "
            f"good. {fix}, then rerun with a new --workdir (resuming this one repeats the same "
            "steps, and opt.* cannot change on resume)."
        )

    def close(self) -> None:
        """Waits for the checkpoint being written, then releases the checkpoint manager."""
        try:
            with self.writing_checkpoints():
                self.manager.wait_until_finished()
        finally:
            self.manager.close()


class _QuietOrbaxErrors(logging.Filter):
    """Drops orbax's own error logs (with tracebacks) of a save that failed in its threads, and
    asyncio's "exception was never retrieved" for the same failed writes: the failure reaches
    `Trainer.writing_checkpoints`, which reports it as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        failed_write = record.exc_info is not None and _is_write_failure(record.exc_info[1])
        return not ("orbax" in record.pathname or failed_write)


def _quiet_closed_loops(previous, unraisable) -> None:
    """An ``sys.unraisablehook`` that drops what a failed save leaves behind: TensorStore's
    threads completing writes into orbax's closed event loop ("Event loop is closed"). Every
    other unraisable exception goes to the ``previous`` hook."""
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
        return
    previous(unraisable)


# What a failed write says, in the errors orbax and TensorStore raise from their own threads.
_WRITE_FAILURES = (
    "No space left", "File too large", "Read-only file system", "Permission denied",
    "Disk quota", "Failed writing",
)  # fmt: skip


def _is_write_failure(error: BaseException) -> bool:
    """True when ``error``, or an error it was raised from, is a failure to write a file."""
    while error is not None:
        if isinstance(error, OSError) or any(m in str(error) for m in _WRITE_FAILURES):
            return True
        error = error.__cause__ or error.__context__
    return False


def call_plan(
    start: int, total: int, per_call: int, every: tuple[int, ...]
) -> list[tuple[int, int]]:
    """Cuts steps ``start .. total-1`` into calls of at most ``per_call`` steps.

    No call crosses a multiple of any period in ``every`` (evaluation, checkpoints), so those
    happen exactly on their steps.

    Returns:
      (first step, number of steps) per call.
    """
    plan, step = [], start
    while step < total:
        end = min([step + per_call, total] + [(step // e + 1) * e for e in every])
        plan.append((step, end - step))
        step = end
    return plan


class _StopRequest:
    """Turns the first SIGINT/SIGTERM into a flag the loop checks between calls."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        tqdm.write("stopping after the current call (press Ctrl-C again to stop at once)...")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _initial_state(config, model_config: GPTConfig, tx, mesh, run_dir: RunDir):
    """The train state in its sharded layout: new, or restored from the newest intact checkpoint.

    Shapes first (nothing allocated), then the state is created directly in its sharded layout,
    or, when resuming, read from the checkpoint into that layout without initialising it first
    (`checkpoint.restore_newest_intact`: a damaged newer checkpoint is set aside, never deleted).

    Returns:
      (state, its sharding, the checkpoint's meta dict (``{"wall_time": 0.0}`` for a new run),
      the step resumed from or None).
    """
    model = GPT(model_config)
    init = functools.partial(
        create_train_state, model, tx, seed=config.seed,
        block_size=model_config.block_size, grad_accum=config.train.grad_accum,
    )  # fmt: skip
    tokens = jax.ShapeDtypeStruct((1, model_config.block_size), jax.numpy.int32)
    boxed_params = jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens)["params"]
    abstract_state = jax.eval_shape(init)
    state_sharding = sharding.train_state_shardings(abstract_state, boxed_params, mesh)
    if run_dir.latest_step() is None:
        options = kernels.compiler_options("init", model_config.kernels)
        state = jax.jit(init, out_shardings=state_sharding, compiler_options=options)()
        if config.train.init_from:  # fine-tuning: the optimizer starts afresh, not the weights
            _, params, _ = checkpoint.load_for_inference(config.train.init_from, say=tqdm.write)
            params = jax.tree.map(
                lambda p, a, s: jax.device_put(p.astype(a.dtype), s),
                params, state.params, state_sharding.params,
            )  # fmt: skip
            state = state.replace(params=params)
        return state, state_sharding, {"wall_time": 0.0}, None
    target = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        abstract_state,
        state_sharding,
    )
    state, meta, step = checkpoint.restore_newest_intact(run_dir, target, say=tqdm.write)
    return state, state_sharding, meta, step


def _write_samples(config, model_config, params, tok, run_dir: RunDir) -> None:
    """Generates ``sample.num_samples`` texts, saves them in the run directory and prints them."""
    s = config.sample
    if not (s.num_samples and s.max_new_tokens):
        return
    from gptjax.generation.text import generate_text

    texts = generate_text(
        model_config, params, tok, s.prompt, max_new_tokens=s.max_new_tokens,
        temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, num_samples=s.num_samples,
        seed=config.seed,
    )  # fmt: skip
    if jax.process_index() == 0:  # every host generates (the parameters may span hosts)
        print(run_dir.write_samples(texts), end="", flush=True)
