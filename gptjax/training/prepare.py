"""From a config to training data: corpus, tokenizer, encoded splits (tutorial part 9).

The tokenizer is trained on the training split only (the validation text stays unseen), or
loaded from ``tokenizer.path`` (a gptjax ``.bpe`` file, or a tiktoken rank file such as GPT-2's
``gpt2.tiktoken`` with its special tokens from ``tokenizer.specials``). Either way the run
directory keeps it (``RunDir.save_tokenizer``), and a resumed run loads that copy instead of
training again. Every check here runs before anything is compiled, and a mistake in the corpus
or the tokenizer is a `UserError`.
"""

import dataclasses
import hashlib
import os
from pathlib import Path

import ml_collections
import numpy as np

from gptjax import tokenizer as tk
from gptjax.errors import UserError, as_user_error
from gptjax.model.config import GPTConfig
from gptjax.runs.rundir import RunDir
from gptjax.training import data


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """What the training loop needs from the corpus.

    Attributes:
      tok: the tokenizer.
      train_ids, val_ids: the encoded splits (uint16 or uint32).
      byte_lengths: bytes_V, UTF-8 bytes per token id (0 for specials), padded to the model's V.
    """

    tok: tk.Tokenizer
    train_ids: np.ndarray
    val_ids: np.ndarray
    byte_lengths: np.ndarray


_SPECIALS_FLAG = "--config.tokenizer.specials"


def _load_tokenizer_file(path_text: str, pattern: str, specials_text: str) -> tk.Tokenizer:
    """The tokenizer of ``tokenizer.path``: a gptjax ``.bpe`` file, or a rank file and its specials.

    Raises:
      ValueError: the file is missing or is not a tokenizer file; ``tokenizer.specials`` is given
        for a ``.bpe`` file, missing or malformed for a rank file, or names no separator.
    """
    path = Path(os.path.expandvars(path_text)).expanduser()
    if not path.is_file():
        raise UserError(
            f"config.tokenizer.path={path_text!r} ({path}) is not a file; give a tokenizer.bpe "
            "written by gptjax, a .tiktoken rank file, or '' to train one."
        )
    if tk.file_format(path) == "bpe":
        if specials_text:
            raise UserError(
                f"config.tokenizer.specials={specials_text!r}, but {path} is a gptjax .bpe file, "
                f"which carries its own special tokens: set {_SPECIALS_FLAG}=''."
            )
        return tk.load(path)
    specials = tk.parse_specials(specials_text, _SPECIALS_FLAG)
    if not specials:
        # A rank file has no special token, so none would separate the documents; and a rank
        # file exported from a gptjax vocabulary leaves 256..259 unused, for the specials.
        suggestion = tk.suggest_specials(tk.read_ranks(path).values())
        if suggestion is None:  # ranks with many gaps: the loader refuses, naming the first
            tk.load_tiktoken(path, pattern)
        raise UserError(
            f"{path} is a tiktoken rank file, which carries no special tokens: name them with "
            f"{_SPECIALS_FLAG}='{suggestion}'."
        )
    tok = tk.load_tiktoken(path, pattern, specials)
    if tok.separator is None:
        raise UserError(
            f"config.tokenizer.specials={specials_text!r} names several special tokens and none "
            f"is <|endoftext|> or <eos>, so none is the document separator: name it "
            "<|endoftext|> (or give one special token only)."
        )
    return tok


def prepare_tokenizer(
    config: ml_collections.ConfigDict, train_docs: list[str], run_dir: RunDir
) -> tk.Tokenizer:
    """The run's tokenizer: the run directory's copy if present, else loaded or trained, saved.

    ``tokenizer.specials`` names the special tokens of a rank file (``NAME=ID,...``; GPT-2:
    ``<|endoftext|>=50256``), which carries none; it is "" for a ``.bpe`` file or a trained
    tokenizer, which have their own. Documents are joined by the tokenizer's ``separator``.

    Raises:
      UserError: the tokenizer file is missing or unreadable, ``tokenizer.specials`` does not fit
        it, or the training split cannot train a tokenizer of ``tokenizer.vocab_size`` tokens.
    """
    if run_dir.tokenizer_path.is_file():
        with as_user_error():  # a copy damaged by hand
            return run_dir.load_tokenizer()
    if config.tokenizer.path:
        with as_user_error():
            tok = _load_tokenizer_file(
                config.tokenizer.path, config.tokenizer.pattern, config.tokenizer.specials
            )
    elif config.tokenizer.specials:
        raise UserError(
            f"config.tokenizer.specials={config.tokenizer.specials!r}, but this run trains its "
            f"tokenizer, which has gptjax's own special tokens (<pad> <unk> <bos> <eos>): set "
            f"{_SPECIALS_FLAG}='' (specials are for a tiktoken rank file in tokenizer.path)."
        )
    else:
        print(
            f"training a {config.tokenizer.vocab_size}-token BPE tokenizer "
            f"(pattern {config.tokenizer.pattern}) on the training split...",
            flush=True,
        )
        with as_user_error():
            tok = tk.train(
                train_docs, vocab_size=config.tokenizer.vocab_size, pattern=config.tokenizer.pattern
            )
    run_dir.save_tokenizer(tok)
    return tok


def check_vocab(tok: tk.Tokenizer, model_config: GPTConfig, where: str) -> None:
    """A clear error when the tokenizer has ids the model's embedding cannot hold."""
    if tok.vocab_size > model_config.vocab_size:
        raise UserError(
            f"the tokenizer ({where}) has {tok.vocab_size} ids but model.vocab_size is "
            f"{model_config.vocab_size}: set --config.model.vocab_size={tok.vocab_size} or more "
            "(in configs that tie it to tokenizer.vocab_size, set "
            f"--config.tokenizer.vocab_size={tok.vocab_size}), or use a smaller tokenizer."
        )


def prepare_data(
    config: ml_collections.ConfigDict, model_config: GPTConfig, run_dir: RunDir
) -> PreparedData:
    """Loads the corpus, gets the tokenizer, encodes both splits (cached) and checks sizes.

    Args:
      config: the training config (``data`` and ``tokenizer`` sections are read).
      model_config: the model, for the vocabulary and block size checks.
      run_dir: the run directory (the tokenizer is saved there).

    Raises:
      UserError: a missing or unreadable corpus, a tokenizer that does not fit the model, a split
        shorter than one block.
    """
    with as_user_error():
        docs = data.load_documents(config.data.corpus)
        train_docs, val_docs = data.split_documents(docs, config.data.val_fraction)
    tok = prepare_tokenizer(config, train_docs, run_dir)
    where = config.tokenizer.path or "trained for this run"
    check_vocab(tok, model_config, f"{where}, saved as {run_dir.tokenizer_path}")
    # The encoded-corpus cache is keyed by the tokenizer file's bytes.
    tok_hash = hashlib.sha256(run_dir.tokenizer_path.read_bytes()).hexdigest()
    train_ids, val_ids = data.encoded_splits(train_docs, val_docs, tok, tok_hash)
    with as_user_error():
        data.check_split_size("training", train_ids, model_config.block_size, config.data.corpus)
        data.check_split_size("validation", val_ids, model_config.block_size, config.data.corpus)
    lengths = np.zeros((model_config.vocab_size,), np.int32)
    lengths[: tok.vocab_size] = data.token_byte_lengths(tok)
    return PreparedData(tok, train_ids, val_ids, lengths)
