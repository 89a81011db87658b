"""Tiny GPT on French: an excerpt of Hugo's *Les Misérables*; the French smoke run on a CPU.

  python -m gptjax.main --config configs/french_tiny.py

Trains a 512-token BPE and a 2-layer GPT on ``data/hugo_miserables_extrait.txt`` (corpus name
``"hugo_extrait"``: the opening of tome I, book 1 on Monseigneur Myriel and the first five chapters
of book 2, 187,969 bytes committed in the repository; see data/README.md), so a fresh clone runs
it with no network and no ``GPTJAX_DATA_DIR``. Its samples continue the tutorial's prompt, "Le
chat mange la".

It is configs/tiny.py (read from that file) with four changes: the corpus, the prompt, 1500 steps
and ``model.dropout=0.1``. Why dropout: the training split is only 79,585 tokens, which 1500 steps
of 16 x 64 tokens go through about 19 times. Without dropout the model starts to learn it by heart
(the same command with ``--config.model.dropout=0.0 --config.train.eval_every=100``: validation
loss 3.243 at step 1400, 3.252 at step 1500, training loss 2.47; 57.5 s); with it the validation
loss is still falling at the end. It runs the tutorial's own code, ``model.kernels="plain"``.

Measured on 2026-12-01 on the 2-core CPU machine, another job's tests running beside it, as
``time python -m gptjax.main --config configs/french_tiny.py --workdir /tmp/fr`` on a fresh
workdir and an empty ``$GPTJAX_CACHE_DIR`` (the whole process: tokenizer training, encoding,
compilation, 1500 steps, evaluations, checkpoints, samples): 61.7 and 65.8 s. Validation loss
3.266 nats/token (2.184 bits per byte) at step 1500, both times (training loss 2.921).
"""

from pathlib import Path

import ml_collections

from gptjax.runs.experiment import config_from_file


def get_config() -> ml_collections.ConfigDict:
    c = config_from_file(Path(__file__).with_name("tiny.py"))
    c.data.corpus = "hugo_extrait"
    c.model.dropout = 0.1
    c.train.steps = 1500
    c.sample.prompt = "Le chat mange la"
    return c
