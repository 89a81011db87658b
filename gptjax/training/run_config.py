"""The run's configuration at the boundary: checks, resume rules, provenance (tutorial part 9).

Everything a user can get wrong in a config is caught here, with one `UserError` that says what
is wrong and how to fix it, before any data is encoded or anything is compiled. Float settings
must also be finite in the dtypes they are computed in: ``opt.lr=1e39`` is a finite Python float
but infinite in float32, and would turn the first update into NaN.

Resuming: a run directory remembers its config (``RunDir.read_config``), and is bound to it once
it holds a checkpoint (before that, a new config replaces the old: see ``gptjax.runs.rundir``).
Re-running with a different config shows the difference and refuses, unless only *safe* keys
changed: those that
decide how long to train and how often to look (``train.steps``, logging, evaluation and
checkpoint cadence, ``train.steps_per_call``) and what to sample at the end (``sample.*``). Note
that ``train.steps`` is also the end of the cosine decay, so extending a run changes its
learning rate from the resumed step on.
"""

import json
import math
import numbers
import sys
from typing import Any

import jax
import ml_collections
import numpy as np

from gptjax.errors import UserError, as_user_error
from gptjax.generation.sampling import check_sampling_args
from gptjax.model.config import GPTConfig
from gptjax.tokenizer import PATTERNS
from gptjax.training import sharding
from gptjax.training.step import OPTIMIZERS, SCHEDULES

# Every key a training config declares (model keys are GPTConfig's fields).
SCHEMA: dict[str, tuple[str, ...]] = {
    "data": ("corpus", "val_fraction"),
    "tokenizer": ("path", "vocab_size", "pattern", "specials"),
    "opt": (
        "optimizer", "lr", "min_lr", "schedule", "warmup_steps", "cooldown", "weight_decay",
        "beta1", "beta2", "grad_clip", "muon_lr", "muon_momentum",
    ),
    "train": (
        "steps", "batch_size", "grad_accum", "steps_per_call", "eval_every", "log_every",
        "checkpoint_every", "keep_checkpoints", "init_from",
    ),
    "eval": ("at_start", "device_batch_size", "val_tokens", "train_tokens"),
    "sample": ("prompt", "max_new_tokens", "temperature", "top_k", "top_p", "num_samples"),
    "mesh": ("data", "fsdp"),
}  # fmt: skip
SAFE_ON_RESUME = (
    "train.steps",
    "train.steps_per_call",
    "train.eval_every",
    "train.eval_batches",  # runs saved before the eval group had it
    "eval.",  # evaluation reads the model, never changes it
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "sample.",
    "mesh.",  # checkpoints restore under any mesh
)


def _keys_problem(config: ml_collections.ConfigDict) -> str | None:
    import dataclasses

    expected = {"seed", "model", *SCHEMA}
    groups = {**SCHEMA, "model": tuple(f.name for f in dataclasses.fields(GPTConfig))}
    missing, unknown = [], sorted(set(config.keys()) - expected)
    missing += [k for k in sorted(expected) if k not in config]
    for group, keys in groups.items():
        if group in config:
            missing += [f"{group}.{k}" for k in keys if k not in config[group]]
            unknown += [f"{group}.{k}" for k in config[group] if k not in keys]
    if missing or unknown:
        return f"missing keys {missing}, unknown keys {unknown}"
    return None


def _int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UserError(f"config.{name}={value!r} must be an integer >= {minimum}.")


def _real(
    name: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    open_low: bool = False,
    open_high: bool = False,
    dtypes: tuple[str, ...] = ("float32",),
) -> None:
    """Checks that ``value`` is a number in the interval, finite in each of ``dtypes``.

    Infinity is never a valid setting, so ``high=math.inf`` reads as "no upper bound".
    """
    if high == math.inf:
        interval = f"{'>' if open_low else '>='} {low}"
    else:
        interval = f"in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserError(f"config.{name}={value!r} must be a number {interval}.")
    try:
        as_float = float(value)
    except OverflowError:  # an int beyond float64
        as_float = math.inf
    if not math.isfinite(as_float):
        raise UserError(f"config.{name}={value!r} must be finite: give a number {interval}.")
    for dtype in dtypes:
        with np.errstate(over="ignore"):
            finite = np.isfinite(np.asarray(as_float, dtype=jax.numpy.dtype(dtype)))
        if not finite:
            largest = float(jax.numpy.finfo(dtype).max)
            raise UserError(
                f"config.{name}={value!r} is infinite in {dtype}, where training computes it "
                f"(its largest value is {largest:.4g}): give a finite number {interval}."
            )
    if not (value > low if open_low else value >= low) or not (
        value < high if open_high else value <= high
    ):
        raise UserError(f"config.{name}={value!r} must be a number {interval}.")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"config.{name}={value!r}: use one of {', '.join(map(repr, choices))}.")


def check_config(config: ml_collections.ConfigDict) -> GPTConfig:
    """Validates every key of a training config.

    Returns:
      The model's GPTConfig (itself validated).

    Raises:
      UserError: on the first invalid value, naming the key and the valid range.
    """
    problem = _keys_problem(config)
    if problem:
        raise UserError(f"the config does not match the training schema: {problem}.")
    _int("seed", config.seed, 0)
    _real("data.val_fraction", config.data.val_fraction, 0, 1, open_low=True, open_high=True)
    tok = config.tokenizer
    if tok.pattern not in PATTERNS:
        raise UserError(f"config.tokenizer.pattern={tok.pattern!r}: use one of {sorted(PATTERNS)}.")
    if not tok.path:
        _int("tokenizer.vocab_size", tok.vocab_size, 260)  # 256 bytes + 4 specials, no merges
    # The model's float settings first (GPTConfig would choke on an infinite mlp_ratio), then
    # the model, whose compute dtype the optimizer's settings must also be finite in.
    _real("model.mlp_ratio", config.model.mlp_ratio, 0)  # 0: blocks without an MLP
    _real("model.dropout", config.model.dropout, 0, 1, open_high=True)
    with as_user_error():
        model_config = GPTConfig(**config.model)
    dtypes = tuple(dict.fromkeys(("float32", model_config.dtype)))
    opt = config.opt
    _choice("opt.optimizer", opt.optimizer, OPTIMIZERS)
    _choice("opt.schedule", opt.schedule, SCHEDULES)
    _real("opt.lr", opt.lr, 0, open_low=True, dtypes=dtypes)
    _real("opt.min_lr", opt.min_lr, 0, opt.lr, dtypes=dtypes)
    _int("opt.warmup_steps", opt.warmup_steps, 0)
    _real("opt.cooldown", opt.cooldown, 0, 1, dtypes=dtypes)
    _real("opt.muon_lr", opt.muon_lr, 0, open_low=True, dtypes=dtypes)
    _real("opt.muon_momentum", opt.muon_momentum, 0, 1, open_high=True, dtypes=dtypes)
    _real("opt.weight_decay", opt.weight_decay, 0, dtypes=dtypes)
    _real("opt.beta1", opt.beta1, 0, 1, open_high=True, dtypes=dtypes)
    _real("opt.beta2", opt.beta2, 0, 1, open_high=True, dtypes=dtypes)
    _real("opt.grad_clip", opt.grad_clip, 0, dtypes=dtypes)  # 0 disables clipping
    train = config.train
    for key in SCHEMA["train"]:
        if key != "init_from":
            _int(f"train.{key}", train[key], 1)
    if not isinstance(train.init_from, str):
        raise UserError(
            f"config.train.init_from={train.init_from!r} must be a run directory's path, or ''."
        )
    if not isinstance(config.eval.at_start, bool):
        raise UserError(f"config.eval.at_start={config.eval.at_start!r} must be True or False.")
    _int("eval.device_batch_size", config.eval.device_batch_size, 1)
    _int("eval.val_tokens", config.eval.val_tokens, 0)
    _int("eval.train_tokens", config.eval.train_tokens, 0)
    if train.batch_size % train.grad_accum:
        raise UserError(
            f"config.train.batch_size={train.batch_size} is not divisible by "
            f"train.grad_accum={train.grad_accum}: the batch is cut into grad_accum equal "
            "micro-batches."
        )
    # The mesh against the devices present, and the batch against the mesh.
    with as_user_error():
        mesh = sharding.make_mesh(config.mesh)
        sharding.check_batch_size(train.batch_size, train.grad_accum, mesh)
    sample = config.sample
    _int("sample.max_new_tokens", sample.max_new_tokens, 0)
    _int("sample.num_samples", sample.num_samples, 0)
    if not isinstance(sample.prompt, str):
        raise UserError(f"config.sample.prompt={sample.prompt!r} must be a string.")
    with as_user_error():
        check_sampling_args(sample.temperature, sample.top_k, sample.top_p)
    return model_config


def flat(config: dict, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"steps": 5}}`` -> ``{"train.steps": 5}``."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_diff(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """Keys whose values differ between two configs, as (key, old, new), sorted."""
    a, b = flat(old), flat(new)
    missing = object()
    return [
        (k, a.get(k, missing), b.get(k, missing))
        for k in sorted(set(a) | set(b))
        if a.get(k, missing) != b.get(k, missing)
    ]


def check_resume_config(saved: dict, config: ml_collections.ConfigDict) -> list[str]:
    """Compares a run's saved config with the one given to resume it.

    Returns:
      Lines describing the (safe) changes, empty when nothing changed.

    Raises:
      UserError: when a key outside SAFE_ON_RESUME changed; the message shows the diff.
    """
    current = json.loads(config.to_json())
    diff = config_diff(saved, current)
    lines = [f"  {k}: {old!r} -> {new!r}" for k, old, new in diff]
    unsafe = [k for k, _, _ in diff if not k.startswith(SAFE_ON_RESUME)]
    if unsafe:
        raise UserError(
            "this run directory was trained with a different config; changed keys:\n"
            + "\n".join(lines)
            + f"\n{', '.join(unsafe)} cannot change on resume (only {', '.join(SAFE_ON_RESUME)}"
            " can). Use a new --workdir, or revert these overrides."
        )
    return lines


def run_info(model_config: GPTConfig, peak_flops: float, resumed_from: int | None) -> dict:
    """Provenance of a run: code commit, JAX and its devices, model size, command line.

    The training loop saves it with ``RunDir.write_run_info`` each time the run starts or resumes.
    """
    from gptjax.runs.provenance import code_commit

    return {
        "git_commit": code_commit(),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "param_count": model_config.param_count(),
        "flops_per_token": model_config.flops_per_token(),
        "matmul_peak_flops": peak_flops,
        "matmul_peak_dtype": model_config.dtype,  # the compute dtype the peak is measured in
        "command": " ".join(sys.argv),
        "resumed_from": resumed_from,
    }
