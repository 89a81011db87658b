"""The main command: ``python -m gptjax.main --config configs/tiny.py`` (tutorial part 9).

  --config       a config file defining get_config(); override keys with
                 ``--config.train.steps=100`` (unknown keys are refused)
  --workdir      the run directory, ``runs/<config file stem>`` by default; the same one resumes

Everything else happens in `gptjax.training.loop.train_and_evaluate`. A mistake the user can
fix (`gptjax.errors.UserError`: a bad config value or corpus, a busy run directory, a config file
that does not load...) is one line ``error: ...`` and exit code 2; a divergence is one line and
exit code 1; any other error is a bug and keeps its traceback (exit code 1).
"""

import re
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import ConfigDict, config_flags
from ml_collections.config_flags.config_flags import ConfigFileFlagParser

from gptjax.errors import UserError, error_in_file

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config stem>).")


def _fail(message: str) -> None:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)


def _config_file(argv: list[str]) -> str | None:
    """The file of ``--config FILE`` (or ``--config=FILE[:ARGS]``) in ``argv``, before parsing."""
    for i, arg in enumerate(argv):
        match = re.fullmatch(r"--?config(=(.*))?", arg)
        if match:
            value = match.group(2) if match.group(1) else (argv[i + 1] if i + 1 < len(argv) else "")
            return value.split(":", 1)[0] or None
    return None


def _config_error(error: Exception, config_file: str | None) -> str | None:
    """The one-line message of an error raised while absl loads ``--config``; None for a bug."""
    if config_file is not None:
        user_error = error_in_file(error, config_file)
        if user_error is not None:  # the config file's own code raised it
            return f"--config {user_error}"
        cause = error
        while cause is not None:
            if isinstance(cause, AttributeError) and cause.name == "get_config":
                return (
                    f"--config {config_file} defines no get_config(): a config file defines "
                    "get_config() returning an ml_collections.ConfigDict, as configs/tiny.py does"
                )
            cause = cause.__cause__ or cause.__context__
        if isinstance(error, AttributeError | KeyError):
            # An override failed before absl kept the config: load it again, without overrides.
            _check_loaded(config_file, ConfigFileFlagParser("config").parse(config_file))
    if isinstance(error, flags.Error):
        return f"{error} (pass --helpfull to see the flags)"
    if isinstance(error, AttributeError | KeyError):  # ml_collections: an unknown override key
        reason = str(error).strip("'\"").replace("\\n", " ").replace("\\'", "'")
        return f"unknown config key {reason} (every key must be declared in the config file)"
    if isinstance(error, OSError):  # ml_collections: the config file cannot be read
        return str(error)
    return None


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a bad --config given as one line rather than a traceback."""
    config_file = _config_file(argv[1:])
    if config_file is not None and not Path(config_file).is_file():
        _fail(f"--config {config_file}: no such file (try --config configs/tiny.py)")
    # ml_collections warns of a get_config() returning None; the check below says it in one line.
    logging.set_verbosity(logging.ERROR)
    try:
        argv = flags.FLAGS(argv)
        if config_file is not None:
            _check_loaded(config_file, flags.FLAGS["config"].value)
        return argv
    except Exception as error:
        message = _config_error(error, config_file)
        if message is None:
            raise
        _fail(message)


def _check_loaded(config_file: str, config) -> None:
    """Refuses a get_config() that returned something else than a ConfigDict.

    Raises:
      OSError: the file raised it while loading (ml_collections keeps it for the first access).
    """
    if isinstance(config, ConfigDict):
        return
    # ml_collections' stand-in for a config whose loading raised OSError raises it on access.
    getattr(config, "keys", None)
    _fail(
        f"--config {config_file}: get_config() returned {config!r} ({type(config).__name__}), "
        "not an ml_collections.ConfigDict"
    )


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
