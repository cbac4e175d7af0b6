"""Decode speed of the default generator on a CPU: eager against traced decode steps; one JSON line.

    python benchmarks/decode.py [--threads 2] [--decode-threads 2] [--candidates 4] [--repeats 5]

SmolLM2-135M-Instruct (the package's GGUF, converted once into ``--cache``), int8 as served on
a CPU, writes ``--candidates`` replies of exactly 60 new tokens in one batched pass to a
support prompt of about 280 tokens (a dialogue, three passages and a product fact, as the
assistant builds it). The two decoders share the weights and alternate in one process;
medians of ``--repeats`` runs each, and both must write the same tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PASSAGES = [
    "To return an item, sign in to your account, open Orders, choose the item and select Return. "
    "Print the prepaid label and drop the parcel at any post office within 30 days of delivery. "
    "Refunds reach the original payment method within 5 to 7 business days after we receive it.",
    "Orders can be cancelled free of charge until they are dispatched. Open Orders, choose the order "
    "and select Cancel; once dispatched, the order can be returned instead.",
    "Standard delivery takes 3 to 5 business days; express delivery takes 1 to 2 business days. "
    "Tracking links are sent by email as soon as the parcel leaves our warehouse.",
]
TURNS = [
    ("user", "hi, I bought running shoes last week"),
    ("assistant", "Hello! How can I help with your order?"),
    ("user", "they are too small, how do I send them back and when do I get my money?"),
]
FACTS = ["Trail running shoe (item 4411): 89.00 EUR, in stock, brand Northpeak"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch threads (the prompt)")
    p.add_argument("--decode-threads", type=int, default=2, help="torch threads of a decode step")
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--new-tokens", type=int, default=60)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cache", type=Path, default=ROOT / "data" / "support" / "generator-base")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from training.support.config import DEFAULT_GENERATOR
    from training.support.decoding import LlamaDecoder
    from training.support.generator import build_prompt, load_base

    model, tokenizer, _ = load_base(DEFAULT_GENERATOR, args.cache)
    prompt = build_prompt(tokenizer, TURNS, PASSAGES, FACTS)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    decoders = {
        "eager": LlamaDecoder(model, int8=True, decode_threads=args.decode_threads, traced=False),
        "traced": LlamaDecoder(model, int8=True, decode_threads=args.decode_threads),
    }
    n, new = args.candidates, args.new_tokens
    times: dict[str, list[float]] = {name: [] for name in decoders}
    rows = {}
    first = time.perf_counter()
    for name, decoder in decoders.items():  # warm-up; the traced decoder traces here
        rows[name] = decoder.sample(ids, n, new, seed=1, min_new_tokens=new)
    warm_up_s = time.perf_counter() - first
    for _ in range(args.repeats):
        for name, decoder in decoders.items():
            start = time.perf_counter()
            decoder.sample(ids, n, new, seed=1, min_new_tokens=new)
            times[name].append((time.perf_counter() - start) * 1000)
    p50 = {name: statistics.median(t) for name, t in times.items()}
    print(
        json.dumps(
            {
                "prompt_tokens": ids.shape[1],
                "candidates": n,
                "new_tokens": new,
                "eager_p50_ms": round(p50["eager"], 1),
                "traced_p50_ms": round(p50["traced"], 1),
                "ratio": round(p50["traced"] / p50["eager"], 3),
                "same_tokens": rows["eager"] == rows["traced"],
                "eager_ms": [round(t, 1) for t in times["eager"]],
                "traced_ms": [round(t, 1) for t in times["traced"]],
                "warm_up_s": round(warm_up_s, 1),
                "threads": args.threads,
                "decode_threads": args.decode_threads,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
