"""Tests for gptjax.experiment: overrides, the sweep runner, and the shipped experiment files."""

import ast
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from tiny_runs import tiny_config, trained_pair

from gptjax import experiment as experiment_cli
from gptjax.model.config import GPTConfig
from gptjax.runs import experiment
from gptjax.runs.checkpoint import latest_step

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "experiments").glob("*.py"))

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

    assert experiment_cli.main([str(path), "--runs-dir", str(runs_dir)]) == 0
    assert "done: {'a': 'skipped', 'b': 'resumed'}" in capsys.readouterr().out
    assert (a / "metrics.jsonl").read_bytes() == a_metrics
    assert latest_step(b) == 4 and steps_logged(b) == [0, 1, 2, 3, 4]  # each step once

    report_dir = tmp_path / "exps" / "results" / "pair"
    report = (report_dir / "report.md").read_text()
    assert report.startswith("# Experiment: pair\n\nThe two tiny runs")
    assert f"Command: `python -m gptjax.experiment {path} --runs-dir {runs_dir}`" in report
    assert "- Code: commit " in report and "- Machine: " in report
    assert "Training budget: 256 tokens for every variant" in report  # 4 steps x 4 x 1 x 16
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
    assert experiment_cli.main([str(path), "--runs-dir", str(tmp_path / "runs")]) == 0
    assert "done: {'a': 'trained', 'b': 'trained'}" in capsys.readouterr().out
    for name in ("a", "b"):
        assert latest_step(tmp_path / "runs" / "pair" / name) == 4
    assert (tmp_path / "exps" / "results" / "pair" / "report.md").is_file()


def test_workdir_with_another_config_is_refused(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text(tiny_config({"model.n_head": 1}).to_json())
    with pytest.raises(
        ValueError, match=r"different config; changed keys:\n  model.n_head: 1 -> 2"
    ):
        experiment.train_variant(tiny_config({"model.n_head": 2}), workdir)


def test_overrides_are_validated():
    config = tiny_config()
    with pytest.raises(ValueError, match="unknown config key 'model.n_heads'. Did you mean model"):
        experiment.apply_overrides(config, {"model.n_heads": 3})
    with pytest.raises(ValueError, match="unknown config key 'nope.x'"):
        experiment.apply_overrides(config, {"nope.x": 3})
    with pytest.raises(ValueError, match="unknown config key 'seed.x'"):
        experiment.apply_overrides(config, {"seed.x": 3})
    with pytest.raises(ValueError, match="train.steps='many' has the wrong type"):
        experiment.apply_overrides(config, {"train.steps": "many"})
    with pytest.raises(ValueError, match="'model' is a group"):
        experiment.apply_overrides(config, {"model": 3})
    # The model's vocabulary follows the tokenizer's through configs/tiny.py's FieldReference.
    experiment.apply_overrides(config, {"tokenizer.vocab_size": 1024, "model.n_head": 8})
    assert (config.model.vocab_size, config.model.n_head) == (1024, 8)


def test_bad_experiment_files(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("VARIANTS = {'a': {}}\n")
    with pytest.raises(ValueError, match="must define get_config"):
        experiment.load_experiment(bad)
    bad.write_text("def get_config(): pass\nVARIANTS = {'a/b': {}}\n")
    with pytest.raises(ValueError, match="variant name 'a/b'"):
        experiment.load_experiment(bad)
    assert experiment_cli.main([str(tmp_path / "missing.py")]) == 2
    assert "error: experiment file" in capsys.readouterr().err

    # An unknown key in any variant stops the sweep before anything trains.
    bad.write_text(
        SWEEP.replace("VARIANTS = PAIR", "VARIANTS = {'a': {}, 'b': {'model.n_hed': 2}}")
    )
    assert experiment_cli.main([str(bad), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "variant 'b': unknown config key 'model.n_hed'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_experiments_are_valid_and_fair(path, monkeypatch):
    monkeypatch.setenv("GPTJAX_DATA_DIR", "/data")  # french.py names its corpus from it
    loaded = experiment.load_experiment(path)
    assert loaded.doc and len(loaded.variants) >= 2
    budgets = set()
    for variant in loaded.variants:
        config = experiment.variant_config(loaded, variant)
        GPTConfig(**config.model)  # every variant is a valid model
        budgets.add(experiment.budget(experiment.flatten(json.loads(config.to_json()))))
    assert len(budgets) == 1, f"{path.name}: variants train on different token budgets"


def test_gptjax_never_imports_experiments():
    for source in (ROOT / "gptjax").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "experiments" for n in names), source
