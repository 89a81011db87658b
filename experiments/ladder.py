"""The ablation ladder of Karpathy's "Let's build GPT": what each piece of the model adds.

  GPTJAX_DATA_DIR=/path/to/data python -m gptjax.experiment experiments/ladder.py

Character-level Tiny Shakespeare (bytes, no merges: one token is one character, the lecture's
setting), configs/shakespeare_char.py with untied embeddings, for the same 1,536,000 training
tokens on every rung. Each rung adds one piece to the one before:

1. ``bigram``: no block at all (``model.n_layer=0``, no positions): embeddings, final norm,
   logits, so the prediction for the next character sees the current character alone;
2. ``head1``: one block of one attention head, as wide as the model (128), no MLP
   (``model.mlp_ratio=0``), with learned positions;
3. ``heads4``: the same block with 4 heads of 32 (the same parameters, split in four);
4. ``mlp``: the MLP (width 4 x 128) added to that block;
5. ``layers4``: 4 such blocks, which is configs/shakespeare_char.py itself (untied).

``heads4_seed1`` and ``mlp_seed1`` are two rungs again with another seed: how far two runs land
by chance alone. The larger of the two gaps is the yardstick each rung's gain is measured against.

Two differences from the lecture, where the pieces come in another order: the blocks here have
their residual connection and pre-LN from the first attention rung on (the lecture adds them with
the stacked blocks), and the embeddings are untied on every rung (the lecture has a separate
``lm_head``; tied, the bigram's table would be a symmetric form of the embeddings).

Measured on 2026-12-02 on the 2-core CPU machine, other jobs running beside it (load average 7 to
8): 8 min 53 s for the seven runs, 3 min 29 s of it ``layers4``. Final validation bits per byte:
bigram 3.583, one head 3.167, 4 heads 3.019, + MLP 2.719, 4 blocks 2.697; the second seeds land
0.002 (``heads4``) and 0.019 (``mlp``) away, so the last step, 0.021, is within about one seed gap
(report: experiments/results/ladder/report.md).
"""

from pathlib import Path

from gptjax.runs import compare
from gptjax.runs.experiment import config_from_file

BASE = Path(__file__).resolve().parents[1] / "configs" / "shakespeare_char.py"

NO_MLP = {"model.n_layer": 1, "model.mlp_ratio": 0}
# The rungs, in order; each adds one piece to the one before.
VARIANTS = {
    # n_head stays 4 but means nothing here: with no block there is no attention.
    "bigram": {"model.n_layer": 0, "model.mlp_ratio": 0, "model.pos_encoding": "none"},
    "head1": {**NO_MLP, "model.n_head": 1},
    "heads4": {**NO_MLP, "model.n_head": 4},
    "mlp": {"model.n_layer": 1, "model.n_head": 4},
    "layers4": {"model.n_layer": 4, "model.n_head": 4},
}
RUNGS = tuple(VARIANTS)
# Two rungs again with another seed: how far apart runs land by chance alone. These two sit on
# either side of the smallest steps, and are cheap (one block each).
NOISE_RUNGS = ("heads4", "mlp")
VARIANTS.update({f"{rung}_seed1": {**VARIANTS[rung], "seed": 1} for rung in NOISE_RUNGS})

ADDED = {
    "head1": "one attention head",
    "heads4": "4 heads instead of 1",
    "mlp": "the MLP",
    "layers4": "3 more blocks",
}


def get_config():
    config = config_from_file(BASE)
    config.model.tie_embeddings = False
    return config


def _verdict(gain: float, noise: float) -> str:
    """How a gain compares with the seed gap, in words."""
    if noise == 0:
        return "no seed gap to compare with (the seeds landed on the same value)"
    ratio = gain / noise
    if gain <= 0:
        return f"a loss, {-ratio:.1f} times the seed gap"
    if ratio < 1:
        return f"{ratio:.1f} times: within chance"
    if ratio < 2:
        return f"{ratio:.1f} times: not clearly beyond chance"
    return f"{ratio:.1f} times"


def _evaluations_ahead(run, below) -> tuple[int, int]:
    """At how many of the evaluations after step 0 ``run`` is below ``below``, and of how many."""
    ours = dict(zip(*run.series("val_bpb"), strict=True))
    theirs = dict(zip(*below.series("val_bpb"), strict=True))
    steps = sorted(step for step in ours.keys() & theirs.keys() if step > 0)
    return sum(ours[step] < theirs[step] for step in steps), len(steps)


def analyze(runs):
    """Each rung's gain against the one below, measured in seed gaps."""
    facts = {name: compare.summarize(run) for name, run in runs.items()}
    bpb = {name: facts[name]["final_val_bpb"] for name in facts}
    gaps = {rung: abs(bpb[rung] - bpb[f"{rung}_seed1"]) for rung in NOISE_RUNGS}
    noise = max(gaps.values())
    steps = list(zip(RUNGS, RUNGS[1:], strict=False))
    under = {rung: below for below, rung in steps}
    gains = {rung: bpb[under[rung]] - bpb[rung] for rung in under}
    header = ["rung", "adds", "params", "final val bpb", "gain over the rung below"]
    header += ["against the seed gap", "lower at evaluations"]
    rows = [["`bigram`", "(the start)", compare.format_count(facts["bigram"]["params"])]]
    rows[0] += [f"{bpb['bigram']:.4f}", "", "", ""]
    for below, rung in steps:
        ahead, evaluations = _evaluations_ahead(runs[rung], runs[below])
        rows.append(
            [f"`{rung}`", ADDED[rung], compare.format_count(facts[rung]["params"])]
            + [f"{bpb[rung]:.4f}", f"{gains[rung]:+.4f}", _verdict(gains[rung], noise)]
            + [f"{ahead} of {evaluations}"]
        )
    table = compare.markdown_table(header, rows)
    biggest, smallest = max(gains, key=gains.get), min(gains, key=gains.get)
    clear = [rung for rung in gains if noise and gains[rung] >= 2 * noise]
    ahead, evaluations = _evaluations_ahead(runs[smallest], runs[under[smallest]])
    growth = facts[smallest]["params"] / facts[under[smallest]]["params"]
    gap_text = " and ".join(f"`{rung}` {gaps[rung]:.4f}" for rung in NOISE_RUNGS)
    findings = (
        f"From the bigram to `{RUNGS[-1]}` the validation loss falls by "
        f"{bpb[RUNGS[0]] - bpb[RUNGS[-1]]:.3f} bits per byte, from {bpb[RUNGS[0]]:.3f} to "
        f"{bpb[RUNGS[-1]]:.3f}. The largest step is {ADDED[biggest]} (`{biggest}`, "
        f"{gains[biggest]:+.3f}), the smallest {ADDED[smallest]} (`{smallest}`, "
        f"{gains[smallest]:+.4f} with {growth:.1f} times the parameters), which is lower than "
        f"the rung below at {ahead} of the {evaluations} evaluations. {len(clear)} of the "
        f"{len(gains)} steps gain at least twice the seed gap"
        + (f" ({', '.join(f'`{rung}`' for rung in clear)})." if clear else ".")
        + " Two pairs of seeds measure chance at two rungs only, and every rung trains for the "
        "same number of tokens, not to convergence: the gains are those of this budget."
    )
    return (
        "## What the measurements show\n\n"
        "Final validation bits per byte (every target of the validation split), each rung against "
        f"the rung below it. Seed gaps, the same model trained with seeds 0 and 1: {gap_text}; "
        f"the larger, {noise:.4f}, is the yardstick.\n\n" + table + "\n\n" + findings
    )
