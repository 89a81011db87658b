"""gptjax: a GPT built from scratch in JAX and Flax, following "Créer un LLM from Scratch".

The package follows the tutorial part by part:

  1. tokenization            gptjax.tokenizer   (byte-level BPE, tiktoken parity)
  2. embeddings              gptjax.embeddings
  3-4. attention, Q/K/V      gptjax.attention
  5. multi-head attention    gptjax.multihead
  6. positional encoding     gptjax.positional
  7. feed-forward and norms  gptjax.feedforward
  8. the full GPT            gptjax.model
  9. training                gptjax.train, gptjax.main
  10. text generation        gptjax.generate

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
