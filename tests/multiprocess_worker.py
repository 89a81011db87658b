"""One JAX process of a training job, so the test can run several of them on one machine.

  JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=I \
  XLA_FLAGS=--xla_force_host_platform_device_count=2 python tests/multiprocess_worker.py JOBS_JSON

Every process of the job runs the same command (only ``JAX_PROCESS_ID`` differs), and
`train_and_evaluate` starts ``jax.distributed`` from those variables; without them the process is
a job of its own. JOBS_JSON is a list of ``{"workdir": ..., "overrides": {...}}``, trained in order
as `tiny_config()` (from ``multidevice_worker.py``) with the overrides. The process then prints
one line, ``PROCESS {"index": ..., "count": ..., "devices": ..., "local_devices": ...}``, so the
test can tell that it ran in the job it was meant to. A process that fails exits at once, so the
test can stop the others instead of waiting for their timeouts.
"""

import json
import os
import sys
import traceback

import jax
from multidevice_worker import tiny_config

from gptjax.training.loop import train_and_evaluate


def main(jobs_json: str) -> None:
    for job in json.loads(jobs_json):
        train_and_evaluate(tiny_config(job["overrides"]), job["workdir"])
    where = {
        "index": jax.process_index(),
        "count": jax.process_count(),
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
    }
    print("PROCESS " + json.dumps(where), flush=True)


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        # note: a plain exit would first wait in jax.distributed's shutdown barrier for the other
        # processes (5 minutes), which wait for this one in their next collective.
        os._exit(1)
