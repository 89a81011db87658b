"""The model, tutorial parts 2 to 8, one part per module, read in this order.

config.py        GPTConfig: the sizes and switches of a model (part 8's "fiche technique")
embeddings.py    part 2: token ids -> vectors, and vectors -> logits
attention.py     parts 3-4: scores, causal mask, softmax, weighted sum
multihead.py     part 5: N heads side by side, q/k/v projections, KV cache
positional.py    part 6: learned, sinusoidal and rotary positions
feedforward.py   part 7: the MLP and the norms
gpt.py           part 8: the whole GPT
kernels.py       not a tutorial part: the faster, equivalent computations that
                 ``GPTConfig.kernels = "fast"`` selects, each tested equal to its plain form
hf.py            not a tutorial part: GPT-2 as Hugging Face stores it, to and from our
                 parameters (``python -m gptjax.convert``)
"""

from gptjax.model.config import GPTConfig, gpt2_config
from gptjax.model.gpt import GPT, KVCache, check_tokens, init_cache

__all__ = ["GPT", "GPTConfig", "KVCache", "check_tokens", "gpt2_config", "init_cache"]
