"""Online feature latency on SQLite and Redis, in-process; prints one JSON line.

    python benchmarks/features.py [--users 2000] [--events-per-user 60] [--reads 2000]

Builds a synthetic warehouse, writes the offline sources, applies and materialises each
environment (local: SQLite + file registry; production: Redis + PostgreSQL registry, in a
throw-away project and schema), then times the functions serving calls:
``OnlineSequences.read`` (one user), ``read_many`` (100 users in one call) and ``append``.
For comparison each store object also carries Feast's own SDK path
(``FeatureStore.get_online_features`` and ``FeatureStore.push``) as ``feast_*`` figures, and
``redis_raw_p99_ms_1`` is a bare redis-py HMGET of the same fields of the same keys.
Milliseconds; percentiles over all timed calls after a warm-up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_contracts.schemas import CATALOG_SCHEMA, EVENT_SCHEMA, conform  # noqa: E402
from data_contracts.settings import Settings  # noqa: E402
from features.config import FeatureStoreConfig, open_store  # noqa: E402
from features.offline import frames_connection, write_offline_sources  # noqa: E402
from features.online import open_sequences  # noqa: E402
from features.sources import USER_RECENT_ITEMS_PUSH  # noqa: E402
from features.store import apply, materialize  # noqa: E402

SEQUENCE_FEATURES = [
    "user_recent_items:recent_item_ids",
    "user_recent_items:recent_event_types",
    "user_recent_items:last_event_ts",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--items", type=int, default=5000)
    p.add_argument("--events-per-user", type=int, default=60, help="more than N, so sequences are full")
    p.add_argument("--sequence-length", type=int, default=50)
    p.add_argument("--reads", type=int, default=2000, help="timed one-user reads (and appends)")
    p.add_argument("--batch-reads", type=int, default=300, help="timed 100-user reads")
    p.add_argument("--feast-calls", type=int, default=300, help="timed calls of Feast's own SDK path")
    p.add_argument("--redis-url", default=None, help="default: the settings' redis_url")
    p.add_argument("--postgres-url", default=None, help="default: the settings' postgres_url")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def synthetic_warehouse(users: int, items: int, per_user: int, seed: int):
    rng = np.random.default_rng(seed)
    n = users * per_user
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    user_ids = np.repeat([f"u{u}" for u in range(users)], per_user)
    events = conform(
        pl.DataFrame(
            {
                "event_id": [f"e{k}" for k in range(n)],
                "ts": [t0 + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 86400 * 30, n))],
                "user_id": user_ids,
                "item_id": [f"i{k}" for k in rng.zipf(1.3, n) % items],
                "event_type": rng.choice(["view", "view", "view", "add_to_cart", "purchase"], n),
                "source": "benchmark",
            }
        ),
        EVENT_SCHEMA,
    )
    item_ids = [f"i{k}" for k in range(items)]
    catalog = conform(
        pl.DataFrame(
            {
                "item_id": item_ids,
                "title": item_ids,
                "category": "c",
                "brand": "b",
                "price": 1.0,
                "currency": "EUR",
                "in_stock": True,
                "updated_at": t0,
            }
        ),
        CATALOG_SCHEMA,
    )
    stats = events.group_by("item_id").agg(pl.len().cast(pl.Int64).alias("popularity"))
    return frames_connection(events, catalog, stats)


def timed(fn: Callable[[int], object], calls: int, warmup: int = 50) -> np.ndarray:
    for i in range(warmup):
        fn(i)
    out = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter_ns()
        fn(i)
        out[i] = (time.perf_counter_ns() - start) / 1e6
    return out


def pct(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)), 4)


def measure(config: FeatureStoreConfig, warehouse, args) -> tuple[dict, object, object, object]:
    # Feast prints its progress on stdout; keep stdout for the one JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        write_offline_sources(warehouse, config.offline_dir, config.sequence_length)
        store = open_store(config)
        apply(store, config)
        materialize(store, config)
    sequences = open_sequences(store, config)
    rng = random.Random(args.seed)
    users = [f"u{u}" for u in range(args.users)]
    one = [rng.choice(users) for _ in range(args.reads + 50)]
    batches = [rng.sample(users, 100) for _ in range(args.batch_reads + 50)]
    # A full sequence must come back, or the figures would be for empty reads.
    assert len(sequences.read(one[0])) == config.sequence_length

    read_1 = timed(lambda i: sequences.read(one[i]), args.reads)
    read_100 = timed(lambda i: sequences.read_many(batches[i]), args.batch_reads)
    feast_1 = timed(
        lambda i: store.get_online_features(
            features=SEQUENCE_FEATURES, entity_rows=[{"user_id": one[i]}]
        ).to_dict(),
        args.feast_calls,
    )
    feast_100 = timed(
        lambda i: store.get_online_features(
            features=SEQUENCE_FEATURES, entity_rows=[{"user_id": u} for u in batches[i]]
        ).to_dict(),
        args.feast_calls // 3,
    )
    append = timed(lambda i: sequences.append(one[i], f"i{i % args.items}", "rec_click"), args.reads)

    def feast_push(i: int) -> None:
        # Feast's own real-time write of one row (not safe for concurrent clicks; for comparison).
        now = datetime.now(UTC)
        store.push(
            USER_RECENT_ITEMS_PUSH,
            pd.DataFrame(
                {
                    "user_id": [one[i]],
                    "recent_item_ids": [["i1", "i2"]],
                    "recent_event_types": [["view", "view"]],
                    "last_event_ts": [now],
                    "event_timestamp": [now],
                }
            ),
        )

    push = timed(feast_push, args.feast_calls // 3, warmup=10)
    figures = {
        "p50_ms_1": pct(read_1, 50),
        "p99_ms_1": pct(read_1, 99),
        "p50_ms_100": pct(read_100, 50),
        "p99_ms_100": pct(read_100, 99),
        "append_p50_ms": pct(append, 50),
        "append_p99_ms": pct(append, 99),
        "feast_sdk_p50_ms_1": pct(feast_1, 50),
        "feast_sdk_p99_ms_1": pct(feast_1, 99),
        "feast_sdk_p50_ms_100": pct(feast_100, 50),
        "feast_sdk_p99_ms_100": pct(feast_100, 99),
        "feast_push_p50_ms": pct(push, 50),
        "feast_push_p99_ms": pct(push, 99),
    }
    return figures, sequences, one, store


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = Settings.from_env()
    warehouse = synthetic_warehouse(args.users, args.items, args.events_per_user, args.seed)
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="shopml-features-bench-") as tmp:
        local = FeatureStoreConfig(
            profile="local", root=Path(tmp) / "local", sequence_length=args.sequence_length
        )
        result["sqlite"], sqlite_sequences, _, _ = measure(local, warehouse, args)
        sqlite_sequences.close()

        run = uuid.uuid4().hex[:10]
        production = FeatureStoreConfig(
            profile="production",
            root=Path(tmp) / "production",
            sequence_length=args.sequence_length,
            project=f"bench{run}",
            redis_url=args.redis_url or settings.redis_url,
            postgres_url=args.postgres_url or settings.postgres_url,
            registry_schema=f"feast_bench_{run}",
        )
        store = None
        try:
            result["redis"], redis_sequences, one, store = measure(production, warehouse, args)
            # The same HMGET of the same fields of the same keys, without Feast's encoding or decoding.
            client, fields = redis_sequences.client, redis_sequences._fields
            keys = [redis_sequences._key(u) for u in one]
            raw = timed(lambda i: client.hmget(keys[i], fields), args.reads)
            result["redis_raw_p99_ms_1"] = pct(raw, 99)
            result["redis_raw_p50_ms_1"] = pct(raw, 50)
            result["redis_ratio_1"] = round(result["redis"]["p99_ms_1"] / result["redis_raw_p99_ms_1"], 3)
        finally:
            _cleanup(production, store)
    result.update(
        {
            "users": args.users,
            "sequence_length": args.sequence_length,
            "reads": args.reads,
            "machine": "2 shared CPU cores, in-process calls",
        }
    )
    print(json.dumps(result))


def _cleanup(config: FeatureStoreConfig, store) -> None:
    import psycopg2
    import redis

    # The SQL registry's pooled connections would block dropping its schema.
    for name in ("write_engine", "read_engine"):
        engine = getattr(getattr(store, "registry", None), name, None)
        if engine is not None:
            engine.dispose()
    client = redis.Redis.from_url(config.redis_url)
    for key in client.scan_iter(match=b"*" + config.project.encode(), count=1000):
        client.delete(key)
    client.close()
    conn = psycopg2.connect(config.postgres_url)
    with conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{config.registry_schema}" CASCADE')
    conn.close()


if __name__ == "__main__":
    main()
