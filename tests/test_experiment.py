"""``python -m gptjax.experiment``: a sweep of two tiny runs skipped, resumed and reported.

The sweep file reuses the two real runs of tests/tiny_runs.py, copied, so nothing trains from
scratch except in the slow test.
"""

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image
from tiny_runs import trained_pair

from gptjax import experiment as cli
from gptjax.errors import UserError
from gptjax.runs import experiment
from gptjax.runs.rundir import RunDir

SWEEP = '''"""The two tiny runs of tests/tiny_runs.py as a sweep."""
from tiny_runs import PAIR, tiny_config

VARIANTS = PAIR


def get_config():
    return tiny_config()


def analyze(runs):
    return "## Own section\\n\\nvariants: " + ", ".join(runs)
'''


def write_sweep(folder: Path, text: str = SWEEP) -> Path:
    folder.mkdir(parents=True)
    path = folder / "pair.py"
    path.write_text(text)
    return path


def steps_logged(workdir: Path) -> list[int]:
    return [
        json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()
    ]


def latest_step(workdir: Path) -> int | None:
    return RunDir(workdir).latest_step()


def test_sweep_skips_finished_resumes_interrupted_and_reports(
    tmp_path, tmp_path_factory, monkeypatch, capsys
):
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    path = write_sweep(tmp_path / "exps")
    runs_dir = tmp_path / "runs"
    a, b = (runs_dir / "pair" / name for name in ("a", "b"))
    for name, finished in trained_pair(tmp_path_factory).items():
        shutil.copytree(finished, runs_dir / "pair" / name)
    # Variant b stopped after its step-2 checkpoint: the later one never got written.
    shutil.rmtree(b / "checkpoints" / "4")
    assert (latest_step(a), latest_step(b)) == (4, 2)
    a_metrics = (a / "metrics.jsonl").read_bytes()

    assert cli.main([str(path), "--runs-dir", str(runs_dir)]) == 0
    assert "done: {'a': 'skipped', 'b': 'resumed'}" in capsys.readouterr().out
    assert (a / "metrics.jsonl").read_bytes() == a_metrics
    assert latest_step(b) == 4 and steps_logged(b) == [0, 1, 2, 3, 4]  # each step once

    report_dir = tmp_path / "exps" / "results" / "pair"
    report = (report_dir / "report.md").read_text()
    assert report.startswith("# Experiment: pair\n\nThe two tiny runs")
    assert f"Command: `python -m gptjax.experiment {path} --runs-dir {runs_dir}`" in report
    assert "- Code: commit " in report and "- Machine: " in report
    assert "Training budget: 256 tokens for every variant" in report  # 4 steps x 4 x 16
    assert "Config keys that differ: `model.n_head`, `opt.lr`." in report
    assert "## Own section\n\nvariants: a, b" in report
    assert "Config shared by every variant" in report and "\nmodel.n_embd = 32\n" in report
    assert "\nmodel.n_head = " not in report
    for name in ("val_bpb.png", "train_loss.png"):
        with Image.open(report_dir / name) as image:
            image.verify()

    # Re-running trains nothing: both variants are finished now.
    before = {w: (w / "metrics.jsonl").read_bytes() for w in (a, b)}
    loaded = experiment.load_experiment(path)
    status, report_path = experiment.run_experiment(loaded, runs_dir, tmp_path / "again", "cmd")
    assert status == {"a": "skipped", "b": "skipped"}
    assert {w: (w / "metrics.jsonl").read_bytes() for w in (a, b)} == before
    assert report_path == tmp_path / "again" / "pair" / "report.md" and report_path.is_file()


@pytest.mark.slow
def test_fresh_sweep_trains_every_variant(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    path = write_sweep(tmp_path / "exps")
    assert cli.main([str(path), "--runs-dir", str(tmp_path / "runs")]) == 0
    assert "done: {'a': 'trained', 'b': 'trained'}" in capsys.readouterr().out
    for name in ("a", "b"):
        assert latest_step(tmp_path / "runs" / "pair" / name) == 4
    assert (tmp_path / "exps" / "results" / "pair" / "report.md").is_file()


def test_bad_experiment_files_stop_before_anything_trains(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    assert cli.main([str(tmp_path / "missing.py")]) == 2
    assert "error: experiment file" in capsys.readouterr().err

    # An unknown key in any variant stops the sweep before anything trains.
    bad.write_text(
        SWEEP.replace("VARIANTS = PAIR", "VARIANTS = {'a': {}, 'b': {'model.n_hed': 2}}")
    )
    assert cli.main([str(bad), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "variant 'b': unknown config key 'model.n_hed'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def _one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_an_experiment_file_that_does_not_load_is_one_line_naming_its_line(tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    line = SWEEP.splitlines().index("def get_config():") + 1
    for text, message in [
        (SWEEP.replace("def get_config():", "def get_config(:"), rf", line {line} .*SyntaxError"),
        ("import no_such_module_xyz\n", r", line 1 .*ModuleNotFoundError: No module named"),
        (
            SWEEP.replace("return tiny_config()", "return tiny_config({'model.n_hed': 2})"),
            r"unknown config key 'model.n_hed'",
        ),
        (
            SWEEP.replace("return tiny_config()", "raise RuntimeError('no base config')"),
            rf", line {line + 1} \(`raise RuntimeError\('no base config'\)`\): RuntimeError",
        ),
    ]:
        path = tmp_path / "exps" / "pair.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        assert cli.main([str(path), "--runs-dir", str(runs_dir)]) == 2
        assert re.search(message, _one_error_line(capsys))
    assert not runs_dir.exists()


@pytest.mark.e2e
def test_a_diverging_variant_is_reported_and_the_sweep_goes_on(
    tmp_path, tmp_path_factory, monkeypatch, capsys
):
    # lr=1e30 is a valid, finite setting whose first updates blow the parameters up.
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    sweep = SWEEP.replace(
        "VARIANTS = PAIR", "VARIANTS = {'boom': {**PAIR['b'], 'opt.lr': 1e30}, 'a': PAIR['a']}"
    )
    path = write_sweep(tmp_path / "exps", sweep)
    runs_dir = tmp_path / "runs"
    a = runs_dir / "pair" / "a"
    shutil.copytree(trained_pair(tmp_path_factory)["a"], a)
    a_files = {p: p.read_bytes() for p in a.rglob("*") if p.is_file() and p.name != ".lock"}

    assert cli.main([str(path), "--runs-dir", str(runs_dir)]) == 1
    out = capsys.readouterr()
    assert "done: {'boom': 'diverged', 'a': 'skipped'}" in out.out  # the next variant ran
    assert "[pair] boom: diverged: the " in out.out
    # The trainer's progress bar goes to stderr too; the error is its one line, the last.
    lines = [line for line in out.err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and out.err.strip().endswith(lines[0])
    report = tmp_path / "exps" / "results" / "pair" / "report.md"
    assert lines[0].startswith(f"error: variant 'boom' of {path} diverged")
    assert f"in {report}" in lines[0] and "under a new variant name" in lines[0]
    text = report.read_text()
    assert "Diverged (the table shows their steps before it):\n\n- `boom`: the " in text
    assert "| boom " in text and "| a " in text
    assert {p: p.read_bytes() for p in a.rglob("*") if p.is_file() and p.name != ".lock"} == (
        a_files
    )

    # The advice, followed: the same settings under a new name, lr fixed, train afresh.
    path.write_text(sweep.replace("'boom': {**PAIR['b'], 'opt.lr': 1e30}", "'b': PAIR['b']"))
    assert cli.main([str(path), "--runs-dir", str(runs_dir)]) == 0
    assert "done: {'b': 'trained', 'a': 'skipped'}" in capsys.readouterr().out


def test_an_internal_value_error_keeps_its_traceback(tmp_path, monkeypatch, capsys):
    # A ValueError from deep inside the sweep is a bug, not a mistake in the experiment file.
    def broken(self):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(RunDir, "latest_step", broken)
    path = write_sweep(tmp_path / "exps")
    with pytest.raises(ValueError, match="an internal invariant broke") as error:
        cli.main([str(path), "--runs-dir", str(tmp_path / "runs")])
    assert not isinstance(error.value, UserError)
    assert "error:" not in capsys.readouterr().err
