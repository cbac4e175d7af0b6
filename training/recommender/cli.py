"""``shopml train recommender`` and ``shopml evaluate recommender``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from data_contracts.schemas import ITEM_EVENT_TYPES
from data_contracts.settings import Settings, use_model_store
from training.flags import add_flags, flag_values
from training.recommender.data import DEFAULT_EVENT_TYPES, PROTOCOLS
from training.recommender.settings import PROFILES, TRAIN_FLAGS, Features, TrainSettings


def _event_types(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in ITEM_EVENT_TYPES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown event type(s) {', '.join(unknown)}; the warehouse has {', '.join(ITEM_EVENT_TYPES)}"
        )
    return names


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", type=Path, help="SASRec-style file: 'user item' per line, in time order")
    source.add_argument(
        "--warehouse",
        nargs="?",
        const="",
        type=Path,
        help="train from the DuckDB warehouse (the default source); a path names another warehouse file "
        "than the configured one (SHOPML_WAREHOUSE)",
    )
    parser.add_argument(
        "--item-text", type=Path, help="tab-separated 'item_id<TAB>text' file for text features"
    )
    parser.add_argument(
        "--item-categories",
        type=Path,
        help="JSON file of item id -> list of categories (e.g. a category path and a brand), "
        "in place of the catalog's one category per item; use with --category",
    )
    parser.add_argument(
        "--positives",
        type=_event_types,
        help=f"warehouse event types that are targets, comma-separated (default {','.join(DEFAULT_EVENT_TYPES)})",
    )
    parser.add_argument(
        "--context",
        type=_event_types,
        default=(),
        help="warehouse event types that are inputs only, never targets, e.g. view when purchases are the goal",
    )
    parser.add_argument(
        "--protocol",
        choices=[*PROTOCOLS, "both"],
        help="evaluation split: leave-one-out (each user's last positive), time (a global split: trained "
        "before a moment, tested after it) or both, each with its own model (default: both for the "
        "warehouse, leave-one-out for a --data file, which has no times)",
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    _data_arguments(parser)
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="quick",
        help="training preset (default quick); auto chooses shape, length, loss and epochs from the "
        "data within --max-minutes (30 by default)",
    )
    # Every training setting as a flag, named, typed and explained by TrainSettings itself.
    add_flags(
        parser,
        TrainSettings,
        TRAIN_FLAGS,
        defaults=PROFILES["quick"].train,
        defaults_from="in the quick profile",
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default 2)")
    parser.add_argument(
        "--text", action="store_true", help="use text features (from --item-text or the catalog)"
    )
    parser.add_argument("--category", action="store_true", help="use the catalog category feature")
    parser.add_argument("--price", action="store_true", help="use the catalog price-bucket feature")
    parser.add_argument("--no-save", action="store_true", help="do not save the model to the BentoML store")
    parser.add_argument(
        "--promote",
        action="store_true",
        help="promote the new model if it beats the best baseline and the current one on validation; "
        "when neither beats the best baseline, that baseline is promoted and served",
    )


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    _data_arguments(parser)
    parser.add_argument("--model", default="promoted", help="model tag in the store, or 'promoted' (default)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default 2)")


def _load_data(args: argparse.Namespace, settings: Settings):
    from training.recommender.data import build_dataset

    if args.data is not None:
        return build_dataset(args.data, args.item_text, args.positives, args.context, args.item_categories)
    from data_contracts.warehouse import connect

    path = args.warehouse or settings.warehouse_path  # a bare --warehouse is the configured one
    if not Path(path).exists():
        raise SystemExit(f"no warehouse at {path}; run the ingest first or pass --data FILE")
    conn = connect(path, read_only=True)
    try:
        return build_dataset(conn, args.item_text, args.positives, args.context, args.item_categories)
    finally:
        conn.close()


def _protocols(args: argparse.Namespace) -> list[str]:
    """The protocols to report, the first one the model that is saved."""
    chosen = args.protocol or ("leave-one-out" if args.data is not None else "both")
    return list(PROTOCOLS) if chosen == "both" else [chosen]


def train(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    home = use_model_store(settings)
    import torch

    torch.set_num_threads(args.threads)
    from training.recommender.artifact import save_to_store
    from training.recommender.promotion import promote_if_better
    from training.recommender.settings import settings_for
    from training.recommender.training import train as train_recommender

    data = _load_data(args, settings)
    flags = flag_values(args, TrainSettings)
    flags.setdefault("output_dir", settings.data_dir / "recommender")
    train_settings = settings_for(args.profile, num_threads=args.threads, **flags)
    features = Features(category=args.category, price=args.price, text=args.text)
    protocols = _protocols(args)
    results = {}
    for protocol in protocols:
        # Each protocol's model keeps its checkpoints and logs apart; each gets the whole cap.
        own = replace(train_settings, output_dir=Path(train_settings.output_dir) / protocol)
        results[protocol] = train_recommender(
            data,
            args.profile,
            features,
            own if len(protocols) > 1 else train_settings,
            given=flags,
            protocol=protocol,
        )
    from pytorch_lightning.utilities import rank_zero_only

    if rank_zero_only.rank != 0:
        return 0
    result = results[protocols[0]]
    metrics = result.artifact.metrics
    # The other protocol's model is trained for its figures only; the first one is saved.
    for protocol in protocols[1:]:
        metrics[protocol.replace("-", "_")] = results[protocol].artifact.metrics
    if not args.no_save:
        tag = save_to_store(result.artifact, labels={"profile": args.profile}, home=home)
        metrics["tag"] = tag
        if args.promote:
            metrics["promotion"] = promote_if_better(tag, data, home=home)
    # One JSON line last, after Lightning's progress output.
    print(json.dumps(metrics))
    return 0


def evaluate(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    home = use_model_store(settings)
    import torch

    torch.set_num_threads(args.threads)
    from training.recommender.artifact import load_from_store
    from training.recommender.data import make_split, split_fingerprint
    from training.recommender.evaluation import evaluate_with_baselines, vocabulary_scorer
    from training.recommender.inference import Recommender
    from training.recommender.promotion import promoted_tag

    tag = promoted_tag(home=home) if args.model == "promoted" else args.model
    if tag is None:
        print("no promoted recommender yet; pass --model TAG", file=sys.stderr)
        return 2
    artifact = load_from_store(tag, home=home)
    data = _load_data(args, settings)
    protocol = args.protocol or "leave-one-out"
    if protocol == "both":
        print("evaluate takes one protocol: leave-one-out or time", file=sys.stderr)
        return 2
    split = make_split(data, protocol)
    n = data.num_items
    scorer = vocabulary_scorer(Recommender(artifact.model, artifact.items), data.items)
    metrics = evaluate_with_baselines(
        scorer, split.train, split.test, n, valid=split.valid, train_positive=split.train_positive
    )
    metrics["tag"] = artifact.tag
    metrics["protocol"] = split.describe()
    metrics["split"] = split_fingerprint(data, protocol=protocol)
    # One JSON line last, after Lightning's progress output.
    print(json.dumps(metrics))
    return 0
