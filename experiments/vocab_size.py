"""Vocabulary size (tutorial question 3): with a larger vocab_size, are sequences shorter?

  python -m gptjax.experiment experiments/vocab_size.py

Four tokenizers trained on the Tiny Shakespeare training split: bytes only (260 ids: 256 bytes and
4 special tokens, no merges), then BPE with 512, 1024 and 4096 ids. The same small GPT (2 layers,
width 128, block of 64 tokens) trains on each for the same number of tokens (steps × batch ×
block). Bytes per token and token counts are measured on the validation split and on a fixed
passage; validation bits per byte compares the models on one axis whatever their vocabulary.
"""

from pathlib import Path

from gptjax import tokenizer as tk
from gptjax.runs import compare
from gptjax.runs.experiment import config_from_file
from gptjax.training import data

BASE = Path(__file__).resolve().parents[1] / "configs" / "shakespeare_small.py"


VARIANTS = {
    "bytes": {"tokenizer.vocab_size": 260},
    "bpe512": {"tokenizer.vocab_size": 512},
    "bpe1024": {"tokenizer.vocab_size": 1024},
    "bpe4096": {"tokenizer.vocab_size": 4096},
}

# A fixed passage (Richard II, Act 2, Scene 1), tokenized by every variant's tokenizer.
PASSAGE = (
    "This royal throne of kings, this scepter'd isle,\n"
    "This earth of majesty, this seat of Mars,\n"
    "This other Eden, demi-paradise,\n"
)


def get_config():
    return config_from_file(BASE)


def analyze(runs):
    """Token lengths per tokenizer, and two or three sentences on what the numbers show."""
    first = next(iter(runs.values()))
    docs = data.load_documents(first.config["data.corpus"])
    val_text = "".join(data.split_documents(docs, first.config["data.val_fraction"])[1])
    val_bytes = len(val_text.encode("utf-8"))
    passage_bytes = len(PASSAGE.encode("utf-8"))
    block = first.config["model.block_size"]
    rows, facts = [], {}
    for name, run in runs.items():
        tok = tk.load(run.path / "tokenizer.bpe")
        val_tokens = len(tk.encode_corpus(tok, val_text))
        bpt = val_bytes / val_tokens
        s = compare.summarize(run)
        facts[name] = dict(
            vocab=tok.vocab_size, bpt=bpt, passage=len(tk.encode_corpus(tok, PASSAGE)), **s
        )
        f = facts[name]
        rows.append(
            [name, f"{tok.vocab_size:,}", f"{val_tokens:,}", f"{bpt:.2f}", str(f["passage"])]
            + [f"{block * bpt:.0f}", compare.format_count(f["params"])]
            + [compare.format_count(f["tokens_per_sec"]), compare.format_loss(f["final_val_bpb"])]
        )
    header = ["variant", "vocab", "val tokens", "bytes/token", "passage tokens"]
    header += [f"bytes per {block}-token block", "params", "tokens/s", "final val bpb"]
    ordered = sorted(facts.items(), key=lambda item: item[1]["vocab"])
    lo, hi = ordered[0][1], ordered[-1][1]
    best = min(facts, key=lambda n: facts[n]["final_val_bpb"])
    worst = max(facts, key=lambda n: facts[n]["final_val_bpb"])
    bpts = [f["bpt"] for _, f in ordered]
    trend = (
        "A larger vocabulary makes sequences shorter"
        if all(a < b for a, b in zip(bpts, bpts[1:], strict=False))
        else "Sequence length does not fall steadily with the vocabulary size"
    )
    findings = (
        f"{trend}: the {val_bytes:,}-byte validation split "
        f"is {val_bytes / lo['bpt']:,.0f} tokens with {lo['vocab']} ids ({lo['bpt']:.2f} bytes "
        f"per token) and {val_bytes / hi['bpt']:,.0f} with {hi['vocab']} ids "
        f"({hi['bpt']:.2f}), and the {passage_bytes}-byte passage goes from {lo['passage']} to "
        f"{hi['passage']} tokens, so a {block}-token block covers "
        f"{block * lo['bpt']:.0f} to {block * hi['bpt']:.0f} bytes of text. "
        f"The same {compare.format_count(lo['tokens_seen'])} training tokens are about "
        f"{lo['tokens_seen'] * lo['bpt'] / 1e6:.2f} MB of text with {lo['vocab']} ids and "
        f"{hi['tokens_seen'] * hi['bpt'] / 1e6:.2f} MB with {hi['vocab']}; "
        f"final validation bits per byte was lowest for "
        f"{best} ({facts[best]['final_val_bpb']:.3f}) and highest for {worst} "
        f"({facts[worst]['final_val_bpb']:.3f}), one seed each. "
        "Median training throughput in tokens/s: "
        + ", ".join(f"{n} {compare.format_count(f['tokens_per_sec'])}" for n, f in ordered)
        + " (a shared machine: indicative only)."
    )
    passage = "\n".join(f"    {line}" for line in PASSAGE.splitlines())
    return "\n\n".join(
        [
            "## Sequence lengths",
            compare.markdown_table(header, rows),
            f"The passage ({passage_bytes} bytes):\n\n{passage}",
            "## What the measurements show",
            findings,
        ]
    )
