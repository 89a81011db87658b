"""Tests for gptjax.data: corpora, the split, the encoded cache, batches, prefetching."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from gptjax import tokenizer as tk
from gptjax.training import data

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
    assert len(val[0]) == round(len(doc) * 0.1)


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
