"""Character-level Tiny Shakespeare: nanoGPT's well-known CPU recipe, the speed benchmark.

  python -m gptjax.main --config configs/shakespeare_char.py

Byte-level vocabulary with no merges (ids 0-255 plus the 4 specials; Tiny Shakespeare is ASCII,
so one token is one character and the loss is in nats per character), 4 layers, 4 heads, width
128, block 64, batch 12, 2000 steps, lr 1e-3 with 100 warm-up steps and cosine decay to 1e-4,
beta2 0.99, no dropout, evaluation every 250 steps over the whole validation split (every one of
its 111,539 targets, in 64-token windows; ``gptjax/training/evaluation.py``; the split is
nanoGPT's to the character since 830a8e9, one more validation target). nanoGPT (PyTorch
CPU) reaches a validation loss of 1.886 with it (its estimate from 200 random batches), at 33
ms/step (71 s in all) on the same 2-core machine.

On 2026-12-02 (exact evaluation, commit 1bf52d3): validation loss 1.8797 nats per character
(2.712 bits per byte) at step 2000 over the whole split. The figures below were measured with the
earlier evaluation, 20 random batches of the split, which gave 1.8833 for the same model.

It trains with ``model.kernels="fast"`` (``gptjax/model/kernels.py``): the same model as
``"plain"``, to rounding, in about two thirds of the time per step on a CPU.

Measured on the 2-core CPU machine with ``python experiments/benchmarks/bench_train.py`` on
2026-11-25 (commit deb9b52), 15 runs: validation loss 1.8833 (2.717 bits per byte) at step 2000
every time. 14 runs gave 47,100-49,100 tokens/s in steady state (15.6-16.3 ms/step, MFU about 55%
of the float32 matmul peak measured in the same run, 445-490 GFLOP/s); the whole run took 37.8-38.8
s in 11 runs and 40.4-40.7 s in 3 (about 3.3 s of it compilation, 1.8 s the 9 evaluations, then
checkpoints; no samples). The runs over 40 s, and one at 40,700 tokens/s and 43.4 s, came in busier
periods of the same virtual machine (36.4-38.9 CPU-ms per step against 34.2-35.1). Why 125 steps
per call, and the same recipe measured on later code and on slower days: docs/performance.md.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(corpus="tinyshakespeare", val_fraction=0.1)
    c.tokenizer = dict(path="", vocab_size=260, pattern="none", specials="")
    c.model = dict(
        vocab_size=c.tokenizer.get_ref("vocab_size"),
        block_size=64,
        n_layer=4,
        n_head=4,
        n_embd=128,
        mlp_ratio=4,
        dropout=0.0,
        bias=False,
        pos_encoding="learned",
        norm="layernorm",
        activation="gelu",
        qk_norm=False,
        tie_embeddings=True,
        dtype="float32",
        param_dtype="float32",
        kernels="fast",
    )
    c.opt = dict(
        optimizer="adamw",
        lr=1e-3,
        min_lr=1e-4,
        schedule="cosine",
        warmup_steps=100,
        cooldown=1.0,  # (the fraction decayed, for schedule="wsd")
        weight_decay=0.1,
        beta1=0.9,
        beta2=0.99,
        grad_clip=1.0,
        muon_lr=0.02,  # (for optimizer="muon")
        muon_momentum=0.95,
    )
    c.train = dict(
        steps=2000,
        batch_size=12,
        grad_accum=1,
        steps_per_call=125,
        eval_every=250,
        log_every=25,
        checkpoint_every=1000,
        keep_checkpoints=2,
        init_from="",
    )
    # Evaluation: 64 windows per device at a time; every target of the validation split
    # (val_tokens=0), and 15,360 tokens of the training split spread over it.
    c.eval = dict(at_start=True, device_batch_size=64, val_tokens=0, train_tokens=15360)
    c.sample = dict(
        prompt="ROMEO:", max_new_tokens=300, temperature=0.8, top_k=0, top_p=1.0, num_samples=2
    )
    # Devices: data parallel over all of them (see gptjax/sharding.py and the README).
    c.mesh = dict(data=-1, fsdp=1)
    return c
