"""Tiny GPT on French: an excerpt of Hugo's *Les Misérables*; the French smoke run on a CPU.

  python -m gptjax.main --config configs/french_tiny.py

Trains a 512-token BPE and a 2-layer GPT on ``data/hugo_miserables_extrait.txt`` (corpus name
``"hugo_extrait"``: the opening of tome I, book 1 on Monseigneur Myriel and the first five chapters
of book 2, 187,969 bytes committed in the repository; see data/README.md), so a fresh clone runs
it with no network and no ``GPTJAX_DATA_DIR``. Its samples continue the tutorial's prompt, "Le
chat mange la".

It is configs/tiny.py with four changes: the corpus, the prompt, 1500 steps and
``model.dropout=0.1``. Why dropout: the training split is only 79,585 tokens, which 1500 steps of
16 x 64 tokens go through about 19 times. Without dropout the model starts to learn it by heart
(the same command with ``--config.model.dropout=0.0 --config.train.eval_every=100``: validation
loss 3.243 at step 1400, 3.252 at step 1500, training loss 2.47; 57.5 s); with it the validation
loss is still falling at the end. It runs the tutorial's own code, ``model.kernels="plain"``.

Measured on 2026-12-01 on the 2-core CPU machine, another job's tests running beside it, as
``time python -m gptjax.main --config configs/french_tiny.py --workdir /tmp/fr`` on a fresh
workdir and an empty ``$GPTJAX_CACHE_DIR`` (the whole process: tokenizer training, encoding,
compilation, 1500 steps, evaluations, checkpoints, samples): 61.7 and 65.8 s. Validation loss
3.266 nats/token (2.184 bits per byte) at step 1500, both times (training loss 2.921).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(corpus="hugo_extrait", val_fraction=0.1)
    c.tokenizer = dict(path="", vocab_size=512, pattern="gpt4")
    c.model = dict(
        vocab_size=c.tokenizer.get_ref("vocab_size"),
        block_size=64,
        n_layer=2,
        n_head=4,
        n_embd=128,
        mlp_ratio=4,
        dropout=0.1,
        bias=False,
        pos_encoding="learned",
        norm="layernorm",
        tie_embeddings=True,
        dtype="float32",
        param_dtype="float32",
        kernels="plain",
    )
    c.opt = dict(
        lr=2e-3,
        min_lr=2e-4,
        warmup_steps=50,
        weight_decay=0.1,
        beta1=0.9,
        beta2=0.99,
        grad_clip=1.0,
    )
    c.train = dict(
        steps=1500,
        batch_size=16,
        grad_accum=1,
        steps_per_call=10,
        eval_every=250,
        eval_batches=20,
        log_every=10,
        checkpoint_every=500,
        keep_checkpoints=2,
    )
    c.sample = dict(
        prompt="Le chat mange la",
        max_new_tokens=100,
        temperature=0.8,
        top_k=0,
        top_p=0.95,
        num_samples=2,
    )
    # Devices: data parallel over all of them (see gptjax/sharding.py and the README).
    c.mesh = dict(data=-1, fsdp=1)
    return c
