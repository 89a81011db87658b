"""Time to loss on a CPU: nanoGPT's shakespeare_char validation loss (1.886), in far less time.

  python -m gptjax.main --config configs/speedrun_char.py

The task is configs/shakespeare_char.py's, unchanged (tests/test_speedrun.py pins it): Tiny
Shakespeare at the byte level (one token is one character), nanoGPT's split (the first 90% of the
characters train, the last 10% validate), and the validation loss in nats per character measured
over every target of the validation split in 64-token windows. The target is nanoGPT's own
result on its CPU recipe, a validation loss of 1.886, as the mean of 3 seeds.

What changes is how it trains, each change a config switch with its own test:

* Muon (``opt.optimizer="muon"``, rate 0.04, momentum 0.85) for the matrices of the blocks; the
  embeddings and norm scales keep AdamW at 6e-3 (gptjax/training/step.py);
* rotary positions (``model.pos_encoding="rope"``) instead of a learned table;
* a warm-up of 15 steps, then the rate held and brought down in a straight line to 0 over the
  last 85% of the steps (``opt.schedule="wsd"``, ``opt.cooldown=0.85``);
* 300 steps of 12 x 64 tokens (230,400 tokens, 15% of nanoGPT's 1,536,000);
* one evaluation, at the end (``eval.at_start=False``), and no samples (``python -m
  gptjax.generate --workdir runs/speedrun_char`` prints some afterwards).

Measured on 2026-12-02 on the 2-core CPU machine (AMD EPYC; float32 matmul peak 356 GFLOP/s,
measured by the benchmark first), at commit 98cd07d, by ``python
experiments/benchmarks/bench_speedrun.py --nanogpt PATH --torch-python PY``, each run a fresh
process on a fresh run directory, timed from start to exit:

  nanoGPT's CPU recipe (PyTorch 2.14.1)   93.0 s    val loss 1.8857 (its 20-batch estimate)
  this config, seed 0                     19.7 s    val loss 1.8503 (every target, exact)
  this config, seed 1                     19.3 s    val loss 1.8512
  this config, seed 2                     19.6 s    val loss 1.8649
  mean of the 3 seeds                     19.5 s    val loss 1.8555: 4.76 times faster

Seeds 3, 4 and 5 then gave 1.8542, 1.8483 and 1.8655 (mean 1.8560) in 21.2 to 22.8 s.

The records, the ablation of each change and what did not help: experiments/speedrun/README.md.
"""

from pathlib import Path

import ml_collections

from gptjax.runs.experiment import config_from_file


def get_config() -> ml_collections.ConfigDict:
    c = config_from_file(Path(__file__).with_name("shakespeare_char.py"))
    c.model.pos_encoding = "rope"
    c.opt.optimizer = "muon"
    c.opt.muon_lr = 0.04
    c.opt.muon_momentum = 0.85
    c.opt.lr = 6e-3  # AdamW's, for the embeddings and the norm scales
    c.opt.min_lr = 0.0
    c.opt.schedule = "wsd"
    c.opt.warmup_steps = 15
    c.opt.cooldown = 0.85
    c.train.steps = 300
    c.train.steps_per_call = 50
    c.train.eval_every = 300
    c.train.checkpoint_every = 300
    c.eval.at_start = False
    c.eval.device_batch_size = 24  # faster than 64 windows at a time on a CPU (cache-sized)
    c.sample.num_samples = 0
    return c
