"""OpenAI's GPT-2 small (124M), fine-tuned on Tiny Shakespeare from the Hugging Face weights.

  python -m gptjax.main --config configs/gpt2_finetune.py --workdir runs/gpt2_finetune

The run starts from the parameters of ``train.init_from`` (``runs/gpt2_hf``), a run directory
converted from the Hugging Face ``gpt2`` model. Make it once; on a machine with network access,
fetch the two files (about 550 MB; ``hf download`` is the newer name of ``huggingface-cli
download``)::

  huggingface-cli download gpt2 config.json model.safetensors --local-dir hf/gpt2

then, anywhere (no network needed from here on)::

  python -m gptjax.convert from-hf hf/gpt2 --out runs/gpt2_hf

The conversion takes GPT-2's rank file and ``<|endoftext|>=50256`` from configs/gpt2.py, as this
config does (``$GPTJAX_DATA_DIR/gpt2.tiktoken``); docs/model.md has the details.

It is configs/gpt2.py (read from that file) with the changes a fine-tune needs, after nanoGPT's
``finetune_shakespeare.py``: ``model.vocab_size=50257``, since the converted table has one row per
GPT-2 id and the initial parameters must have the model's shapes (configs/gpt2.py pads it to
50,304 for speed when training from scratch); a small constant learning rate (3e-5, no warm-up,
no decay); dropout 0.1; 32 sequences of 1024 tokens per step (4 micro-batches of 8) for 20 steps,
about two passes over the 300k GPT-2 tokens of the training split; an evaluation every 5 steps
(of configs/gpt2.py's ``eval`` group: the whole validation split).
Meant for an accelerator (bfloat16 compute, the fast kernels); no run of it has been measured.
"""

from pathlib import Path

import ml_collections

from gptjax.runs.experiment import config_from_file


def get_config() -> ml_collections.ConfigDict:
    c = config_from_file(Path(__file__).with_name("gpt2.py"))
    c.model.vocab_size = 50257
    c.model.dropout = 0.1
    c.opt.lr = 3e-5
    c.opt.min_lr = 3e-5
    c.opt.warmup_steps = 0
    c.train.steps = 20
    c.train.batch_size = 32
    c.train.grad_accum = 4
    c.train.eval_every = 5
    c.train.log_every = 1
    c.train.checkpoint_every = 10
    c.train.keep_checkpoints = 2
    c.train.init_from = "runs/gpt2_hf"
    c.sample.prompt = "ROMEO:"
    return c
