"""Positional encoding (tutorial part 6): learned vs sinusoidal vs RoPE vs none, same budget.

  python -m gptjax.experiment experiments/positional_encoding.py

The same small GPT (2 layers, 4 heads, width 128, block of 64 tokens, 512-token BPE) on Tiny
Shakespeare, for the same number of training tokens, with each way of giving the model positions:
a learned table (GPT-2), the fixed sinusoids of Vaswani et al., rotary embeddings on q and k
(RoPE), and none at all (the causal mask is then the only source of order).
"""

from pathlib import Path

from gptjax.runs import compare
from gptjax.runs.experiment import config_from_file

BASE = Path(__file__).resolve().parents[1] / "configs" / "shakespeare_small.py"


VARIANTS = {
    "learned": {"model.pos_encoding": "learned"},
    "sinusoidal": {"model.pos_encoding": "sinusoidal"},
    "rope": {"model.pos_encoding": "rope"},
    "none": {"model.pos_encoding": "none"},
}


def get_config():
    return config_from_file(BASE)


def analyze(runs):
    """Two or three sentences on what the numbers show."""
    facts = {name: compare.summarize(run) for name, run in runs.items()}
    ranked = sorted(facts, key=lambda n: facts[n]["final_val_bpb"])
    best, worst = ranked[0], ranked[-1]
    listing = ", ".join(f"{n} {facts[n]['final_val_bpb']:.3f}" for n in ranked)
    tokens = compare.format_count(facts[best]["tokens_seen"])
    extra = facts["learned"]["params"] - facts["none"]["params"]
    # How much each variant still improved after its second evaluation (a plateau shows here).
    steps, _ = runs[best].series("val_bpb")
    after = steps[1]
    drops = ", ".join(
        f"{n} {runs[n].series('val_bpb')[1][1] - facts[n]['final_val_bpb']:.3f}" for n in ranked
    )
    findings = (
        f"After {tokens} training tokens each, final validation bits per byte, from lowest to "
        f"highest, was: {listing} (one seed per variant; the gap between {best} and {worst} is "
        f"{facts[worst]['final_val_bpb'] - facts[best]['final_val_bpb']:.3f}). "
        f"From step {after} to the end, validation bits per byte fell by: {drops}. "
        f"Only the learned table adds parameters ({extra:,}); the other three have the same count."
    )
    return "## What the measurements show\n\n" + findings
