"""``python -m gptjax.compare``: two real tiny runs compared, metrics, bad run directories.

The numbers in the printed table are checked against the run files read directly, not through
the comparer's own reader.
"""

import json
import math

import pytest
from tiny_runs import assert_valid_png, trained_pair, write_run

from gptjax import compare as cli
from gptjax.runs import compare
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


def test_not_a_run_directory_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a run directory" in err and "config.json" in err
    assert cli.main([str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a run directory"):
        load_run(tmp_path / "empty")


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
