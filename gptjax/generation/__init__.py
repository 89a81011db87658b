"""Text generation, tutorial part 10.

sampling.py      greedy, temperature, top-k, top-p: pure functions over logits
decode.py        KV-cache prefill and the compiled decode loop, the sliding window
text.py          from a prompt to text: encoding, streaming, UTF-8 across tokens
"""
