"""The "baby GPT" on Tiny Shakespeare with a BPE vocabulary: GPU-sized, runnable on a CPU.

  python -m gptjax.main --config configs/shakespeare.py

6 layers, 6 heads, width 384, block 256, dropout 0.2, batch 64, 5000 steps (nanoGPT's
train_shakespeare_char recipe, with a 1024-token BPE instead of characters). About 10.8M
parameters: minutes on one GPU, hours on a laptop CPU. On a CPU, shrink it with overrides, e.g.
``--config.train.steps=200 --config.train.batch_size=8``. Not measured yet (no GPU
was available when it was written); its tests build it abstractly.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(corpus="tinyshakespeare", val_fraction=0.1)
    c.tokenizer = dict(path="", vocab_size=1024, pattern="gpt4", specials="")
    c.model = dict(
        vocab_size=c.tokenizer.get_ref("vocab_size"),
        block_size=256,
        n_layer=6,
        n_head=6,
        n_embd=384,
        mlp_ratio=4,
        dropout=0.2,
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
        steps=5000,
        batch_size=64,
        grad_accum=1,
        steps_per_call=1,
        eval_every=250,
        log_every=10,
        checkpoint_every=500,
        keep_checkpoints=2,
        init_from="",
    )
    # Evaluation: 32 windows per device at a time; every target of the validation split
    # (val_tokens=0), and 327,680 tokens of the training split spread over it.
    c.eval = dict(at_start=True, device_batch_size=32, val_tokens=0, train_tokens=327680)
    c.sample = dict(
        prompt="ROMEO:", max_new_tokens=200, temperature=0.8, top_k=0, top_p=0.95, num_samples=2
    )
    # Devices: data parallel over all of them (see gptjax/sharding.py and the README).
    c.mesh = dict(data=-1, fsdp=1)
    return c
