"""Tests for gptjax.training.data (corpora, the split, the encoded cache, batches, prefetching)
and for the tokenizer side of gptjax.training.prepare (``tokenizer.path`` and
``tokenizer.specials``, the document separator)."""

import errno
import hashlib
import os
from pathlib import Path

import ml_collections
import numpy as np
import pytest
import tiktoken
from tiktoken.load import load_tiktoken_bpe
from tiktoken_ext.openai_public import r50k_pat_str

from gptjax import tokenizer as tk
from gptjax.errors import UserError
from gptjax.model.config import GPTConfig
from gptjax.runs.rundir import RunDir
from gptjax.training import data, prepare

EXCERPT = Path(__file__).resolve().parents[2] / "data" / "hugo_miserables_extrait.txt"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tok():
    return tk.train(["hello world, the quick brown fox. " * 20], vocab_size=280, pattern="gpt4")


def test_pydoc_corpus_is_the_sorted_reference_topics():
    from pydoc_data.topics import topics

    docs = data.load_documents("pydoc")
    assert docs == [topics[k] for k in sorted(topics)]
    assert len(docs) > 50 and 300_000 < sum(len(d) for d in docs) < 2_000_000


def test_tinyshakespeare_from_the_data_dir(data_file, monkeypatch):
    path = data_file("tinyshakespeare.txt")
    monkeypatch.setenv("GPTJAX_DATA_DIR", str(path.parent))
    (doc,) = data.load_documents("tinyshakespeare")
    assert len(doc) == 1115394
    assert hashlib.sha256(doc.encode()).hexdigest() == data.TINYSHAKESPEARE_SHA256


def test_tinyshakespeare_with_a_wrong_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "tinyshakespeare.txt").write_text("not shakespeare")
    monkeypatch.setenv("GPTJAX_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="SHA-256"):
        data.load_documents("tinyshakespeare")


def test_hugo_extrait_is_the_committed_french_excerpt(tmp_path, monkeypatch):
    monkeypatch.delenv("GPTJAX_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # found from the package, not from the current folder
    raw = EXCERPT.read_bytes()
    assert len(raw) <= 200_000 and hashlib.sha256(raw).hexdigest() == data.HUGO_EXTRAIT_SHA256
    docs = data.load_documents("hugo_extrait")
    # one file, one document: what the loader gives for the file's own path
    assert docs == data.load_documents(str(EXCERPT)) == [raw.decode("utf-8")]
    (doc,) = docs
    assert doc.startswith("Livre premier--Un juste\n") and doc.endswith("la petite maison.\n")
    assert "\r" not in doc and "évêque de Digne" in doc
    train, val = data.split_documents(docs, 0.1)
    assert "".join(train + val) == doc and len(train) == len(val) == 1
    assert len(train[0]) == int(len(doc) * 0.9)  # nanoGPT's data[:int(n*0.9)]


def test_hugo_extrait_missing_or_changed_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "REPO_DATA_DIR", tmp_path)  # as an install without data/ would be
    with pytest.raises(ValueError, match="hugo_miserables_extrait.txt.*clone"):
        data.load_documents("hugo_extrait")
    # line endings converted by git, say
    (tmp_path / EXCERPT.name).write_bytes(EXCERPT.read_bytes().replace(b"\n", b"\r\n"))
    with pytest.raises(ValueError, match="SHA-256"):
        data.load_documents("hugo_extrait")


def test_paths_folders_and_globs(tmp_path):
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.md").write_text("third")
    assert data.load_documents(str(tmp_path / "a.txt")) == ["first"]
    assert data.load_documents(str(tmp_path)) == ["first", "second", "third"]
    assert data.load_documents(str(tmp_path / "*.txt")) == ["first", "second"]


def test_missing_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        data.load_documents(str(tmp_path / "nope.txt"))


def test_split_is_exact_by_characters():
    docs = ["a" * 30, "b" * 50, "c" * 20]
    train, val = data.split_documents(docs, 0.25)
    assert "".join(train) + "".join(val) == "".join(docs)
    assert sum(map(len, val)) == 25
    assert train == ["a" * 30, "b" * 45] and val == ["b" * 5, "c" * 20]
    with pytest.raises(ValueError, match="val_fraction"):
        data.split_documents(docs, 1.0)


def test_encode_documents_joins_with_eos_and_round_trips(tok):
    ids = data.encode_documents(tok, ["hello world", "the fox"])
    assert ids.dtype == np.uint16
    eos = np.flatnonzero(ids == tok.eos_id)
    assert len(eos) == 1
    assert tk.decode(tok, ids[: eos[0]].tolist()) == "hello world"
    assert tk.decode(tok, ids[eos[0] + 1 :].tolist()) == "the fox"


def test_encoded_splits_are_cached(tok, tmp_path):
    first = data.encoded_splits(["hello world"], ["the fox"], tok, "h1")
    files = list((tmp_path / "cache" / "tokens").glob("*.npz"))
    assert len(files) == 1
    second = data.encoded_splits(["hello world"], ["the fox"], tok, "h1")
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    data.encoded_splits(["hello world"], ["the fox"], tok, "another tokenizer")
    assert len(list((tmp_path / "cache" / "tokens").glob("*.npz"))) == 2


def test_token_byte_lengths_count_utf8_bytes(tok):
    text = "hello wörld, the quick brown fox 🦊"
    ids = tk.encode(tok, text, allowed_special=set(), disallowed_special="all")
    lengths = data.token_byte_lengths(tok)
    assert lengths[ids].sum() == len(text.encode("utf-8"))
    assert all(lengths[i] == 0 for i in tok.special_tokens.values())


def test_batches_are_a_pure_function_of_seed_and_step():
    ids = np.arange(1000, dtype=np.uint16)
    kw = dict(seed=3, stream=data.TRAIN_STREAM, batch_size=4, block_size=8)
    a, b = data.batch_at(ids, index=7, **kw), data.batch_at(ids, index=7, **kw)
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
    assert a["inputs"].shape == (4, 8) and a["inputs"].dtype == np.int32
    # windows of the corpus, targets shifted by one
    np.testing.assert_array_equal(a["targets"][:, :-1], a["inputs"][:, 1:])
    np.testing.assert_array_equal(np.diff(a["inputs"], axis=1), 1)
    other = data.batch_at(ids, index=8, **kw)
    assert not np.array_equal(a["inputs"], other["inputs"])
    stacked = data.stacked_batches(ids, range(6, 9), **kw)
    assert stacked["inputs"].shape == (3, 4, 8)
    np.testing.assert_array_equal(stacked["inputs"][1], a["inputs"])


def test_batches_cover_the_whole_split():
    ids = np.arange(20, dtype=np.uint16)
    seen = set()
    for i in range(200):
        seen.update(data.batch_at(ids, seed=0, stream=0, index=i, batch_size=2, block_size=4)[
            "targets"
        ].ravel().tolist())  # fmt: skip
    assert seen == set(range(1, 20))  # the last token is reachable as a target


def test_split_smaller_than_one_block_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than one block"):
        data.check_split_size("training", np.zeros(64, np.uint16), 64, "x.txt")
    data.check_split_size("training", np.zeros(65, np.uint16), 64, "x.txt")


def test_prefetch_keeps_order_and_raises_errors():
    assert list(data.prefetch(lambda i: i * i, iter(range(10)))) == [i * i for i in range(10)]

    def boom(i):
        if i == 3:
            raise RuntimeError("bad batch")
        return i

    got = []
    with pytest.raises(RuntimeError, match="bad batch"):
        for x in data.prefetch(boom, iter(range(10))):
            got.append(x)
    assert got == [0, 1, 2]


def test_a_corpus_file_that_is_not_utf8_is_named_with_its_byte_offset(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(
        ValueError, match=r"corpus file .*latin1.txt' is not UTF-8: byte 3 \(0xe9\)"
    ):
        data.load_documents(str(bad))


# The document separator and tokenizer.specials, through the config (gptjax.training.prepare).


def _tokenizer_config(path="", specials="", pattern="gpt4", vocab_size=280):
    return ml_collections.ConfigDict(
        {"tokenizer": dict(path=path, vocab_size=vocab_size, pattern=pattern, specials=specials)}
    )


def _prepare(tmp_path, docs=("hello world",), **kwargs):
    run_dir = RunDir(tmp_path / f"run{len(list(tmp_path.glob('run*')))}")
    run_dir.create()
    return prepare.prepare_tokenizer(_tokenizer_config(**kwargs), list(docs), run_dir), run_dir


def _user_error(tmp_path, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        _prepare(tmp_path, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_gpt2_ranks_with_their_special_keep_tiktoken_parity(tmp_path, data_file, monkeypatch):
    monkeypatch.setenv("GPTJAX_DATA_DIR", str(data_file("gpt2.tiktoken").parent))
    path = "$GPTJAX_DATA_DIR/gpt2.tiktoken"  # as configs/gpt2.py gives it
    tok, run_dir = _prepare(tmp_path, path=path, pattern="gpt2", specials="<|endoftext|>=50256")
    # tiktoken's own GPT-2 encoding, built from its loader and pattern.
    r50k = tiktoken.Encoding(
        "r50k_base",
        pat_str=r50k_pat_str,
        mergeable_ranks=load_tiktoken_bpe(str(data_file("gpt2.tiktoken"))),
        special_tokens={"<|endoftext|>": 50256},
    )
    docs = ["Hello world, the quick brown fox.", "Le chat mange la souris."]
    stream = data.encode_documents(tok, docs)
    assert stream.tolist() == r50k.encode("<|endoftext|>".join(docs), allowed_special="all")
    assert tok.separator_id == r50k.encode_single_token("<|endoftext|>") == 50256
    assert run_dir.load_tokenizer() == tok  # the run's copy keeps the special


def test_gpt2_ranks_without_specials_say_which_to_give(tmp_path, data_file):
    line = _user_error(tmp_path, path=str(data_file("gpt2.tiktoken")), pattern="gpt2")
    assert "is a tiktoken rank file, which carries no special tokens" in line
    assert line.endswith("--config.tokenizer.specials='<|endoftext|>=50256'.")


def test_an_exported_rank_file_needs_its_specials_and_the_advice_works(tmp_path, tok):
    ranks = tmp_path / "tok.tiktoken"
    tk.save_tiktoken(tok, ranks)
    # The id the line count would give <|endoftext|> is a real token of this file.
    n_lines = len(ranks.read_text().splitlines())
    line = _user_error(tmp_path, path=str(ranks), specials=f"<|endoftext|>={n_lines}")
    expected = repr(next(b for b, i in tok.mergeable_ranks.items() if i == n_lines))
    assert (
        f"special token '<|endoftext|>' has id {n_lines}, which {ranks} gives to the token " in line
    )
    assert f"{expected} (rank {n_lines})" in line
    line = _user_error(tmp_path, path=str(ranks))
    specials = line.split("--config.tokenizer.specials=", 1)[1].removesuffix(".").strip("'")
    imported, _ = _prepare(tmp_path, path=str(ranks), specials=specials)
    # The original's specials, so the same training stream as the .bpe file gives.
    assert imported.special_tokens == tok.special_tokens
    docs = ["hello world", "the fox"]
    assert (
        data.encode_documents(imported, docs).tolist() == data.encode_documents(tok, docs).tolist()
    )


def test_specials_must_be_empty_for_a_bpe_file_or_a_trained_tokenizer(tmp_path, tok):
    tk.save(tok, tmp_path / "tok.bpe")
    line = _user_error(tmp_path, path=str(tmp_path / "tok.bpe"), specials="<|endoftext|>=280")
    assert "is a gptjax .bpe file, which carries its own special tokens" in line
    assert line.endswith("set --config.tokenizer.specials=''.")
    assert _prepare(tmp_path, path=str(tmp_path / "tok.bpe"))[0] == tok  # the advice works
    line = _user_error(tmp_path, docs=["hello world " * 20], specials="<|endoftext|>=280")
    assert "trains its tokenizer, which has gptjax's own special tokens" in line


@pytest.mark.parametrize(
    ("specials", "message"),
    [
        ("<|endoftext|>", "--config.tokenizer.specials expects NAME=ID pairs"),
        ("<a>=300,<b>=301", "names several special tokens and none is <|endoftext|> or <eos>"),
        ("<|endoftext|>=400", "no token has id 300, yet ids run up to 400"),
        ("<|a\nb|>=300", "contains a line break"),
    ],
)
def test_malformed_specials_are_one_line(tmp_path, specials, message):
    ranks = {bytes([b]): b for b in range(256)}
    ranks.update({f"t{i}".encode(): i for i in range(256, 300)})
    tk.save_tiktoken(tk.Tokenizer("gpt4", ranks, {}), tmp_path / "tok.tiktoken")
    line = _user_error(tmp_path, path=str(tmp_path / "tok.tiktoken"), specials=specials)
    assert message in line


def test_a_binary_tokenizer_path_is_not_a_tokenizer_file(tmp_path):
    binary = tmp_path / "model.safetensors"
    binary.write_bytes(bytes(range(256)) * 4)
    line = _user_error(tmp_path, path=str(binary), specials="<|endoftext|>=50256")
    assert f"'{binary}' is not a tokenizer file (neither a gptjax .bpe file" in line


def test_an_empty_prompt_starts_from_the_token_between_prepared_documents(tmp_path, data_file):
    from gptjax.generation.text import prompt_ids

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("The first document. " * 40)
    (corpus / "b.txt").write_text("The second one. " * 40)
    config = _tokenizer_config(
        path=str(data_file("gpt2.tiktoken")), pattern="gpt2", specials="<|endoftext|>=50256"
    )
    config.data = dict(corpus=str(corpus), val_fraction=0.1)
    run_dir = RunDir(tmp_path / "run")
    run_dir.create()
    model = GPTConfig(vocab_size=50304, block_size=8, n_layer=1, n_head=1, n_embd=8)
    prepared = prepare.prepare_data(config, model, run_dir)
    first = len(tk.encode_ordinary(prepared.tok, "The first document. " * 40))
    (start,) = prompt_ids(prepared.tok, "", 8)
    assert prepared.train_ids[first] == start and np.sum(prepared.train_ids == start) == 1
    # Every id has a token (no gap), so bits per byte count the text's bytes, separator aside.
    train_docs, _ = data.split_documents(data.load_documents(str(corpus)), 0.1)
    n_bytes = sum(len(d.encode("utf-8")) for d in train_docs)
    assert prepared.byte_lengths[prepared.train_ids].sum() == n_bytes
    assert prepared.byte_lengths[start] == 0


# The encoded-corpus cache ($GPTJAX_CACHE_DIR).


def test_a_cache_dir_that_is_a_file_is_one_clear_error(tmp_path, monkeypatch, tok):
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "notes.txt"))
    (tmp_path / "notes.txt").write_text("not a folder")
    with pytest.raises(UserError, match="GPTJAX_CACHE_DIR=.*notes.txt' is a file, not a folder"):
        data.encoded_splits(["hello world"], ["the fox"], tok, "h")
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "new" / "cache"))  # the advice works
    data.encoded_splits(["hello world"], ["the fox"], tok, "h")
    assert len(list((tmp_path / "new" / "cache" / "tokens").glob("*.npz"))) == 1


def _check_uncached(tok, capsys, cache):
    train, val = data.encoded_splits(["hello world"], ["the fox"], tok, "h")
    assert train.tolist() == data.encode_documents(tok, ["hello world"]).tolist()
    assert val.tolist() == data.encode_documents(tok, ["the fox"]).tolist()
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("warning: cannot write the encoded corpus into the cache ")
    assert "going on without caching it" in line
    assert not list(cache.rglob("*.npz")) and not list(cache.rglob("*.tmp"))


def test_a_cache_that_cannot_be_written_warns_and_goes_on(tmp_path, capsys, tok, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tokens").write_text("a file where the folder should be")
    _check_uncached(tok, capsys, cache)
    (cache / "tokens").unlink()

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(data.np, "savez", full_disk)  # half a file must not stay behind
    _check_uncached(tok, capsys, cache)
