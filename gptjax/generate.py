"""``python -m gptjax.generate``: text from the latest checkpoint of a run (tutorial part 10).

  python -m gptjax.generate --workdir runs/tiny --prompt "Le chat mange la" --max-new-tokens 50

The command line only: arguments, loading the run, printing. Generation itself is
``gptjax.generation`` (``text.stream_text`` and ``text.generate_text``). A mistake the user can
fix (`gptjax.errors.UserError`: a bad setting, a folder that is not a trained run) is one line
``error: ...`` and exit code 2, checked before anything is generated; any other error is a bug
and keeps its traceback.
"""

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from gptjax.errors import UserError, as_user_error
from gptjax.generation.sampling import check_sampling_args
from gptjax.generation.text import generate_text, prompt_ids, stream_text
from gptjax.model.config import GPTConfig
from gptjax.runs.rundir import RunDir

# Each sample's tokens live in one int32 device buffer of block_size + max_new_tokens (the KV
# cache holds block_size positions and slides, so only this buffer grows with the length).
# A million tokens is 4 MB per sample, about four books of text, and an hour or more of
# decoding on a CPU; a billion would be 4 GB per sample.
MAX_NEW_TOKENS = 1_000_000


def check_lengths(max_new_tokens: int, num_samples: int) -> None:
    """Refuses a negative length, no samples, or more than `MAX_NEW_TOKENS` tokens per sample.

    Raises:
      UserError: the message names the flag and its valid range.
    """
    if num_samples < 1:
        raise UserError(f"--num-samples must be >= 1, got {num_samples}")
    if not 0 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise UserError(
            f"--max-new-tokens must be in [0, {MAX_NEW_TOKENS:,}], got {max_new_tokens:,}: each "
            "sample's tokens are kept in one buffer on the device (4 bytes a token), so ask for "
            f"at most {MAX_NEW_TOKENS:,} per sample"
        )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gptjax.generate",
        description="Generate text with the latest checkpoint of a training run.",
    )
    parser.add_argument("--workdir", required=True, help="run directory written by gptjax.main")
    parser.add_argument("--prompt", default="", help='text to continue ("" starts a document)')
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 for greedy decoding")
    parser.add_argument("--top-k", type=int, default=0, help="keep the k most likely, 0 for all")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus threshold, 1 for all")
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-stream", action="store_true", help="print each sample when done")
    return parser.parse_args(argv)


def _load(args: argparse.Namespace):
    """Checks the settings against the run, then loads it: (GPTConfig, params, Tokenizer).

    Raises:
      UserError: a bad setting, a folder that is not a trained run, a prompt it cannot start.
    """
    with as_user_error():  # the sampling module's checks are about these flags
        check_sampling_args(args.temperature, args.top_k, args.top_p)
    check_lengths(args.max_new_tokens, args.num_samples)
    run_dir = RunDir(args.workdir)
    run_dir.read_model_config()  # a folder that is not a run, or a damaged config.json
    from gptjax.runs.checkpoint import load_for_inference  # orbax is slow to import

    model_config, params, tok = load_for_inference(Path(args.workdir))
    if tok.vocab_size > model_config.vocab_size:
        raise UserError(
            f"{run_dir.tokenizer_path} has {tok.vocab_size} tokens but the model only "
            f"{model_config.vocab_size}: restore the tokenizer this run trained with"
        )
    with as_user_error(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a prompt cut to the context: said when generating
        prompt_ids(tok, args.prompt, model_config.block_size)  # e.g. "" without a separator
    return model_config, params, tok


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: load the run, print the samples (the first one live when streaming)."""
    args = _parse_args(argv)
    try:
        model_config, params, tok = _load(args)
    except UserError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(2)
    with warnings.catch_warnings():
        # Warnings (a prompt cut to the context) as one plain line on stderr, as they happen.
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *a, **k: print(
            f"warning: {message}", file=sys.stderr
        )
        _print_samples(args, model_config, params, tok)


def _print_samples(args: argparse.Namespace, model_config: GPTConfig, params, tok) -> None:
    kwargs = dict(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        num_samples=args.num_samples,
        seed=args.seed,
    )
    header = lambda i: (
        print(f"--- sample {i + 1}/{args.num_samples} ---") if args.num_samples > 1 else None
    )
    if args.no_stream:
        texts = generate_text(model_config, params, tok, args.prompt, **kwargs)
    else:
        # Only one sample can be shown live on a terminal: the first. The others are generated in
        # the same batch and printed when it ends.
        texts = [args.prompt] * args.num_samples
        header(0)
        print(args.prompt, end="", flush=True)
        for pieces in stream_text(model_config, params, tok, args.prompt, **kwargs):
            print(pieces[0], end="", flush=True)
            texts = [t + p for t, p in zip(texts, pieces, strict=True)]
        print()
    for i, text in enumerate(texts):
        if args.no_stream or i > 0:
            header(i)
            print(text)


if __name__ == "__main__":
    sys.exit(main())
