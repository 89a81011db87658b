"""Tests for gptjax.experiment: overrides, the sweep runner, and the shipped experiment files."""

import ast
import json
from pathlib import Path

import pytest
from PIL import Image
from tiny_runs import tiny_config

from gptjax import experiment
from gptjax.config import GPTConfig

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "experiments").glob("*.py"))

SWEEP = '''"""A two-variant sweep over the number of heads, for the tests."""
from tiny_runs import tiny_config

VARIANTS = {"h1": {"model.n_head": 1}, "h2": {"model.n_head": 2}}


def get_config():
    return tiny_config()


def analyze(runs):
    return "## Own section\\n\\nvariants: " + ", ".join(runs)
'''


def test_sweep_trains_reports_then_skips_finished_variants(tmp_path, capsys):
    path = tmp_path / "exps" / "two_heads.py"
    path.parent.mkdir()
    path.write_text(SWEEP)
    runs_dir = tmp_path / "runs"
    assert experiment.main([str(path), "--runs-dir", str(runs_dir)]) == 0
    assert "done: {'h1': 'trained', 'h2': 'trained'}" in capsys.readouterr().out

    report_dir = tmp_path / "exps" / "results" / "two_heads"
    report = (report_dir / "report.md").read_text()
    assert report.startswith("# Experiment: two_heads\n\nA two-variant sweep")
    assert f"Command: `python -m gptjax.experiment {path} --runs-dir {runs_dir}`" in report
    assert "- Code: commit " in report and "- Machine: " in report
    assert "Training budget: 256 tokens for every variant" in report  # 4 steps x 4 x 1 x 16
    assert "Config keys that differ: `model.n_head`." in report
    assert "## Own section\n\nvariants: h1, h2" in report
    for name in ("val_bpb.png", "train_loss.png"):
        with Image.open(report_dir / name) as image:
            image.verify()

    workdirs = [runs_dir / "two_heads" / v for v in ("h1", "h2")]
    for workdir, n_head in zip(workdirs, (1, 2), strict=True):
        assert json.loads((workdir / "config.json").read_text())["model"]["n_head"] == n_head
    before = {w: (w / "metrics.jsonl").read_bytes() for w in workdirs}

    loaded = experiment.load_experiment(path)
    status, _ = experiment.run_experiment(loaded, runs_dir, tmp_path / "again", "cmd")
    assert status == {"h1": "skipped", "h2": "skipped"}
    assert {w: (w / "metrics.jsonl").read_bytes() for w in workdirs} == before
    assert (tmp_path / "again" / "two_heads" / "report.md").is_file()


def test_workdir_with_another_config_is_refused(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text(tiny_config({"model.n_head": 1}).to_json())
    with pytest.raises(ValueError, match=r"different config \(keys model.n_head\); delete"):
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
    assert experiment.main([str(tmp_path / "missing.py")]) == 2
    assert "error: experiment file" in capsys.readouterr().err

    # An unknown key in any variant stops the sweep before anything trains.
    bad.write_text(SWEEP.replace('"model.n_head": 2', '"model.n_hed": 2'))
    assert experiment.main([str(bad), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "variant 'h2': unknown config key 'model.n_hed'" in capsys.readouterr().err
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
