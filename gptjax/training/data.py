"""Training data: corpora by name or path, the encoded-corpus cache, batches (tutorial part 9).

A corpus is a list of documents (strings):

  pydoc            the Python language reference shipped with every CPython (`pydoc_data.topics`,
                   79 topics, about 470 KB), joined in sorted topic order: no network, no files.
  tinyshakespeare  looked up in ``$GPTJAX_DATA_DIR``, then in the local cache, then downloaded
                   from its canonical URL and checked against its SHA-256.
  hugo_extrait     the French excerpt of Les Misérables committed in the repository
                   (``data/hugo_miserables_extrait.txt``, 188 KB): no network, but needs a clone.
  a path           a text file, a folder (every file below it, sorted) or a glob.

The text is split by characters: the last ``val_fraction`` is validation, and the tokenizer only
ever sees the training part. Each split is encoded once, documents joined by the tokenizer's
``separator`` (``<eos>`` for a gptjax tokenizer, ``<|endoftext|>`` for GPT-2's; an empty prompt
starts generation from the same token), into a uint16/uint32 array cached on disk under a key
made of the corpus hash and the tokenizer hash (``$GPTJAX_CACHE_DIR``, default
``~/.cache/gptjax``). The cache only saves time: when it cannot be written (a read-only folder, a
full disk) a one-line warning says so and the run goes on without it.

Batches are a pure function of ``(seed, step)``: a resumed run draws exactly the batches an
uninterrupted run would, without replaying or skipping anything.
"""

import glob
import hashlib
import os
import queue
import sys
import threading
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

import gptjax
from gptjax import tokenizer as tk
from gptjax.errors import UserError

TINYSHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
# The repository's data/ folder (see data/README.md), found from the package, not from the
# current directory. An editable install from a clone has it; a built wheel does not.
REPO_DATA_DIR = Path(gptjax.__file__).resolve().parents[1] / "data"
HUGO_EXTRAIT_SHA256 = "296e3117462488b42fbf9ad40c52d69fca8a25099e8914d59454a6dfe75f118e"

# Streams of the batch generator: training batches, and the two fixed evaluation sets.
TRAIN_STREAM, VAL_EVAL_STREAM, TRAIN_EVAL_STREAM = 0, 1, 2


def cache_dir() -> Path:
    """The folder for downloaded corpora and encoded arrays (``$GPTJAX_CACHE_DIR``).

    Raises:
      UserError: the folder's path names something else, such as a file.
    """
    env = os.environ.get("GPTJAX_CACHE_DIR")
    path = Path(env or Path.home() / ".cache" / "gptjax")
    if path.exists() and not path.is_dir():
        where = f"GPTJAX_CACHE_DIR={env!r}" if env else f"the default cache folder {path}"
        raise UserError(
            f"{where} is a file, not a folder: set GPTJAX_CACHE_DIR to a folder (it is created "
            "if missing) or to a path where nothing exists yet."
        )
    return path


def _write_to_cache(path: Path, write: Callable, what: str) -> None:
    """Writes a cache file, or warns in one line and goes on when the cache cannot be written."""
    try:
        _atomic_write(path, write)
    except OSError as err:
        print(
            f"warning: cannot write the {what} into the cache {path.parent} "
            f"({err.strerror or err}); going on without caching it (set GPTJAX_CACHE_DIR to a "
            "writable folder to cache it)",
            file=sys.stderr,
            flush=True,
        )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tinyshakespeare() -> str:
    name = "tinyshakespeare.txt"
    candidates = [cache_dir() / name]
    if os.environ.get("GPTJAX_DATA_DIR"):
        candidates.insert(0, Path(os.environ["GPTJAX_DATA_DIR"]) / name)
    for path in candidates:
        if path.is_file():
            data = path.read_bytes()
            if _sha256(data) != TINYSHAKESPEARE_SHA256:
                raise ValueError(f"{path} is not the tinyshakespeare corpus (SHA-256 mismatch).")
            return data.decode("utf-8")
    try:
        with urllib.request.urlopen(TINYSHAKESPEARE_URL, timeout=60) as response:
            data = response.read()
    except OSError as err:
        raise ValueError(
            f"corpus 'tinyshakespeare' is not in $GPTJAX_DATA_DIR or {cache_dir()} and could not "
            f"be downloaded from {TINYSHAKESPEARE_URL} ({err}); put tinyshakespeare.txt in one of "
            "those folders or give data.corpus a local path."
        ) from err
    if _sha256(data) != TINYSHAKESPEARE_SHA256:
        raise ValueError(f"download of {TINYSHAKESPEARE_URL} failed its SHA-256 check.")
    _write_to_cache(cache_dir() / name, lambda f: f.write(data), "downloaded corpus")
    return data.decode("utf-8")


def _hugo_extrait() -> str:
    path = REPO_DATA_DIR / "hugo_miserables_extrait.txt"
    if not path.is_file():
        raise ValueError(
            f"corpus 'hugo_extrait' is read from {path}, which does not exist: the file ships "
            "in the repository's data/ folder, not in an installed package. Run from a clone "
            "(pip install -e .) or set data.corpus to the path of a copy of that file."
        )
    data = path.read_bytes()
    if _sha256(data) != HUGO_EXTRAIT_SHA256:
        # note: most likely line endings converted by git (core.autocrlf); data/.gitattributes
        # asks for the bytes as committed.
        raise ValueError(f"{path} is not the committed excerpt (SHA-256 mismatch, see data/).")
    return data.decode("utf-8")


def load_documents(corpus: str) -> list[str]:
    """Loads a corpus by name or path.

    Args:
      corpus: ``"pydoc"``, ``"tinyshakespeare"``, ``"hugo_extrait"``, a text file, a folder or a
        glob pattern.

    Returns:
      The documents, in a deterministic order.
    """
    if corpus == "pydoc":
        from pydoc_data.topics import topics

        return [topics[key] for key in sorted(topics)]
    if corpus == "tinyshakespeare":
        return [_tinyshakespeare()]
    if corpus == "hugo_extrait":
        return [_hugo_extrait()]
    path = Path(corpus).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    else:
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    if not files:
        raise ValueError(
            f"data.corpus={corpus!r}: no such file, folder or glob match; use 'pydoc', "
            "'tinyshakespeare', 'hugo_extrait' or the path of a UTF-8 text file."
        )
    return [tk.read_utf8(f, "corpus file") for f in files]


def split_documents(docs: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Splits documents by characters: the last ``val_fraction`` of the text is validation.

    The document that straddles the cut is cut in two, so the split is exact to one character:
    the first ``int(n * (1 - val_fraction))`` of the n characters are training text, as in
    nanoGPT's ``data/shakespeare_char/prepare.py`` (``data[:int(n*0.9)]``).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"data.val_fraction={val_fraction} must be strictly between 0 and 1.")
    total = sum(len(d) for d in docs)
    cut = int(total * (1.0 - val_fraction))
    train, val, seen = [], [], 0
    for doc in docs:
        if seen + len(doc) <= cut:
            train.append(doc)
        elif seen >= cut:
            val.append(doc)
        else:
            train.append(doc[: cut - seen])
            val.append(doc[cut - seen :])
        seen += len(doc)
    return [d for d in train if d], [d for d in val if d]


def corpus_hash(docs: list[str]) -> str:
    """A SHA-256 over the documents and their boundaries."""
    h = hashlib.sha256()
    for doc in docs:
        data = doc.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def encode_documents(tok, docs: list[str]) -> np.ndarray:
    """Encodes documents through the tiktoken engine, joined by ``tok.separator_id``.

    The separator is the tokenizer's, the token an empty prompt starts from (``<eos>`` in a
    gptjax vocabulary): the model learns what follows it, the start of a document. A vocabulary
    without one (no special token) gets the documents back to back.

    Returns:
      ids_N: uint16 when the vocabulary fits in 16 bits, else uint32.
    """
    dtype = np.uint16 if tok.vocab_size <= 2**16 else np.uint32
    sep = tok.separator_id
    parts = []
    for i, doc in enumerate(docs):
        if i and sep is not None:
            parts.append(np.array([sep], dtype=dtype))
        parts.append(np.asarray(tk.encode_corpus(tok, doc)).astype(dtype))
    return np.concatenate(parts) if parts else np.zeros((0,), dtype)


def _atomic_write(path: Path, write: Callable) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)  # readers see the old file or the whole new one, never half of it
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave half a file behind
        raise


def encoded_splits(
    train_docs: list[str], val_docs: list[str], tok, tokenizer_hash: str
) -> tuple[np.ndarray, np.ndarray]:
    """Both splits encoded, from the cache when this corpus and tokenizer were seen before.

    Args:
      train_docs, val_docs: the split corpus.
      tok: the tokenizer.
      tokenizer_hash: a hash of the tokenizer's saved file (part of the cache key).

    Returns:
      (train_ids_N, val_ids_M).
    """
    key = _sha256(f"{corpus_hash(train_docs)}:{corpus_hash(val_docs)}:{tokenizer_hash}".encode())[
        :32
    ]
    path = cache_dir() / "tokens" / f"{key}.npz"
    try:
        with np.load(path) as cached:
            return cached["train"], cached["val"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass  # not cached yet, or an unreadable entry: encoded below
    train_ids, val_ids = encode_documents(tok, train_docs), encode_documents(tok, val_docs)
    write = lambda f: np.savez(f, train=train_ids, val=val_ids)
    _write_to_cache(path, write, "encoded corpus")
    return train_ids, val_ids


def token_byte_lengths(tok) -> np.ndarray:
    """Bytes of UTF-8 text each token stands for; 0 for special tokens.

    Returns:
      bytes_V: int32, used to turn nats per token into bits per byte.
    """
    enc = tk.to_tiktoken(tok)
    specials = set(tok.special_tokens.values())
    lengths = np.zeros((tok.vocab_size,), np.int32)
    for i in range(tok.vocab_size):
        if i not in specials:
            lengths[i] = len(enc.decode_single_token_bytes(i))
    return lengths


def batch_at(
    ids_N: np.ndarray,
    *,
    seed: int,
    stream: int,
    index: int,
    batch_size: int,
    block_size: int,
    rows: slice = slice(None),
) -> dict[str, np.ndarray]:
    """One batch of random windows, a pure function of ``(seed, stream, index)``.

    Args:
      ids_N: the encoded split.
      seed, stream, index: what the batch is a function of (``index`` is the step for training).
      batch_size: B, block_size: T.
      rows: which rows of the batch to build; on several hosts each one builds only its own
        (`gptjax.sharding.host_rows`), every row staying the one an all-rows call would give.

    Returns:
      ``{"inputs": x_BT, "targets": y_BT}``, int32, ``y_BT`` being ``x_BT`` shifted by one.
    """
    assert len(ids_N) > block_size, "checked by check_split_size"
    rng = np.random.default_rng([seed, stream, index])
    starts_B = rng.integers(0, len(ids_N) - block_size, size=batch_size)[rows]
    window_BT1 = ids_N[starts_B[:, None] + np.arange(block_size + 1)].astype(np.int32)
    return {"inputs": window_BT1[:, :-1], "targets": window_BT1[:, 1:]}


def stacked_batches(ids_N: np.ndarray, indices, **kwargs) -> dict[str, np.ndarray]:
    """Batches for several indices, stacked on a new leading axis: ``{"inputs": x_KBT, ...}``."""
    batches = [batch_at(ids_N, index=i, **kwargs) for i in indices]
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def check_split_size(name: str, ids_N: np.ndarray, block_size: int, corpus: str) -> None:
    """A clear error when a split cannot fill one window of ``block_size + 1`` tokens."""
    if len(ids_N) <= block_size:
        raise ValueError(
            f"the {name} split of data.corpus={corpus!r} has {len(ids_N)} tokens, fewer than one "
            f"block of model.block_size+1={block_size + 1}; use a larger corpus, a smaller "
            "model.block_size or a different data.val_fraction."
        )


def prefetch(make: Callable[[int], object], indices: Iterator[int], depth: int = 2) -> Iterator:
    """Runs ``make(i)`` for each index in a background thread, ``depth`` items ahead.

    The host builds the next batches (and copies them to the device) while the device computes.
    Errors in the thread are raised in the consumer.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def worker():
        try:
            for i in indices:
                item = make(i)
                while not stop.is_set():
                    try:
                        items.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put((False, None))
        except BaseException as err:  # handed to the consumer
            items.put((False, err))

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while True:
            ok, item = items.get()
            if not ok:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
