"""Tests for gptjax.compare (and the run-directory reader and plots behind it).

The main check trains two short real runs into tmp_path and compares them; the edge cases (a run
still writing, a folder that is not a run, a run with no metrics) use run directories written in
the format docs/design.md documents.
"""

import json
import math

import pytest
from PIL import Image
from tiny_runs import trained_pair

from gptjax import compare as compare_cli
from gptjax.runs import compare
from gptjax.runs.rundir import load_run, read_metrics


def write_run(path, config, records, tail=""):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    text = "".join(json.dumps(r) + "\n" for r in records) + tail
    (path / "metrics.jsonl").write_text(text)
    return path


def assert_valid_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.width > 400 and image.height > 200
        # A plot has lines and text, not a blank canvas.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 20


@pytest.fixture
def two_runs(tmp_path_factory):
    pair = trained_pair(tmp_path_factory)
    return pair["a"], pair["b"]


def test_compare_two_real_runs(two_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert compare_cli.main([str(two_runs[0]), str(two_runs[1]), "--out", str(out)]) == 0
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
    assert compare_cli.main([*map(str, two_runs), "--out", str(out), "--metric", "val_loss"]) == 0
    assert "Lowest val_loss:" in capsys.readouterr().out
    assert_valid_png(out / "val_loss.png")
    assert not (out / "val_bpb.png").exists()
    assert compare_cli.main([*map(str, two_runs), "--out", str(out), "--metric", "val_bbp"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no run logged --metric=val_bbp; logged: ") and "val_bpb" in err


def test_not_a_run_directory_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert compare_cli.main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a run directory" in err and "config.json" in err
    assert compare_cli.main([str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a run directory"):
        load_run(tmp_path / "empty")


def test_runs_without_metrics_yet(tmp_path, capsys):
    config = {"seed": 0, "model": {"n_head": 2}}
    a = write_run(tmp_path / "a", config, [])
    b = write_run(tmp_path / "b", {**config, "seed": 1}, [])
    out = tmp_path / "cmp"
    assert compare_cli.main([str(a), str(b), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "a has no metrics yet" in printed and "b has no metrics yet" in printed
    assert "No run has logged `val_bpb` yet" in (out / "report.md").read_text()
    assert not list(out.glob("*.png"))


def test_run_in_progress_reads_complete_lines(tmp_path):
    records = [
        {"step": 1, "tokens_seen": 64, "wall_time": 0.5, "train_loss": 5.0},
        {"step": 2, "tokens_seen": 128, "wall_time": 0.9, "val_loss": 4.0, "val_bpb": 2.5},
    ]
    config = {"train": {"steps": 10}}
    run = write_run(tmp_path / "r", config, records, tail='{"step": 3, "tokens_se')
    assert read_metrics(run / "metrics.jsonl") == records
    assert load_run(run).series("val_bpb", x="tokens_seen") == ([128], [2.5])
    summary = compare.write_report([load_run(run)], tmp_path / "out")
    assert "r is at step 2 of 10 (still training, or interrupted)." in summary
    assert "| 2.5000 " in summary
    # A broken line that is not the last one is corruption, not a write in progress.
    (run / "metrics.jsonl").write_text('{"step": 1\n{"step": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:1 is not valid JSON"):
        read_metrics(run / "metrics.jsonl")


def test_differing_keys_counts_missing_keys_and_ignores_equal_ones(tmp_path):
    a = write_run(tmp_path / "a", {"seed": 0, "m": {"x": 1, "y": [1, 2]}}, [])
    b = write_run(tmp_path / "b", {"seed": 0, "m": {"x": 1, "y": [1, 3], "z": "new"}}, [])
    c = write_run(tmp_path / "c", {"seed": 0, "m": {"x": 1.5, "y": [1, 2]}}, [])
    runs = [load_run(p) for p in (a, b, c)]
    assert compare.differing_keys(runs) == ["m.x", "m.y", "m.z"]
    assert compare.differing_keys(runs[:1]) == []
    assert compare.labels(runs, ["m.x"]) == ["a: x=1", "b: x=1", "c: x=1.5"]


def test_labels_show_tied_keys_once(tmp_path):
    configs = [(260, 260), (512, 512), (512, 300)]
    runs = [
        load_run(write_run(tmp_path / f"r{i}", {"tok": {"v": t}, "model": {"v": m}}, []))
        for i, (t, m) in enumerate(configs)
    ]
    assert compare.labels(runs[:2], ["tok.v", "model.v"]) == ["r0: v=260", "r1: v=512"]
    assert compare.labels(runs, ["tok.v", "model.v"]) == [
        "r0: tok.v=260, model.v=260",
        "r1: tok.v=512, model.v=512",
        "r2: tok.v=512, model.v=300",
    ]
