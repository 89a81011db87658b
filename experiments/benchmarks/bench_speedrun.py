"""Time to loss against nanoGPT: its CPU recipe and ``configs/speedrun_char.py``, side by side.

  python experiments/benchmarks/bench_speedrun.py --nanogpt PATH [--torch-python PY]
      [--seeds 0 1 2] [--config configs/speedrun_char.py] [--skip-nanogpt]

Runs, one after the other on this machine, each as a fresh process timed from start to exit:

1. nanoGPT's own CPU recipe from its README (``train.py config/train_shakespeare_char.py
   --device=cpu --compile=False --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12
   --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0``), on
   the data its own ``data/shakespeare_char/prepare.py`` makes from the same Tiny Shakespeare;
2. ``python -m gptjax.main --config configs/speedrun_char.py --config.seed=S`` into a fresh run
   directory, for each seed.

and prints the float32 matmul peak measured first (the figure that says how fast this machine
is), both wall times, both validation losses, and the ratio of nanoGPT's time to the mean of the
speedrun's. nanoGPT's loss is its own estimate (20 random batches of the validation split);
ours is the exact mean over every target of the split, in 64-token windows.

nanoGPT is not part of gptjax and is never committed: ``--nanogpt`` is a checkout of
github.com/karpathy/nanoGPT (or a bare git directory of it, whose HEAD is unpacked into a
temporary folder). ``--torch-python`` is a Python with ``torch``, ``numpy`` and ``requests``
(nanoGPT's ``prepare.py`` imports it) installed, from the package registry: for example
``python -m venv /tmp/torch && /tmp/torch/bin/pip install torch numpy requests``. Needs
tinyshakespeare (``$GPTJAX_DATA_DIR``). Run it on an otherwise idle machine.
"""

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from gptjax.runs.rundir import RunDir, read_metrics  # noqa: E402
from gptjax.training import data  # noqa: E402
from gptjax.training.metrics import measure_matmul_flops  # noqa: E402

NANOGPT_RECIPE = [
    "config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
    "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4",
    "--n_embd=128", "--max_iters=2000", "--lr_decay_iters=2000", "--dropout=0.0",
]  # fmt: skip
TARGET = 1.886  # nanoGPT's validation loss on this recipe


def nanogpt_tree(path: Path, workdir: Path) -> Path:
    """A working tree of nanoGPT: ``path`` itself, or the HEAD of a bare git directory."""
    if (path / "train.py").is_file():
        tree = workdir / "nanogpt"
        shutil.copytree(path, tree, ignore=shutil.ignore_patterns(".git", "out-*"))
        return tree
    tree = workdir / "nanogpt"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "--git-dir", str(path), "archive", "HEAD"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    """Runs a command to its exit: (wall seconds, its output). Fails loudly if it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wall, done.stdout + done.stderr


def run_nanogpt(tree: Path, python: str) -> tuple[float, float]:
    """nanoGPT's recipe: (wall seconds of train.py, its last validation loss)."""
    (tree / "data/shakespeare_char/input.txt").write_text(
        "".join(data.load_documents("tinyshakespeare")), encoding="utf-8"
    )
    timed([python, "data/shakespeare_char/prepare.py"], tree)
    wall, out = timed([python, "train.py", *NANOGPT_RECIPE], tree)
    losses = re.findall(r"step (\d+): train loss [\d.]+, val loss ([\d.]+)", out)
    return wall, float(losses[-1][1])


def run_speedrun(config: str, seed: int, workdir: Path) -> tuple[float, float]:
    """One speedrun: (wall seconds of the whole process, its final exact validation loss)."""
    run_dir = workdir / f"seed{seed}"
    command = [sys.executable, "-m", "gptjax.main", "--config", config,
               f"--workdir={run_dir}", f"--config.seed={seed}"]  # fmt: skip
    wall, _ = timed(command, REPO)
    val = [r["val_loss"] for r in read_metrics(RunDir(run_dir).metrics_path) if "val_loss" in r]
    return wall, val[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nanogpt", type=Path, help="nanoGPT checkout or bare git directory")
    parser.add_argument("--torch-python", default=sys.executable, help="a Python with torch")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", default="configs/speedrun_char.py")
    parser.add_argument("--skip-nanogpt", action="store_true", help="time the speedrun only")
    args = parser.parse_args()
    if not args.skip_nanogpt and args.nanogpt is None:
        parser.error("--nanogpt PATH is needed (or --skip-nanogpt)")

    peak = measure_matmul_flops()
    print(f"float32 matmul peak (2048^3, measured now): {peak / 1e9:,.0f} GFLOP/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        nano = None
        if not args.skip_nanogpt:
            nano = run_nanogpt(nanogpt_tree(args.nanogpt, workdir), args.torch_python)
            print(f"nanoGPT (PyTorch CPU): {nano[0]:.1f} s, val loss {nano[1]:.4f}", flush=True)
        runs = []
        for seed in args.seeds:
            runs.append(run_speedrun(args.config, seed, workdir))
            print(f"{args.config} seed {seed}: {runs[-1][0]:.1f} s, val loss {runs[-1][1]:.4f}",
                  flush=True)  # fmt: skip
    walls, losses = [w for w, _ in runs], [v for _, v in runs]
    mean_wall, mean_loss = statistics.mean(walls), statistics.mean(losses)
    print(f"speedrun: mean {mean_wall:.1f} s (min {min(walls):.1f}, max {max(walls):.1f}), "
          f"mean val loss {mean_loss:.4f} over seeds {args.seeds} "
          f"({'meets' if mean_loss <= TARGET else 'misses'} the target {TARGET})")  # fmt: skip
    if nano is not None:
        print(f"ratio: nanoGPT's time / the speedrun's mean = {nano[0] / mean_wall:.2f}x")


if __name__ == "__main__":
    main()
