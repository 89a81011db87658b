"""The main command's answers to a bad command line: one error line, exit code 2, no traceback;
and to a bug: its traceback, exit code 1."""

import os
import re
import shutil
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


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    """The stderr of a refused command: exactly one line, ``error: ...``, and exit code 2."""
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


_BAD_CONFIGS = {
    "syntax": ("def get_config(:\n    pass\n", r", line 1 \(`def get_config\(:`\): SyntaxError"),
    "raises": (
        "def get_config():\n    raise RuntimeError('no corpus chosen')\n",
        r", line 2 \(`raise RuntimeError\('no corpus chosen'\)`\): RuntimeError: no corpus chosen",
    ),
    "raises ValueError": (  # absl re-raises a ValueError of a flag as its own error
        "def get_config():\n    return int('seven')\n",
        r", line 2 \(`return int\('seven'\)`\): ValueError: invalid literal",
    ),
    "import": ("import no_such_module_xyz\n", r", line 1 .*ModuleNotFoundError: No module named"),
    "no get_config": ("X = 1\n", r" defines no get_config\(\): a config file defines"),
    "returns an int": ("def get_config():\n    return 3\n", r"get_config\(\) returned 3 \(int\)"),
}


@pytest.mark.parametrize("override", [[], ["--config.train.steps=3"]], ids=["plain", "override"])
@pytest.mark.parametrize("case", list(_BAD_CONFIGS))
def test_a_config_file_that_does_not_load_is_one_line_naming_it(tmp_path, case, override):
    text, message = _BAD_CONFIGS[case]
    config = tmp_path / "bad_config.py"
    config.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "gptjax.main", "--config", str(config), *override],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    line = _one_error_line(result)
    assert line.startswith(f"error: --config {config}")
    assert re.search(message, line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_config.py"]  # no runs/ folder


def test_a_workdir_that_is_a_file_is_one_line_and_the_file_is_untouched(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("the user's own file")
    before = notes.stat().st_mtime_ns
    for workdir, message in [
        (notes, f"{notes} exists and is not a folder"),
        (notes / "run", f"{notes / 'run'} is inside {notes}, which is a file"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "gptjax.main", "--config", TINY, "--workdir", str(workdir)],
            capture_output=True, text=True, cwd=tmp_path, timeout=120,
        )  # fmt: skip
        assert message in _one_error_line(result)
    assert notes.read_text() == "the user's own file" and notes.stat().st_mtime_ns == before


# A finished run on a read-only file system, in a user and mount namespace of its own: the
# trainer is refused in one line, and the command its message advises reads the run.
_READ_ONLY = """
set -e
mount --bind "$RUN" "$RUN"
mount -o remount,bind,ro "$RUN"
set +e
"$PYTHON" -m gptjax.main --config "$CONFIG" --workdir "$RUN" > "$OUT/main.out" 2> "$OUT/main.err"
echo "main $?" >> "$OUT/codes"
"$PYTHON" -m gptjax.main --config "$CONFIG" --workdir "$RUN" --config.train.steps=8 \
  2> "$OUT/longer.err"
echo "longer $?" >> "$OUT/codes"
"$PYTHON" -m gptjax.generate --workdir "$RUN" --max-new-tokens 5 > "$OUT/generate.out" \
  2> "$OUT/generate.err"
echo "generate $?" >> "$OUT/codes"
"$PYTHON" -m gptjax.compare "$RUN" --out "$RUN/report" 2> "$OUT/compare.err"
echo "compare $?" >> "$OUT/codes"
"""


@pytest.mark.e2e
def test_a_run_on_a_read_only_disk(tmp_path, tmp_path_factory):
    from tiny_runs import trained_pair

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a read-only folder")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -rm is not permitted here: {probe.stderr.decode().strip()}")
    run = tmp_path / "run"
    shutil.copytree(trained_pair(tmp_path_factory)["a"], run)
    config = tmp_path / "pair_a.py"
    config.write_text(
        "from tiny_runs import PAIR, tiny_config\n\n\n"
        "def get_config():\n    return tiny_config(PAIR['a'])\n"
    )
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    out.mkdir()
    env = {
        **os.environ, "RUN": str(run), "CONFIG": str(config), "OUT": str(out),
        "PYTHON": sys.executable, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}",
    }  # fmt: skip
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", _READ_ONLY], capture_output=True, text=True, env=env,
        cwd=tmp_path, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only folder here: {done.stderr.strip()}")
    codes = dict(line.split() for line in (out / "codes").read_text().splitlines())
    assert codes == {"main": "0", "longer": "2", "generate": "0", "compare": "2"}, codes
    # A finished run says so, and prints its samples, without writing anything...
    assert (
        "already finished 4 steps (it is read-only: nothing is written)"
        in (out / "main.out").read_text()
    )
    # ...and one that would train on is refused in one line.
    main_err = (out / "longer.err").read_text().strip().splitlines()
    assert len(main_err) == 1 and main_err[0].startswith(f"error: cannot write in {run} ")
    assert "Read-only file system" in main_err[0]
    assert f"python -m gptjax.generate --workdir {run}` samples" in main_err[0]
    assert len((out / "generate.out").read_text()) > 0  # the advice, followed
    compare_err = (out / "compare.err").read_text().strip().splitlines()
    assert len(compare_err) == 1 and "cannot create the report folder" in compare_err[0]
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
