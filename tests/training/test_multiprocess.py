"""Two JAX processes training one run together, against one process with the same four devices.

Two processes on this machine (``multiprocess_worker.py``), each with 2 simulated CPU devices,
form one job through ``jax.distributed`` (a coordinator on 127.0.0.1, collectives over TCP) and
train ``tiny_config()`` into one shared workdir. The truth they are checked against is the same
training in one process with 4 devices: the same mesh, the same global batches. The runs are
shared by the tests of this file (module fixture): the two-process run, then, in one process,
the reference and a resume of the two-process run's step-4 checkpoint.

Losses agree to float32 rounding, not bitwise: the gradients of the two processes are summed
across them in another order than inside one process.

Each job is bounded (`TIMEOUT_S`): a hang fails the test, and every process of a job is killed
as soon as one fails, so none is left waiting for the others.
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.multiprocess

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "tests" / "multiprocess_worker.py"
PROCESSES, LOCAL_DEVICES = 2, 2
DEVICES = PROCESSES * LOCAL_DEVICES
STEPS = 8  # tiny_config(): evaluations at 0, 4, 8; checkpoints at 4 and 8
TIMEOUT_S = 300
RTOL = 1e-5
# A few sampled tokens at the end: generation runs on every process, the first one writes.
SAMPLES = {"sample.num_samples": 2, "sample.max_new_tokens": 8}
# What a job launcher may set; a single process must not inherit it and try to join a job.
CLUSTER_VARIABLES = (
    "JAX_COORDINATOR_ADDRESS", "JAX_COORDINATOR_BIND_ADDRESS", "JAX_NUM_PROCESSES",
    "JAX_PROCESS_ID", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE",
)  # fmt: skip


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(jobs: list[dict], processes: int, local_devices: int, logs: Path) -> list[str]:
    """Runs the worker as one job of ``processes`` processes; returns the output of each.

    Every process gets ``local_devices`` CPU devices. The job fails as a whole: when a process
    exits with an error, or ``TIMEOUT_S`` passes, the others are killed.
    """
    env = {k: v for k, v in os.environ.items() if k not in CLUSTER_VARIABLES}
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={local_devices}"
    envs = [env]
    if processes > 1:
        address = f"127.0.0.1:{free_port()}"  # JAX's default binds every interface: not here
        env |= {"JAX_COORDINATOR_ADDRESS": address, "JAX_COORDINATOR_BIND_ADDRESS": address}
        env["JAX_NUM_PROCESSES"] = str(processes)
        envs = [env | {"JAX_PROCESS_ID": str(i)} for i in range(processes)]
    logs.mkdir(parents=True, exist_ok=True)
    paths = [logs / f"process{i}.log" for i in range(processes)]
    command = [sys.executable, str(WORKER), json.dumps(jobs)]
    procs, stopped = [], ""
    try:
        for path, process_env in zip(paths, envs, strict=True):
            with open(path, "w") as log:  # the child keeps its own copy of the descriptor
                procs.append(
                    subprocess.Popen(
                        command, cwd=REPO, env=process_env, stdout=log, stderr=subprocess.STDOUT
                    )
                )
        deadline = time.monotonic() + TIMEOUT_S
        while any(p.poll() is None for p in procs):
            if any(p.returncode for p in procs):
                stopped = "another process failed"  # the others would wait for it
                break
            if time.monotonic() > deadline:
                stopped = f"still running after {TIMEOUT_S} s"
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait()
    outputs = [path.read_text(errors="replace") for path in paths]
    failed = [
        f"process {i} of {processes} exited with {p.returncode}"
        + (f" (killed: {stopped})" if p.returncode < 0 and stopped else "")
        + f"; its output ends:\n{out[-3000:]}"
        for i, (p, out) in enumerate(zip(procs, outputs, strict=True))
        if p.returncode
    ]
    # The process that failed first, before those killed because of it.
    assert not failed, "\n".join(sorted(failed, key=lambda line: "(killed" in line))
    return outputs


def process_line(output: str) -> dict:
    return json.loads(next(ln[8:] for ln in output.splitlines() if ln.startswith("PROCESS ")))


def records(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def record_steps(workdir: Path) -> list[int]:
    return [r["step"] for r in records(workdir)]


def losses(workdir: Path, key: str) -> dict[int, float]:
    return {r["step"]: r[key] for r in records(workdir) if key in r}


def assert_same_losses(reference: Path, other: Path, steps, keys=("train_loss",)) -> None:
    steps = list(steps)
    for key in keys:
        want, got = losses(reference, key), losses(other, key)
        assert all(s in got for s in steps), f"{key}: missing steps {set(steps) - set(got)}"
        np.testing.assert_allclose(
            [got[s] for s in steps], [want[s] for s in steps], rtol=RTOL, err_msg=key
        )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiprocess")
    two = launch(
        [{"workdir": str(root / "two"), "overrides": SAMPLES}],
        processes=PROCESSES, local_devices=LOCAL_DEVICES, logs=root / "logs_two",
    )  # fmt: skip
    # The two-process run without its last checkpoint: resuming it redoes steps 5-8.
    shutil.copytree(root / "two", root / "resumed")
    shutil.rmtree(root / "resumed" / "checkpoints" / str(STEPS))
    one = launch(
        [
            {"workdir": str(root / "one"), "overrides": SAMPLES},
            {"workdir": str(root / "resumed"), "overrides": SAMPLES},
        ],
        processes=1, local_devices=DEVICES, logs=root / "logs_one",
    )  # fmt: skip
    return root, two, one[0]


def test_the_processes_form_one_job(runs):
    _, two, one = runs
    where = [process_line(out) for out in two]
    assert [w["index"] for w in where] == list(range(PROCESSES))
    for w in where:
        assert (w["count"], w["devices"], w["local_devices"]) == (PROCESSES, DEVICES, LOCAL_DEVICES)
    assert process_line(one) == {
        "index": 0,
        "count": 1,
        "devices": DEVICES,
        "local_devices": DEVICES,
    }


def test_two_processes_train_like_one_with_the_same_devices(runs):
    root, _, _ = runs
    assert_same_losses(root / "one", root / "two", range(1, STEPS + 1))
    assert_same_losses(
        root / "one", root / "two", [0, 4, 8], keys=("val_loss", "train_eval_loss", "val_bpb")
    )
    # The runs did learn: a match of frozen models would prove little.
    train = losses(root / "one", "train_loss")
    assert train[STEPS] < train[1]


def test_the_first_process_alone_writes_the_run_files(runs):
    root, two, _ = runs
    # One record per step (a second writer would repeat them), as in the one-process run.
    assert record_steps(root / "two") == record_steps(root / "one")
    info = json.loads((root / "two" / "run_info.json").read_text())
    assert len(info["devices"]) == DEVICES
    # The tokenizer is trained once and read by the second process, the same as one process's.
    assert (root / "two" / "tokenizer.bpe").read_bytes() == (
        root / "one" / "tokenizer.bpe"
    ).read_bytes()
    # Both processes generate the samples; they are printed and written once.
    assert "--- sample 1 ---" in two[0] and "--- sample" not in two[1]
    assert (root / "two" / "samples.txt").read_text() == (root / "one" / "samples.txt").read_text()
    assert not [p.name for p in (root / "two").iterdir() if p.name.endswith(".tmp")]


def test_one_checkpoint_is_written_by_both_processes(runs):
    root, _, _ = runs
    folder = root / "two" / "checkpoints"
    # Complete checkpoints only, no temporary folder of an unfinished save.
    assert sorted(p.name for p in folder.iterdir()) == ["4", str(STEPS)]
    for step in ("4", str(STEPS)):
        state = folder / step / "state"
        assert (folder / step / "commit_success.txt").is_file()
        # Orbax gives each process its own part of the shared folder (`ocdbt.process_<i>`); the
        # arrays are replicated, and their writing is split between the processes.
        for i in range(PROCESSES):
            written = [p for p in (state / f"ocdbt.process_{i}" / "d").iterdir() if p.is_file()]
            assert written and sum(p.stat().st_size for p in written) > 0, (step, i)


def test_one_process_resumes_the_two_process_checkpoint(runs):
    root, _, one = runs
    assert f"resumed {root / 'resumed'} from step 4" in one
    info = json.loads((root / "resumed" / "run_info.json").read_text())
    assert info["resumed_from"] == 4 and len(info["devices"]) == DEVICES
    # Steps 1-4 are the two-process run's records, 5-8 were trained by one process from its
    # checkpoint; all match the uninterrupted one-process run.
    assert record_steps(root / "resumed") == record_steps(root / "one")
    assert_same_losses(root / "one", root / "resumed", range(STEPS // 2 + 1, STEPS + 1))
    assert_same_losses(root / "one", root / "resumed", [STEPS], keys=("val_loss",))
    assert sorted(p.name for p in (root / "resumed" / "checkpoints").iterdir()) == ["4", "8"]
