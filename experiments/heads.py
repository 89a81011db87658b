"""Number of attention heads (tutorial part 5): 1, 2, 4 and 8 heads at a fixed width of 128.

  python -m gptjax.experiment experiments/heads.py

The same small GPT (2 layers, width 128, block of 64 tokens, 512-token BPE) on Tiny Shakespeare,
for the same number of training tokens. Only the number of heads changes, so the head size goes
128, 64, 32, 16 and the parameter count stays the same: the heads split the width, they do not add
to it. A second seed of the 4-head model shows how much runs differ by chance alone.
"""

from pathlib import Path

from gptjax.runs import compare
from gptjax.runs.experiment import config_from_file

BASE = Path(__file__).resolve().parents[1] / "configs" / "shakespeare_small.py"


VARIANTS = {f"h{n}": {"model.n_head": n} for n in (1, 2, 4, 8)}
# The same model as h4 with another seed: how far apart two runs land by chance alone.
VARIANTS["h4_seed1"] = {"model.n_head": 4, "seed": 1}


def get_config():
    return config_from_file(BASE)


def analyze(runs):
    """Two or three sentences on what the numbers show."""
    facts = {name: compare.summarize(run) for name, run in runs.items()}
    heads = [n for n in facts if n != "h4_seed1"]
    ranked = sorted(heads, key=lambda n: facts[n]["final_val_bpb"])
    listing = ", ".join(f"{n} {facts[n]['final_val_bpb']:.3f}" for n in ranked)
    params = {facts[n]["params"] for n in facts}
    same = (
        f"All variants have the same {compare.format_count(params.pop())} parameters."
        if len(params) == 1
        else "The parameter counts differ: "
        + ", ".join(f"{n} {compare.format_count(facts[n]['params'])}" for n in facts)
        + "."
    )
    gap = facts[ranked[-1]]["final_val_bpb"] - facts[ranked[0]]["final_val_bpb"]
    seeds = abs(facts["h4"]["final_val_bpb"] - facts["h4_seed1"]["final_val_bpb"])
    speed = ", ".join(f"{n} {compare.format_count(facts[n]['tokens_per_sec'])}" for n in heads)
    findings = (
        f"{same} Final validation bits per byte, from lowest to highest: {listing}, a spread of "
        f"{gap:.3f}; the same 4-head model with another seed (h4_seed1) lands {seeds:.3f} away "
        "from h4. "
        f"Median training throughput in tokens/s: {speed}; h4 and h4_seed1 do the same "
        f"computation yet measured {compare.format_count(facts['h4']['tokens_per_sec'])} and "
        f"{compare.format_count(facts['h4_seed1']['tokens_per_sec'])} on this shared machine, "
        "which bounds what the throughput differences can show."
    )
    return "## What the measurements show\n\n" + findings
