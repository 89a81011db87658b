"""gptjax: a GPT built from scratch in JAX and Flax, following "Créer un LLM from Scratch".

The package follows the tutorial part by part:

  1. tokenization            gptjax.tokenizer              (byte-level BPE, tiktoken parity)
  2. embeddings              gptjax.model.embeddings
  3-4. attention, Q/K/V      gptjax.model.attention
  5. multi-head attention    gptjax.model.multihead
  6. positional encoding     gptjax.model.positional
  7. feed-forward and norms  gptjax.model.feedforward
  8. the full GPT            gptjax.model.gpt, gptjax.model.config
  9. training                gptjax.training (step, loop, evaluation, ...), gptjax.main,
                             gptjax.evaluate (the loss of any checkpoint on any text)
  10. text generation        gptjax.generation (sampling, decode, text), gptjax.generate
  -  speed, not a part       gptjax.model.kernels          (model.kernels = "plain" | "fast")
  -  runs                    gptjax.runs (run directory, checkpoints, comparisons, sweeps),
                             gptjax.compare, gptjax.experiment
  -  GPT-2 weights           gptjax.model.hf, gptjax.convert (Hugging Face safetensors in, out)
  -  seeing inside           gptjax.inspection, gptjax.inspect (tokens, merges, attention,
                             positions, embeddings, next-token table: text and pictures)
  -  errors                  gptjax.errors                 (UserError: one line, exit code 2)

How the stages connect (docs/design.md has the full picture and the import rule):

  text -> tokenizer -> ids_BT -> model -> logits_BTV -> loss (training) | next token (generation)
  training.loop:  data + step + model, writes a run directory (runs.rundir, runs.checkpoint)
  generation:     model + tokenizer; gptjax.generate loads them from a run directory
  runs.compare, runs.experiment:  read run directories (experiment trains through training.loop)
  commands on top (main, evaluate, generate, compare, experiment, convert, inspect): command
  lines only;
  nothing imports them

Dimension legend, used in every tensor name (``x_BTD``, ``q_BTNH``) and einsum string:

  B  batch
  T  query positions (the sequence being processed)
  S  key/value positions (equal to T without a cache, the cache length with one)
  D  model width (n_embd)
  N  attention heads (n_head)
  H  head size (D // N)
  F  MLP hidden width
  V  vocabulary size
  L  layers (n_layer)
"""

__version__ = "0.1.0"
