"""Real servers on 127.0.0.1: ``bentoml serve`` of both services, schemathesis over their
published OpenAPI documents (every check), and a Redis outage under steady load (integration:
a server or Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

KEY = "live-key"
pytestmark = pytest.mark.integration


@contextlib.contextmanager
def bentoml_serve(service: str, env: dict):
    """``bentoml serve`` on 127.0.0.1 at a free port, on the test's model store; yields its URL."""
    from serving.launch import serving
    from training.model_store import store_home

    log = Path(env["SHOPML_DATA_DIR"]) / "logs" / f"{service}-{uuid.uuid4().hex[:6]}.log"
    with serving(service, env={**env, "BENTOML_HOME": str(store_home())}, log=log) as running:
        yield running.url


@pytest.fixture
def live_env(shop_settings, recommender_tag, support_tag) -> dict:
    return {
        "SHOPML_DATA_DIR": str(shop_settings.data_dir),
        "SHOPML_RECOMMENDER_TAG": recommender_tag,
        "SHOPML_SUPPORT_TAG": support_tag,
        "SHOPML_API_KEY": KEY,
    }


def test_served_recommender_answers_logs_and_reports_metrics(live_env, shop_settings):
    with bentoml_serve("recommender", live_env) as url:
        rec = httpx.post(f"{url}/recommend", json={"user_id": "u0", "k": 3}, timeout=10)
        assert rec.status_code == 200 and rec.json()["fallback"] is None
        click = {"user_id": "u0", "item_id": rec.json()["items"][0]["item_id"], "event_type": "rec_click"}
        assert httpx.post(f"{url}/events", json=click, timeout=10).status_code == 401
        ev = httpx.post(f"{url}/events", json=click, headers={"X-API-Key": KEY}, timeout=10)
        assert ev.status_code == 200 and ev.json()["stored_online"]
        assert (
            httpx.post(f"{url}/recommend", json={"user_id": "ghost"}, timeout=10).json()["fallback"]
            == "empty_sequence"
        )
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert 'shopml_fallbacks_total{reason="empty_sequence",service="recommender"}' in metrics
        assert "bentoml_service_request_total" in metrics
        assert httpx.get(f"{url}/livez", timeout=10).status_code == 200
    assert list((shop_settings.landing_dir / "served").rglob("*.jsonl"))
    assert list((shop_settings.landing_dir / "events").rglob("*.jsonl"))


def schemathesis_run(url: str, report: Path, max_examples: int, timeout_s: float) -> dict:
    """``schemathesis run`` over the service's published document, every check, every phase;
    loopback only, a fixed seed, ``max_examples`` per operation. Returns the JSON report."""
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run", f"{url}/docs.json"),
        *("--checks", "all", "--max-examples", str(max_examples), "--seed", "19"),
        *("--header", f"X-API-Key: {KEY}", "--request-timeout", "15", "--workers", "1"),
        *("--generation-database", "none", "--no-color", "--suppress-health-check", "all"),
        *("--report", "json", "--report-json-path", str(report)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=report.parent)
    assert report.exists(), f"schemathesis wrote no report (exit {done.returncode}):\n{done.stdout[-4000:]}"
    result = json.loads(report.read_text())
    result["output"] = done.stdout
    return result


@pytest.mark.parametrize("target", ["recommender", "support"])
def test_schemathesis_finds_no_schema_violation_and_no_server_error(live_env, target, tmp_path):
    examples = int(os.environ.get("SHOPML_FUZZ_EXAMPLES", "25"))
    with bentoml_serve(target, live_env) as url:
        result = schemathesis_run(url, tmp_path / "schemathesis.json", examples, timeout_s=420)
    cases, failures = result["test_cases"]["generated"], result["failures"]
    print(
        f"schemathesis {target}: {cases} cases, {sum(f['count'] for f in failures)} failures, "
        f"{result['running_time']} s, operations {result['operations']}"
    )
    assert result["complete"] and result["operations"]["errored"] == 0, result["output"][-4000:]
    assert cases >= 10 * result["operations"]["tested"]
    assert not failures and not result["errors"], result["output"][-6000:]
    assert result["exit_code"] == 0, result["output"][-4000:]


# --- Redis outage under load ------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path):
    """A Redis of this test on its own port (never the machine's 6379), with a dump file."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    from serving.launch import free_port

    port = free_port()
    folder = tmp_path / "redis"
    folder.mkdir()

    def start():
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    state = {"proc": start()}

    def stop():
        # SHUTDOWN SAVE: the data comes back with the restart, like a real Redis with persistence.
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "save"], capture_output=True, timeout=10)
        state["proc"].wait(10)

    def restart():
        state["proc"] = start()

    yield type("Redis", (), {"url": f"redis://127.0.0.1:{port}/0", "stop": stop, "restart": restart})
    if state["proc"].poll() is None:
        state["proc"].terminate()
        state["proc"].wait(10)


def test_redis_outage_under_load_degrades_to_flagged_fallbacks_and_recovers(
    own_redis, shop_settings, recommender_tag
):
    import duckdb
    import psycopg2

    from data_contracts.landing_log import LandingLog
    from features.config import FeatureStoreConfig, open_store
    from features.offline import write_offline_sources
    from features.online import open_sequences
    from features.store import apply, materialize
    from serving.catalog import Catalog
    from serving.config import ServingConfig
    from serving.recommender.engine import RecommenderEngine, load_model
    from serving.recommender.schemas import RecommendRequest

    postgres = os.environ.get("SHOPML_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    run = uuid.uuid4().hex[:10]
    config = FeatureStoreConfig(
        profile="production",
        root=shop_settings.data_dir / "feast-prod",
        sequence_length=shop_settings.sequence_length,
        project=f"serve{run}",
        redis_url=own_redis.url,
        postgres_url=postgres,
        registry_schema=f"feast_serving_{run}",
    )
    try:
        with duckdb.connect(str(shop_settings.warehouse_path), read_only=True) as conn:
            write_offline_sources(conn, config.offline_dir, config.sequence_length)
        store = open_store(config)
        apply(store, config)
        materialize(store, config)
        engine = RecommenderEngine(
            load_model(shop_settings, recommender_tag),
            Catalog.load(shop_settings.warehouse_path),
            lambda: open_sequences(store, config),
            LandingLog(shop_settings),
            # The model's deadline is not what this run is about: generous, so that a shared
            # machine's slow moment is not counted as the store's.
            replace(
                ServingConfig(), store_timeout_s=0.5, breaker_reset_s=0.5, cache_ttl_s=0, model_timeout_s=5.0
            ),
        )
        results: list[tuple[float, str | None]] = []
        errors: list[BaseException] = []

        async def load(seconds: float, rate: float = 50):
            start = time.monotonic()
            tasks = []
            n = 0
            while time.monotonic() - start < seconds:
                user = f"u{n % 8}"

                async def one(user=user):
                    try:
                        out = await engine.recommend(RecommendRequest(user_id=user, k=3))
                        results.append((time.monotonic() - start, out.fallback))
                    except BaseException as e:
                        errors.append(e)

                tasks.append(asyncio.ensure_future(one()))
                n += 1
                await asyncio.sleep(1 / rate)
            await asyncio.gather(*tasks)

        async def scenario() -> float:
            """Seconds from the load's start to Redis being back."""
            started = time.monotonic()
            loader = asyncio.ensure_future(load(7.0))
            await asyncio.sleep(2.0)
            await asyncio.to_thread(own_redis.stop)
            await asyncio.sleep(2.0)
            await asyncio.to_thread(own_redis.restart)
            back = time.monotonic() - started
            await loader
            return back

        back = asyncio.run(scenario())
        assert not errors, errors[:3]
        before = [f for t, f in results if t < 1.9]
        during = [f for t, f in results if 2.6 < t < 3.9]
        after = [f for t, f in results if t > 6.0]
        assert before and all(f is None for f in before)
        assert during and all(f == "feature_store_down" for f in during)
        assert after and all(f is None for f in after), after
        recovered = min(t for t, f in results if t > back and f is None)
        after_restart = [f for t, f in results if t > back]
        print(
            f"outage run: {len(results)} requests, 0 errors, "
            f"{sum(f is not None for _, f in results)} flagged fallbacks, "
            f"{recovered - back:.2f} s from the restart to the first answer from the shopper's sequence, "
            f"{sum(f is None for f in after_restart)} of {len(after_restart)} answers after the restart "
            "from the shopper's sequence"
        )
    finally:
        with contextlib.suppress(Exception), psycopg2.connect(postgres) as conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{config.registry_schema}" CASCADE')
