"""gptjax.runs.compare: the differing keys, the labels, the report of a run still training.

Run directories are written by hand in the format docs/design.md documents (``write_run``);
the command line on two real runs is tested in tests/test_compare.py.
"""

import pytest
from tiny_runs import write_run

from gptjax.runs import compare
from gptjax.runs.run import load_run
from gptjax.runs.rundir import read_metrics


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
