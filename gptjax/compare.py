"""``python -m gptjax.compare RUN_DIR... [--out DIR] [--metric val_bpb]``: compare training runs.

The command line only; the table, the plots and the report are built by ``gptjax.runs.compare``.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gptjax.runs import compare
from gptjax.runs.run import load_run


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gptjax.compare", description=compare.__doc__)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (--workdir)")
    parser.add_argument(
        "--out", default="runs/compare", help="folder for report.md and the PNG plots"
    )
    parser.add_argument("--metric", default="val_bpb", help="validation metric to plot and rank")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        runs = [load_run(path) for path in args.runs]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logged = {field for run in runs for record in run.metrics for field in record}
    if logged and args.metric not in logged:
        fields = ", ".join(sorted(f for f in logged if f.startswith(("val_", "train_"))))
        print(f"error: no run logged --metric={args.metric}; logged: {fields}", file=sys.stderr)
        return 2
    summary = compare.write_report(runs, Path(args.out), metric=args.metric)
    print(summary)
    print(f"\nreport: {Path(args.out) / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
