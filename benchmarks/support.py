"""Support model benchmark: quality on the held-out split and reply latency; one JSON line.

    python benchmarks/support.py [--tag support:...] [--threads 2] [--replies 30] [--generate-replies 10] [--candidates N]

Loads the promoted support model (or --tag) from the model store, rebuilds its corpus split,
evaluates it, then times replies on held-out questions: the retrieve-and-rank path, and the
path with generation of exactly 60 new tokens in each of the model's ``generator_candidates``
replies (4 by default; ``--candidates``), written in one batched decode; ``generate_one_*``
writes one reply the same way, which shows what the batch costs. The unsuffixed figures are what the service
runs on a CPU: an fp32 ranker and an int8 generator (per-channel dynamic quantisation of its
linear layers); ``generate_fp32_*`` is the unquantised generator. ``*_int8`` are the ranker's
figures with its linear layers in int8 too (not served: its scores move, which shifts the
handover threshold's meaning).
``calibration`` times a 1024x1024 fp32 matrix product and a 576x1536 matrix-vector product
in the same process, so figures from different machines can be compared. Targets (DESIGN.md):
ranker R@1 >= 0.95, rank p50 <= 100 ms, generate p50 <= 1.5 s.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed_replies(model, questions: list[str], use_generator: bool, exact: bool = True) -> list[float]:
    from training.support.runtime import InMemoryStore, SupportRuntime

    # The support path itself (retrieve, generate, rank), not routed: what its figures name.
    pipeline = SupportRuntime(
        model, InMemoryStore(), use_generator=use_generator, exact_generation=exact, route=False
    )
    pipeline.reply("warm-up", questions[0])  # first call pays one-off allocations
    times = []
    for i, question in enumerate(questions):
        start = time.perf_counter()
        pipeline.reply(f"bench-{i}", question)
        times.append((time.perf_counter() - start) * 1000)
    return times


def calibration() -> dict:
    """How fast this machine is today, in the two shapes the support model lives on."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    x, w = torch.randn(1, 576), torch.randn(1536, 576)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(30):
        a @ b
    matmul_s = (time.perf_counter() - start) / 30
    start = time.perf_counter()
    for _ in range(1000):
        torch.nn.functional.linear(x, w)
    gemv_s = (time.perf_counter() - start) / 1000
    return {"matmul_gflops": round(2 * 1024**3 / matmul_s / 1e9, 1), "gemv_us": round(gemv_s * 1e6, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", help="support model (default: the promoted one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--replies", type=int, default=30, help="timed retrieve-and-rank replies")
    parser.add_argument("--generate-replies", type=int, default=10, help="timed replies with generation")
    parser.add_argument("--new-tokens", type=int, default=60)
    parser.add_argument(
        "--candidates", type=int, help="generated candidates per reply (default: the model's)"
    )
    parser.add_argument(
        "--eval-limit", type=int, help="held-out rows for the ranker figures (default: the model's)"
    )
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from data_contracts.settings import Settings
    from training.support import training_steps
    from training.support.artifact import load_support_model
    from training.support.evaluate import held_out_sample, ranker_figures
    from training.support.metrics import percentiles

    settings = Settings.from_env()
    started = time.perf_counter()
    model = load_support_model(args.tag, settings)
    load_s = time.perf_counter() - started
    overrides = {"num_threads": args.threads, "max_new_tokens": args.new_tokens}
    if args.candidates is not None:
        overrides["generator_candidates"] = args.candidates
    model = replace(model, config=replace(model.config, **overrides))
    corpus = training_steps.support_corpus(settings, model.config, model.retriever.encoder)
    report = training_steps.evaluate_model(model, corpus, limit=args.eval_limit, latency_queries=0)
    questions = corpus.test()["question"].to_list()

    rank = percentiles(timed_replies(model, questions[: args.replies], use_generator=False))
    ranked = ("ranker_r@1", "handover_rate", "rouge_l_ranked", "chosen_intent_accuracy")
    int8_ranker = copy.deepcopy(model.ranker).quantize()
    with_int8 = replace(model, ranker=int8_ranker)
    _, int8_figures = ranker_figures(
        with_int8, corpus, held_out_sample(corpus, model.config, args.eval_limit)
    )
    rank_int8 = percentiles(timed_replies(with_int8, questions[: args.replies], use_generator=False))
    del with_int8, int8_ranker
    result = {
        "benchmark": "support",
        "tag": model.tag,
        "calibration": calibration(),
        **{k: report.metrics[k] for k in ("retrieval_recall@1", "retrieval_recall@5", *ranked, "rouge_l")},
        **{f"{k}_int8": int8_figures[k] for k in ranked},
        "test_rows": report.metrics["test_rows"],
        "ranked_rows": report.metrics["ranked_rows"],
        "leaked_test_rows": corpus.stats["leaked_test_rows"],
        "leaked_test_rows_random_split": corpus.stats["leaked_test_rows_random_split"],
        "rank_p50_ms": round(rank["p50"], 1),
        "rank_p95_ms": round(rank["p95"], 1),
        "rank_int8_p50_ms": round(rank_int8["p50"], 1),
        "rank_int8_p95_ms": round(rank_int8["p95"], 1),
        "ranker_precision": "fp32 (as served)",
        "model_load_s": round(load_s, 2),
    }
    if model.generator is not None and args.generate_replies:
        gen_questions = questions[: args.generate_replies]
        fp32 = percentiles(timed_replies(model, gen_questions, use_generator=True))
        model.generator.quantize()
        int8 = percentiles(timed_replies(model, gen_questions, use_generator=True))
        one = replace(model, config=replace(model.config, generator_candidates=1))
        int8_one = percentiles(timed_replies(one, gen_questions, use_generator=True))
        result.update(
            {
                "generate_p50_ms": round(int8["p50"], 1),
                "generate_p95_ms": round(int8["p95"], 1),
                "generate_fp32_p50_ms": round(fp32["p50"], 1),
                "generate_fp32_p95_ms": round(fp32["p95"], 1),
                "generate_one_p50_ms": round(int8_one["p50"], 1),
                "generate_one_p95_ms": round(int8_one["p95"], 1),
                "generator_candidates": model.config.generator_candidates,
                "generator_lora": model.generator.lora,
                "generator_precision": "int8 (as served on a CPU)",
                "new_tokens": args.new_tokens,
            }
        )
    result.update(
        {
            "threads": args.threads,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "shared_machine": True,
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
