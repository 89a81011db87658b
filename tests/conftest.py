"""Shared test settings and fixtures.

JAX runs with ``jax_numpy_rank_promotion="raise"``: an operation between arrays of different
ranks (``x_BTNH + b_NH``) is an error rather than a silent broadcast, so every broadcast in the
code is written out.

Tests that need the real corpora ask for the ``data_file`` fixture. The corpora live outside the
repository, in the folder named by ``GPTJAX_DATA_DIR`` (see README). Without it such tests skip with
a reason; with ``GPTJAX_REQUIRE_DATA=1`` (set by CI) a missing corpus is a failure instead.
"""

import os
from pathlib import Path

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


def _missing(reason: str):
    if os.environ.get("GPTJAX_REQUIRE_DATA") == "1":
        pytest.fail(f"{reason} (GPTJAX_REQUIRE_DATA=1, so this is an error, not a skip)")
    pytest.skip(reason)


@pytest.fixture
def data_file():
    """Returns a function ``name -> Path`` into ``$GPTJAX_DATA_DIR``, skipping when it is absent."""

    def lookup(name: str) -> Path:
        root = os.environ.get("GPTJAX_DATA_DIR")
        if not root:
            _missing(
                f"needs the real corpus {name!r}: set GPTJAX_DATA_DIR to the shared data folder"
            )
        path = Path(root) / name
        if not path.is_file():
            _missing(f"{path} not found: GPTJAX_DATA_DIR={root!r} lacks {name!r}")
        return path

    return lookup
