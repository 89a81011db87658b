"""GPT-2 small (124M) with the GPT-2 vocabulary: the accelerator configuration.

  python -m gptjax.main --config configs/gpt2.py --config.data.corpus='/data/owt/*.txt'

Loads the GPT-2 byte-level BPE from ``$GPTJAX_DATA_DIR/gpt2.tiktoken`` (50,256 ranks plus
``<|endoftext|>``: 50,257 ids) instead of training one. The model's vocabulary is padded to
50,304 (a multiple of 64, as nanoGPT does for faster matmuls); the extra rows are never targets.
Block 1024, batch 8 x 64 accumulated micro-batches = 512 sequences (0.5M tokens) per step, bfloat16
compute, lr 6e-4 with 2000 warm-up steps decaying to 6e-5 over 600k steps: nanoGPT's GPT-2 recipe.
Meant for accelerators; the tests only build it abstractly (`jax.eval_shape`);
no run of it has been measured.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(corpus="tinyshakespeare", val_fraction=0.1)
    c.tokenizer = dict(
        path="$GPTJAX_DATA_DIR/gpt2.tiktoken",
        vocab_size=50257,
        pattern="gpt2",
        specials="<|endoftext|>=50256",
    )
    c.model = dict(
        vocab_size=50304,
        block_size=1024,
        n_layer=12,
        n_head=12,
        n_embd=768,
        mlp_ratio=4,
        dropout=0.0,
        bias=True,
        pos_encoding="learned",
        norm="layernorm",
        activation="gelu",
        qk_norm=False,
        tie_embeddings=True,
        dtype="bfloat16",
        param_dtype="float32",
        kernels="fast",
    )
    c.opt = dict(
        optimizer="adamw",
        lr=6e-4,
        min_lr=6e-5,
        schedule="cosine",
        warmup_steps=2000,
        cooldown=1.0,  # (the fraction decayed, for schedule="wsd")
        weight_decay=0.1,
        beta1=0.9,
        beta2=0.95,
        grad_clip=1.0,
        muon_lr=0.02,  # (for optimizer="muon")
        muon_momentum=0.95,
    )
    c.train = dict(
        steps=600_000,
        batch_size=512,
        grad_accum=64,
        steps_per_call=1,
        eval_every=1000,
        log_every=10,
        checkpoint_every=1000,
        keep_checkpoints=3,
        init_from="",
    )
    # Evaluation: 8 windows per device at a time; every target of the validation split
    # (val_tokens=0), and 262,144 tokens of the training split spread over it.
    c.eval = dict(at_start=True, device_batch_size=8, val_tokens=0, train_tokens=262144)
    c.sample = dict(
        prompt="Hello, I'm a language model,",
        max_new_tokens=64,
        temperature=0.8,
        top_k=200,
        top_p=1.0,
        num_samples=4,
    )
    # Devices: data parallel over all of them (see gptjax/sharding.py and the README).
    c.mesh = dict(data=-1, fsdp=1)
    return c
