"""Looking inside the tokenizer and the model: the numbers and the pictures of ``gptjax.inspect``.

* ``probes``: what is measured, as pure functions of a tokenizer, a model's config and
  parameters, and a text: the BPE merges applied one by one (part 1), the learned merges, the
  token embeddings in two dimensions and their neighbours (part 2), the attention weights of every
  layer and head (parts 3-5, read from the model's ``intermediates``), the positional encodings
  and the similarity they induce (part 6), the next-token probabilities (part 10).
* ``pictures``: one PNG per measurement, with matplotlib's Agg backend (no display needed).

Neither reads a run directory: the command (``gptjax.inspect``) loads the run and hands over
the tokenizer, the config and the parameters.
"""
