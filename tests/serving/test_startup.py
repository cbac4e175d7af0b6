"""Fail fast, health honestly: settings and models are checked before a service takes traffic,
/livez stays cheap and /readyz says whether the model and the stores are there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from serving.launch import bentoml_command, free_port, start_process
from serving.startup import StartupRefused, check_recommender, check_support, preflight


def truncated_recommender(seed: int = 7) -> tuple[str, Path]:
    """A fresh recommender in the model store whose weights file lost its second half."""
    import torch

    from training.model_store import store_home
    from training.recommender.artifact import Artifact, save_to_store
    from training.recommender.model import RecommenderConfig, SASRec

    torch.manual_seed(seed)
    model = SASRec(RecommenderConfig(num_items=20, max_len=10, hidden=32, num_blocks=2)).eval()
    tag = save_to_store(Artifact(model=model, items=[f"i{k}" for k in range(20)]))
    weights = store_home() / "models" / "recommender" / tag.split(":")[1] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return tag, weights


def test_production_without_api_key_is_refused_in_one_line(settings, monkeypatch):
    monkeypatch.setenv("SHOPML_PROFILE", "production")
    monkeypatch.delenv("SHOPML_API_KEY", raising=False)
    with pytest.raises(StartupRefused) as refused:
        preflight("recommender", lambda *_: None)
    assert str(refused.value) == (
        "shopml recommender service refuses to start: invalid configuration: "
        "the production profile needs SHOPML_API_KEY for the write endpoints"
    )
    monkeypatch.setenv("SHOPML_API_KEY", "k")
    assert preflight("recommender", lambda *_: None).api_key == "k"


def test_a_malformed_number_names_its_variable(settings, monkeypatch):
    monkeypatch.setenv("SHOPML_STORE_TIMEOUT_S", "fast")
    with pytest.raises(StartupRefused, match="SHOPML_STORE_TIMEOUT_S must be a number, not 'fast'"):
        preflight("recommender", lambda *_: None)
    monkeypatch.setenv("SHOPML_STORE_TIMEOUT_S", "-1")
    with pytest.raises(StartupRefused, match="SHOPML_STORE_TIMEOUT_S must not be negative"):
        preflight("recommender", lambda *_: None)


@pytest.mark.parametrize(
    ("service", "setting", "default", "other"),
    [("recommender", "workers", 1, 2), ("support", "support_decode_threads", 2, 1)],
)
def test_counts_of_at_least_one_are_read_and_checked(settings, monkeypatch, service, setting, default, other):
    name = f"SHOPML_{setting.upper()}"
    assert getattr(preflight(service, lambda *_: None), setting) == default
    monkeypatch.setenv(name, str(other))
    assert getattr(preflight(service, lambda *_: None), setting) == other
    monkeypatch.setenv(name, "0")
    with pytest.raises(StartupRefused, match=f"{name} must be at least 1, not 0"):
        preflight(service, lambda *_: None)


def test_access_log_and_tracing_switches_reach_the_bentoml_service(settings, monkeypatch):
    options = defaults = preflight("recommender", lambda *_: None).service_options(
        timeout_s=10, max_concurrency=8
    )
    # Defaults: no access log, the tracing middleware skipping every path.
    assert options["logging"] == {"access": {"enabled": False}}
    assert options["tracing"] == {"excluded_urls": [".*"]}
    monkeypatch.setenv("SHOPML_ACCESS_LOG", "1")
    monkeypatch.setenv("SHOPML_TRACING", "1")
    options = preflight("recommender", lambda *_: None).service_options(timeout_s=10, max_concurrency=8)
    assert options["logging"] == {"access": {"enabled": True}} and "tracing" not in options
    # What BentoML builds from them (in a child process each: they go into its global config).
    probe = """
import sys
import bentoml
from _bentoml_impl.server.app import ServiceAppFactory
from bentoml._internal.container import BentoMLContainer

class Probe:
    @bentoml.api
    def echo(self, x: int) -> int:
        return x

service = bentoml.service(name="probe", **eval(sys.argv[1]))(Probe)
service.inject_config()
names = [m.cls.__name__ for m in ServiceAppFactory(service, is_main=True).middlewares]
skipped = BentoMLContainer.tracing_excluded_urls.get().url_disabled("http://127.0.0.1:3000/echo")
print("AccessLogMiddleware" in names, skipped)
"""

    def built(options: dict) -> str:
        run = [sys.executable, "-c", probe, repr(options)]
        return subprocess.run(run, capture_output=True, text=True, timeout=120, check=True).stdout.strip()

    assert built(defaults) == "False True" and built(options) == "True False"
    monkeypatch.setenv("SHOPML_TRACING", "maybe")
    with pytest.raises(StartupRefused, match="SHOPML_TRACING must be 1 or 0"):
        preflight("recommender", lambda *_: None)


def test_a_model_that_does_not_load_is_refused_naming_the_file(settings, monkeypatch, recommender_tag):
    monkeypatch.setenv("SHOPML_RECOMMENDER_TAG", recommender_tag)
    preflight("recommender", check_recommender)
    tag, weights = truncated_recommender()
    monkeypatch.setenv("SHOPML_RECOMMENDER_TAG", tag)
    with pytest.raises(StartupRefused, match=rf"its model cannot be loaded: {weights}.*truncated"):
        preflight("recommender", check_recommender)
    monkeypatch.setenv("SHOPML_RECOMMENDER_TAG", "recommender:nosuchversion")
    with pytest.raises(StartupRefused, match="'recommender:nosuchversion' is not in the model store"):
        preflight("recommender", check_recommender)


def test_a_missing_support_model_is_refused(settings, monkeypatch, support_tag):
    monkeypatch.setenv("SHOPML_SUPPORT_TAG", "support:nosuchversion")
    with pytest.raises(StartupRefused, match="no support model 'support:nosuchversion'"):
        preflight("support", check_support)
    # Under a traffic split every variant's model is checked.
    monkeypatch.delenv("SHOPML_SUPPORT_TAG")
    monkeypatch.setenv("SHOPML_SUPPORT_VARIANTS", f"a={support_tag}:50,b=support:nosuchversion:50")
    with pytest.raises(StartupRefused, match="no support model 'support:nosuchversion'"):
        preflight("support", check_support)
    monkeypatch.setenv("SHOPML_SUPPORT_VARIANTS", f"a={support_tag}:50,popularity:50")
    with pytest.raises(StartupRefused, match="no popularity arm"):
        preflight("support", check_support)
    monkeypatch.setenv("SHOPML_SUPPORT_VARIANTS", f"a={support_tag}:50,b={support_tag}:50")
    preflight("support", check_support)


def test_readyz_is_false_without_a_model_or_a_feature_store(shop_settings, recommender_tag):
    from data_contracts.landing_log import LandingLog
    from features.online import OnlineStoreError
    from serving.catalog import Catalog
    from serving.recommender.engine import RecommenderEngine, load_model, open_online_store

    def engine(model: bool, open_store):
        return RecommenderEngine(
            load_model(shop_settings, recommender_tag) if model else None,
            Catalog.load(shop_settings.warehouse_path),
            open_store,
            LandingLog(shop_settings),
        )

    def missing_store():
        raise OnlineStoreError("SQLite online store does not exist")

    assert engine(True, lambda: open_online_store(shop_settings)).ready()
    assert not engine(False, lambda: open_online_store(shop_settings)).ready()
    assert not engine(True, missing_store).ready()
    # A store that comes back makes the service ready again, without a restart.
    state = {"up": False}
    coming_back = engine(True, lambda: open_online_store(shop_settings) if state["up"] else missing_store())
    assert not coming_back.ready()
    state["up"] = True
    assert coming_back.ready()


def test_livez_answers_while_readyz_says_the_store_is_missing(
    shop_settings, recommender_tag, monkeypatch, asgi_client
):
    shutil.rmtree(shop_settings.data_dir / "feast")
    monkeypatch.setenv("SHOPML_RECOMMENDER_TAG", recommender_tag)
    from serving.recommender.service import RecommenderService

    client = asgi_client(RecommenderService)
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 503
    # Requests are still answered, from popularity, and say why.
    assert client.post("/recommend", json={"user_id": "u0"}).json()["fallback"] == "feature_store_down"


# --- bentoml serve in a subprocess ------------------------------------------------------------


def serve_until_exit(shop_settings, env: dict, timeout_s: float = 120) -> tuple[float, str]:
    """Start ``bentoml serve`` of the recommender; it must stop by itself. Seconds and its log."""
    from training.model_store import store_home

    log = shop_settings.data_dir / "logs" / f"refused-{uuid.uuid4().hex[:6]}.log"
    port = free_port()
    started = time.monotonic()
    env = {"SHOPML_DATA_DIR": str(shop_settings.data_dir), "BENTOML_HOME": str(store_home()), **env}
    with pytest.raises(RuntimeError, match=r"stopped at start-up \(exit 1\)"):
        start_process(
            "recommender", bentoml_command("recommender", port), port, env, log, timeout_s=timeout_s
        )
    return time.monotonic() - started, log.read_text(errors="replace")


@pytest.mark.integration
def test_served_production_without_api_key_exits_at_once(shop_settings, recommender_tag):
    seconds, log = serve_until_exit(
        shop_settings,
        {"SHOPML_PROFILE": "production", "SHOPML_API_KEY": "", "SHOPML_RECOMMENDER_TAG": recommender_tag},
    )
    assert "refuses to start: invalid configuration: the production profile needs SHOPML_API_KEY" in log
    assert "Traceback" not in log and "Starting production" not in log
    assert seconds < 90


@pytest.mark.integration
def test_served_truncated_model_exits_naming_the_file_without_restarts(shop_settings):
    tag, weights = truncated_recommender(seed=8)
    seconds, log = serve_until_exit(shop_settings, {"SHOPML_RECOMMENDER_TAG": tag})
    assert f"its model cannot be loaded: {weights} is corrupt" in log
    assert log.count("refuses to start") == 1 and "SafetensorError" not in log and "Traceback" not in log
    assert seconds < 90


def test_a_split_naming_promoted_is_checked_in_the_settings_store_not_bentomls_first_home(settings, tmp_path):
    """Under `bentoml serve` BentoML fixes its home (without BENTOML_HOME: ~/bentoml) before the
    service module can point it at the settings' store; the start-up check must read the latter."""
    import json

    from tests.serving.conftest import ITEMS
    from training.recommender.artifact import Artifact, save_to_store
    from training.recommender.model import RecommenderConfig, SASRec

    store = settings.model_store.resolve()
    model = SASRec(RecommenderConfig(num_items=len(ITEMS), max_len=10, hidden=32, num_blocks=2)).eval()
    tag = save_to_store(Artifact(model=model, items=list(ITEMS), metrics={}), home=store)
    (store / "promotions").mkdir(parents=True)
    (store / "promotions" / "recommender.json").write_text(json.dumps({"tag": tag, "baseline": None}))
    probe = """
import sys
from bentoml._internal.configuration.containers import BentoMLContainer
BentoMLContainer.bentoml_home.set(sys.argv[1])  # fixed elsewhere first, as the CLI does
from serving.startup import check_recommender, preflight
preflight("recommender", check_recommender)
print("started")
"""
    env = {k: v for k, v in os.environ.items() if k != "BENTOML_HOME"}
    env["SHOPML_RECOMMENDER_VARIANTS"] = "champion=promoted:50,challenger=popularity:50"
    run = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "elsewhere")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert run.returncode == 0 and run.stdout.strip().endswith("started"), run.stderr[-2000:]
