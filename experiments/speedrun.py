"""The speedrun's ablation: each change of configs/speedrun_char.py switched off alone.

  GPTJAX_DATA_DIR=/path/to/data python -m gptjax.experiment experiments/speedrun.py

Every variant is configs/speedrun_char.py (300 steps of 12 x 64 tokens, byte-level Tiny
Shakespeare, validation loss over every target of the split) with one change:

* ``record``: the config itself; ``record_seed1`` and ``record_seed2``: the same with seeds 1 and
  2, whose spread (the largest minus the smallest of the three) is the yardstick of chance;
* ``adamw``: AdamW for every parameter (at the record's AdamW rate, 6e-3) instead of Muon for
  the block matrices;
* ``learned_positions``: a learned position table instead of rotary positions;
* ``cosine``: nanoGPT's cosine decay (to 0 at the last step) instead of the held-then-linear one;
* ``warmup100``: nanoGPT's 100 warm-up steps instead of 15;
* ``momentum095``: Muon's momentum at optax's default, 0.95, instead of 0.85;
* ``relu2`` and ``qk_norm``: two changes tried on top of the record and not adopted (the MLP's
  GELU replaced by ``relu(x)**2``; queries and keys RMS-normalised per head).

The variants evaluate every 50 steps so that the curves can be drawn (the speedrun itself
evaluates once, at the end), and they run one after the other in one process, so their wall
times include those evaluations and share one start-up: the time to loss of the speedrun itself
is measured by experiments/benchmarks/bench_speedrun.py, in a fresh process per run.
"""

from pathlib import Path

from gptjax.runs import compare
from gptjax.runs.experiment import config_from_file

BASE = Path(__file__).resolve().parents[1] / "configs" / "speedrun_char.py"
METRIC = "val_loss"

VARIANTS = {
    "record": {},
    "record_seed1": {"seed": 1},
    "record_seed2": {"seed": 2},
    "adamw": {"opt.optimizer": "adamw"},
    "learned_positions": {"model.pos_encoding": "learned"},
    "cosine": {"opt.schedule": "cosine"},
    "warmup100": {"opt.warmup_steps": 100},
    "momentum095": {"opt.muon_momentum": 0.95},
    "relu2": {"model.activation": "relu2"},
    "qk_norm": {"model.qk_norm": True},
}
SWITCHED_OFF = {
    "adamw": "Muon",
    "learned_positions": "rotary positions",
    "cosine": "the held-then-linear schedule",
    "warmup100": "the 15-step warm-up",
    "momentum095": "Muon's momentum of 0.85",
}
TRIED = {"relu2": "relu(x)**2 in the MLP", "qk_norm": "QK-norm"}


def get_config():
    config = config_from_file(BASE)
    config.train.eval_every = 50
    return config


def analyze(runs):
    """What each change is worth: the loss without it, against the record and the seed gap."""
    loss = {name: compare.summarize(run)["final_val_loss"] for name, run in runs.items()}
    wall = {name: compare.summarize(run)["wall_time"] for name, run in runs.items()}
    seeds = [loss[name] for name in ("record", "record_seed1", "record_seed2")]
    noise = max(seeds) - min(seeds)
    header = ["variant", "change", "final val loss", "against the record", "in seed spreads"]
    header.append("wall time")
    rows = []
    for name in VARIANTS:
        if name in SWITCHED_OFF:
            change = f"without {SWITCHED_OFF[name]}"
        elif name in TRIED:
            change = f"with {TRIED[name]} (tried)"
        else:
            change = "the record" + (f", seed {name[-1]}" if "_seed" in name else "")
        delta = loss[name] - loss["record"]
        gaps = f"{delta / noise:+.1f}" if noise and not name.startswith("record") else ""
        rows.append([f"`{name}`", change, f"{loss[name]:.4f}", f"{delta:+.4f}", gaps])
        rows[-1].append(compare.format_seconds(wall[name]))
    worth = sorted(SWITCHED_OFF, key=lambda name: loss[name], reverse=True)
    findings = (
        f"Switched off alone, the change worth the most is {SWITCHED_OFF[worth[0]]} "
        f"(`{worth[0]}`: {loss[worth[0]] - loss['record']:+.4f} nats), then "
        + ", ".join(
            f"{SWITCHED_OFF[name]} ({loss[name] - loss['record']:+.4f})" for name in worth[1:]
        )
        + f". The three seeds of the record spread over {noise:.4f}. Tried on top of the record: "
        + ", ".join(f"{TRIED[name]} {loss[name] - loss['record']:+.4f}" for name in TRIED)
        + " (negative is better). One seed per variant: a difference within about one seed "
        "spread is not a finding."
    )
    return (
        "## What the measurements show\n\n"
        "Final validation loss (nats per character, every target of the validation split), each "
        "variant against the record.\n\n" + compare.markdown_table(header, rows) + "\n\n" + findings
    )
