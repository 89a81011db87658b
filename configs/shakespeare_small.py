"""A small GPT on Tiny Shakespeare: the shared base of the experiments in ``experiments/``.

  python -m gptjax.main --config configs/shakespeare_small.py

2 layers, 4 heads, width 128, block 64, a 512-token BPE, batch 16, 600 steps (614,400 training
tokens): big enough to learn, small enough that a sweep of four variants takes a few minutes on
2 CPU cores. Measured on the 2-core CPU machine: about 13 s per run (compile, evaluations and
checkpoints included), validation loss 3.657 nats per token, 2.653 bits per byte at step 600
(the ``learned`` run of ``experiments/positional_encoding.py``, report in
``experiments/results/positional_encoding/``).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(corpus="tinyshakespeare", val_fraction=0.1)
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
        kernels="fast",
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
        steps=600,
        batch_size=16,
        grad_accum=1,
        steps_per_call=10,
        eval_every=100,
        log_every=10,
        checkpoint_every=300,
        keep_checkpoints=2,
        init_from="",
    )
    # Evaluation: 32 windows per device at a time; every target of the validation split
    # (val_tokens=0), and 20,480 tokens of the training split spread over it.
    c.eval = dict(at_start=True, device_batch_size=32, val_tokens=0, train_tokens=20480)
    c.sample = dict(
        prompt="ROMEO:", max_new_tokens=100, temperature=0.8, top_k=0, top_p=0.95, num_samples=1
    )
    # Devices: data parallel over all of them (see gptjax/sharding.py and the README).
    c.mesh = dict(data=-1, fsdp=1)
    return c
