"""Tokenizer speed (tutorial part 1): training, the pure reference encoder, bulk encoding.

  GPTJAX_DATA_DIR=../shared/data python experiments/benchmarks/bench_tokenizer.py

Prints, per corpus: seconds to train vocab 4096 (gpt4 pattern), the pure encoder's MB/s, and
bulk ``encode_corpus`` MB/s next to tiktoken's own ``encode_ordinary`` on the same vocabulary.
Targets on a 2-core machine: train Tiny Shakespeare < 1.5 s, Les Misérables < 5 s; pure encoder
>= 2 MB/s; encode_corpus at tiktoken's speed. Best of ``--repeat`` runs, to damp noise from
other processes.
"""

import argparse
import os
import time
from pathlib import Path

from gptjax import tokenizer as tk


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--pattern", default="gpt4")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = os.environ.get("GPTJAX_DATA_DIR")
    if not root:
        parser.error("set GPTJAX_DATA_DIR to the shared data folder")
    print(
        f"{'corpus':<24}{'MB':>6}{'train s':>9}{'pure MB/s':>11}{'bulk MB/s':>11}"
        f"{'tiktoken MB/s':>15}"
    )
    for name in ("tinyshakespeare.txt", "hugo_miserables_fr.txt"):
        text = (Path(root) / name).read_text(encoding="utf-8")
        mb = len(text.encode("utf-8")) / 1e6
        train_s = best_time(lambda t=text: tk.train(t, args.vocab_size, args.pattern), args.repeat)
        tok = tk.train(text, args.vocab_size, args.pattern)

        def pure(tok=tok, text=text):
            tok.__dict__.pop("_chunk_cache", None)  # a cold cache: no help from earlier runs
            tk.encode_ordinary(tok, text)

        pure_s = best_time(pure, args.repeat)
        bulk_s = best_time(lambda t=text, k=tok: tk.encode_corpus(k, t), args.repeat)
        enc = tk.to_tiktoken(tok)
        raw_s = best_time(lambda t=text, e=enc: e.encode_ordinary(t), args.repeat)
        print(
            f"{name:<24}{mb:>6.2f}{train_s:>9.2f}{mb / pure_s:>11.1f}{mb / bulk_s:>11.1f}"
            f"{mb / raw_s:>15.1f}"
        )


if __name__ == "__main__":
    main()
