"""``python -m gptjax.compare``: two real tiny runs compared, metrics, bad run directories.

The numbers in the printed table are checked against the run files read directly, not through
the comparer's own reader.
"""

import json
import math
import re

import pytest
from tiny_runs import assert_valid_png, trained_pair, write_run

from gptjax import compare as cli
from gptjax.errors import UserError
from gptjax.runs import compare, plots
from gptjax.runs import run as run_module
from gptjax.runs.run import load_run


@pytest.fixture
def two_runs(tmp_path_factory):
    pair = trained_pair(tmp_path_factory)
    return pair["a"], pair["b"]


def test_compare_two_real_runs(two_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert cli.main([str(two_runs[0]), str(two_runs[1]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out

    runs = [load_run(p) for p in two_runs]
    assert compare.differing_keys(runs) == ["model.n_head", "opt.lr"]
    assert "Config keys that differ: `model.n_head`, `opt.lr`." in printed

    lines = {line.split("|")[1].strip(): line for line in printed.splitlines() if "|" in line}
    for path, n_head, lr in zip(two_runs, ("2", "4"), ("0.003", "0.001"), strict=True):
        # Independent of compare's reader: the numbers straight from the files.
        records = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
        info = json.loads((path / "run_info.json").read_text())
        val_bpb = [r["val_bpb"] for r in records if "val_bpb" in r]
        val_loss = [r["val_loss"] for r in records if "val_loss" in r]
        cells = [c.strip() for c in lines[path.name].split("|")[1:-1]]
        assert cells[1:3] == [n_head, lr]
        assert f"{info['param_count']:,}" in cells
        assert f"{records[-1]['tokens_seen']:,}" in cells
        assert f"{min(val_bpb):.4f}" in cells and f"{val_bpb[-1]:.4f}" in cells
        assert f"{min(val_loss):.4f}" in cells and f"{val_loss[-1]:.4f}" in cells
        # Bits per byte and loss agree through the bytes-per-token of the validation text.
        assert math.isfinite(val_bpb[-1]) and val_bpb[-1] > 0

    report = (out / "report.md").read_text()
    assert lines["a"].strip() in report and lines["b"].strip() in report
    assert compare.labels(runs, compare.differing_keys(runs)) == [
        "a: n_head=2, lr=0.003",
        "b: n_head=4, lr=0.001",
    ]
    for name in ("val_bpb.png", "train_loss.png"):
        assert f"]({name})" in report
        assert_valid_png(out / name)


def test_compare_metric_option_plots_that_metric(two_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert cli.main([*map(str, two_runs), "--out", str(out), "--metric", "val_loss"]) == 0
    assert "Lowest val_loss:" in capsys.readouterr().out
    assert_valid_png(out / "val_loss.png")
    assert not (out / "val_bpb.png").exists()
    assert cli.main([*map(str, two_runs), "--out", str(out), "--metric", "val_bbp"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no run logged --metric=val_bbp; logged: ") and "val_bpb" in err


def _refused(capsys, argv) -> str:
    """Runs the command, which must refuse: exit code 2 and one line ``error: ...``."""
    capsys.readouterr()
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert captured.out == ""
    return lines[0]


def _files(path):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()}


def test_not_a_run_directory_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("")
    out = ["--out", str(tmp_path / "o")]
    line = _refused(capsys, [str(tmp_path / "empty"), *out])
    assert "not a run directory" in line and "config.json" in line
    assert "missing does not exist" in _refused(capsys, [str(tmp_path / "missing"), *out])
    assert "notes.txt is a file, not a run directory" in _refused(
        capsys, [str(tmp_path / "notes.txt"), *out]
    )
    assert not (tmp_path / "o").exists()
    with pytest.raises(UserError, match="not a run directory"):
        load_run(tmp_path / "empty")


def test_an_out_that_cannot_be_a_folder_is_refused_and_nothing_is_written(tmp_path, capsys):
    run = write_run(tmp_path / "r", {"seed": 0}, [{"step": 1, "val_bpb": 2.0}])
    (tmp_path / "report.md").write_text("the user's own report")
    before = _files(tmp_path)
    for out, message in [
        (tmp_path / "report.md", "the report folder .*report.md is a file"),
        (tmp_path / "report.md" / "cmp", "cmp is inside .*report.md, which is a file"),
    ]:
        assert re.search(message, _refused(capsys, [str(run), "--out", str(out)]))
    assert _files(tmp_path) == before
    # A missing folder, parents included, is created.
    assert cli.main([str(run), "--out", str(tmp_path / "new" / "deeper")]) == 0
    assert (tmp_path / "new" / "deeper" / "report.md").is_file()


def test_a_damaged_run_file_is_named_and_its_advice_works(tmp_path, capsys):
    run = write_run(tmp_path / "r", {"seed": 0}, [{"step": 1, "val_bpb": 2.0}])
    (run / "run_info.json").write_text('{"param_count": 12')
    out = ["--out", str(tmp_path / "cmp")]
    line = _refused(capsys, [str(run), *out])
    assert f"{run / 'run_info.json'} is not valid JSON" in line and "repair or delete it" in line
    (run / "run_info.json").unlink()
    assert cli.main([str(run), *out]) == 0
    (run / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "va\n{"step": 3}\n')
    line = _refused(capsys, [str(run), *out])
    assert f"{run / 'metrics.jsonl'}:2 is not valid JSON" in line


def test_an_internal_value_error_keeps_its_traceback(tmp_path, capsys, monkeypatch):
    # A ValueError raised while reading a run, or while plotting, is a bug, not a mistake of the
    # command line.
    def broken(*args, **kwargs):
        raise ValueError("an internal invariant broke")

    run = write_run(tmp_path / "r", {"seed": 0}, [{"step": 1, "val_bpb": 2.0}])
    for module, name in [(run_module, "flatten"), (plots, "plot_field")]:
        with monkeypatch.context() as patch:
            patch.setattr(module, name, broken)
            with pytest.raises(ValueError, match="an internal invariant broke") as error:
                cli.main([str(run), "--out", str(tmp_path / "cmp")])
        assert not isinstance(error.value, UserError)
        assert "error:" not in capsys.readouterr().err


def test_runs_without_metrics_yet(tmp_path, capsys):
    config = {"seed": 0, "model": {"n_head": 2}}
    a = write_run(tmp_path / "a", config, [])
    b = write_run(tmp_path / "b", {**config, "seed": 1}, [])
    out = tmp_path / "cmp"
    assert cli.main([str(a), str(b), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "a has no metrics yet" in printed and "b has no metrics yet" in printed
    assert "No run has logged `val_bpb` yet" in (out / "report.md").read_text()
    assert not list(out.glob("*.png"))
