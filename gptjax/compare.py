"""``python -m gptjax.compare RUN_DIR... [--out DIR] [--metric val_bpb]``: compare training runs.

The command line only; the table, the plots and the report are built by ``gptjax.runs.compare``.
A mistake the user can fix (`gptjax.errors.UserError`: a folder that is not a run, a damaged run
file, a metric no run logged, an ``--out`` that cannot be a folder) is one line ``error: ...``
and exit code 2; any other error is a bug and keeps its traceback.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gptjax.errors import UserError
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
        logged = {field for run in runs for record in run.metrics for field in record}
        if logged and args.metric not in logged:
            fields = ", ".join(sorted(f for f in logged if f.startswith(("val_", "train_"))))
            raise UserError(f"no run logged --metric={args.metric}; logged: {fields}")
        summary = compare.write_report(runs, Path(args.out), metric=args.metric)
    except UserError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(summary)
    print(f"\nreport: {Path(args.out) / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
