"""The error of a mistake the user can fix: `UserError` (tutorial part 9).

A bad config value, a missing corpus, a tokenizer too big for the model, a run directory that
another run holds, a resume with a changed config: each is a `UserError` whose message says what
is wrong and how to fix it. The commands print it as one line (``error: ...``, exit code 2);
every other exception keeps its traceback, because it is a bug to report, not a typo to fix.

Config and experiment files are Python the user wrote: an exception their code raises (a syntax
error, a typo in ``get_config()``) is theirs to fix too, and `errors_of_file` turns it into a
`UserError` naming the file and the line.

`UserError` is a `ValueError`, so code (and tests) that catch ``ValueError`` still catch it. This
module imports nothing from gptjax, so every layer can raise it.
"""

import contextlib
import os
import traceback
from collections.abc import Iterator
from pathlib import Path


class UserError(ValueError):
    """A mistake the user can fix; the message says how."""


@contextlib.contextmanager
def as_user_error() -> Iterator[None]:
    """Turns the ``ValueError`` of a check into a `UserError` with the same message.

    For checks that live in modules which know nothing of commands (``GPTConfig``, the mesh, the
    corpus loader, the tokenizer): wrap only the calls whose ``ValueError`` is about the input.

    >>> with as_user_error():
    ...     int("seven")
    Traceback (most recent call last):
    gptjax.errors.UserError: invalid literal for int() with base 10: 'seven'
    """
    try:
        yield
    except UserError:
        raise
    except ValueError as error:
        raise UserError(str(error)) from error


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _same_file(a: str | os.PathLike | None, b: str | os.PathLike) -> bool:
    if not a:
        return False
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def error_in_file(error: BaseException, path: str | os.PathLike) -> UserError | None:
    """The `UserError` of an exception that the code of the Python file ``path`` raised, if any.

    ``error`` comes from the file when it is a syntax error in it, or when its traceback runs
    through the file (raised by a line of it, or by code that line called). Wrappers are looked
    through: ml_collections and absl re-raise a config's exceptions as their own, keeping the
    original as ``__cause__`` or ``__context__``. The outermost exception of that chain that comes
    from the file is described: the one its code raised, rather than one it was handling.

    Args:
      error: the exception caught while importing the file or calling one of its functions.
      path: the user's file (a config or an experiment).

    Returns:
      A `UserError` on one line, ``"FILE, line N (`code`): Type: message"``; the `UserError`
      itself, unchanged, when the file's code raised one; None when no exception of the chain
      comes from the file (a bug elsewhere, which keeps its traceback).
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, SyntaxError) and _same_file(error.filename, path):
            code = f" (`{_one_line(error.text)}`)" if error.text and error.text.strip() else ""
            return UserError(f"{path}, line {error.lineno}{code}: SyntaxError: {error.msg}")
        frames = traceback.extract_tb(error.__traceback__)
        mine = [frame for frame in frames if _same_file(frame.filename, path)]
        if mine:
            if isinstance(error, UserError):
                return error
            line, raised = mine[-1], frames[-1]
            where = f"{path}, line {line.lineno}" + (f" (`{line.line}`)" if line.line else "")
            if raised is not line:
                where += f", raised in {raised.filename}, line {raised.lineno}"
            message = _one_line(error)
            return UserError(
                f"{where}: {type(error).__name__}" + (f": {message}" if message else "")
            )
        error = error.__cause__ or error.__context__
    return None


@contextlib.contextmanager
def errors_of_file(path: str | os.PathLike) -> Iterator[None]:
    """Raises an exception that the code of the Python file ``path`` raised as a `UserError`.

    Wrap the import of a user's file, and each call of its functions: see `error_in_file`. Any
    other exception goes through unchanged, with its traceback.
    """
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        user_error = error_in_file(error, path)
        if user_error is None:
            raise
        raise user_error from error
