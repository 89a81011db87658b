"""The training loop: `train_and_evaluate(config, workdir)` (tutorial part 9).

This is the I/O edge of training: it checks the config, prepares the data, builds the state,
resumes from the run directory's last checkpoint, then repeats

  run ``train.steps_per_call`` steps in one jitted call (a `lax.scan` over prefetched batches),
  log, evaluate, checkpoint,

and finally prints samples. Small models on a CPU spend much of a step in per-call overhead
(dispatch, argument handling, Python), so several steps per call pay off; the host builds the next
batches in a background thread and reads the previous call's metrics while the current one runs.

Stopping: Ctrl-C (or SIGTERM) finishes the current call, saves a checkpoint and re-raises
`KeyboardInterrupt`; a second Ctrl-C stops at once. A non-finite loss or gradient norm stops with
`TrainingDiverged` before anything is saved, so the last checkpoint stays the last good one.
"""

import functools
import json
import signal
import threading
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from gptjax.model import GPT, kernels
from gptjax.model.config import GPTConfig
from gptjax.runs import checkpoint
from gptjax.training import data, sharding
from gptjax.training.metrics import MetricsWriter, eval_summary, measure_matmul_flops, mfu
from gptjax.training.prepare import PreparedData, prepare_data
from gptjax.training.run_config import check_config, check_resume_config, run_info, write_json
from gptjax.training.step import create_train_state, eval_sums, make_optimizer, train_steps

SAMPLES_FILE = "samples.txt"
RUN_INFO_FILE = "run_info.json"


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm stopped being finite."""


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


def _write_samples(config, model_config, params, tok, workdir: Path) -> None:
    s = config.sample
    if not (s.num_samples and s.max_new_tokens):
        return
    from gptjax.generation.text import generate_text

    texts = generate_text(
        model_config, params, tok, s.prompt, max_new_tokens=s.max_new_tokens,
        temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, num_samples=s.num_samples,
        seed=config.seed,
    )  # fmt: skip
    text = "".join(f"--- sample {i + 1} ---\n{t}\n" for i, t in enumerate(texts))
    (workdir / SAMPLES_FILE).write_text(text, encoding="utf-8")
    print(text, end="", flush=True)


def _eval_sets(config, model_config: GPTConfig, prepared: PreparedData, mesh) -> dict:
    kwargs = dict(
        seed=config.seed,
        batch_size=config.train.batch_size,
        block_size=model_config.block_size,
        rows=sharding.host_rows(config.train.batch_size),
    )
    indices = range(config.train.eval_batches)
    sets = {
        "val": data.stacked_batches(
            prepared.val_ids, indices, stream=data.VAL_EVAL_STREAM, **kwargs
        ),
        "train": data.stacked_batches(
            prepared.train_ids, indices, stream=data.TRAIN_EVAL_STREAM, **kwargs
        ),
    }
    return sharding.global_batch(sets, mesh, batch_axis=1)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> None:
    """Trains (or resumes) the run in ``workdir``, evaluates it, checkpoints it, prints samples.

    Args:
      config: a training config (see ``configs/``), checked before anything is compiled.
      workdir: the run directory; re-running with the same one resumes.

    Raises:
      ValueError: a bad config, corpus or tokenizer.
      TrainingDiverged: the loss became NaN/Inf (the last good checkpoint is kept).
      KeyboardInterrupt: after Ctrl-C, once the checkpoint is saved.
    """
    entered = time.perf_counter()
    sharding.maybe_initialize_distributed()  # before anything asks JAX for its devices
    workdir = Path(workdir)
    model_config = check_config(config)
    workdir.mkdir(parents=True, exist_ok=True)
    resume_step = checkpoint.latest_step(workdir)
    config_path = workdir / checkpoint.CONFIG_FILE
    if config_path.is_file():
        changes = check_resume_config(json.loads(config_path.read_text()), config)
        if changes:
            print("config changes since this run started (safe to resume):\n" + "\n".join(changes))
    write_json(config_path, json.loads(config.to_json()))
    prepared = prepare_data(config, model_config, workdir)

    train, steps = config.train, config.train.steps
    tx, schedule = make_optimizer(**config.opt, total_steps=steps, kernels=model_config.kernels)
    model = GPT(model_config)
    init = functools.partial(
        create_train_state, model, tx, seed=config.seed,
        block_size=model_config.block_size, grad_accum=train.grad_accum,
    )  # fmt: skip
    # Shapes first (nothing allocated), then the state is created directly in its sharded layout,
    # or, when resuming, read from the checkpoint into that layout without initialising it first.
    mesh = sharding.make_mesh(config.mesh)
    tokens = jax.ShapeDtypeStruct((1, model_config.block_size), jax.numpy.int32)
    boxed_params = jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens)["params"]
    abstract_state = jax.eval_shape(init)
    state_sharding = sharding.train_state_shardings(abstract_state, boxed_params, tx, mesh)
    manager = checkpoint.make_manager(workdir, keep=train.keep_checkpoints)
    if resume_step is None:
        options = kernels.compiler_options("init", model_config.kernels)
        state = jax.jit(init, out_shardings=state_sharding, compiler_options=options)()
        meta = {"wall_time": 0.0}
    else:
        target = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            abstract_state,
            state_sharding,
        )
        state, meta = checkpoint.restore(manager, target, resume_step)
        print(f"resumed {workdir} from step {resume_step}")
    peak_flops = measure_matmul_flops(2048 if jax.default_backend() == "cpu" else 8192)
    write_json(workdir / RUN_INFO_FILE, run_info(model_config, peak_flops, resume_step))
    try:
        step = int(state.step)
        if step >= steps:
            print(f"{workdir} already finished {step} steps (train.steps={steps}); samples:")
        else:
            state = _loop(config, model_config, prepared, state, schedule, manager, meta, workdir,
                          peak_flops, entered, state_sharding)  # fmt: skip
    finally:
        manager.wait_until_finished()
        manager.close()
    _write_samples(config, model_config, state.params, prepared.tok, workdir)


def _loop(
    config, model_config, prepared, state, schedule, manager, meta, workdir, peak_flops, entered,
    state_sharding,
):  # fmt: skip
    train, steps = config.train, config.train.steps
    tokens_per_step = train.batch_size * model_config.block_size
    flops_per_token = model_config.flops_per_token()
    start = int(state.step)
    # The rate of every step in one compiled call: evaluating the schedule op by op on the host
    # would compile each of its operations the first time (about 0.4 s on a 2-core CPU).
    lr_by_step = np.asarray(jax.jit(schedule)(np.arange(steps)))
    mesh = jax.tree.leaves(state_sharding)[0].mesh
    # The state keeps its layout from call to call; batches arrive already split (make_batches).
    options = kernels.compiler_options("step", model_config.kernels)
    multi_step = jax.jit(
        train_steps,
        donate_argnums=0,
        out_shardings=(state_sharding, None),
        compiler_options=options,
    )
    evaluate = jax.jit(
        functools.partial(eval_sums, apply_fn=state.apply_fn), compiler_options=options
    )
    eval_sets = _eval_sets(config, model_config, prepared, mesh)
    bytes_V = sharding.replicated(prepared.byte_lengths, mesh)
    writer = MetricsWriter(workdir, resume_step=start)
    wall_start = entered - meta["wall_time"]  # wall_time counts setup too, summed over resumes
    last_saved = start if start else None
    records: dict[int, dict] = {}

    def base(step):
        return {
            "tokens_seen": step * tokens_per_step,
            "wall_time": time.perf_counter() - wall_start,
        }

    def run_eval(step):
        sums = {
            name: jax.device_get(evaluate(state.params, b, bytes_V))
            for name, b in eval_sets.items()
        }
        val, tr = eval_summary(sums["val"]), eval_summary(sums["train"])
        records.setdefault(step, base(step)).update(
            val_loss=val["loss"], val_perplexity=val["perplexity"], val_bpb=val["bpb"],
            train_eval_loss=tr["loss"], train_bpb=tr["bpb"],
        )  # fmt: skip
        bar.write(
            f"step {step}: val loss {val['loss']:.4f}, val bpb {val['bpb']:.4f}, "
            f"train loss {tr['loss']:.4f}"
        )

    def flush_records():
        for step in sorted(records):
            writer.write(step, records[step])
        records.clear()

    timer = {"last": time.perf_counter()}

    def process(first, n, metrics):
        host = jax.device_get(metrics)
        bad = ~(np.isfinite(host["loss"]) & np.isfinite(host["grad_norm"]))
        if bad.any():
            at = first + int(np.argmax(bad)) + 1
            raise TrainingDiverged(
                f"the loss or gradient norm became non-finite at step {at} (loss "
                f"{host['loss'][bad][0]}, grad norm {host['grad_norm'][bad][0]}); nothing after "
                f"step {last_saved} was saved, so the last checkpoint is good. Lower opt.lr, "
                "raise opt.warmup_steps or set opt.grad_clip, then rerun with a new --workdir "
                "or the same one to resume from that checkpoint."
            )
        now = time.perf_counter()
        tokens_per_sec = n * tokens_per_step / max(now - timer["last"], 1e-9)
        timer["last"] = now
        for j in range(n):
            s = first + j + 1
            if s % train.log_every == 0 or s == steps:
                records.setdefault(s, base(s)).update(
                    train_loss=host["loss"][j], grad_norm=host["grad_norm"][j],
                    lr=lr_by_step[s - 1], tokens_per_sec=tokens_per_sec,
                    mfu=mfu(flops_per_token, tokens_per_sec, peak_flops),
                )  # fmt: skip
        bar.update(n)
        bar.set_postfix(loss=f"{float(host['loss'][-1]):.4f}", tok_s=f"{tokens_per_sec:,.0f}")

    def make_batches(call):
        first, n = call
        batches = data.stacked_batches(
            prepared.train_ids, range(first, first + n), seed=config.seed,
            stream=data.TRAIN_STREAM, batch_size=train.batch_size,
            block_size=model_config.block_size, rows=sharding.host_rows(train.batch_size),
        )  # fmt: skip
        return first, n, sharding.global_batch(batches, mesh, batch_axis=1)

    plan = call_plan(start, steps, train.steps_per_call, (train.eval_every, train.checkpoint_every))
    bar = tqdm(total=steps, initial=start, unit="step", dynamic_ncols=True, smoothing=0.1)
    try:
        with _StopRequest() as stop:
            if start == 0:
                run_eval(0)
                flush_records()
            timer["last"] = time.perf_counter()  # the first call's rate counts its compilation
            pending = None
            for first, n, batches in data.prefetch(make_batches, iter(plan)):
                state, metrics = multi_step(state, batches)
                if pending is not None:
                    process(*pending)  # the host reads call i-1 while the device runs call i
                pending = (first, n, metrics)
                end = first + n
                is_eval = end % train.eval_every == 0 or end == steps
                is_save = end % train.checkpoint_every == 0 or end == steps
                if is_eval or is_save or stop.requested:
                    process(*pending)
                    pending = None
                    if is_eval:
                        run_eval(end)
                    flush_records()
                    # A stop requested during the evaluation still saves this step.
                    if is_save or stop.requested:
                        meta = {"wall_time": time.perf_counter() - wall_start}
                        checkpoint.save(manager, state, meta)
                        last_saved = end
                    timer["last"] = time.perf_counter()
                if stop.requested:
                    manager.wait_until_finished()
                    bar.write(f"interrupted: checkpoint saved at step {end}; rerun to resume.")
                    raise KeyboardInterrupt
    finally:
        flush_records()
        writer.close()
        bar.close()
    return state
