"""A tiny shop for the services: warehouse tables, a real local feature store, tiny models."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

# pythonpath = ["tests"] lets tests/serving and tests/training shadow the real packages as
# namespace packages when the repository root is not on sys.path; put the root first.
_REPO = str(Path(__file__).resolve().parents[2])
if sys.path[0] != _REPO:
    sys.path.insert(0, _REPO)
for _name in [m for m in sys.modules if m.split(".")[0] in ("serving", "training")]:
    if getattr(sys.modules[_name], "__file__", None) is None:
        del sys.modules[_name]

# BentoML fixes its model store at first use, and its Prometheus client needs a folder for
# the per-process metric files (bentoml serve sets one; an in-process app does not).
os.environ.setdefault("BENTOML_HOME", tempfile.mkdtemp(prefix="shopml-serving-bentoml-"))
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="shopml-serving-prom-"))
os.environ["HF_HUB_OFFLINE"] = "1"

import duckdb  # noqa: E402
import polars as pl  # noqa: E402
import torch  # noqa: E402

from data_contracts.schemas import CATALOG_SCHEMA, EVENT_SCHEMA, conform  # noqa: E402
from data_contracts.settings import Settings  # noqa: E402

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ITEMS = [f"i{k}" for k in range(20)]
OUT_OF_STOCK = "i19"
# u0..u7 each view a short walk of items; "i0" is the most viewed item, "i1" the next.
HISTORIES = {f"u{u}": [f"i{(u + t) % 12}" for t in range(4)] + ["i0", "i1"] for u in range(8)}


def category(item: str) -> str:
    return "Home > Basics" if int(item[1:]) % 2 == 0 else "Toys > Premium"


def shop_frames() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rows = [
        {
            "event_id": f"{user}-{t}",
            "ts": T0 + timedelta(minutes=10 * u + t),
            "user_id": user,
            "item_id": item,
            "event_type": "view",
            "source": "test",
        }
        for u, (user, items) in enumerate(HISTORIES.items())
        for t, item in enumerate(items)
    ]
    events = conform(pl.DataFrame(rows), EVENT_SCHEMA)
    catalog = conform(
        pl.DataFrame(
            {
                "item_id": ITEMS,
                "title": [f"Item {i}" for i in ITEMS],
                "category": [category(i) for i in ITEMS],
                "brand": ["acme"] * len(ITEMS),
                "price": [1.0 + k for k in range(len(ITEMS))],
                "currency": ["EUR"] * len(ITEMS),
                "in_stock": [i != OUT_OF_STOCK for i in ITEMS],
                "updated_at": [T0 - timedelta(days=1)] * len(ITEMS),
            }
        ),
        CATALOG_SCHEMA,
    )
    counts = events.group_by("item_id").agg(pl.len().cast(pl.Int64).alias("popularity"))
    # i19 (out of stock) is the most popular of all, so filters show.
    stats = (
        catalog.select("item_id")
        .join(counts, on="item_id", how="left")
        .with_columns(pl.col("popularity").fill_null(0))
        .with_columns(
            pl.when(pl.col("item_id") == OUT_OF_STOCK)
            .then(1000)
            .otherwise(pl.col("popularity"))
            .alias("popularity")
        )
        .with_columns(
            pl.col("popularity").rank("ordinal", descending=True).cast(pl.Int64).alias("popularity_rank")
        )
    )
    return events, catalog, stats


def write_warehouse(path: Path) -> None:
    events, catalog, stats = shop_frames()
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as conn:
        for name, frame in (("events", events), ("catalog", catalog), ("item_stats", stats)):
            conn.register("_frame", frame.to_arrow())
            conn.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _frame")
            conn.unregister("_frame")


def build_feature_store(settings: Settings) -> None:
    import contextlib

    from features.config import FeatureStoreConfig, open_store
    from features.offline import write_offline_sources
    from features.store import apply, materialize

    config = FeatureStoreConfig.from_settings(settings)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        write_offline_sources(conn, config.offline_dir, config.sequence_length)
    with contextlib.redirect_stdout(sys.stderr):
        store = open_store(config)
        apply(store, config)
        materialize(store, config)


def tiny_recommender_tag(seed: int = 0) -> str:
    from training.recommender.artifact import Artifact, save_to_store
    from training.recommender.model import RecommenderConfig, SASRec

    torch.manual_seed(seed)
    model = SASRec(RecommenderConfig(num_items=len(ITEMS), max_len=10, hidden=32, num_blocks=2)).eval()
    return save_to_store(Artifact(model=model, items=list(ITEMS), metrics={"ndcg@10": 0.0}))


@pytest.fixture(scope="session")
def shop_template(tmp_path_factory) -> Path:
    """A data folder with the warehouse and a materialised local feature store, built once."""
    data = tmp_path_factory.mktemp("shop") / "data"
    settings = Settings(data_dir=data, warehouse_path=data / "warehouse.duckdb", landing_dir=data / "landing")
    write_warehouse(settings.warehouse_path)
    build_feature_store(settings)
    return data


@pytest.fixture
def shop_settings(settings, shop_template) -> Settings:
    """Settings (and SHOPML_* environment) over a fresh copy of the shop's data folder."""
    shutil.copytree(shop_template, settings.data_dir)
    return settings


@pytest.fixture(scope="session")
def recommender_tag() -> str:
    return tiny_recommender_tag()


@pytest.fixture
def shop() -> SimpleNamespace:
    return SimpleNamespace(items=ITEMS, histories=HISTORIES, out_of_stock=OUT_OF_STOCK, category=category)


def forget_bentoml_metrics() -> None:
    """Drop BentoML's request metrics from the process registry.

    Each app BentoML builds registers them again, which the registry refuses; ``bentoml
    serve`` builds one app per process, tests build several. The values live in the
    multiprocess folder, so nothing measured is lost.
    """
    from prometheus_client import REGISTRY

    for collector, names in list(REGISTRY._collector_to_names.items()):
        if any(name.startswith("bentoml_") for name in names):
            REGISTRY.unregister(collector)


@pytest.fixture
def asgi_client():
    """``asgi_client(Service)``: a TestClient over the service's app, lifespan included."""
    from starlette.testclient import TestClient

    clients = []

    def make(service):
        forget_bentoml_metrics()
        client = TestClient(service.to_asgi(), raise_server_exceptions=False)
        clients.append(client.__enter__())
        return clients[-1]

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="session")
def support_tag(tmp_path_factory) -> str:
    """A support model from tiny untrained parts (2-layer BERT retriever and ranker), saved."""
    from training.support import training_steps
    from training.support.artifact import SupportModel, save_support_model
    from training.support.config import SupportConfig
    from training.support.corpus import SAMPLE_DIR, build_corpus, read_bitext
    from training.support.encoder import SentenceEncoder
    from training.support.ranker import CrossEncoder
    from training.support.tiny import tiny_encoder

    bitext = SAMPLE_DIR / "bitext" / "bitext_sample.csv"
    qa, _ = read_bitext(bitext)
    folder = tiny_encoder(
        tmp_path_factory.mktemp("tiny-encoder"), qa["question"].to_list() + qa["answer"].to_list()
    )
    # handover_threshold 0: an untrained ranker still answers, so replies and feedback show.
    config = SupportConfig(encoder=str(folder), generator=None, ranker_max_length=64, handover_threshold=0.0)
    encoder = SentenceEncoder.load(str(folder))
    corpus = build_corpus(encoder.encode, bitext, None, threshold=0.98)
    model = SupportModel(
        config, training_steps.support_retriever(corpus, encoder), CrossEncoder.from_encoder(str(folder), 64)
    )
    settings = Settings(data_dir=tmp_path_factory.mktemp("support-data"))
    return save_support_model(model, settings)
