"""The main command's answers to a bad command line: one error line, exit code 2, no traceback."""

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
