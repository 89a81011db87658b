"""Training, tutorial part 9.

step.py          the pure part: loss, optimizer, TrainState, train_step, evaluation sums
data.py          corpora, the split, encoded-corpus cache, batches as a function of (seed, step)
prepare.py       from a config to the tokenizer and the encoded splits
sharding.py      the device mesh and where every array lives on it
run_config.py    checking a training config, and what may change on resume
metrics.py       bits per byte, MFU, the matmul peak
ledger.py        how many tokens a run has trained on (tokens_seen, experiment budgets)
loop.py          the loop: train_and_evaluate(config, workdir)
"""
