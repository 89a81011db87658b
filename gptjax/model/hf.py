"""GPT-2 as Hugging Face ``transformers`` stores it: its tensors to gptjax parameters and back.

Not a tutorial part: the bridge that lets a course reader load OpenAI's trained GPT-2 (or any
``GPT2LMHeadModel``) into the model of part 8, and hand a gptjax model back to ``transformers``.
Pure functions of NumPy arrays and dicts; reading and writing the files is
``python -m gptjax.convert``'s business.

The two layouts, block i (Hugging Face names without the optional ``transformer.`` prefix)::

  wte.weight            (V, D)    wte/embedding                 (V, D)
  wpe.weight            (P, D)    wpe/embedding                 (block_size = P, D)
  h.i.ln_1.weight, bias (D,)      blocks_i/ln_1/scale, bias     (D,)
  h.i.attn.c_attn.weight (D, 3D)  blocks_i/attn/query/kernel    (D, N, H)   columns 0 .. D-1
                                  blocks_i/attn/key/kernel      (D, N, H)   columns D .. 2D-1
                                  blocks_i/attn/value/kernel    (D, N, H)   columns 2D .. 3D-1
  h.i.attn.c_attn.bias  (3D,)     blocks_i/attn/{query,key,value}/bias (N, H), the same thirds
  h.i.attn.c_proj.weight (D, D)   blocks_i/attn/proj/kernel     (N, H, D)
  h.i.attn.c_proj.bias  (D,)      blocks_i/attn/proj/bias       (D,)
  h.i.ln_2.weight, bias           blocks_i/ln_2/scale, bias
  h.i.mlp.c_fc.weight   (D, F)    blocks_i/mlp/fc/kernel        (D, F)   and .bias (F,)
  h.i.mlp.c_proj.weight (F, D)    blocks_i/mlp/proj/kernel      (F, D)   and .bias (D,)
  ln_f.weight, bias     (D,)      ln_f/scale, bias
  lm_head.weight        (V, D)    tied: wte itself; untied: lm_head/kernel (D, V), transposed

Notes:

* GPT-2's ``Conv1D`` stores its weight as (in, out), as ``nn.DenseGeneral`` does, so no weight is
  transposed; only the untied output head, an ``nn.Linear`` stored (out, in), is.
* Within each third of ``c_attn`` the D columns are N heads of H features, head first (Hugging
  Face's ``_split_heads`` is a reshape to (N, H)), which is the (N, H) of our kernels: a reshape.
* ``h.i.attn.bias`` and ``h.i.attn.masked_bias`` are not parameters but the causal mask, stored
  by old ``transformers`` versions (OpenAI's own ``model.safetensors`` has them): ignored.
* The activation GPT-2 was trained with is the tanh GELU (``gelu_new``), the one our MLP uses;
  its LayerNorm epsilon is 1e-5, ours. A config that differs in either, or in how attention
  scores are scaled, is refused rather than converted into a different function.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np

from gptjax.errors import UserError
from gptjax.model.config import GPTConfig
from gptjax.model.feedforward import NORM_EPS

MODEL_TYPE = "gpt2"
ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")
# Both names are 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) in transformers.
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")
PREFIX = "transformer."
HEAD = "lm_head.weight"
MASKS = ("bias", "masked_bias")  # h.<i>.attn.<mask>: buffers of old transformers versions
# The config keys every GPT-2 config.json holds; the others default as in transformers.
SIZE_KEYS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")


def config_from_hf(hf_config: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture fields of a `GPTConfig` from a Hugging Face GPT-2 ``config.json``.

    Keys absent from the file take their ``transformers.GPT2Config`` defaults, as
    ``from_pretrained`` does, except the sizes (`SIZE_KEYS`), which must be present.

    Args:
      hf_config: the parsed ``config.json``.

    Returns:
      ``vocab_size, block_size, n_layer, n_head, n_embd, mlp_ratio, bias, pos_encoding, norm,
      tie_embeddings``: the fields that decide the parameters and the function they compute.

    Raises:
      UserError: not a GPT-2 config, a size missing, or a setting gptjax cannot compute (the
        message names the key).
    """
    model_type = hf_config.get("model_type")
    if model_type != MODEL_TYPE:
        raise UserError(
            f"config.json: model_type is {model_type!r}, not {MODEL_TYPE!r}; only GPT-2 models "
            "convert (give the folder of a GPT2LMHeadModel)"
        )
    architectures = hf_config.get("architectures") or []
    if isinstance(architectures, str):
        architectures = [architectures]
    others = [a for a in architectures if a not in ARCHITECTURES]
    if others:
        raise UserError(
            f"config.json: architectures names {others[0]!r}; only {' and '.join(ARCHITECTURES)} "
            "convert (their tensors are the language model's and nothing else)"
        )
    for key in SIZE_KEYS:
        if key not in hf_config:
            raise UserError(f"config.json has no {key!r}: it is not a complete GPT-2 config")
        value = hf_config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"config.json: {key}={value!r} must be a positive integer")
    _require(hf_config, "activation_function", "gelu_new", lambda v: v in TANH_GELUS)
    _require(hf_config, "layer_norm_epsilon", 1e-5, lambda v: v == NORM_EPS)
    _require(hf_config, "scale_attn_weights", True, lambda v: v is True)
    _require(hf_config, "scale_attn_by_inverse_layer_idx", False, lambda v: v is False)
    _require(hf_config, "add_cross_attention", False, lambda v: v is False)
    n_embd = hf_config["n_embd"]
    n_inner = hf_config.get("n_inner")
    if n_inner is None or n_inner == 4 * n_embd:
        mlp_ratio = 4
    elif isinstance(n_inner, int) and n_inner > 0 and n_inner / n_embd * n_embd == n_inner:
        mlp_ratio = n_inner / n_embd  # GPTConfig's width is mlp_ratio * n_embd: exact here
    else:
        raise UserError(
            f"config.json: n_inner={n_inner!r} is not an MLP width gptjax can express as "
            f"mlp_ratio * n_embd (n_embd={n_embd})"
        )
    tie = hf_config.get("tie_word_embeddings", True)
    if not isinstance(tie, bool):
        raise UserError(f"config.json: tie_word_embeddings={tie!r} must be true or false")
    fields = dict(
        vocab_size=hf_config["vocab_size"],
        block_size=hf_config["n_positions"],
        n_layer=hf_config["n_layer"],
        n_head=hf_config["n_head"],
        n_embd=n_embd,
        mlp_ratio=mlp_ratio,
        bias=True,
        pos_encoding="learned",
        norm="layernorm",
        tie_embeddings=tie,
    )
    try:
        GPTConfig(**fields)
    except ValueError as error:
        raise UserError(f"config.json: {error}") from None
    return fields


def _require(hf_config: Mapping[str, Any], key: str, default: Any, ok) -> None:
    value = hf_config.get(key, default)
    if not ok(value):
        raise UserError(
            f"config.json: {key}={value!r} is not what gptjax computes ({default!r}); "
            "this model cannot be converted"
        )


def check_expressible(config: GPTConfig) -> None:
    """Refuses a configuration that ``transformers``' GPT-2 cannot compute.

    Raises:
      UserError: naming the first ``model.*`` key that differs from GPT-2's layout.
    """
    needs = dict(pos_encoding="learned", norm="layernorm", bias=True, activation="gelu",
                 qk_norm=False)  # fmt: skip
    for key, value in needs.items():
        if getattr(config, key) != value:
            raise UserError(
                f"model.{key}={getattr(config, key)!r}: Hugging Face's GPT-2 has "
                f"{key}={value!r} only, so this run cannot be exported to it"
            )
    if config.mlp_ratio == 0:
        raise UserError(
            "model.mlp_ratio=0: this model's blocks have no MLP, and every block of Hugging "
            "Face's GPT-2 has one, so this run cannot be exported to it"
        )


def hf_config(
    config: GPTConfig, vocab_size: int, bos_token_id: int | None, eos_token_id: int | None
) -> dict[str, Any]:
    """The ``config.json`` of ``transformers``' GPT2LMHeadModel for ``config``.

    The keys are those ``GPT2Config.save_pretrained`` writes (transformers 5), less
    ``transformers_version``; values that do not depend on the model are transformers' defaults.

    Args:
      config: the model (see `check_expressible`).
      vocab_size: V written, the tokenizer's size when the model's table is padded beyond it.
      bos_token_id: the tokenizer's first-token id, or None.
      eos_token_id: its end-of-text id, or None.

    Returns:
      The config, a JSON-serialisable dict.
    """
    check_expressible(config)
    return {
        "activation_function": "gelu_new",
        "add_cross_attention": False,
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": config.dropout,
        "bos_token_id": bos_token_id,
        "dtype": "float32",
        "embd_pdrop": config.dropout,
        "eos_token_id": eos_token_id,
        "initializer_range": 0.02,
        "layer_norm_epsilon": NORM_EPS,
        "model_type": MODEL_TYPE,
        "n_embd": config.n_embd,
        "n_head": config.n_head,
        "n_inner": None if config.mlp_width == 4 * config.n_embd else config.mlp_width,
        "n_layer": config.n_layer,
        "n_positions": config.block_size,
        "pad_token_id": None,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": config.dropout,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "tie_word_embeddings": config.tie_embeddings,
        "use_cache": True,
        "vocab_size": vocab_size,
    }


def tensor_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """The Hugging Face tensors of ``config`` (names without the prefix) and their shapes."""
    d, f, v = config.n_embd, config.mlp_width, config.vocab_size
    shapes = {"wte.weight": (v, d), "wpe.weight": (config.block_size, d)}
    for i in range(config.n_layer):
        shapes.update({
            f"h.{i}.ln_1.weight": (d,), f"h.{i}.ln_1.bias": (d,),
            f"h.{i}.attn.c_attn.weight": (d, 3 * d), f"h.{i}.attn.c_attn.bias": (3 * d,),
            f"h.{i}.attn.c_proj.weight": (d, d), f"h.{i}.attn.c_proj.bias": (d,),
            f"h.{i}.ln_2.weight": (d,), f"h.{i}.ln_2.bias": (d,),
            f"h.{i}.mlp.c_fc.weight": (d, f), f"h.{i}.mlp.c_fc.bias": (f,),
            f"h.{i}.mlp.c_proj.weight": (f, d), f"h.{i}.mlp.c_proj.bias": (d,),
        })  # fmt: skip
    shapes.update({"ln_f.weight": (d,), "ln_f.bias": (d,)})
    if not config.tie_embeddings:
        shapes[HEAD] = (v, d)
    return shapes


def _is_mask_buffer(name: str) -> bool:
    """``h.<i>.attn.bias`` or ``h.<i>.attn.masked_bias``: the causal mask, not a parameter."""
    parts = name.split(".")
    return len(parts) == 4 and parts[0] == "h" and parts[2] == "attn" and parts[3] in MASKS


def match_tensors(shapes: Mapping[str, tuple[int, ...]], config: GPTConfig) -> dict[str, str]:
    """Matches a file's tensors to the ones ``config`` needs, checking names and shapes.

    Args:
      shapes: the file's tensor names (with or without ``transformer.``) and shapes.
      config: the model the file should hold (from `config_from_hf`).

    Returns:
      Our name (no prefix) -> the file's name, for every tensor of `tensor_shapes`, and for an
      ``lm_head.weight`` that a tied model's file also holds (`params_from_hf` checks it).

    Raises:
      UserError: a tensor missing, one that GPT-2 does not have, or a wrong shape (named).
    """
    names = {}
    for name in shapes:
        short = name.removeprefix(PREFIX)
        if _is_mask_buffer(short):
            continue
        if short in names:
            raise UserError(f"model.safetensors holds {short!r} twice ({names[short]!r}, {name!r})")
        names[short] = name
    expected = tensor_shapes(config)
    if config.tie_embeddings and HEAD in names:
        expected[HEAD] = expected["wte.weight"]  # optional: a copy of wte
    missing = [n for n in expected if n not in names]
    if missing:
        raise UserError(
            f"model.safetensors has no tensor {missing[0]!r} ({len(missing)} missing) although "
            f"config.json describes it (n_layer={config.n_layer}, "
            f"tie_word_embeddings={config.tie_embeddings}): the files do not belong together"
        )
    unknown = [n for n in names if n not in expected]
    if unknown:
        raise UserError(
            f"model.safetensors holds {names[unknown[0]]!r}, which a GPT-2 of this config.json "
            f"does not have (n_layer={config.n_layer}): the files do not belong together"
        )
    for short, want in expected.items():
        got = tuple(shapes[names[short]])
        if got != want:
            raise UserError(
                f"tensor {names[short]!r} has shape {got}, but config.json (n_embd="
                f"{config.n_embd}, n_inner={config.mlp_width}, vocab_size={config.vocab_size}, "
                f"n_positions={config.block_size}) needs {want}"
            )
    return names


def params_from_hf(tensors: Mapping[str, np.ndarray], config: GPTConfig) -> dict[str, Any]:
    """gptjax parameters from Hugging Face tensors.

    Args:
      tensors: our tensor names (the keys of `match_tensors`, no prefix) -> arrays of the shapes
        of `tensor_shapes`.
      config: the model.

    Returns:
      The parameter tree of ``GPT(config)`` (unboxed), float32 NumPy arrays.

    Raises:
      UserError: a tied model whose ``lm_head.weight`` is not a copy of ``wte.weight``.
    """
    d, n, h = config.n_embd, config.n_head, config.head_size
    t = {k: np.asarray(v, np.float32) for k, v in tensors.items()}
    if config.tie_embeddings and HEAD in t and not np.array_equal(t[HEAD], t["wte.weight"]):
        raise UserError(
            f"tensor {HEAD!r} differs from 'wte.weight', but config.json ties them "
            "(tie_word_embeddings is true or absent): set it to false if the head is separate"
        )

    def norm(name):
        return {"scale": t[f"{name}.weight"], "bias": t[f"{name}.bias"]}

    def dense(name):
        return {"kernel": t[f"{name}.weight"], "bias": t[f"{name}.bias"]}

    params = {"wte": {"embedding": t["wte.weight"]}, "wpe": {"embedding": t["wpe.weight"]}}
    for i in range(config.n_layer):
        w_D3D, b_3D = t[f"h.{i}.attn.c_attn.weight"], t[f"h.{i}.attn.c_attn.bias"]
        attn = {
            role: {
                "kernel": w_D3D[:, j * d : (j + 1) * d].reshape(d, n, h),
                "bias": b_3D[j * d : (j + 1) * d].reshape(n, h),
            }
            for j, role in enumerate(("query", "key", "value"))
        }
        attn["proj"] = {
            "kernel": t[f"h.{i}.attn.c_proj.weight"].reshape(n, h, d),
            "bias": t[f"h.{i}.attn.c_proj.bias"],
        }
        params[f"blocks_{i}"] = {
            "ln_1": norm(f"h.{i}.ln_1"),
            "attn": attn,
            "ln_2": norm(f"h.{i}.ln_2"),
            "mlp": {"fc": dense(f"h.{i}.mlp.c_fc"), "proj": dense(f"h.{i}.mlp.c_proj")},
        }
    params["ln_f"] = norm("ln_f")
    if not config.tie_embeddings:
        params["lm_head"] = {"kernel": t[HEAD].T}
    return _map(np.ascontiguousarray, params)


def params_to_hf(params: Mapping[str, Any], config: GPTConfig, vocab_size: int | None = None):
    """Hugging Face tensors from gptjax parameters, named as ``GPT2LMHeadModel`` saves them.

    Args:
      params: the parameter tree of ``GPT(config)`` (unboxed; NumPy or JAX arrays).
      config: the model (see `check_expressible`).
      vocab_size: keep only the first ``vocab_size`` rows of the token table (and columns of an
        untied head): the tokenizer's ids, when the model's table is padded beyond them. None
        keeps them all.

    Returns:
      ``transformer.<name>`` -> float32, C-contiguous NumPy arrays, the names of `tensor_shapes`;
      a tied model has no ``lm_head.weight`` (``save_pretrained`` leaves the shared copy out too).
    """
    check_expressible(config)
    v = config.vocab_size if vocab_size is None else vocab_size
    p = _map(lambda a: np.asarray(a, np.float32), params)
    d = config.n_embd
    out = {"wte.weight": p["wte"]["embedding"][:v], "wpe.weight": p["wpe"]["embedding"]}
    for i in range(config.n_layer):
        block, attn = p[f"blocks_{i}"], p[f"blocks_{i}"]["attn"]
        roles = ("query", "key", "value")
        out.update({
            f"h.{i}.ln_1.weight": block["ln_1"]["scale"], f"h.{i}.ln_1.bias": block["ln_1"]["bias"],
            f"h.{i}.attn.c_attn.weight": np.concatenate(
                [attn[r]["kernel"].reshape(d, d) for r in roles], axis=1
            ),
            f"h.{i}.attn.c_attn.bias": np.concatenate([attn[r]["bias"].reshape(d) for r in roles]),
            f"h.{i}.attn.c_proj.weight": attn["proj"]["kernel"].reshape(d, d),
            f"h.{i}.attn.c_proj.bias": attn["proj"]["bias"],
            f"h.{i}.ln_2.weight": block["ln_2"]["scale"], f"h.{i}.ln_2.bias": block["ln_2"]["bias"],
            f"h.{i}.mlp.c_fc.weight": block["mlp"]["fc"]["kernel"],
            f"h.{i}.mlp.c_fc.bias": block["mlp"]["fc"]["bias"],
            f"h.{i}.mlp.c_proj.weight": block["mlp"]["proj"]["kernel"],
            f"h.{i}.mlp.c_proj.bias": block["mlp"]["proj"]["bias"],
        })  # fmt: skip
    out.update({"ln_f.weight": p["ln_f"]["scale"], "ln_f.bias": p["ln_f"]["bias"]})
    named = {PREFIX + k: np.ascontiguousarray(a, np.float32) for k, a in out.items()}
    if not config.tie_embeddings:
        named[HEAD] = np.ascontiguousarray(p["lm_head"]["kernel"][:, :v].T, np.float32)
    return named


def _map(fn, tree):
    """``fn`` on every array of a nested dict (NumPy arrays stay NumPy, unlike ``jax.tree.map``)."""
    if isinstance(tree, Mapping):
        return {k: _map(fn, v) for k, v in tree.items()}
    return fn(tree)
