"""Recommender quality and training time on a SASRec-style file; prints one JSON line.

    python benchmarks/recommender.py --data ../shared/datasets/ml-1m/ml-1m-sasrec-prefix.txt

Leave-one-out (last item test, second-last validation), full ranking over all items with
seen items filtered; sampled-100 is reported as a labelled extra. ``--item-text FILE``
(``item_id<TAB>text``) turns on the text features; ``--cold-start`` also withholds 5% of
the items from training and reports HR@10 on the test cases that target them, with and
without text features.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.hardware import cpu_has_native_bf16  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/datasets/ml-1m/ml-1m-sasrec-prefix.txt")
    p.add_argument("--item-text", type=Path, help="tab-separated item_id<TAB>text; turns on text features")
    p.add_argument(
        "--item-categories",
        type=Path,
        help="JSON item id -> list of categories (the Amazon files' *_item2attributes.json: category "
        "path and brand); turns on category features",
    )
    p.add_argument(
        "--cold-start", action="store_true", help="also measure HR@10 on items withheld from training"
    )
    p.add_argument("--cold-fraction", type=float, default=0.05)
    p.add_argument(
        "--cold-minutes",
        type=float,
        default=None,
        help="training cap of each cold-start run (default --max-minutes)",
    )
    p.add_argument(
        "--profile",
        choices=["auto", "quick", "full"],
        default="auto",
        help="auto (default): shape, length, loss and epochs chosen from the data and the cap "
        "(training/recommender/auto.py); a flag below overrides its one choice",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=30.0,
        help="wall-clock cap on training plus validation (default 30)",
    )
    p.add_argument(
        "--max-cpu-minutes",
        type=float,
        default=None,
        help="CPU-time cap (all threads): stands in for an idle machine when the machine is shared",
    )
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--loss", choices=["ce", "sampled_softmax", "gbce", "bce"], default=None)
    p.add_argument(
        "--num-negatives", type=int, default=None, help="per batch (sampled_softmax) or per sequence (gbce)"
    )
    p.add_argument(
        "--negative-sampling",
        choices=["uniform", "popularity"],
        default=None,
        help="where sampled_softmax draws negatives; logQ corrects popularity sampling",
    )
    p.add_argument("--gbce-t", type=float, default=None, help="gBCE calibration (gSASRec: 0.75)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine"],
        default=None,
        help="cosine decays to 0 at --max-epochs",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "bf16-mixed", "32-true"],
        default="bf16-mixed" if cpu_has_native_bf16() else "auto",
        help="auto: bf16 on a GPU, fp32 on a CPU; bf16-mixed (the default where the CPU has "
        "AVX512-BF16 or AMX) makes CPU steps about 1.5x faster",
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-len", type=int, default=None)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--blocks", type=int, default=None)
    p.add_argument("--heads", type=int, default=None, help="attention heads per block")
    p.add_argument("--ffn-mult", type=int, default=None, help="feed-forward width / hidden")
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument(
        "--window-stride",
        type=int,
        default=None,
        help="older windows of histories longer than max_len; 0: off",
    )
    p.add_argument("--patience", type=int, default=None)
    p.add_argument(
        "--prior-neighbours",
        type=int,
        default=None,
        help="followers per item in the co-occurrence prior added after training (0: none; default 64)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true", help="show Lightning's progress bar on stderr")
    return p.parse_args(argv)


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0  # Linux reports KiB


def given(**values) -> dict:
    """The values a flag set (None: left to the profile)."""
    return {k: v for k, v in values.items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from training.recommender.data import build_dataset
    from training.recommender.settings import Features, settings_for
    from training.recommender.training import TrainResult, cold_start_hr
    from training.recommender.training import train as train_recommender

    if not args.data.exists():
        print(f"no data file at {args.data}", file=sys.stderr)
        return 2
    data = build_dataset(args.data, args.item_text, item_categories=args.item_categories)
    overrides = given(
        max_len=args.max_len,
        hidden=args.hidden,
        num_blocks=args.blocks,
        num_heads=args.heads,
        ffn_mult=args.ffn_mult,
        dropout=args.dropout,
    )
    # Training values set by a flag: the auto profile keeps them instead of choosing.
    train_given = given(
        loss=args.loss,
        num_negatives=args.num_negatives,
        negative_sampling=args.negative_sampling,
        gbce_t=args.gbce_t,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        batch_size=args.batch_size,
        max_epochs=args.max_epochs,
        window_stride=args.window_stride,
        patience=args.patience,
        prior_neighbours=args.prior_neighbours,
    )
    work = Path(tempfile.mkdtemp(prefix="shopml-rec-bench-"))

    def run(text: bool, cold: float, minutes: float, name: str) -> TrainResult:
        settings = settings_for(
            args.profile,
            **train_given,
            precision=args.precision,
            max_minutes=minutes,
            max_cpu_minutes=args.max_cpu_minutes,
            num_threads=args.threads,
            seed=args.seed,
            output_dir=work / name,
            progress_bar=args.progress,
        )
        return train_recommender(
            data,
            args.profile,
            Features(text=text, category=args.item_categories is not None),
            settings,
            overrides,
            cold_fraction=cold,
            given=train_given,
        )

    result = run(args.item_text is not None, 0.0, args.max_minutes, "main")
    m = result.artifact.metrics
    three = ("hr@10", "ndcg@10", "mrr")
    line = {
        "hr@10": m["hr@10"],
        "ndcg@10": m["ndcg@10"],
        "mrr": m["mrr"],
        "sampled100": m["sampled100"],
        "baselines": {name: {k: b[k] for k in three} for name, b in m["baselines"].items()},
        # The trained model's scores plus the co-occurrence prior, weighted as validation chose
        # (0: the model alone); the model without it on the same test cases beside it.
        "prior": {k: v for k, v in m["prior"].items() if k != "valid_ndcg@10_by_weight"}
        if "prior" in m
        else None,
        "train_seconds": round(result.train_seconds, 1),
        # CPU seconds of the training process: on a shared machine, train_seconds / this
        # shows how much of the two cores the run actually got.
        "train_cpu_seconds": round(result.train_cpu_seconds, 1),
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "stop_reason": result.stop_reason,
        "coverage": m["coverage"],
        "text_features": args.item_text is not None,
        "category_features": args.item_categories is not None,
        "data": str(args.data),
        "config": result.artifact.model.config.to_dict() | {"item_text": None},
        "profile": args.profile,
        "chosen": m.get("auto"),
        "train_settings": {
            k: result.artifact.extra["train_settings"][k]
            for k in ("loss", "lr", "lr_schedule", "batch_size", "max_epochs", "window_stride", "patience")
        },
        "precision": args.precision,
        "threads": args.threads,
    }
    line["config"].pop("item_text")
    if args.cold_start:
        minutes = args.cold_minutes or args.max_minutes
        cold: dict = {"fraction": args.cold_fraction, "train_minutes_cap": minutes}
        if args.item_text is not None:
            with_text = run(True, args.cold_fraction, minutes, "cold-text")
            figures = cold_start_hr(with_text.artifact.model, with_text.split)
            cold["hr@10_text"] = figures["hr@10"]
            cold["cases"] = figures["cases"]
        else:
            cold["hr@10_text"] = None  # needs --item-text
        without = run(False, args.cold_fraction, minutes, "cold-no-text")
        figures = cold_start_hr(without.artifact.model, without.split)
        cold["hr@10_no_text"] = figures["hr@10"]
        cold["cases"] = figures["cases"]
        line["cold_start"] = cold
    line["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
