"""Training on 8 simulated CPU devices against one device: data parallel, FSDP, checkpoints.

JAX fixes its device count when it starts, so each configuration trains in a subprocess
(`multidevice_worker.py`) with ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` or without.
The runs are shared by the tests of this file (module fixture): one single-device reference, then
data parallel, FSDP, data parallel with gradient accumulation, and checkpoints moved across meshes.

Losses agree to float32 rounding, not bitwise: on 8 devices the batch mean and the gradient are
summed in a different order (per-device partial sums, then an all-reduce).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e  # 8 simulated devices in a fresh process: a minute

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "tests" / "multidevice_worker.py"
STEPS = 8
RTOL = 2e-5


def run_worker(jobs: list[dict], devices: int) -> str:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, str(WORKER), json.dumps(jobs)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"devices={devices}" in result.stdout
    return result.stdout


def losses(workdir: Path, key: str = "train_loss") -> dict[int, float]:
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in lines if key in r}


def cut_to_half(workdir: Path, copy: Path) -> Path:
    """A copy of a finished run with its last checkpoint removed: resuming it redoes steps 5-8."""
    shutil.copytree(workdir, copy)
    shutil.rmtree(copy / "checkpoints" / str(STEPS))
    return copy


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multidevice")
    dp, fsdp = {"mesh.data": -1, "mesh.fsdp": 1}, {"mesh.data": 1, "mesh.fsdp": -1}
    run_worker([{"workdir": str(root / "single"), "overrides": {}}], devices=1)
    single_half = cut_to_half(root / "single", root / "single_to_fsdp")
    out = run_worker(
        [
            {"workdir": str(root / "dp"), "overrides": dp},
            {"workdir": str(root / "fsdp"), "overrides": fsdp, "shards": True},
            {"workdir": str(root / "dp_accum"), "overrides": {**dp, "train.grad_accum": 2}},
            {"workdir": str(single_half), "overrides": fsdp},
            {"workdir": str(root / "bad_batch"), "overrides": {"train.batch_size": 12},
             "expect_error": True},
            {"workdir": str(root / "bad_width"), "overrides": {**fsdp, "model.n_embd": 36},
             "expect_error": True},
        ],
        devices=8,
    )  # fmt: skip
    fsdp_half = cut_to_half(root / "fsdp", root / "fsdp_to_single")
    run_worker([{"workdir": str(fsdp_half), "overrides": {}}], devices=1)
    shards = json.loads(next(ln[7:] for ln in out.splitlines() if ln.startswith("SHARDS ")))
    errors = [ln[6:] for ln in out.splitlines() if ln.startswith("ERROR ")]
    return root, shards, errors


def assert_same_losses(reference: dict, other: dict, steps) -> None:
    steps = list(steps)
    assert all(s in other for s in steps), f"missing steps {set(steps) - set(other)}"
    np.testing.assert_allclose([other[s] for s in steps], [reference[s] for s in steps], rtol=RTOL)


def test_data_parallel_matches_one_device(runs):
    root, _, _ = runs
    single = losses(root / "single")
    assert sorted(single) == list(range(1, STEPS + 1))
    assert_same_losses(single, losses(root / "dp"), range(1, STEPS + 1))
    assert_same_losses(
        losses(root / "single", "val_loss"), losses(root / "dp", "val_loss"), [0, 4, 8]
    )
    # The runs did learn: a match of frozen models would prove little.
    assert single[STEPS] < single[1]


def test_fsdp_splits_parameters_and_moments_eightfold(runs):
    root, shards, _ = runs
    names = shards["names"]
    split = 0
    for group in ("params", "adam_mu"):
        for path, (global_shape, local_shape) in shards[group].items():
            axes = names[path]
            for dim, (g, loc, name) in enumerate(zip(global_shape, local_shape, axes, strict=True)):
                expected = g // 8 if name == "embed" else g
                assert loc == expected, f"{group}{path} dim {dim} ({name}): {loc} != {expected}"
            split += "embed" in axes
    # Every parameter matrix of the GPT has an embed axis; only biases of other axes stay whole.
    large = [p for p, (g, _) in shards["params"].items() if len(g) >= 2]
    assert large and all("embed" in names[p] for p in large)
    assert split >= 2 * len(large)
    assert_same_losses(losses(root / "single"), losses(root / "fsdp"), range(1, STEPS + 1))


def test_gradient_accumulation_times_data_parallel(runs):
    root, _, _ = runs
    # 2 micro-batches of 8 rows, each split over 8 devices, against one batch of 16 on one device.
    assert_same_losses(losses(root / "single"), losses(root / "dp_accum"), range(1, STEPS + 1))


def test_checkpoints_move_between_meshes(runs):
    root, _, _ = runs
    single = losses(root / "single")
    # Written on 1 device, resumed from step 4 under 8-way FSDP; and the reverse.
    assert_same_losses(single, losses(root / "single_to_fsdp"), range(1, STEPS + 1))
    assert_same_losses(losses(root / "fsdp"), losses(root / "fsdp_to_single"), range(1, STEPS + 1))
    info = json.loads((root / "fsdp_to_single" / "run_info.json").read_text())
    assert info["resumed_from"] == STEPS // 2


def test_bad_meshes_are_refused_before_compiling(runs):
    _, _, errors = runs
    assert len(errors) == 2
    assert "cannot be split over 8 data-parallel devices" in errors[0]
    assert "'embed' axis of size 36 cannot be split over 8 devices" in errors[1]
