"""The error of a mistake the user can fix: `UserError` (tutorial part 9).

A bad config value, a missing corpus, a tokenizer too big for the model, a run directory that
another run holds, a resume with a changed config: each is a `UserError` whose message says what
is wrong and how to fix it. The commands print it as one line (``error: ...``, exit code 2);
every other exception keeps its traceback, because it is a bug to report, not a typo to fix.

`UserError` is a `ValueError`, so code (and tests) that catch ``ValueError`` still catch it. This
module imports nothing from gptjax, so every layer can raise it.
"""

import contextlib
from collections.abc import Iterator


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
