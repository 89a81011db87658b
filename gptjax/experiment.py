"""``python -m gptjax.experiment experiments/NAME.py``: train every variant of a sweep, then report.

The command line only; loading experiment files, training the variants and writing the report
are ``gptjax.runs.experiment``. A mistake the user can fix (`gptjax.errors.UserError`: a bad
experiment file or override, a variant folder that cannot train) is one line ``error: ...`` and
exit code 2, before anything trains when the file itself is wrong. A variant that diverges does
not stop the others: the report is written, then one ``error:`` line names it (exit code 1, as
``gptjax.main`` for a divergence). Any other error is a bug and keeps its traceback.
"""

import argparse
import datetime
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from gptjax.errors import UserError
from gptjax.runs import experiment as sweep


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gptjax.experiment", description=sweep.__doc__)
    parser.add_argument("experiment", help="an experiment file, e.g. experiments/heads.py")
    parser.add_argument("--runs-dir", default="runs", help="where the variants train")
    parser.add_argument("--results-dir", help="where the report goes (default: results/ beside)")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "-m", "gptjax.experiment", *argv])
    try:
        experiment = sweep.load_experiment(args.experiment)
        results_dir = Path(args.results_dir or experiment.path.parent / "results")
        status, report = sweep.run_experiment(experiment, Path(args.runs_dir), results_dir, command)
    except UserError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # The trainer saved a checkpoint before letting the interrupt through.
        print(f"interrupted: run `{command}` again to resume", file=sys.stderr)
        return 130
    print(f"{datetime.datetime.now():%H:%M:%S} done: {status}; report: {report}")
    diverged = [variant for variant, done in status.items() if done == "diverged"]
    if diverged:
        names = ", ".join(repr(v) for v in diverged)
        print(
            f"error: variant{'s' * (len(diverged) > 1)} {names} of {experiment.path} diverged "
            f"(why: above and in {report}); the other variants ran. To try other settings, give "
            "them under a new variant name: the folder of a diverged run keeps it, and a run with "
            "a checkpoint cannot change its opt.* settings",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
