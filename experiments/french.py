"""French: the same small GPT on *Les Misérables*, with a byte-level and a BPE vocabulary.

  GPTJAX_DATA_DIR=/path/to/data python -m gptjax.experiment experiments/french.py

Victor Hugo's novel (`hugo_miserables_fr.txt` from `$GPTJAX_DATA_DIR`, 3.2 MB of UTF-8, accents
included), a 2-layer, width-128 GPT with a block of 64 tokens, trained for the same number of
tokens with bytes only (260 ids: an accented letter is two tokens) and with a 1024-token BPE
trained on the novel's training split. Each run ends with samples from the prompt
"Le chat mange la".
"""

import os
from pathlib import Path

from gptjax import tokenizer as tk
from gptjax.runs import compare
from gptjax.runs.experiment import apply_overrides, config_from_file
from gptjax.training import data

BASE = Path(__file__).resolve().parents[1] / "configs" / "shakespeare_small.py"
CORPUS = "hugo_miserables_fr.txt"


VARIANTS = {
    "bytes": {"tokenizer.vocab_size": 260},
    "bpe1024": {"tokenizer.vocab_size": 1024},
}


def get_config():
    root = os.environ.get("GPTJAX_DATA_DIR")
    if not root:
        raise ValueError(f"experiments/french.py reads {CORPUS} from $GPTJAX_DATA_DIR: set it")
    french = {
        "data.corpus": str(Path(root) / CORPUS),
        "sample.prompt": "Le chat mange la",
        "sample.max_new_tokens": 150,
        "sample.num_samples": 2,
    }
    return apply_overrides(config_from_file(BASE), french, "experiments/french.py")


def analyze(runs):
    """Bytes per token, the samples, and two or three sentences on what the numbers show."""
    first = next(iter(runs.values()))
    docs = data.load_documents(first.config["data.corpus"])
    val_text = "".join(data.split_documents(docs, first.config["data.val_fraction"])[1])
    val_bytes = len(val_text.encode("utf-8"))
    facts, parts = {}, []
    for name, run in runs.items():
        tok = tk.load(run.path / "tokenizer.bpe")
        bpt = val_bytes / len(tk.encode_corpus(tok, val_text))
        facts[name] = dict(bpt=bpt, **compare.summarize(run))
        samples = (run.path / "samples.txt").read_text(encoding="utf-8").strip()
        parts.append(f"### {name}\n\n```text\n{samples}\n```")
    b, p = facts["bytes"], facts["bpe1024"]
    findings = (
        f"On the validation split ({val_bytes:,} bytes), the BPE vocabulary holds "
        f"{p['bpt']:.2f} bytes per token against {b['bpt']:.2f} for bytes only, so for the same "
        f"{compare.format_count(b['tokens_seen'])} training tokens the BPE model read about "
        f"{p['bpt'] / b['bpt']:.1f} times as much text. "
        f"Final validation bits per byte: {b['final_val_bpb']:.3f} with bytes, "
        f"{p['final_val_bpb']:.3f} with BPE (one seed each). "
        "The samples below are what each model writes after the prompt, unedited."
    )
    c = first.config
    how = (
        f"Prompt {c['sample.prompt']!r}, {c['sample.max_new_tokens']} new tokens per sample "
        f"(so about {p['bpt'] / b['bpt']:.1f} times more text with BPE), temperature "
        f"{c['sample.temperature']}, top-p {c['sample.top_p']}."
    )
    return "\n\n".join(["## What the measurements show", findings, "## Samples", how, *parts])
