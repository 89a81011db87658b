"""GPTConfig: the frozen, typed configuration of the model (tutorial part 8, "le GPT complet").

The training entry point turns ``config.model`` (a ConfigDict) into this dataclass with
``GPTConfig(**config.model)``; from there on the model and every pure function see only this typed,
immutable value. Every field is validated in ``__post_init__`` so that a bad combination fails with
one clear ``ValueError`` before anything is traced or compiled.

Dtypes are held as strings (``"float32"``, ``"bfloat16"``) so a ConfigDict and ``config.json`` can
hold them; ``jnp_dtype`` and ``jnp_param_dtype`` give the ``jnp`` dtypes.

The two pure helpers used for reporting and MFU:

* ``param_count()`` counts parameters in closed form, layer by layer (tests check it against the
  parameter tree and against the published GPT-2 sizes).
* ``flops_per_token()`` is the training estimate of PaLM (Chowdhery et al. 2022, appendix B), also
  used by nanoGPT's ``estimate_mfu``: ``6 N + 12 L T D`` FLOPs per token for forward + backward,
  where N counts the parameters that take part in matrix products (see its docstring).

Two settings take parts of the model away, for the tutorial's ablations (``experiments/ladder.py``):
``n_layer=0`` leaves no block at all, embeddings -> final norm -> logits, so the prediction at
position t sees token t alone (a bigram model, plus the position's embedding when positions are
learned); ``mlp_ratio=0`` leaves the MLP and its norm out of every block (attention only).
"""

import dataclasses
import numbers

import jax.numpy as jnp

POS_ENCODINGS = ("learned", "sinusoidal", "rope", "none")
NORMS = ("layernorm", "rmsnorm")
ACTIVATIONS = ("gelu", "relu2")
KERNELS = ("plain", "fast")
DTYPES = ("float32", "bfloat16", "float16")


def _check_int(name: str, value, minimum: int) -> None:
    # bool is an int in Python; "n_layer=True" is a mistake, not a 1.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"GPTConfig.{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"GPTConfig.{name} must be >= {minimum}, got {value}")


def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"GPTConfig.{name} must be one of {choices}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """Model hyperparameters. Sizes are required; the rest default to a GPT-2 style model.

    Attributes:
      vocab_size: V, number of token ids (ids are 0 .. V-1).
      block_size: longest context; learned position table size and KV-cache length.
      n_layer: L, number of transformer blocks; 0 for none (a bigram model: see above).
      n_head: N, attention heads; must divide n_embd.
      n_embd: D, model width.
      mlp_ratio: F / D, the MLP hidden width as a multiple of D (4 in GPT-2); 0 for blocks without
        an MLP (and without its norm, ``ln_2``).
      dropout: dropout rate on embeddings, attention probabilities and residual branches.
      bias: biases in the linear layers and LayerNorms (GPT-2: True).
      pos_encoding: "learned" (GPT-2), "sinusoidal" (Vaswani et al.), "rope" (rotary, on q and k)
        or "none" (the causal mask alone carries order).
      norm: "layernorm" (GPT-2) or "rmsnorm".
      activation: the MLP's nonlinearity, "gelu" (GPT-2, tanh form) or "relu2" (``relu(x)**2``,
        So et al. 2021, "Primer").
      qk_norm: RMS-normalise each head's queries and keys (no learned scale) before RoPE and the
        scores (Henry et al. 2020; Dehghani et al. 2023): the scores stay within
        ``+-sqrt(H)``, whatever the rate does to the projections.
      tie_embeddings: share the token embedding with the output projection (GPT-2: True).
      dtype: compute dtype of activations and matmuls; softmax, logits and loss stay float32.
      param_dtype: storage dtype of parameters (float32 for training; see docs/model.md).
      kernels: "plain" (the tutorial's code: ``nn.DenseGeneral``, ``jax.nn.gelu``, attention as
        scores, mask, softmax, weighted sum) or "fast" (the equivalent kernels of
        ``gptjax.model.kernels``: faster, but without forward-mode autodiff).
    """

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    mlp_ratio: float = 4
    dropout: float = 0.0
    bias: bool = True
    pos_encoding: str = "learned"
    norm: str = "layernorm"
    activation: str = "gelu"
    qk_norm: bool = False
    tie_embeddings: bool = True
    dtype: str = "float32"
    param_dtype: str = "float32"
    kernels: str = "plain"

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_head", "n_embd"):
            _check_int(name, getattr(self, name), 1)
        _check_int("n_layer", self.n_layer, 0)
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPTConfig.n_embd={self.n_embd} is not divisible by n_head={self.n_head}: "
                "each head gets n_embd // n_head features; pick n_head among the divisors of n_embd"
            )
        if isinstance(self.mlp_ratio, bool) or not isinstance(self.mlp_ratio, numbers.Real):
            raise ValueError(f"GPTConfig.mlp_ratio must be a number, got {self.mlp_ratio!r}")
        width = self.mlp_ratio * self.n_embd
        if self.mlp_ratio < 0 or width != int(width):
            raise ValueError(
                f"GPTConfig.mlp_ratio * n_embd must be a whole number >= 0 (the MLP width; 0 for "
                f"no MLP), got {self.mlp_ratio} * {self.n_embd} = {width}"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real):
            raise ValueError(f"GPTConfig.dropout must be a float, got {self.dropout!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")
        for name in ("bias", "qk_norm", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"GPTConfig.{name} must be True or False, got {getattr(self, name)!r}"
                )
        _check_choice("pos_encoding", self.pos_encoding, POS_ENCODINGS)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("kernels", self.kernels, KERNELS)
        _check_choice("dtype", self.dtype, DTYPES)
        _check_choice("param_dtype", self.param_dtype, DTYPES)
        if self.pos_encoding == "rope" and self.head_size % 2:
            raise ValueError(
                f"RoPE rotates pairs of features, so the head size n_embd // n_head must be even; "
                f"got {self.n_embd} // {self.n_head} = {self.head_size}"
            )
        if self.pos_encoding == "sinusoidal" and self.n_embd % 2:
            raise ValueError(
                f"sinusoidal positions pair a sine and a cosine, so n_embd must be even, "
                f"got {self.n_embd}"
            )

    @property
    def head_size(self) -> int:
        """H = D // N."""
        return self.n_embd // self.n_head

    @property
    def mlp_width(self) -> int:
        """F, the MLP hidden width; 0 when the blocks have no MLP."""
        return int(self.mlp_ratio * self.n_embd)

    @property
    def jnp_dtype(self) -> jnp.dtype:
        """The compute dtype as a jnp dtype."""
        return jnp.dtype(self.dtype)

    @property
    def jnp_param_dtype(self) -> jnp.dtype:
        """The parameter dtype as a jnp dtype."""
        return jnp.dtype(self.param_dtype)

    def param_count(self) -> int:
        """Number of parameters, in closed form (tied embeddings counted once).

        Matches the parameter tree of ``GPT(self)`` exactly; for GPT-2 small it gives the published
        124,439,808.
        """
        d, f, v = self.n_embd, self.mlp_width, self.vocab_size
        b = int(self.bias)
        norm = d * (1 + b) if self.norm == "layernorm" else d
        attn = d * 3 * d + 3 * d * b + d * d + d * b
        mlp = norm + d * f + f * b + f * d + d * b if f else 0  # ln_2, fc, proj
        block = norm + attn + mlp
        embeddings = v * d + (self.block_size * d if self.pos_encoding == "learned" else 0)
        head = 0 if self.tie_embeddings else d * v
        return embeddings + self.n_layer * block + norm + head

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs (forward + backward) per token: ``6 N + 12 L T D``.

        The estimate of PaLM (Chowdhery et al. 2022, appendix B) and nanoGPT's ``estimate_mfu``.
        N counts the parameters used in matrix products, so it leaves out the gathers: the learned
        position table and, when embeddings are untied, the input token table (tied, the shared
        table is the output projection and counts). Each such weight costs 2 FLOPs per token forward
        and 4 backward. The ``12 L T D`` term is the attention scores and weighted sum
        (``QK^T`` and ``AV``, 2 T D each per layer forward, tripled for backward); as in PaLM it
        counts the full T x T product, not the causal half.

        Args:
          seq_len: T, the context length trained on; defaults to ``block_size``.

        Returns:
          FLOPs per token, an int.
        """
        t = self.block_size if seq_len is None else seq_len
        n = self.param_count()
        if self.pos_encoding == "learned":
            n -= self.block_size * self.n_embd
        if not self.tie_embeddings:
            n -= self.vocab_size * self.n_embd
        return 6 * n + 12 * self.n_layer * t * self.n_embd


def gpt2_config(size: str = "small", **overrides) -> GPTConfig:
    """The published GPT-2 sizes (vocab 50257, block 1024, tied embeddings, biases on).

    Args:
      size: "small" (124M), "medium" (350M), "large" (774M) or "xl" (1558M).
      **overrides: any other GPTConfig field.
    """
    sizes = {
        "small": dict(n_layer=12, n_head=12, n_embd=768),
        "medium": dict(n_layer=24, n_head=16, n_embd=1024),
        "large": dict(n_layer=36, n_head=20, n_embd=1280),
        "xl": dict(n_layer=48, n_head=25, n_embd=1600),
    }
    if size not in sizes:
        raise ValueError(f"unknown GPT-2 size {size!r}; choose one of {tuple(sizes)}")
    fields = dict(vocab_size=50257, block_size=1024, **sizes[size])
    fields.update(overrides)
    return GPTConfig(**fields)
