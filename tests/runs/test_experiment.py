"""gptjax.runs.experiment: overrides, resume rules, bad experiment files, the shipped sweeps.

The sweep runner end to end, through its command line, is tested in tests/test_experiment.py.
"""

import ast
import json
import shutil
from pathlib import Path

import pytest
from tiny_runs import PAIR, tiny_config, trained_pair, write_run

from gptjax.errors import UserError, errors_of_file
from gptjax.model.config import GPTConfig
from gptjax.runs import experiment
from gptjax.runs.run import load_run
from gptjax.runs.rundir import RunDir
from gptjax.training.run_config import check_config

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "experiments").glob("*.py"))


@pytest.mark.e2e
def test_workdir_with_another_config_is_refused(tmp_path, tmp_path_factory):
    # A checkpointed run binds its config: a variant that changes n_head cannot resume it.
    workdir = tmp_path / "run"
    shutil.copytree(trained_pair(tmp_path_factory)["a"], workdir)
    changed = tiny_config({**PAIR["a"], "model.n_head": 4})
    with pytest.raises(UserError, match=r"different config; changed keys:\n  model.n_head: 2 -> 4"):
        experiment.train_variant(changed, workdir)


def test_workdir_without_a_checkpoint_is_not_bound_yet(tmp_path, monkeypatch):
    # A first attempt that failed before its first checkpoint left only its config: the variant
    # with another config goes to the trainer (which replaces it), not to a refusal.
    from gptjax.training import loop

    run_dir = RunDir(tmp_path / "run")
    run_dir.create()
    run_dir.write_config(json.loads(tiny_config({"model.n_head": 1}).to_json()))
    calls = []
    monkeypatch.setattr(loop, "train_and_evaluate", lambda config, w: calls.append(w))
    status = experiment.train_variant(tiny_config({"model.n_head": 2}), run_dir.path)
    assert status == "trained" and calls == [run_dir.path]


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
        GPTConfig(**config.model)  # every variant is a valid model...
        check_config(config)  # ...and a valid training config
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


def test_the_budget_counts_the_tokens_fed_once(tmp_path, tmp_path_factory):
    # train.batch_size is the whole batch of a step: 16 sequences in 1 micro-batch feed twice the
    # tokens of 8 sequences in 2, and the report must say the variants differ.
    base = {"train.steps": 10, "model.block_size": 64}
    one = {**base, "train.batch_size": 16, "train.grad_accum": 1}
    two = {**base, "train.batch_size": 8, "train.grad_accum": 2}
    assert (experiment.budget(one), experiment.budget(two)) == (10 * 16 * 64, 10 * 8 * 64)
    runs = []
    for name, flat in (("one", one), ("two", two)):
        nested = {"train": {}, "model": {}}
        for key, value in flat.items():
            group, field = key.split(".")
            nested[group][field] = value
        runs.append(load_run(write_run(tmp_path / name, nested, [])))
    assert "one: 10,240, two: 5,120 tokens" in experiment.held_fixed(runs)
    # The trainer's own count: the last tokens_seen of a real run is its budget.
    run = load_run(trained_pair(tmp_path_factory)["a"])
    assert run.metrics[-1]["tokens_seen"] == experiment.budget(run.config)
    assert run.metrics[-1]["step"] == run.config["train.steps"]


def test_a_config_or_experiment_file_that_does_not_load_names_its_line(tmp_path):
    config = tmp_path / "config.py"
    cases = [
        ("def get_config(:\n", r"config.py, line 1 \(`def get_config\(:`\): SyntaxError"),
        ("X = 1\n", r"config file .*config.py defines no get_config\(\)"),
        ("def get_config():\n    return {}\n", r"get_config\(\) returned dict, not a ConfigDict"),
        (
            "import json\n\n\ndef get_config():\n    return json.loads('{')\n",
            r"config.py, line 5 \(`return json.loads\('\{'\)`\), raised in .*json.*: "
            r"JSONDecodeError: Expecting",
        ),
    ]
    for text, message in cases:
        config.write_text(text)
        with pytest.raises(UserError, match=message) as error:
            experiment.config_from_file(config)
        assert "\n" not in str(error.value)
    # An experiment whose base config is such a file: the innermost file is named.
    sweep = tmp_path / "sweep.py"
    sweep.write_text(
        "from gptjax.runs.experiment import config_from_file\n\nVARIANTS = {'a': {}}\n\n\n"
        f"def get_config():\n    return config_from_file({str(config)!r})\n"
    )
    with pytest.raises(UserError, match=r"config.py, line 5 .*JSONDecodeError"):
        experiment.variant_config(experiment.load_experiment(sweep), "a")


def test_errors_of_file_leaves_other_errors_alone(tmp_path):
    path = tmp_path / "config.py"
    path.write_text("def get_config():\n    raise KeyError('typo')\n")
    module = experiment._import_file(path, "test")
    with pytest.raises(UserError, match=r"line 2 .*KeyError: 'typo'"), errors_of_file(path):
        module.get_config()
    # Raised by code that never runs the file: a bug elsewhere, unchanged with its traceback.
    with pytest.raises(KeyError) as error, errors_of_file(path):
        {}["internal"]
    assert not isinstance(error.value, UserError)
    with pytest.raises(UserError, match="^as it was$"), errors_of_file(path):
        raise UserError("as it was")


def test_an_analyze_hook_that_raises_names_its_line(tmp_path, tmp_path_factory):
    runs_dir = tmp_path / "runs"
    for name in ("a", "b"):
        shutil.copytree(trained_pair(tmp_path_factory)[name], runs_dir / "pair" / name)
    path = tmp_path / "pair.py"
    path.write_text(
        "from tiny_runs import PAIR, tiny_config\n\nVARIANTS = PAIR\n\n\n"
        "def get_config():\n    return tiny_config()\n\n\n"
        "def analyze(runs):\n    return runs['c']\n"
    )
    loaded = experiment.load_experiment(path)
    with pytest.raises(UserError, match=r"pair.py, line 11 \(`return runs\['c'\]`\): KeyError"):
        experiment.run_experiment(loaded, runs_dir, tmp_path / "results", "cmd")
