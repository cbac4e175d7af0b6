"""End-to-end latency of the recommender and support services; prints one JSON line.

    python benchmarks/serving.py [--users 100000] [--rate 200] [--seconds 30]

In a temporary folder: a synthetic shop (catalog, item_stats, events) in a DuckDB
warehouse, the local feature store (SQLite) materialised for ``--users`` users, and a
recommender of the quick profile's shape (untrained weights: the latency is the same) in a
temporary model store. ``bentoml serve`` runs the recommender on 127.0.0.1 with ``--workers``
processes (one per core by default: a worker runs its model on its event loop, so it uses
one core at most) and an async aiohttp client drives ``POST /recommend`` at ``--rate``
requests/s for ``--seconds`` after two uncounted seconds of the same traffic (open loop:
requests are sent on schedule, whatever the answers do). A minimal Starlette
app under uvicorn that only looks a precomputed list up in a dict is driven the same way in
the same run, as the floor. ``max_rate_p99_under_15ms`` is the highest rate of a short
ladder at which p99 stays under 15 ms with no errors; ``rss_mb`` is the service's resident
memory (main process and workers). Unless ``--skip-ab``, the recommender is started again
with a 50/50 traffic split between that model and a second one of the same shape
(``SHOPML_RECOMMENDER_VARIANTS``) and driven the same way: ``ab_p50_ms``/``ab_p99_ms``,
``ab_overhead_p50_ms`` (against the main run's p50) and ``ab_extra_rss_mb`` (the second
model in every worker). Unless ``--skip-tracing``, it is started once more with every request
traced (``SHOPML_TRACE_EXPORTER=otlp``, sample rate 1) and exported to a local OTLP receiver:
``traced_p50_ms``/``traced_p99_ms``, ``tracing_overhead_p50_ms`` and ``traced_spans_received``.
Unless ``--skip-haproxy``, two one-worker replicas behind HAProxy (``serving/balancer.py``)
take the same traffic (``haproxy_p50_ms``/``haproxy_p99_ms``), then again with one replica
and its workers SIGKILLed halfway through: ``failover_errors`` (must be 0).
``/chat`` is measured on the
retrieve-and-rank path with MiniLM (retriever and cross-encoder of the real size; the
ranker untrained) over the committed Bitext sample: ``chat_rss_mb``, and unless
``--skip-ab`` the same with a 50/50 split between two such support versions
(``chat_ab_p50_ms``, ``chat_ab_extra_rss_mb``: the second version in the worker; no generator
in either, so a generating deployment adds the generator's size per version).

The load generator shares the machine's cores with the server: on 2 shared cores the
figures include the client's own CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serving import launch  # noqa: E402
from serving.config import ServingConfig  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=3_700, help="catalog size (ML-1M has 3,706 items)")
    p.add_argument("--events-per-user", type=int, default=8)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument(
        "--ladder", default="25,50,100,150,300,400", help="rates tried, in order, for max_rate_p99_under_15ms"
    )
    p.add_argument("--ladder-seconds", type=float, default=8.0)
    p.add_argument("--chat-rate", type=float, default=5.0)
    p.add_argument("--chat-seconds", type=float, default=20.0)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="recommender worker processes (SHOPML_WORKERS; default one per core)",
    )
    p.add_argument("--skip-chat", action="store_true")
    p.add_argument("--skip-ab", action="store_true", help="skip the run with a two-variant traffic split")
    p.add_argument("--skip-tracing", action="store_true", help="skip the run with every request traced")
    p.add_argument("--skip-haproxy", action="store_true", help="skip the runs through HAProxy (and failover)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


# --- data --------------------------------------------------------------------------------------


def build_shop(data_dir: Path, users: int, items: int, per_user: int, seed: int) -> None:
    import duckdb
    import polars as pl

    from data_contracts.schemas import CATALOG_SCHEMA, EVENT_SCHEMA, conform
    from data_contracts.settings import Settings
    from features.config import FeatureStoreConfig, open_store
    from features.offline import write_offline_sources
    from features.store import apply, materialize

    rng = np.random.default_rng(seed)
    n = users * per_user
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    item_ids = [f"i{k}" for k in range(items)]
    events = conform(
        pl.DataFrame(
            {
                "event_id": [f"e{k}" for k in range(n)],
                "ts": [t0 + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 86400 * 7, n))],
                "user_id": np.repeat([f"u{u}" for u in range(users)], per_user),
                "item_id": [f"i{k}" for k in rng.zipf(1.2, n) % items],
                "event_type": rng.choice(["view", "view", "view", "add_to_cart", "purchase"], n),
                "source": "benchmark",
            }
        ),
        EVENT_SCHEMA,
    )
    catalog = conform(
        pl.DataFrame(
            {
                "item_id": item_ids,
                "title": [f"Product {k}" for k in range(items)],
                "category": [f"Cat{k % 8} > Sub{k % 4}" for k in range(items)],
                "brand": "b",
                "price": 1.0,
                "currency": "EUR",
                "in_stock": [k % 50 != 0 for k in range(items)],
                "updated_at": t0,
            }
        ),
        CATALOG_SCHEMA,
    )
    stats = events.group_by("item_id").agg(pl.len().cast(pl.Int64).alias("popularity"))
    settings = Settings(data_dir=data_dir, warehouse_path=data_dir / "warehouse.duckdb")
    data_dir.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.warehouse_path)) as conn:
        for name, frame in (("events", events), ("catalog", catalog), ("item_stats", stats)):
            conn.register("_f", frame.to_arrow())
            conn.execute(f"CREATE TABLE {name} AS SELECT * FROM _f")
            conn.unregister("_f")
        config = FeatureStoreConfig.from_settings(settings)
        write_offline_sources(conn, config.offline_dir, config.sequence_length)
    with contextlib.redirect_stdout(sys.stderr):
        store = open_store(config)
        apply(store, config)
        materialize(store, config)


def service_rss_mb(pid: int) -> float:
    """Resident memory of a service: its process and every worker under it."""
    import psutil

    parent = psutil.Process(pid)
    return round(sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)]) / 2**20, 1)


def save_recommender(items: int, seed: int = 0) -> str:
    import torch

    from training.recommender.artifact import Artifact, save_to_store
    from training.recommender.model import RecommenderConfig, SASRec
    from training.recommender.settings import PROFILES

    torch.manual_seed(seed)
    model = SASRec(RecommenderConfig(num_items=items, **PROFILES["quick"].model)).eval()
    return save_to_store(Artifact(model=model, items=[f"i{k}" for k in range(items)], metrics={}))


def save_support_model(data_dir: Path) -> str:
    from data_contracts.settings import Settings
    from training.support import training_steps
    from training.support.artifact import SupportModel, save_support_model
    from training.support.config import SupportConfig
    from training.support.corpus import SAMPLE_DIR, build_corpus
    from training.support.encoder import SentenceEncoder
    from training.support.ranker import CrossEncoder

    config = SupportConfig(generator=None)
    encoder = SentenceEncoder.load(config.encoder)
    corpus = build_corpus(encoder.encode, SAMPLE_DIR / "bitext" / "bitext_sample.csv", SAMPLE_DIR / "abcd")
    ranker = CrossEncoder.from_encoder(config.encoder, config.ranker_max_length)
    model = SupportModel(config, training_steps.support_retriever(corpus, encoder), ranker)
    return save_support_model(model, Settings(data_dir=data_dir))


# --- servers -------------------------------------------------------------------------------------

FLOOR_APP = textwrap.dedent(
    """
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    ITEMS = {f"u{u}": [{"item_id": f"i{(u + k) % 3700}", "score": 1.0 / (k + 1)} for k in range(10)] for u in range(100000)}
    async def recommend(request):
        body = await request.json()
        return JSONResponse({"user_id": body["user_id"], "items": ITEMS.get(body["user_id"], [])})
    async def ready(request):
        return JSONResponse({})
    app = Starlette(routes=[Route("/recommend", recommend, methods=["POST"]), Route("/readyz", ready)])
    """
)

# An OTLP/HTTP receiver that only counts what reaches it: the traced run's collector.
TRACE_SINK_APP = textwrap.dedent(
    """
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
    SPANS = [0]
    async def traces(request):
        batch = ExportTraceServiceRequest.FromString(await request.body())
        SPANS[0] += sum(len(ss.spans) for r in batch.resource_spans for ss in r.scope_spans)
        return Response(b"", media_type="application/x-protobuf")
    async def count(request):
        return JSONResponse({"spans": SPANS[0]})
    app = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"]), Route("/count", count), Route("/readyz", count)])
    """
)


# --- load ----------------------------------------------------------------------------------------


async def drive(
    url: str, bodies, rate: float, seconds: float, timeout_s: float = 5.0, warmup_s: float = 2.0
) -> dict:
    """Open loop: request i is sent at start + i / rate; latency from its send to its answer.

    ``warmup_s`` of the same traffic first, not counted: every worker's connections, caches
    and first model calls, so the figures are those of the steady load."""
    import aiohttp

    latencies: list[float] = []
    errors = shed = 0
    # This process has imported the whole stack to build the shop: a full garbage collection
    # of its heap would stall the client, not the server, and be measured as server latency.
    gc.collect()
    gc.freeze()
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
    ) as session:

        async def one(body, counted: bool):
            nonlocal errors, shed
            t = time.perf_counter()
            try:
                async with session.post(url, json=body) as r:
                    await r.read()
                    if r.status != 200:
                        errors += counted
                        shed += counted and r.status == 503  # refused past SHOPML_MAX_IN_FLIGHT
                        return
            except (TimeoutError, aiohttp.ClientError):
                errors += counted
                return
            if counted:
                latencies.append((time.perf_counter() - t) * 1000)

        async def send(n: int, counted: bool) -> float:
            start = time.perf_counter()
            tasks = []
            for i in range(n):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.ensure_future(one(bodies[i % len(bodies)], counted)))
            await asyncio.gather(*tasks)
            return time.perf_counter() - start

        await send(int(rate * warmup_s), counted=False)
        n = int(rate * seconds)
        elapsed = await send(n, counted=True)
    lat = np.array(latencies) if latencies else np.array([float("nan")])
    return {
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
        "errors": errors,
        "shed_503": shed,
        "rate": round(len(latencies) / elapsed, 1),
        "requests": n,
        # Other work on the machine shows in the latencies: the 1-minute load average at the end.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def haproxy_runs(env: dict, bodies, args, tmp: Path, main_run: dict) -> dict:
    """Two one-worker replicas (the same two cores as the main run's two workers) behind
    HAProxy, driven the same way; then again with one replica SIGKILLed halfway through."""
    from serving.balancer import Replica, haproxy_config, start_haproxy

    started = []
    try:
        replicas = []
        for n in (1, 2):
            port = launch.free_port()
            started.append(launch.start("recommender", port, env={**env, "SHOPML_WORKERS": "1"}))
            replicas.append(Replica(f"r{n}", port))
        front = launch.free_port()
        started.append(
            start_haproxy(haproxy_config({"recommender": (front, replicas)}), tmp / "haproxy", front)
        )
        url = f"http://127.0.0.1:{front}/recommend"
        time.sleep(2)
        proxied = asyncio.run(drive(url, bodies, args.rate, args.seconds))
        # The kill lands halfway through the counted part (after the two warm-up seconds).
        killer = threading.Timer(2 + args.seconds / 2, launch.kill_tree, [started[0].process.pid])
        killer.start()
        failover = asyncio.run(drive(url, bodies, args.rate, args.seconds))
        killer.join()
    finally:
        for running in reversed(started):
            running.stop()
    return {
        "haproxy_p50_ms": proxied["p50_ms"],
        "haproxy_p99_ms": proxied["p99_ms"],
        "haproxy_errors": proxied["errors"],
        "haproxy_overhead_p50_ms": round(proxied["p50_ms"] - main_run["p50_ms"], 2),
        "failover_requests": failover["requests"],
        "failover_errors": failover["errors"],
        "failover_p99_ms": failover["p99_ms"],
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="shopml-serving-bench-") as tmp:
        tmp = Path(tmp)
        data_dir = tmp / "data"
        home = tmp / "bentoml"
        os.environ["BENTOML_HOME"] = str(home)
        os.environ["HF_HUB_OFFLINE"] = "1"
        t = time.perf_counter()
        build_shop(data_dir, args.users, args.items, args.events_per_user, args.seed)
        tag = save_recommender(args.items)
        log(f"shop, feature store ({args.users} users) and model in {time.perf_counter() - t:.0f} s")
        env = {
            "SHOPML_DATA_DIR": str(data_dir),
            "SHOPML_RECOMMENDER_TAG": tag,
            "SHOPML_TORCH_THREADS": str(args.threads),
            "SHOPML_WORKERS": str(args.workers),
            # Every request takes the full path (store read + model); no cached answers.
            "SHOPML_CACHE_TTL_S": "0",
        }
        bodies = [{"user_id": f"u{rng.randrange(args.users)}", "k": 10} for _ in range(20_000)]

        with launch.serving("recommender", env=env) as running:
            url = running.url
            main_run = asyncio.run(drive(f"{url}/recommend", bodies, args.rate, args.seconds))
            result.update(main_run)
            best = args.rate if main_run["p99_ms"] <= 15 and main_run["errors"] == 0 else 0.0
            for rate in (float(r) for r in args.ladder.split(",") if r):
                # Let a saturated server finish the requests its clients gave up on.
                time.sleep(10)
                step = asyncio.run(drive(f"{url}/recommend", bodies, rate, args.ladder_seconds))
                log(f"ladder {rate:.0f} req/s: {step}")
                if step["p99_ms"] > 15 or step["errors"]:
                    break
                best = max(best, step["rate"])
            result["max_rate_p99_under_15ms"] = best
            result["rss_mb"] = service_rss_mb(running.process.pid)

        if not args.skip_ab:
            # The same traffic with a 50/50 split between two models of the same shape: what
            # the assignment and a second loaded model cost.
            challenger = save_recommender(args.items, seed=1)
            ab_env = {**env, "SHOPML_RECOMMENDER_VARIANTS": f"champion={tag}:50,challenger={challenger}:50"}
            with launch.serving("recommender", env=ab_env) as running:
                time.sleep(2)
                ab = asyncio.run(drive(f"{running.url}/recommend", bodies, args.rate, args.seconds))
                ab_rss = service_rss_mb(running.process.pid)
            result.update(
                {
                    "ab_p50_ms": ab["p50_ms"],
                    "ab_p99_ms": ab["p99_ms"],
                    "ab_errors": ab["errors"],
                    "ab_overhead_p50_ms": round(ab["p50_ms"] - main_run["p50_ms"], 2),
                    "ab_rss_mb": ab_rss,
                    "ab_extra_rss_mb": round(ab_rss - result["rss_mb"], 1),
                }
            )

        uvicorn = [sys.executable, "-m", "uvicorn", "--app-dir", str(tmp), "--log-level", "warning"]
        if not args.skip_tracing:
            # Every request traced (sample rate 1) and exported over OTLP/HTTP to a local receiver.
            (tmp / "trace_sink.py").write_text(TRACE_SINK_APP)
            port = launch.free_port()
            sink = launch.start_process(
                "trace sink", [*uvicorn, "trace_sink:app", "--host", "127.0.0.1", "--port", str(port)], port
            )
            traced_env = {
                **env,
                "SHOPML_TRACE_EXPORTER": "otlp",
                "SHOPML_TRACE_ENDPOINT": f"{sink.url}/v1/traces",
                "SHOPML_TRACE_SAMPLE_RATE": "1",
            }
            try:
                with launch.serving("recommender", env=traced_env) as running:
                    time.sleep(2)
                    traced = asyncio.run(drive(f"{running.url}/recommend", bodies, args.rate, args.seconds))
                time.sleep(1)  # the workers flush their last batch as they stop
                with urllib.request.urlopen(f"{sink.url}/count", timeout=5) as answer:
                    spans = json.load(answer)["spans"]
            finally:
                sink.stop()
            result.update(
                {
                    "traced_p50_ms": traced["p50_ms"],
                    "traced_p99_ms": traced["p99_ms"],
                    "traced_errors": traced["errors"],
                    "tracing_overhead_p50_ms": round(traced["p50_ms"] - main_run["p50_ms"], 2),
                    "traced_spans_received": spans,
                }
            )

        if not args.skip_haproxy:
            result.update(haproxy_runs(env, bodies, args, tmp, main_run))

        port = launch.free_port()
        (tmp / "floor_app.py").write_text(FLOOR_APP)
        floor_server = launch.start_process(
            "floor", [*uvicorn, "floor_app:app", "--host", "127.0.0.1", "--port", str(port)], port
        )
        try:
            floor = asyncio.run(drive(f"{floor_server.url}/recommend", bodies, args.rate, args.seconds))
        finally:
            floor_server.stop()
        result["floor_p50_ms"], result["floor_p99_ms"] = floor["p50_ms"], floor["p99_ms"]
        result["floor_errors"] = floor["errors"]
        result["floor_load_average_1m"] = floor["load_average_1m"]
        result["ratio_p50"] = round(result["p50_ms"] / floor["p50_ms"], 2)
        result["ratio_p99"] = round(result["p99_ms"] / floor["p99_ms"], 2)

        if not args.skip_chat:
            support_tag = save_support_model(data_dir)
            chat_env = {
                **env,
                "SHOPML_SUPPORT_TAG": support_tag,
                "SHOPML_SUPPORT_GENERATE": "0",
                "SHOPML_WORKERS": "1",
            }
            questions = [
                "How do I cancel my order?",
                "I want a refund",
                "where is my parcel",
                "change my address",
            ]
            chat_bodies = [{"message": questions[k % 4]} for k in range(2_000)]  # each a new session

            def drive_chat(service_env: dict) -> tuple[dict, float]:
                """The chat traffic against the support service started with ``service_env``."""
                with launch.serving("support", env=service_env) as running:
                    stats = asyncio.run(
                        drive(f"{running.url}/chat", chat_bodies, args.chat_rate, args.chat_seconds, 30)
                    )
                    return stats, service_rss_mb(running.process.pid)

            chat, chat_rss = drive_chat(chat_env)
            result.update(
                {
                    "chat_p50_ms": chat["p50_ms"],
                    "chat_p99_ms": chat["p99_ms"],
                    "chat_errors": chat["errors"],
                    "chat_rss_mb": chat_rss,
                }
            )
            if not args.skip_ab:
                # A 50/50 split between two support versions (each session its own unit).
                challenger = save_support_model(data_dir)
                ab_env = {
                    **chat_env,
                    "SHOPML_SUPPORT_VARIANTS": f"champion={support_tag}:50,challenger={challenger}:50",
                }
                ab, ab_rss = drive_chat(ab_env)
                result.update(
                    {
                        "chat_ab_p50_ms": ab["p50_ms"],
                        "chat_ab_errors": ab["errors"],
                        "chat_ab_rss_mb": ab_rss,
                        "chat_ab_extra_rss_mb": round(ab_rss - chat_rss, 1),
                    }
                )
    served = ServingConfig.from_env()
    result.update(
        {
            "target_rate": args.rate,
            "seconds": args.seconds,
            "users": args.users,
            "items": args.items,
            "model": f"{tag}, quick-profile shape, untrained weights",
            "torch_threads": args.threads,
            "workers": args.workers,
            # BentoML's access log and tracing middleware (SHOPML_ACCESS_LOG, SHOPML_TRACING).
            "access_log": served.access_log,
            "tracing": served.tracing,
            "chat_torch_threads": int(os.environ.get("SHOPML_SUPPORT_TORCH_THREADS", "2")),
            "machine": f"{os.cpu_count()} shared CPU cores; load generator on the same cores",
        }
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
