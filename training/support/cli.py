"""`shopml train support` and `shopml evaluate support`."""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from training.flags import add_flags, flag_values
from training.support.config import EVALUATE_FLAGS, PROFILES, TRAIN_FLAGS, SupportConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _common(parser: argparse.ArgumentParser, flags: tuple[str, ...]) -> None:
    parser.add_argument(
        "--profile",
        choices=list(PROFILES),
        default="quick",
        help="training profile (default quick)",
    )
    parser.add_argument(
        "--bitext", type=Path, help="Bitext CSV (default: ../shared/datasets, else the committed sample)"
    )
    parser.add_argument(
        "--abcd", type=Path, help="ABCD KB folder (default: ../shared/datasets, else the committed sample)"
    )
    parser.add_argument(
        "--feedback",
        type=Path,
        action="append",
        default=[],
        help="extra feedback JSON-lines file (repeatable)",
    )
    parser.add_argument("--threads", type=int, help="CPU threads (default 2)")
    parser.add_argument("--report-dir", type=Path, help="write metrics.json, report.md, report.png here")
    # Every other setting as a flag, named, typed and explained by SupportConfig itself.
    add_flags(parser, SupportConfig, flags, defaults=PROFILES["quick"], defaults_from="in the quick profile")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, EVALUATE_FLAGS + TRAIN_FLAGS)
    parser.add_argument("--no-generator", action="store_true", help="retrieve and rank only")
    parser.add_argument("--no-promote", action="store_true", help="save the model but do not promote it")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, EVALUATE_FLAGS)
    parser.add_argument(
        "--tag", help="support model to evaluate (default: the promoted one, else the latest)"
    )
    parser.add_argument("--no-generator", action="store_true", help="skip generation (faster)")


def _config(args: argparse.Namespace) -> SupportConfig:
    given = {k: v for k, v in flag_values(args, SupportConfig).items() if k != "profile"}
    config = SupportConfig.for_profile(args.profile, num_threads=args.threads, **given)
    if args.no_generator:
        config = replace(config, generator=None)
    return config


def _print_report(report, corpus, decision: dict | None = None) -> None:
    keys = (
        "rows_in", "rows_clean", "rows_duplicate", "rows_rejected", "articles", "feedback_rows",
        "feedback_rejected", "train_rows", "validation_rows", "test_rows", "near_duplicate_threshold",
        "leaked_test_rows_random_split", "leaked_test_rows", "leak_by_threshold",
    )  # fmt: skip
    print("corpus:", json.dumps({k: corpus.stats[k] for k in keys}))
    print(report.table)
    if decision:
        print("promotion:", json.dumps(decision))


def train(args: argparse.Namespace) -> int:
    import torch

    from data_contracts.settings import Settings
    from training.support import training_steps
    from training.support.artifact import save_support_model

    config = _config(args)
    torch.set_num_threads(config.num_threads)
    settings = Settings.from_env()
    started = time.perf_counter()
    corpus = training_steps.support_corpus(
        settings, config, bitext=args.bitext, abcd=args.abcd, extra_feedback=args.feedback
    )
    model, corpus = training_steps.train_support_model(settings, config, corpus, bitext=args.bitext)
    train_s = time.perf_counter() - started
    report = training_steps.support_evaluation(model, corpus)
    model.metrics = {**report.metrics, "train_seconds": round(train_s, 1)}
    incumbent = training_steps.incumbent_report(settings, corpus, config)
    tag = save_support_model(model, settings)
    decision = {"tag": tag, "promoted": False, "reason": "--no-promote"}
    if not args.no_promote:
        decision = training_steps.promote_support_model(tag, report, incumbent, settings)
    if incumbent is not None:
        decision["incumbent"] = {
            k: incumbent.metrics.get(k) for k in ("ranker_r@1", "retrieval_recall@5", "downvoted_chosen_rate")
        }
    _print_report(report, corpus, decision)
    print(f"trained in {train_s:.0f} s; saved {tag}")
    report_dir = args.report_dir or Path(settings.data_dir) / "support" / "reports" / tag.replace(":", "-")
    training_steps.write_report(report, report_dir, {"corpus": corpus.stats, "promotion": decision})
    print(f"report: {report_dir}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    import torch

    from data_contracts.settings import Settings
    from training.support import training_steps
    from training.support.artifact import load_support_model

    config = _config(args)
    torch.set_num_threads(config.num_threads)
    settings = Settings.from_env()
    model = load_support_model(args.tag, settings, with_generator=not args.no_generator)
    # The model's own split settings rebuild the same held-out rows it was evaluated on.
    corpus = training_steps.support_corpus(
        settings, model.config, model.retriever.encoder, args.bitext, args.abcd, extra_feedback=args.feedback
    )
    report = training_steps.evaluate_model(
        model,
        corpus,
        limit=config.eval_limit,
        generation_limit=config.generation_eval_limit,
        latency_queries=config.latency_queries,
    )
    _print_report(report, corpus)
    report_dir = (
        args.report_dir or Path(settings.data_dir) / "support" / "reports" / f"eval-{int(time.time())}"
    )
    training_steps.write_report(report, report_dir, {"tag": model.tag, "corpus": corpus.stats})
    print(f"report: {report_dir}")
    return 0
