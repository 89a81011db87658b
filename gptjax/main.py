"""The main command: ``python -m gptjax.main --config configs/tiny.py`` (tutorial part 9).

  --config       a config file defining get_config(); override keys with
                 ``--config.train.steps=100`` (unknown keys are refused)
  --workdir      the run directory, ``runs/<config file stem>`` by default; the same one resumes

Everything else happens in `gptjax.training.loop.train_and_evaluate`. A mistake the user can
fix (`gptjax.errors.UserError`: a bad config value or corpus, a busy run directory...) is one
line ``error: ...`` and exit code 2; a divergence is one line and exit code 1; any other error is
a bug and keeps its traceback (exit code 1).
"""

import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from gptjax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config stem>).")


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a bad --config given as one line rather than a traceback."""
    try:
        argv = flags.FLAGS(argv)
        config_file = flags.FLAGS["config"].present and config_flags.get_config_filename(
            flags.FLAGS["config"]
        )
        if config_file and not Path(config_file).is_file():
            _fail(f"--config {config_file}: no such file (try --config configs/tiny.py)")
        return argv
    except flags.Error as err:
        _fail(f"{err}\nPass --helpfull to see the flags.")
    except (AttributeError, KeyError) as err:  # ml_collections: an override of an unknown key
        reason = str(err).strip("'\"").replace("\\n", " ").replace("\\'", "'")
        reason = " ".join(reason.split())
        _fail(f"unknown config key {reason} (every key must be declared in the config file)")
    except OSError as err:  # ml_collections: the config file cannot be loaded
        _fail(" ".join(str(err).split()))


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None:
        raise app.UsageError("--config is required, e.g. --config configs/tiny.py")
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    from gptjax.training.loop import TrainingDiverged, train_and_evaluate

    config_file = config_flags.get_config_filename(flags.FLAGS["config"])
    workdir = _WORKDIR.value or str(Path("runs") / Path(config_file).stem)
    try:
        train_and_evaluate(_CONFIG.value, workdir)
    except UserError as err:
        _fail(str(err))
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
