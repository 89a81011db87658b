"""``python -m gptjax.generate``: text from the latest checkpoint of a run (tutorial part 10).

  python -m gptjax.generate --workdir runs/tiny --prompt "Le chat mange la" --max-new-tokens 50

The command line only: arguments, loading the run, printing. Generation itself is
``gptjax.generation`` (``text.stream_text`` and ``text.generate_text``).
"""

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from gptjax.generation.sampling import check_sampling_args
from gptjax.generation.text import generate_text, stream_text
from gptjax.model.config import GPTConfig


def _parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m gptjax.generate",
        description="Generate text with the latest checkpoint of a training run.",
    )
    parser.add_argument("--workdir", required=True, help="run directory written by gptjax.main")
    parser.add_argument("--prompt", default="", help='text to continue ("" starts from <bos>)')
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 for greedy decoding")
    parser.add_argument("--top-k", type=int, default=0, help="keep the k most likely, 0 for all")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus threshold, 1 for all")
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-stream", action="store_true", help="print each sample when done")
    return parser, parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: load the run, print the samples (the first one live when streaming)."""
    parser, args = _parse_args(argv)
    try:
        check_sampling_args(args.temperature, args.top_k, args.top_p)
        if args.max_new_tokens < 0 or args.num_samples < 1:
            raise ValueError("--max-new-tokens must be >= 0 and --num-samples >= 1")
        workdir = Path(args.workdir)
        if not workdir.is_dir():
            raise ValueError(f"--workdir {workdir} does not exist: give a training run directory")
        from gptjax.runs.checkpoint import load_for_inference  # orbax is slow to import

        model_config, params, tok = load_for_inference(workdir)
    except ValueError as e:
        parser.error(str(e))
    with warnings.catch_warnings():
        # Warnings (a prompt cut to the context) as one plain line on stderr, as they happen.
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *a, **k: print(
            f"warning: {message}", file=sys.stderr
        )
        try:
            _print_samples(args, model_config, params, tok)
        except ValueError as e:  # raised before anything is generated, e.g. a mismatched tokenizer
            parser.error(str(e))


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
