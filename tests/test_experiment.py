"""``python -m gptjax.experiment``: a sweep of two tiny runs skipped, resumed and reported.

The sweep file reuses the two real runs of tests/tiny_runs.py, copied, so nothing trains from
scratch except in the slow test.
"""

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from tiny_runs import trained_pair

from gptjax import experiment as cli
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
