"""A tiny hand-made shop, its warehouse tables, and feature stores built from it.

The local store is real (DuckDB offline, SQLite online, file registry) in a temporary
folder. The production store uses the Redis and PostgreSQL of this machine, isolated per
test by a unique Feast project (which suffixes every Redis key) and a fresh PostgreSQL
schema for the registry; both are removed afterwards.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import duckdb
import polars as pl
import pytest

from data_contracts.schemas import CATALOG_SCHEMA, EVENT_SCHEMA, ITEM_EVENT_TYPES, conform
from features.config import FeatureStoreConfig, open_store
from features.offline import write_offline_sources
from features.online import open_sequences
from features.store import apply, materialize

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
N = 5  # a short sequence length, so trimming shows with few events

REDIS_URL = os.environ.get("SHOPML_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
POSTGRES_URL = os.environ.get("SHOPML_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def minutes(m: float) -> datetime:
    return T0 + timedelta(minutes=m)


def event(event_id: str, m: float, user: str, item: str, kind: str = "view") -> dict:
    return {
        "event_id": event_id,
        "ts": minutes(m),
        "user_id": user,
        "item_id": item,
        "event_type": kind,
        "source": "test",
    }


def shop_events() -> pl.DataFrame:
    rows = [
        # alice: 7 events, more than N, with a purchase and a cart
        *(event(f"a{k}", k, "alice", f"i{k}", "purchase" if k == 3 else "view") for k in range(6)),
        event("a6", 10, "alice", "i9", "add_to_cart"),
        # bob: two lines of one invoice share a timestamp; order between them is by event_id
        event("b1", 2, "bob", "i1"),
        event("b3", 4, "bob", "i3", "purchase"),
        event("b2", 4, "bob", "i2", "purchase"),
        # impressions are not item events of a sequence
        event("b4", 5, "bob", "i7", "rec_impression"),
        # carol: one event
        event("c1", 7, "carol", "i4", "rec_click"),
    ]
    return conform(pl.DataFrame(rows), EVENT_SCHEMA)


def shop_catalog() -> pl.DataFrame:
    items = [f"i{k}" for k in range(10)]
    return conform(
        pl.DataFrame(
            {
                "item_id": items,
                "title": [f"Item {i}" for i in items],
                "category": ["home > kitchen" if k % 2 else "toys" for k in range(10)],
                "brand": ["acme"] * 10,
                "price": [float(k) + 0.5 for k in range(10)],
                "currency": ["EUR"] * 10,
                "in_stock": [k != 9 for k in range(10)],
                "updated_at": [T0 - timedelta(days=1)] * 10,
            }
        ),
        CATALOG_SCHEMA,
    )


def item_stats(events: pl.DataFrame) -> pl.DataFrame:
    counts = (
        events.filter(pl.col("event_type").is_in(ITEM_EVENT_TYPES))
        .group_by("item_id")
        .agg(pl.len().cast(pl.Int64).alias("popularity"))
    )
    return (
        shop_catalog()
        .select("item_id")
        .join(counts, on="item_id", how="left")
        .with_columns(pl.col("popularity").fill_null(0))
    )


def expected_sequences(events: pl.DataFrame, length: int) -> pl.DataFrame:
    """user_sequences as the warehouse defines it, computed independently of features/."""
    return (
        events.filter(pl.col("event_type").is_in(ITEM_EVENT_TYPES))
        .sort(["user_id", "ts", "event_id"])
        .group_by("user_id", maintain_order=True)
        .agg(
            pl.col("item_id").tail(length).alias("item_ids"),
            pl.col("event_type").tail(length).alias("event_types"),
            pl.col("ts").tail(length).alias("event_times"),
            pl.len().cast(pl.Int64).alias("total_events"),
            pl.col("ts").last().alias("last_event_ts"),
        )
        .with_columns(pl.col("item_ids").list.len().cast(pl.Int64).alias("length"))
    )


@dataclass
class Warehouse:
    """A DuckDB warehouse file holding events, catalog, item_stats and user_sequences."""

    path: Path
    length: int = N

    def write(self, events: pl.DataFrame) -> None:
        with duckdb.connect(str(self.path)) as conn:
            for name, frame in (
                ("events", events),
                ("catalog", shop_catalog()),
                ("item_stats", item_stats(events)),
                ("user_sequences", expected_sequences(events, self.length)),
            ):
                conn.register("_frame", frame.to_arrow())
                conn.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _frame")
                conn.unregister("_frame")

    def connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.path), read_only=True)


def build(config: FeatureStoreConfig, warehouse: Warehouse):
    """Offline files → apply → materialise: what the Dagster assets run in order."""
    with warehouse.connect() as conn:
        write_offline_sources(conn, config.offline_dir, config.sequence_length)
    store = open_store(config)
    apply(store, config)
    materialize(store, config)
    return store


def _check_concurrent(results, final, workers, per_worker):
    # Every item landed once; each worker's items keep its own order; every returned
    # sequence is the final one as it stood when that append was applied.
    expected = {f"w{w}-{k}" for w in range(workers) for k in range(per_worker)}
    assert len(final.item_ids) == len(expected) and set(final.item_ids) == expected
    for w in range(workers):
        mine = [i for i in final.item_ids if i.startswith(f"w{w}-")]
        assert mine == [f"w{w}-{k}" for k in range(per_worker)]
    for returned in results:
        position = final.item_ids.index(returned[-1])
        assert returned == final.item_ids[: position + 1]


# Runs in its own interpreter: open the store, append each thread's items in order.
WORKER = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from features.config import FeatureStoreConfig, open_store
from features.online import open_sequences
args = json.loads(sys.argv[1])
config = FeatureStoreConfig(**{**args["config"], "root": Path(args["config"]["root"])})
store = open_store(config)
with open_sequences(store, config) as sequences:
    def run(worker):
        return [sequences.append(args["user"], f"w{worker}-{k}", "view").item_ids for k in range(args["per_worker"])]
    with ThreadPoolExecutor(len(args["workers"])) as pool:
        print(json.dumps([r for batch in pool.map(run, args["workers"]) for r in batch]))
"""


def concurrent_appends_threads(store, config, workers=10, per_worker=5):
    config = replace(config, sequence_length=workers * per_worker)
    with open_sequences(store, config) as sequences:

        def run(worker):
            return [sequences.append("eve", f"w{worker}-{k}", "view").item_ids for k in range(per_worker)]

        with ThreadPoolExecutor(workers) as pool:
            results = [r for batch in pool.map(run, range(workers)) for r in batch]
        _check_concurrent(results, sequences.read("eve"), workers, per_worker)


def concurrent_appends_processes(store, config, processes=2, threads=5, per_worker=5):
    config = replace(config, sequence_length=processes * threads * per_worker)
    fields = {k: str(v) if k == "root" else v for k, v in asdict(config).items()}
    children = []
    for p in range(processes):
        args = {
            "config": fields,
            "user": "frank",
            "workers": list(range(p * threads, (p + 1) * threads)),
            "per_worker": per_worker,
        }
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, json.dumps(args)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for child in children:
        out, err = child.communicate(timeout=180)
        assert child.returncode == 0, err[-2000:]
        results += json.loads(out.strip().splitlines()[-1])
    with open_sequences(store, config) as sequences:
        _check_concurrent(results, sequences.read("frank"), processes * threads, per_worker)


@pytest.fixture
def shop() -> SimpleNamespace:
    """The helpers above, for test modules (conftest is not importable under importlib mode)."""
    return SimpleNamespace(
        N=N,
        minutes=minutes,
        event=event,
        events=shop_events,
        catalog=shop_catalog,
        item_stats=item_stats,
        expected_sequences=expected_sequences,
        build=build,
        concurrent_appends_threads=concurrent_appends_threads,
        concurrent_appends_processes=concurrent_appends_processes,
    )


@pytest.fixture
def warehouse(tmp_path) -> Warehouse:
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    wh.write(shop_events())
    return wh


@pytest.fixture
def local_config(tmp_path) -> FeatureStoreConfig:
    return FeatureStoreConfig(profile="local", root=tmp_path / "feast", sequence_length=N)


@pytest.fixture
def local_store(local_config, warehouse):
    return build(local_config, warehouse)


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def production_config(tmp_path):
    if not _reachable(REDIS_URL, 6379):
        pytest.skip(f"Redis at {REDIS_URL} is not reachable (set SHOPML_TEST_REDIS_URL)")
    if not _reachable(POSTGRES_URL, 5432):
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is not reachable (set SHOPML_TEST_POSTGRES_URL)")
    run = uuid.uuid4().hex[:10]
    config = FeatureStoreConfig(
        profile="production",
        root=tmp_path / "feast",
        sequence_length=N,
        project=f"t{run}",
        redis_url=REDIS_URL,
        postgres_url=POSTGRES_URL,
        registry_schema=f"feast_test_{run}",
    )
    yield config
    import psycopg2
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    # Feast's Redis keys end with the project name, unique to this test.
    for key in client.scan_iter(match=b"*" + config.project.encode(), count=1000):
        client.delete(key)
    client.close()
    with psycopg2.connect(POSTGRES_URL) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{config.registry_schema}" CASCADE')
    conn.close()


@pytest.fixture
def production_store(production_config, warehouse):
    store = build(production_config, warehouse)
    yield store
    # Release the registry's pooled connections before the schema is dropped.
    for engine in {getattr(store.registry, n, None) for n in ("write_engine", "read_engine")} - {None}:
        engine.dispose()
