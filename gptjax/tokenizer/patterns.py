"""Pre-tokenization patterns (tutorial part 1: byte-level BPE).

Before BPE sees any bytes, a regex cuts the text into chunks ("pre-tokens"): words with their
leading space, runs of digits, punctuation, whitespace. Merges never cross a chunk boundary, so
" the" and "the." stay apart and the vocabulary is not wasted on "e." or "d the".

The two patterns are copied verbatim from tiktoken (``tiktoken_ext/openai_public.py``): GPT-2's
``r50k_pat_str`` and GPT-4's ``cl100k_base`` pattern. The Python ``regex`` module understands
their possessive quantifiers (``++``) and Unicode classes, and its ``\\s`` is Unicode White_Space
as in Rust, so both engines cut every text identically (the parity tests check it). "none" does
not cut at all: the whole text is one chunk, as in the tutorial's first naive BPE.
"""

import functools

import regex

GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
# One chunk holding the whole (non-empty) text; tiktoken's engine accepts it too.
NONE_PATTERN = r"""[\s\S]+"""

PATTERNS = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN, "none": NONE_PATTERN}


def check_pattern(name: str) -> str:
    """Returns ``name`` if it is a known pattern name, else raises a ValueError saying which are."""
    if name not in PATTERNS:
        raise ValueError(
            f"unknown pre-tokenization pattern {name!r}: use one of {', '.join(PATTERNS)} "
            "(gpt2 = GPT-2's regex, gpt4 = cl100k's regex, none = no split)"
        )
    return name


@functools.cache
def compiled(name: str) -> regex.Pattern:
    """The compiled regex for a pattern name (``gpt2``, ``gpt4`` or ``none``)."""
    return regex.compile(PATTERNS[check_pattern(name)])


def split(text: str, name: str) -> list[str]:
    """Cuts ``text`` into pre-token chunks.

    >>> split("Hello world's 2024!!", "gpt2")
    ['Hello', ' world', "'s", ' 2024', '!!']
    >>> split("Hello world's 2024!!", "gpt4")
    ['Hello', ' world', "'s", ' ', '202', '4', '!!']
    """
    return compiled(name).findall(text)
