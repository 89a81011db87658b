"""The main command's answers to a bad command line: one error line, exit code 2, no traceback;
and to a bug: its traceback, exit code 1."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.py")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config", TINY, "--config.train.stepz=3"], "unknown config key 'stepz'"),
        (["--config", TINY, "--config.trainx.steps=3"], "unknown config key 'trainx'"),
        (["--config", TINY, "--config.train.steps=abc"], "invalid literal for int()"),
        (["--config", "no/such/config.py"], "--config no/such/config.py: no such file"),
        (["--config", TINY, "--config.train.batch_size=0"], "train.batch_size=0 must be"),
        (["--config", TINY, "--config.opt.lr=inf"], "opt.lr=inf must be finite"),
        (["--config", TINY, "--config.opt.lr=1e39"], "opt.lr=1e+39 is infinite in float32"),
        (["--config", TINY, "--config.model.n_head=3"], "not divisible by n_head=3"),  # GPTConfig
    ],
)
def test_bad_command_lines_get_one_clear_line(tmp_path, args, message):
    result = subprocess.run(
        [sys.executable, "-m", "gptjax.main", *args, "--workdir", str(tmp_path / "run")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before anything ran


# `python -m gptjax.main` with the data preparation replaced by one that raises argv[1].
_BROKEN_MAIN = """
import runpy, sys
from gptjax.errors import UserError
from gptjax.training import loop

error = {"ValueError": ValueError, "UserError": UserError}[sys.argv.pop(1)]


def broken(*args, **kwargs):
    raise error("this went wrong")


loop.prepare_data = broken
runpy.run_module("gptjax.main", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("error, returncode", [("UserError", 2), ("ValueError", 1)])
def test_only_user_errors_are_one_line_others_keep_their_traceback(tmp_path, error, returncode):
    driver = tmp_path / "broken_main.py"
    driver.write_text(_BROKEN_MAIN)
    result = subprocess.run(
        [sys.executable, str(driver), error, "--config", TINY, "--workdir", str(tmp_path / "run")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == returncode, result.stderr[-3000:]
    if error == "UserError":  # a mistake the user can fix: one line
        assert result.stderr.strip().splitlines()[-1] == "error: this went wrong"
        assert "Traceback" not in result.stderr
    else:  # a bug (an internal ValueError, from JAX say): where it happened, for the report
        assert "Traceback (most recent call last)" in result.stderr
        assert result.stderr.strip().splitlines()[-1] == "ValueError: this went wrong"
        assert "error: this went wrong" not in result.stderr
