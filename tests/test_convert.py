"""``python -m gptjax.convert`` and ``gptjax.model.hf``, against what Hugging Face wrote.

The independent truth is tests/fixtures/gpt2_tiny/: a random 2-layer GPT-2 saved by
``transformers`` itself, with its logits on a fixed batch (tests/fixtures/make_gpt2_tiny.py made
it; neither torch nor transformers is needed here).
"""

import dataclasses
import json
import shutil
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from gptjax import convert
from gptjax import generate as generate_cli
from gptjax import tokenizer as tk
from gptjax.model import GPT, GPTConfig, hf, init_cache
from gptjax.runs import checkpoint
from gptjax.runs.checkpoint import load_for_inference
from gptjax.runs.rundir import RunDir
from gptjax.training import step as ts

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "gpt2_tiny"
TOKENIZER = ["--tokenizer", str(FIXTURE / "tokenizer.tiktoken"), "--specials", "<|endoftext|>=299"]
FIXTURE_CONFIG = dict(
    vocab_size=300, block_size=64, n_layer=2, n_head=2, n_embd=32, mlp_ratio=4, bias=True,
    pos_encoding="learned", norm="layernorm", tie_embeddings=True,
)  # fmt: skip


def from_hf(hf_dir: Path, out: Path, *extra: str) -> int:
    return convert.main(["from-hf", str(hf_dir), "--out", str(out), *TOKENIZER, *extra])


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """The fixture converted by the command line into a run directory."""
    out = tmp_path_factory.mktemp("convert") / "run"
    assert from_hf(FIXTURE, out) == 0
    return out


def logits(config: GPTConfig, params, tokens) -> np.ndarray:
    apply = jax.jit(lambda p, t: GPT(config).apply({"params": p}, t))
    return np.asarray(apply(params, jnp.asarray(tokens)))


def test_the_run_directory_is_a_run_at_step_0(converted):
    run_dir = RunDir(converted)
    saved = run_dir.read_config()
    assert {k: saved["model"][k] for k in FIXTURE_CONFIG} == FIXTURE_CONFIG
    assert saved["tokenizer"]["path"] == str(FIXTURE / "tokenizer.tiktoken")
    assert saved["tokenizer"]["vocab_size"] == 300
    assert run_dir.latest_step() == 0
    tok = run_dir.load_tokenizer()
    assert (tok.vocab_size, tok.eos_id) == (300, 299)
    assert run_dir.read_run_info()["converted_from"] == str(FIXTURE)
    # A full train state: the optimizer moments are there, and zero.
    model_config = GPTConfig(**saved["model"])
    tx, _ = ts.make_optimizer(
        **saved["opt"], total_steps=saved["train"]["steps"], kernels=model_config.kernels
    )
    target = jax.eval_shape(
        lambda: ts.create_train_state(GPT(model_config), tx, seed=0, block_size=64)
    )
    state, _ = checkpoint.restore(run_dir, target, 0)
    moments = [x for x in jax.tree.leaves(state.opt_state) if x.ndim >= 1]
    assert moments and all(not np.asarray(x).any() for x in moments)
    assert int(state.step) == 0


@pytest.mark.parametrize("kernels", ["plain", "fast"])
def test_imported_logits_match_transformers(converted, kernels):
    model_config, params, _ = load_for_inference(converted)
    config = dataclasses.replace(model_config, dtype="float32", kernels=kernels)
    tokens, want = np.load(FIXTURE / "tokens.npy"), np.load(FIXTURE / "logits.npy")
    got = logits(config, params, tokens)
    assert got.shape == want.shape == (2, 16, 300)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert np.abs(want).max() > 1  # logits large enough for 1e-4 to mean something


def test_cached_decoding_of_the_imported_model_matches_transformers(converted):
    model_config, params, _ = load_for_inference(converted)
    config = dataclasses.replace(model_config, dtype="float32")
    tokens, want = np.load(FIXTURE / "tokens.npy"), np.load(FIXTURE / "logits.npy")
    apply = jax.jit(lambda t, c: GPT(config).apply({"params": params}, t, cache=c))
    got, cache = apply(jnp.asarray(tokens[:, :8]), init_cache(config, tokens.shape[0]))
    steps = [got]
    for t in range(8, tokens.shape[1]):
        got, cache = apply(jnp.asarray(tokens[:, t : t + 1]), cache)
        steps.append(got)
    np.testing.assert_allclose(np.concatenate(steps, axis=1), want, atol=1e-4, rtol=0)


def test_to_hf_writes_what_transformers_wrote(converted, tmp_path):
    out = tmp_path / "hf"
    assert convert.main(["to-hf", str(converted), "--out", str(out)]) == 0
    written, fixture = out / "model.safetensors", FIXTURE / "model.safetensors"
    with safe_open(written, framework="np") as f, safe_open(fixture, framework="np") as g:
        assert f.metadata() == g.metadata() == {"format": "pt"}
        assert sorted(f.keys()) == sorted(g.keys())
        for name in g.keys():  # noqa: SIM118 (safe_open is not a dict)
            a, b = f.get_slice(name), g.get_slice(name)
            assert (a.get_shape(), a.get_dtype()) == (b.get_shape(), b.get_dtype()), name
    ours, theirs = load_file(written), load_file(fixture)
    assert all(np.array_equal(ours[k], theirs[k]) for k in theirs)  # and the same values
    config = json.loads((out / "config.json").read_text())
    want = json.loads((FIXTURE / "config.json").read_text())
    assert set(config) == set(want) - {"transformers_version"}
    same = ("n_embd", "n_head", "n_layer", "n_positions", "n_inner", "vocab_size", "model_type")
    same += ("bos_token_id", "eos_token_id", "activation_function", "layer_norm_epsilon")
    same += ("tie_word_embeddings", "architectures", "scale_attn_weights")
    assert {k: config[k] for k in same} == {k: want[k] for k in same}


def test_to_hf_then_from_hf_is_the_identity(converted, tmp_path):
    assert convert.main(["to-hf", str(converted), "--out", str(tmp_path / "hf")]) == 0
    assert from_hf(tmp_path / "hf", tmp_path / "again") == 0
    config_a, params_a, _ = load_for_inference(converted)
    config_b, params_b, _ = load_for_inference(tmp_path / "again")
    assert config_a == config_b
    equal = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), params_a, params_b)
    assert all(jax.tree.leaves(equal))


def test_names_without_the_prefix_and_mask_buffers_as_openai_saved_them(converted, tmp_path):
    # OpenAI's gpt2 model.safetensors: "h.0.attn.c_attn.weight", ..., and the causal masks.
    hf_dir = _copy_fixture(tmp_path)

    def openai_layout(tensors):
        for name in list(tensors):
            tensors[name.removeprefix("transformer.")] = tensors.pop(name)
        for i in range(2):
            tensors[f"h.{i}.attn.bias"] = np.tril(np.ones((1, 1, 64, 64), np.float32))
            tensors[f"h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
        tensors["lm_head.weight"] = tensors["wte.weight"].copy()

    _edit_tensors(hf_dir, openai_layout)
    assert from_hf(hf_dir, tmp_path / "run") == 0
    _, params_a, _ = load_for_inference(converted)
    _, params_b, _ = load_for_inference(tmp_path / "run")
    equal = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), params_a, params_b)
    assert all(jax.tree.leaves(equal))


@pytest.mark.parametrize("tied", [True, False])
def test_params_to_hf_then_params_from_hf_is_the_identity(tied):
    config = GPTConfig(
        vocab_size=50, block_size=8, n_layer=2, n_head=4, n_embd=16, mlp_ratio=3,
        tie_embeddings=tied,
    )  # fmt: skip
    init = jax.jit(lambda key: GPT(config).init(key, jnp.zeros((1, 8), jnp.int32)))
    params = nn.unbox(init(jax.random.key(1))["params"])
    tensors = hf.params_to_hf(params, config)
    shapes = {name: a.shape for name, a in tensors.items()}
    assert ("lm_head.weight" in shapes) is not tied
    names = hf.match_tensors(shapes, config)
    back = hf.params_from_hf({ours: tensors[theirs] for ours, theirs in names.items()}, config)
    equal = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), params, back)
    assert all(jax.tree.leaves(equal))
    hf_config = hf.hf_config(config, 50, None, None)
    assert hf.config_from_hf(hf_config) == {
        k: getattr(config, k) for k in hf.config_from_hf(hf_config)
    }


def test_heads_are_the_thirds_of_c_attn_head_first():
    # A hand-made c_attn: column j of the query third is head j // H, feature j % H.
    config = GPTConfig(vocab_size=4, block_size=2, n_layer=1, n_head=2, n_embd=4)
    shapes = hf.tensor_shapes(config)
    tensors = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
    tensors["h.0.attn.c_attn.bias"] = np.arange(12, dtype=np.float32)
    attn = hf.params_from_hf(tensors, config)["blocks_0"]["attn"]
    assert attn["query"]["bias"].tolist() == [[0, 1], [2, 3]]
    assert attn["key"]["bias"].tolist() == [[4, 5], [6, 7]]
    assert attn["value"]["bias"].tolist() == [[8, 9], [10, 11]]


def _hand_made_run(path: Path, config: GPTConfig, tok: tk.Tokenizer, seed: int = 0):
    """A run directory at step 0 with random parameters, written through RunDir."""
    tx, _ = ts.make_optimizer(
        lr=1e-3, min_lr=1e-4, warmup_steps=1, total_steps=2, weight_decay=0.1, beta1=0.9,
        beta2=0.99, grad_clip=1.0,
    )  # fmt: skip
    state = jax.jit(
        lambda: ts.create_train_state(GPT(config), tx, seed=seed, block_size=config.block_size)
    )()
    run_dir = RunDir(path)
    run_dir.create()
    run_dir.write_config({"model": dataclasses.asdict(config)})
    run_dir.save_tokenizer(tok)
    manager = run_dir.checkpoint_manager(keep=1)
    checkpoint.save(manager, state, {"wall_time": 0.0})
    manager.wait_until_finished()
    manager.close()
    return state.params


@pytest.mark.parametrize("tied", [True, False])
def test_a_padded_table_is_cut_to_the_tokenizer(tmp_path, tied):
    specials = {"<|endoftext|>": 299}  # the fixture's 300-id tokenizer
    tok = tk.load(FIXTURE / "tokenizer.tiktoken", pattern="gpt2", special_tokens=specials)
    config = GPTConfig(
        vocab_size=320, block_size=16, n_layer=1, n_head=2, n_embd=32, tie_embeddings=tied
    )
    params = _hand_made_run(tmp_path / "run", config, tok)
    assert convert.main(["to-hf", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 0
    tensors = load_file(tmp_path / "hf" / "model.safetensors")
    np.testing.assert_array_equal(
        tensors["transformer.wte.weight"], params["wte"]["embedding"][:300]
    )
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    config_b = GPTConfig(**hf.config_from_hf(hf_config))
    assert (config_b.vocab_size, config_b.tie_embeddings) == (300, tied)
    names = hf.match_tensors({name: a.shape for name, a in tensors.items()}, config_b)
    params_b = hf.params_from_hf(
        {ours: tensors[theirs] for ours, theirs in names.items()}, config_b
    )
    tokens = np.array([[0, 5, 299, 17, 250]])
    np.testing.assert_allclose(
        logits(config_b, params_b, tokens), logits(config, params, tokens)[..., :300], atol=1e-6
    )


def test_generate_on_a_converted_run(converted, capsys):
    args = ["--workdir", str(converted), "--prompt", "Hello", "--max-new-tokens", "8"]
    generate_cli.main([*args, "--temperature", "0", "--no-stream"])
    out = capsys.readouterr().out
    assert out.startswith("Hello") and len(out) > len("Hello\n")


# Refusals: each is one line "error: ..." naming what is wrong.


def _copy_fixture(tmp_path: Path) -> Path:
    hf_dir = tmp_path / "hf"
    shutil.copytree(FIXTURE, hf_dir)
    return hf_dir


def _edit_config(hf_dir: Path, **changes) -> None:
    path = hf_dir / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _edit_tensors(hf_dir: Path, edit) -> None:
    tensors = load_file(hf_dir / "model.safetensors")
    edit(tensors)
    save_file(tensors, hf_dir / "model.safetensors", metadata={"format": "pt"})


def _refused(capsys, argv: list[str], *names: str) -> str:
    assert convert.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for name in names:
        assert name in err, err
    return err


def _drop_key(hf_dir: Path, key: str) -> None:
    path = hf_dir / "config.json"
    config = json.loads(path.read_text())
    del config[key]
    path.write_text(json.dumps(config))


def _nan(tensors):
    tensors["transformer.ln_f.bias"][3] = np.nan


BAD_FOLDERS = {
    "other model_type": (lambda d: _edit_config(d, model_type="llama"), ["model_type", "llama"]),
    "other architecture": (
        lambda d: _edit_config(d, architectures=["GPT2ForSequenceClassification"]),
        ["architectures", "GPT2ForSequenceClassification"],
    ),
    "erf gelu": (lambda d: _edit_config(d, activation_function="gelu"), ["activation_function"]),
    "other epsilon": (lambda d: _edit_config(d, layer_norm_epsilon=1e-6), ["layer_norm_epsilon"]),
    "size missing": (lambda d: _drop_key(d, "n_embd"), ["'n_embd'"]),
    "heads do not divide": (lambda d: _edit_config(d, n_head=3), ["n_head=3"]),
    "no config.json": (lambda d: (d / "config.json").unlink(), ["config.json"]),
    "no model.safetensors": (lambda d: (d / "model.safetensors").unlink(), ["model.safetensors"]),
    "not safetensors": (
        lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 64),
        ["model.safetensors"],
    ),
    "missing tensor": (
        lambda d: _edit_tensors(d, lambda t: t.pop("transformer.h.1.mlp.c_fc.weight")),
        ["h.1.mlp.c_fc.weight"],
    ),
    "extra layer": (lambda d: _edit_config(d, n_layer=1), ["transformer.h.1."]),
    "unknown tensor": (
        lambda d: _edit_tensors(d, lambda t: t.update(score=np.zeros((2, 32), np.float32))),
        ["score"],
    ),
    "wrong shape": (
        lambda d: _edit_config(d, n_positions=32),
        ["transformer.wpe.weight", "(64, 32)"],
    ),
    "untied head": (
        lambda d: _edit_tensors(
            d, lambda t: t.update({"lm_head.weight": np.ones((300, 32), np.float32)})
        ),
        ["lm_head.weight"],
    ),
    "integer tensor": (
        lambda d: _edit_tensors(
            d, lambda t: t.update({"transformer.ln_f.bias": np.zeros(32, np.int32)})
        ),
        ["transformer.ln_f.bias", "I32"],
    ),
    "NaN": (lambda d: _edit_tensors(d, _nan), ["transformer.ln_f.bias", "NaN"]),
    "vocab_size not the table's": (
        lambda d: _edit_config(d, vocab_size=301),
        ["transformer.wte.weight", "(300, 32)"],
    ),
    "other end of text": (lambda d: _edit_config(d, eos_token_id=0), ["eos_token_id", "299"]),
}


@pytest.mark.parametrize("case", BAD_FOLDERS)
def test_from_hf_refuses_a_bad_folder(tmp_path, capsys, case):
    spoil, names = BAD_FOLDERS[case]
    hf_dir = _copy_fixture(tmp_path)
    spoil(hf_dir)
    argv = ["from-hf", str(hf_dir), "--out", str(tmp_path / "run"), *TOKENIZER]
    _refused(capsys, argv, *names)
    assert not (tmp_path / "run").exists()  # nothing written


def test_from_hf_refuses_a_tokenizer_of_another_size(tmp_path, capsys):
    ranks = tmp_path / "ranks.tiktoken"
    lines = (FIXTURE / "tokenizer.tiktoken").read_text().splitlines()
    ranks.write_text("\n".join(lines[:280]) + "\n")
    argv = ["from-hf", str(FIXTURE), "--out", str(tmp_path / "run"), "--tokenizer", str(ranks)]
    _refused(capsys, [*argv, "--specials", "<|endoftext|>=280"], "281 ids", "vocab_size", "300")


def test_from_hf_refuses_an_out_that_holds_a_run_or_anything(converted, tmp_path, capsys):
    _refused(capsys, ["from-hf", str(FIXTURE), "--out", str(converted), *TOKENIZER], "holds a run")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    argv = ["from-hf", str(FIXTURE), "--out", str(tmp_path / "busy"), *TOKENIZER]
    _refused(capsys, argv, "not empty")
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    "change, key",
    [
        (dict(pos_encoding="rope"), "model.pos_encoding"),
        (dict(norm="rmsnorm"), "model.norm"),
        (dict(bias=False), "model.bias"),
        (dict(mlp_ratio=0), "model.mlp_ratio"),
        (dict(activation="relu2"), "model.activation"),
        (dict(qk_norm=True), "model.qk_norm"),
    ],
)
def test_to_hf_refuses_what_gpt2_cannot_express(tmp_path, capsys, change, key):
    config = GPTConfig(vocab_size=300, block_size=8, n_layer=1, n_head=2, n_embd=16, **change)
    run_dir = RunDir(tmp_path / "run")
    run_dir.create()
    run_dir.write_config({"model": dataclasses.asdict(config)})
    _refused(capsys, ["to-hf", str(run_dir.path), "--out", str(tmp_path / "hf")], key)
    assert not (tmp_path / "hf").exists()


def test_to_hf_refuses_an_out_that_holds_a_model_and_a_workdir_that_is_no_run(
    converted, tmp_path, capsys
):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    _refused(capsys, ["to-hf", str(converted), "--out", str(tmp_path / "model")], "config.json")
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["config.json"]
    (tmp_path / "empty").mkdir()
    _refused(
        capsys, ["to-hf", str(tmp_path / "empty"), "--out", str(tmp_path / "hf")], "config.json"
    )
