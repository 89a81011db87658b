"""Where a result came from: the command, the code's git commit and the machine, for reports.

Experiment reports are committed next to the code, so each one records what produced it.
"""

import datetime
import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path

from gptjax.runs.run import Run

PACKAGE_DIR = Path(__file__).resolve().parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(PACKAGE_DIR), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_commit(extra_paths: Iterable[Path] = ()) -> str:
    """Returns the commit of the checkout holding gptjax, noting uncommitted changes to the code.

    Args:
      extra_paths: files besides ``gptjax/`` and ``configs/`` whose changes matter (the
        experiment file).
    """
    commit = _git("rev-parse", "--short=10", "HEAD")
    top = _git("rev-parse", "--show-toplevel")
    if commit is None or top is None:
        return "unknown (gptjax is not in a git checkout)"
    paths = ["gptjax", "configs"]
    for path in extra_paths:
        resolved = path.resolve()
        if resolved.is_relative_to(top):
            paths.append(str(resolved.relative_to(top)))
    changed = _git("-C", top, "status", "--porcelain", "--", *paths)
    if changed:
        return f"{commit} plus uncommitted changes to {', '.join(paths)}"
    return commit


def machine() -> str:
    """Returns the CPU model, the cores this process may use, the OS and the JAX devices."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = models[0] if models else cpu
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cpu}, {cores} cores available, {platform.system()} {platform.release()}"
    try:
        import jax

        devices = jax.devices()
        text += f", JAX {jax.__version__} on {len(devices)} × {devices[0].device_kind}"
    except Exception as error:  # the report must not fail because a backend is unavailable
        text += f", JAX devices unavailable ({type(error).__name__})"
    return text


def describe(command: str, runs: Iterable[Run], experiment_path: Path) -> str:
    """Returns Markdown lines naming the command, the commit(s), the machine and the date."""
    recorded = sorted({str(run.info["git_commit"]) for run in runs if "git_commit" in run.info})
    lines = [
        f"- Command: `{command}`",
        f"- Code: commit {code_commit([experiment_path])}",
    ]
    if recorded:
        lines.append(f"- Runs trained at commit(s): {'; '.join(recorded)}")
    lines.append(f"- Machine: {machine()}")
    lines.append(f"- Report written: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    return "\n".join(lines)
