"""``python -m gptjax.convert``: GPT-2 weights from Hugging Face ``transformers``, and back.

  python -m gptjax.convert from-hf HF_DIR --out runs/gpt2_hf
  python -m gptjax.convert to-hf runs/gpt2_hf --out HF_DIR

``from-hf`` reads a Hugging Face GPT-2 folder (``config.json`` and ``model.safetensors``, as
``huggingface-cli download gpt2 config.json model.safetensors --local-dir HF_DIR`` fetches them)
and writes a run directory at step 0, as if a training run had just started from these weights:
``config.json`` (the training config of ``--config``, configs/gpt2.py by default, with the model's
architecture from the Hugging Face config), the tokenizer, and a checkpoint holding the whole
train state (the parameters and a fresh optimizer state). ``python -m gptjax.generate`` samples
from it, and a config whose ``train.init_from`` names it fine-tunes it (configs/gpt2_finetune.py).

The tokenizer is the config's (``tokenizer.path``, ``tokenizer.specials``: GPT-2's rank file and
``<|endoftext|>=50256`` in configs/gpt2.py), loaded as training loads it; ``--tokenizer`` and
``--specials`` replace those two keys. It must have exactly one id per row of the token table.

``to-hf`` writes what ``GPT2LMHeadModel.from_pretrained(HF_DIR)`` loads, from the latest
checkpoint of a run whose model GPT-2 can express (learned positions, LayerNorm, biases; tied or
untied head). A token table padded beyond the tokenizer (configs/gpt2.py's 50,304 rows for
50,257 ids) is cut to the tokenizer's ids: the extra rows are never inputs nor targets, and
``transformers``' tokenizers have no ids for them. The tokenizer itself is not exported: for
GPT-2's, take ``vocab.json`` and ``merges.txt`` from the Hugging Face ``gpt2`` model.

The mapping between the two layouts is ``gptjax.model.hf``; this module reads and writes files.
A mistake (not a GPT-2 folder, a missing or misshapen tensor, a tokenizer of another size, an
``--out`` that already holds a run) is one line ``error: ...`` and exit code 2.
"""

import argparse
import hashlib
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

import gptjax
from gptjax.errors import UserError
from gptjax.model import hf
from gptjax.model.config import GPTConfig

DEFAULT_CONFIG = Path(gptjax.__file__).resolve().parents[1] / "configs" / "gpt2.py"
HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"
FLOAT_DTYPES = ("F32", "F16", "BF16")
# transformers refuses a safetensors file whose metadata does not name its format.
SAFETENSORS_METADATA = {"format": "pt"}


def from_hf(
    hf_dir: str | Path,
    out: str | Path,
    config_file: str | Path = DEFAULT_CONFIG,
    tokenizer: str | None = None,
    specials: str | None = None,
) -> GPTConfig:
    """Converts a Hugging Face GPT-2 folder into a run directory at step 0.

    Everything is read and checked before anything is written.

    Args:
      hf_dir: holds ``config.json`` and ``model.safetensors``.
      out: the run directory to write; it must not hold anything yet.
      config_file: the training config whose groups the run's ``config.json`` keeps.
      tokenizer: replaces ``tokenizer.path`` (a rank file or a gptjax ``tokenizer.bpe``).
      specials: replaces ``tokenizer.specials`` (``NAME=ID,...``).

    Returns:
      The model's GPTConfig.

    Raises:
      UserError: see the module docstring.
    """
    from gptjax.runs.experiment import config_from_file
    from gptjax.runs.rundir import RunDir
    from gptjax.training.run_config import check_config

    hf_dir, run_dir = Path(hf_dir), RunDir(out)
    _check_empty(run_dir)
    hf_config = _read_hf_config(hf_dir)
    arch = hf.config_from_hf(hf_config)
    params = _read_params(hf_dir / HF_WEIGHTS, GPTConfig(**arch))

    if not Path(config_file).is_file():
        raise UserError(f"--config {config_file}: no such file (try --config configs/gpt2.py)")
    config = config_from_file(config_file)
    if tokenizer is not None:
        config.tokenizer.path = tokenizer
    if specials is not None:
        config.tokenizer.specials = specials
    tok = _load_tokenizer(config)
    _check_vocab(tok, hf_config)
    # The architecture is the checkpoint's; dropout, dtypes and kernels stay the config's.
    config.model = ml_collections.ConfigDict({**config.model.to_dict(), **arch})
    config.tokenizer.vocab_size = tok.vocab_size
    model_config = check_config(config)
    state = _train_state(config, model_config, params)

    info = {
        "converted_from": str(hf_dir.resolve()),
        "model_safetensors_sha256": _sha256(hf_dir / HF_WEIGHTS),
        "command": " ".join(sys.argv),
        "param_count": model_config.param_count(),
    }
    _write_run(run_dir, config, tok, state, info)
    return model_config


def to_hf(workdir: str | Path, out: str | Path) -> tuple[GPTConfig, int]:
    """Exports the latest checkpoint of a run as a Hugging Face GPT-2 folder.

    Args:
      workdir: a run directory with a checkpoint.
      out: the folder to write ``config.json`` and ``model.safetensors`` into (created); it
        must not hold either yet.

    Returns:
      (the run's GPTConfig, the vocabulary size written).

    Raises:
      UserError: not a run directory, a model GPT-2 cannot express, or ``out`` holds a model.
    """
    from safetensors.numpy import save_file

    from gptjax.runs.checkpoint import load_for_inference
    from gptjax.runs.rundir import RunDir

    out = Path(out)
    for name in (HF_CONFIG, HF_WEIGHTS):
        if (out / name).exists():
            raise UserError(f"--out {out} already holds {name}: give a new folder or remove it")
    if not Path(workdir).is_dir():
        raise UserError(f"{workdir} does not exist: give a run directory with a checkpoint")
    hf.check_expressible(GPTConfig(**RunDir(workdir).read_config()["model"]))  # before loading
    model_config, params, tok = load_for_inference(workdir)
    vocab_size = min(tok.vocab_size, model_config.vocab_size)
    tensors = hf.params_to_hf(params, model_config, vocab_size=vocab_size)
    config = hf.hf_config(model_config, vocab_size, tok.bos_id, tok.eos_id)
    out.mkdir(parents=True, exist_ok=True)
    # Each file is written beside its name and renamed: a crash leaves no half-written model.
    weights, text = out / f".{HF_WEIGHTS}.tmp", out / f".{HF_CONFIG}.tmp"
    save_file(tensors, weights, metadata=SAFETENSORS_METADATA)
    text.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    weights.replace(out / HF_WEIGHTS)
    text.replace(out / HF_CONFIG)
    return model_config, vocab_size


def _check_empty(run_dir) -> None:
    """Refuses an ``--out`` that holds a run, or anything else (a lock left by us aside)."""
    if run_dir.is_run or run_dir.checkpoint_dir.exists():
        raise UserError(
            f"--out {run_dir.path} already holds a run: give a new folder, or remove this one"
        )
    if run_dir.path.exists():
        if not run_dir.path.is_dir():
            raise UserError(f"--out {run_dir.path} is a file: give a new folder")
        if any(p != run_dir.lock_path for p in run_dir.path.iterdir()):
            raise UserError(f"--out {run_dir.path} is not empty: give a new or empty folder")


def _read_hf_config(hf_dir: Path) -> dict[str, Any]:
    if not hf_dir.is_dir():
        raise UserError(f"{hf_dir} is not a folder: give the folder of a Hugging Face GPT-2 model")
    path = hf_dir / HF_CONFIG
    if not path.is_file():
        raise UserError(
            f"{hf_dir} has no {HF_CONFIG}: download it with the weights (huggingface-cli download "
            f"gpt2 {HF_CONFIG} {HF_WEIGHTS} --local-dir {hf_dir})"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path} is not a JSON object")
    return config


def _read_params(path: Path, config: GPTConfig) -> dict[str, Any]:
    """The parameters in ``path``, checked against ``config``, as float32 NumPy arrays."""
    from safetensors import safe_open

    if not path.is_file():
        other = [p.name for p in path.parent.glob("*.bin")] + [
            p.name for p in path.parent.glob("*.safetensors.index.json")
        ]
        hint = f" (it has {', '.join(other)}: only a single {HF_WEIGHTS} is read)" if other else ""
        raise UserError(
            f"{path.parent} has no {HF_WEIGHTS}{hint}: download it (huggingface-cli download gpt2 "
            f"{HF_WEIGHTS} --local-dir {path.parent})"
        )
    try:
        reader = safe_open(path, framework="np")
    except Exception as error:  # safetensors raises its own error types for a damaged header
        reason = " ".join(str(error).split())[:200]
        raise UserError(f"{path} is not a readable safetensors file ({reason})") from None
    with reader as f:
        shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
        names = hf.match_tensors(shapes, config)
        tensors = {}
        for ours, theirs in names.items():
            dtype = f.get_slice(theirs).get_dtype()
            if dtype not in FLOAT_DTYPES:
                raise UserError(
                    f"tensor {theirs!r} has dtype {dtype}; a GPT-2 tensor is one of {FLOAT_DTYPES}"
                )
            tensors[ours] = f.get_tensor(theirs).astype(np.float32, copy=False)
            if not np.isfinite(tensors[ours]).all():
                raise UserError(f"tensor {theirs!r} holds NaN or infinite values: the file is bad")
    return hf.params_from_hf(tensors, config)


def _load_tokenizer(config: ml_collections.ConfigDict):
    """The tokenizer a training run with ``config`` uses (``gptjax.training.prepare``)."""
    from gptjax.runs.rundir import RunDir
    from gptjax.training.prepare import prepare_tokenizer

    if not config.tokenizer.path:
        raise UserError(
            "the config trains its own tokenizer (tokenizer.path is ''): give the tokenizer of "
            "these weights with --tokenizer, e.g. $GPTJAX_DATA_DIR/gpt2.tiktoken for GPT-2's"
        )
    with tempfile.TemporaryDirectory() as scratch:  # it saves a copy: not into --out yet
        return prepare_tokenizer(config, [], RunDir(scratch))


def _check_vocab(tok, hf_config: dict[str, Any]) -> None:
    """The tokenizer must have one id per row of the token table, and the same end-of-text id."""
    vocab_size = hf_config["vocab_size"]
    if tok.vocab_size != vocab_size:
        raise UserError(
            f"the tokenizer has {tok.vocab_size} ids but config.json's vocab_size (the rows of "
            f"wte.weight) is {vocab_size}: give the tokenizer of these weights (--tokenizer, "
            "--specials)"
        )
    eos = hf_config.get("eos_token_id")
    if isinstance(eos, int) and tok.eos_id != eos:
        raise UserError(
            f"config.json's eos_token_id is {eos} but the tokenizer's end-of-text id is "
            f"{tok.eos_id}: give the tokenizer of these weights (--tokenizer, --specials)"
        )


def _train_state(config: ml_collections.ConfigDict, model_config: GPTConfig, params):
    """A train state at step 0 with ``params`` and a fresh optimizer state, as training has it."""
    import jax
    import jax.numpy as jnp

    from gptjax.model import GPT
    from gptjax.training.step import create_train_state, make_optimizer

    tx, _ = make_optimizer(
        **config.opt, total_steps=config.train.steps, kernels=model_config.kernels
    )
    abstract = jax.eval_shape(
        lambda: create_train_state(
            GPT(model_config), tx, seed=config.seed, block_size=model_config.block_size,
            grad_accum=config.train.grad_accum,
        )
    )  # fmt: skip
    # The same tree as the model's own parameters (checked by tree.map), in its dtypes.
    params = jax.tree.map(lambda p, s: jnp.asarray(p, s.dtype), params, abstract.params)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(lambda s: s.shape, abstract.params)
    # The dropout key is derived from the seed as create_train_state derives it.
    _, dropout_key = jax.random.split(jax.random.PRNGKey(config.seed))
    return abstract.replace(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=dropout_key
    )


def _write_run(run_dir, config, tok, state, info: dict[str, Any]) -> None:
    from gptjax.runs import checkpoint
    from gptjax.runs.provenance import code_commit

    with run_dir.lock():
        _check_empty(run_dir)  # again, now that no trainer can start here
        run_dir.write_config(json.loads(config.to_json()))
        run_dir.save_tokenizer(tok)
        manager = run_dir.checkpoint_manager(keep=config.train.keep_checkpoints)
        checkpoint.save(manager, state, {"wall_time": 0.0})
        manager.wait_until_finished()
        manager.close()
        run_dir.write_run_info({"git_commit": code_commit(), **info})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gptjax.convert",
        description="Convert GPT-2 weights between Hugging Face transformers and gptjax.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("from-hf", help="a Hugging Face GPT-2 folder -> a run directory")
    get.add_argument("hf_dir", help="folder holding config.json and model.safetensors")
    get.add_argument("--out", required=True, help="the run directory to write (new or empty)")
    get.add_argument(
        "--config", default=str(DEFAULT_CONFIG), help="training config kept in the run's config"
    )
    get.add_argument("--tokenizer", help="replaces the config's tokenizer.path")
    get.add_argument("--specials", help="replaces tokenizer.specials, e.g. '<|endoftext|>=50256'")
    put = commands.add_parser("to-hf", help="a run directory -> a Hugging Face GPT-2 folder")
    put.add_argument("workdir", help="a run directory with a checkpoint")
    put.add_argument("--out", required=True, help="the folder to write (new or empty)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: convert, print what was written."""
    args = _parser().parse_args(argv)
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    try:
        if args.command == "from-hf":
            cfg = from_hf(args.hf_dir, args.out, args.config, args.tokenizer, args.specials)
            print(
                f"wrote {args.out}: a GPT-2 of {cfg.param_count():,} parameters (n_layer="
                f"{cfg.n_layer}, n_head={cfg.n_head}, n_embd={cfg.n_embd}, vocab_size="
                f"{cfg.vocab_size}) at step 0; try python -m gptjax.generate --workdir {args.out}"
            )
        else:
            cfg, vocab_size = to_hf(args.workdir, args.out)
            if vocab_size < cfg.vocab_size:
                print(
                    f"the {cfg.vocab_size}-row token table is cut to the tokenizer's {vocab_size}"
                )
            print(
                f"wrote {args.out}: {HF_CONFIG} and {HF_WEIGHTS} of a GPT-2 of {vocab_size} "
                f"tokens; load it with GPT2LMHeadModel.from_pretrained({str(args.out)!r})"
            )
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
