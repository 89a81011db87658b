"""Tiny GPT on the Python language reference (`pydoc_data`); the end-to-end smoke run on a CPU.

  python -m gptjax.main --config configs/tiny.py

Trains a 512-token BPE and a 2-layer GPT on the reference text every CPython ships, so it needs
no network and no data files.

It runs the tutorial's own code, ``model.kernels="plain"``; ``--config.model.kernels=fast`` runs
the same model faster (``gptjax/model/kernels.py``).

Measured on 2026-12-01 on the 2-core CPU machine, nothing else running, as ``time python -m
gptjax.main --config configs/tiny.py --workdir DIR`` on a fresh DIR (the whole process: tokenizer
training, compilation, 1000 steps, evaluations, checkpoints, samples): 41.1 and 38.3 s with the
plain kernels, 25.9 s with the fast ones. (On 2026-11-25, a faster day, the fast kernels took
18.7 s.) Validation loss at step 1000, over every token of the validation split (measured on
2026-12-02, commit 1bf52d3): 2.855 nats/token, 1.830 bits per byte.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(corpus="pydoc", val_fraction=0.1)
    c.tokenizer = dict(path="", vocab_size=512, pattern="gpt4", specials="")
    c.model = dict(
        vocab_size=c.tokenizer.get_ref("vocab_size"),
        block_size=64,
        n_layer=2,
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
        kernels="plain",
    )
    c.opt = dict(
        optimizer="adamw",
        lr=2e-3,
        min_lr=2e-4,
        schedule="cosine",
        warmup_steps=50,
        cooldown=1.0,  # (the fraction decayed, for schedule="wsd")
        weight_decay=0.1,
        beta1=0.9,
        beta2=0.99,
        grad_clip=1.0,
        muon_lr=0.02,  # (for optimizer="muon")
        muon_momentum=0.95,
    )
    c.train = dict(
        steps=1000,
        batch_size=16,
        grad_accum=1,
        steps_per_call=10,
        eval_every=250,
        log_every=10,
        checkpoint_every=500,
        keep_checkpoints=2,
        init_from="",
    )
    # Evaluation: 16 windows per device at a time; every target of the validation split
    # (val_tokens=0), and 20,480 tokens of the training split spread over it.
    c.eval = dict(at_start=True, device_batch_size=16, val_tokens=0, train_tokens=20480)
    c.sample = dict(
        prompt="The ", max_new_tokens=100, temperature=0.8, top_k=0, top_p=0.95, num_samples=2
    )
    # Devices: data parallel over all of them (see gptjax/sharding.py and the README).
    c.mesh = dict(data=-1, fsdp=1)
    return c
