"""``python -m gptjax.evaluate``: the loss of any checkpoint on any text (tutorial part 9).

  python -m gptjax.evaluate --workdir runs/tiny                    # the run's validation split
  python -m gptjax.evaluate --workdir runs/tiny --input notes.txt  # any UTF-8 text file
  python -m gptjax.evaluate --workdir runs/tiny --corpus hugo_extrait --out eval.json

Prints the loss (nats per token), the perplexity and the bits per byte of the run's newest
intact checkpoint (or ``--step``), computed as the trainer computes its validation loss
(``gptjax.training.evaluation``): every target token of the text is counted once, so without
``--input`` or ``--corpus`` the numbers are those the trainer logged for that step. ``--out``
writes them as JSON. It only reads the run directory, so it works while the run trains.

A mistake the user can fix (`gptjax.errors.UserError`) is one line ``error: ...`` and exit code
2; any other error is a bug and keeps its traceback.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gptjax.errors import UserError, as_user_error
from gptjax.runs.rundir import RunDir


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gptjax.evaluate",
        description="Loss, perplexity and bits per byte of a checkpoint on a text.",
    )
    parser.add_argument("--workdir", required=True, help="run directory written by gptjax.main")
    parser.add_argument("--step", type=int, default=None, help="checkpoint (default: newest)")
    text = parser.add_mutually_exclusive_group()
    text.add_argument("--input", help="a UTF-8 text file, a folder of them or a glob")
    text.add_argument("--corpus", help="a named corpus (pydoc, tinyshakespeare, hugo_extrait)")
    parser.add_argument(
        "--tokens", type=int, default=None, help="a budget of tokens (default: all of the text)"
    )
    parser.add_argument(
        "--device-batch-size", type=int, default=None, help="windows per device per step"
    )
    parser.add_argument("--out", help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def _check_args(args: argparse.Namespace) -> None:
    if args.tokens is not None and args.tokens < 0:
        raise UserError(f"--tokens must be >= 0 (0 for all of the text), got {args.tokens}")
    if args.device_batch_size is not None and args.device_batch_size < 1:
        raise UserError(f"--device-batch-size must be >= 1, got {args.device_batch_size}")
    if args.out:
        out = Path(args.out)
        if out.is_dir():
            raise UserError(f"--out {out} is a folder; give the path of a .json file to write")
        if not out.parent.is_dir():
            raise UserError(f"--out {out}: the folder {out.parent} does not exist; create it first")


def evaluate_run(
    workdir: str | Path,
    *,
    step: int | None = None,
    documents: list[str] | None = None,
    tokens: int | None = None,
    device_batch_size: int | None = None,
) -> dict:
    """Evaluates a checkpoint of a run on its validation split or on ``documents``.

    Args:
      workdir: the run directory.
      step: which checkpoint; the newest intact one when None.
      documents: the text, as documents (joined like training data); the run's validation split
        when None.
      tokens: a budget of target tokens, 0 for all; when None, the run's ``eval.val_tokens`` on
        its validation split, and all of ``documents``.
      device_batch_size: windows per device per step; the run's ``eval.device_batch_size``
        (or 8, for runs saved before that key) when None.

    Returns:
      ``loss``, ``perplexity``, ``bpb``, ``tokens`` (the targets counted) and ``step``.

    Raises:
      UserError: not a run directory, no intact checkpoint, a text shorter than one window.
    """
    from gptjax.runs.checkpoint import load_checkpoint  # orbax is slow to import
    from gptjax.training import data, evaluation, sharding

    saved = RunDir(workdir).read_config()
    model_config, params, tok, step = load_checkpoint(workdir, step)
    eval_config = saved.get("eval", {})
    from_run = documents is None
    if from_run:
        with as_user_error():
            docs = data.load_documents(saved["data"]["corpus"])
            _, documents = data.split_documents(docs, saved["data"]["val_fraction"])
    ids = data.encode_documents(tok, documents)
    T = model_config.block_size
    if len(ids) < T + 1:
        raise UserError(
            f"the text is {len(ids)} tokens long, shorter than one window of this model "
            f"(block_size {T} + 1): give a longer text"
        )
    if tokens is None:  # the trainer's budget on its own split, else all of the text
        tokens = eval_config.get("val_tokens", 0) if from_run else 0
    batch = device_batch_size or eval_config.get("device_batch_size", 8)
    lengths = np.zeros((model_config.vocab_size,), np.int32)
    lengths[: tok.vocab_size] = data.token_byte_lengths(tok)
    mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
    evaluator = evaluation.Evaluator(
        _apply(model_config), lengths, mesh, T, batch, compiler_options=None
    )
    params = sharding.replicated(params, mesh)
    figures = evaluator(params, ids, evaluation.windows(len(ids), T, tokens))
    return {**figures, "step": step}


def _apply(model_config):
    from gptjax.model import GPT

    return GPT(model_config).apply


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: check the flags, evaluate, print (and write) the figures."""
    args = _parse_args(argv)
    try:
        _check_args(args)
        documents, what = None, "the run's validation split"
        if args.input or args.corpus:
            from gptjax.training import data

            with as_user_error():
                documents = data.load_documents(args.input or args.corpus)
            what = args.input or f"the corpus {args.corpus}"
        figures = evaluate_run(
            args.workdir, step=args.step, documents=documents, tokens=args.tokens,
            device_batch_size=args.device_batch_size,
        )  # fmt: skip
    except UserError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(2)
    print(
        f"step {figures['step']}, {what}: loss {figures['loss']:.4f} nats/token, perplexity "
        f"{figures['perplexity']:.2f}, {figures['bpb']:.4f} bits per byte "
        f"({figures['tokens']:,} tokens)"
    )
    if args.out:
        record = {"workdir": str(args.workdir), "text": what, **figures}
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
