"""Per-client rate limits in front of the APIs: 429 with Retry-After past the limit, each client
counted alone, shared through Redis, and a failing count store never blocks traffic."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serving.config import ServingConfig
from serving.http import GuardMiddleware
from serving.ratelimit import RateLimiter, parse_limits
from tests.conftest import redis_client


def ok(request):
    return JSONResponse({"ok": True})


def client_for(config: ServingConfig, client=("10.0.0.1", 5000)) -> TestClient:
    app = Starlette(routes=[Route("/recommend", ok, methods=["POST"]), Route("/livez", ok)])
    guarded = GuardMiddleware(app, api_paths=frozenset({"/recommend"}), config=config, service="test")
    return TestClient(guarded, client=client)


def post(client: TestClient, **headers):
    return client.post("/recommend", json={"user_id": "u1"}, headers=headers)


def test_past_the_limit_a_client_gets_429_with_retry_after():
    client = client_for(ServingConfig(rate_limit="3/minute"))
    assert [post(client).status_code for _ in range(3)] == [200, 200, 200]
    refused = post(client)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "3 per 1 minute" in refused.json()["error"]
    assert client.get("/livez").status_code == 200  # health and docs are never limited


def test_each_api_key_and_each_address_is_counted_alone():
    config = ServingConfig(rate_limit="2/minute")
    first, second = client_for(config), client_for(config, client=("10.0.0.2", 5000))
    assert [post(first).status_code for _ in range(3)] == [200, 200, 429]
    assert post(second).status_code == 200  # another address
    assert post(first, **{"X-API-Key": "key-a"}).status_code == 200  # a key is its own client
    assert post(first, **{"X-API-Key": "key-a"}).status_code == 200
    assert post(first, **{"X-API-Key": "key-a"}).status_code == 429


def test_forwarded_for_is_believed_from_a_trusted_proxy_only():
    key = RateLimiter.client_key
    trusted = frozenset({"127.0.0.1"})
    assert key(None, "127.0.0.1", "203.0.113.9, 10.1.1.1", trusted) == "addr:10.1.1.1"
    assert key(None, "198.51.100.7", "203.0.113.9", trusted) == "addr:198.51.100.7"
    assert key("secret", "127.0.0.1", None, trusted).startswith("key:")
    assert "secret" not in key("secret", "127.0.0.1", None, trusted)


def test_a_burst_limit_and_a_sustained_limit_both_hold():
    client = client_for(ServingConfig(rate_limit="2/second;3/minute"))
    assert [post(client).status_code for _ in range(3)] == [200, 200, 429]  # the burst
    limiter = RateLimiter("2/second;3/minute")
    assert [str(i) for i in limiter.items] == ["2 per 1 second", "3 per 1 minute"]


def test_an_invalid_limit_stops_the_start_up_naming_it(monkeypatch):
    with pytest.raises(ValueError, match="'lots/often'"):
        parse_limits("lots/often")
    monkeypatch.setenv("SHOPML_RATE_LIMIT", "5 per fortnight")
    with pytest.raises(ValueError, match="5 per fortnight"):
        ServingConfig.from_env()


def test_a_count_store_that_is_down_lets_requests_through():
    client = client_for(ServingConfig(rate_limit="1/minute", rate_limit_storage="redis://127.0.0.1:1/0"))
    assert [post(client).status_code for _ in range(3)] == [200, 200, 200]


@pytest.mark.integration
def test_workers_share_one_count_through_redis():
    redis_url = "redis://127.0.0.1:6379/12"
    redis_client(redis_url).flushdb()
    config = ServingConfig(rate_limit="3/minute", rate_limit_storage=redis_url)
    # Two workers' middlewares, each on its own event loop (as in its own process), one Redis.
    with client_for(config) as first, client_for(config) as second:
        codes = [post((first, second)[i % 2]).status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]
