"""gptjax.runs.experiment: overrides, resume rules, bad experiment files, the shipped sweeps.

The sweep runner end to end, through its command line, is tested in tests/test_experiment.py.
"""

import ast
import json
from pathlib import Path

import pytest
from tiny_runs import tiny_config

from gptjax.model.config import GPTConfig
from gptjax.runs import experiment

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "experiments").glob("*.py"))


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


def test_bad_experiment_files(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("VARIANTS = {'a': {}}\n")
    with pytest.raises(ValueError, match="must define get_config"):
        experiment.load_experiment(bad)
    bad.write_text("def get_config(): pass\nVARIANTS = {'a/b': {}}\n")
    with pytest.raises(ValueError, match="variant name 'a/b'"):
        experiment.load_experiment(bad)


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
