"""The recommender service through its ASGI app: typed JSON in and out, 4xx for bad input."""

from __future__ import annotations

import pytest

KEY = "test-key-123"


@pytest.fixture
def client(shop_settings, recommender_tag, monkeypatch, asgi_client):
    monkeypatch.setenv("SHOPML_RECOMMENDER_TAG", recommender_tag)
    monkeypatch.setenv("SHOPML_API_KEY", KEY)
    monkeypatch.setenv("SHOPML_MAX_BODY_BYTES", "4096")
    from serving.recommender.service import RecommenderService

    return asgi_client(RecommenderService)


def test_recommend_event_similar_round_trip(client, recommender_tag):
    rec = client.post("/recommend", json={"user_id": "u0", "k": 3})
    assert rec.status_code == 200, rec.text
    body = rec.json()
    assert body["model_version"] == recommender_tag and body["fallback"] is None
    assert len(body["items"]) == 3 and {"item_id", "score", "title", "category"} <= set(body["items"][0])
    click = {
        "user_id": "u0",
        "item_id": body["items"][0]["item_id"],
        "event_type": "rec_click",
        "rec_id": body["rec_id"],
    }
    ev = client.post("/events", json=click, headers={"X-API-Key": KEY})
    assert ev.status_code == 200, ev.text
    assert ev.json()["stored_online"] and ev.json()["logged"]
    sim = client.post("/similar", json={"item_id": "i3", "k": 2})
    assert sim.status_code == 200 and len(sim.json()["items"]) == 2
    assert client.post("/similar", json={"item_id": "no-such-item"}).status_code == 404


def test_write_endpoint_needs_the_api_key(client):
    event = {"user_id": "u0", "item_id": "i1", "event_type": "view"}
    missing = client.post("/events", json=event)
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["error"]
    assert client.post("/events", json=event, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/events", json=event, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    # Reads need no key.
    assert client.post("/recommend", json={"user_id": "u0"}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"user_id": ""},
        {"user_id": "u0", "k": 0},
        {"user_id": "u0", "k": 101},
        {"user_id": "u0", "k": "ten"},
        {"user_id": "u0", "session_item_ids": [f"i{k}" for k in range(51)]},
        {"user_id": "x" * 129},
        {"user_id": "bad\nid"},
        {"user_id": "u0", "unknown_field": 1},
        [],
        None,
    ],
)
def test_bad_recommend_input_is_a_400_with_a_message(client, body):
    r = client.post("/recommend", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]


def test_bad_events_are_4xx(client):
    headers = {"X-API-Key": KEY}
    for body in (
        {"user_id": "u0", "item_id": "i1", "event_type": "teleport"},
        {"user_id": "u0", "item_id": "i1", "event_type": "view", "price": -1},
        {"user_id": "u0", "item_id": "i1", "event_type": "rec_click", "rec_id": "not-hex"},
    ):
        assert client.post("/events", json=body, headers=headers).status_code == 400


def test_transport_level_rejections(client):
    assert (
        client.post(
            "/recommend", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    big = b'{"user_id": "' + b"u" * 5000 + b'"}'
    too_big = client.post("/recommend", content=big, headers={"content-type": "application/json"})
    assert too_big.status_code == 413 and "4096" in too_big.json()["error"]
    form = client.post(
        "/recommend", content=b"--x\r\n", headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert form.status_code == 415
    assert (
        client.post(
            "/recommend", content=b"x", headers={"content-type": "application/vnd.bentoml+pickle"}
        ).status_code
        == 415
    )


def test_probes_and_metrics(client):
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    client.post("/recommend", json={"user_id": "ghost"})
    text = client.get("/metrics").text
    assert 'shopml_fallbacks_total{reason="empty_sequence",service="recommender"}' in text
    assert "shopml_cache_lookups_total" in text
    assert "bentoml_service_request_duration_seconds" in text
    spec = client.get("/docs.json").json()
    assert {"/recommend", "/events", "/similar"} <= set(spec["paths"])


def test_past_max_in_flight_a_request_is_shed_with_503_and_retry_after(
    shop_settings, recommender_tag, monkeypatch, asgi_client
):
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from serving.recommender.engine import RecommenderEngine

    monkeypatch.setenv("SHOPML_RECOMMENDER_TAG", recommender_tag)
    monkeypatch.setenv("SHOPML_MAX_IN_FLIGHT", "1")
    started, release = threading.Event(), threading.Event()
    answer = RecommenderEngine.recommend

    async def slow(self, request):
        # The first request holds its slot until the test lets it go (5 s at most).
        if not started.is_set():
            started.set()
            for _ in range(500):
                if release.is_set():
                    break
                await asyncio.sleep(0.01)
        return await answer(self, request)

    monkeypatch.setattr(RecommenderEngine, "recommend", slow)
    from serving.recommender.service import RecommenderService

    client = asgi_client(RecommenderService)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.post, "/recommend", json={"user_id": "u0"})
        assert started.wait(5)
        shed = client.post("/recommend", json={"user_id": "u1"})
        release.set()
        assert first.result(10).status_code == 200
    assert shed.status_code == 503 and shed.headers["retry-after"] == "1", shed.text
    assert "limit" in shed.json()["error"]
    # Probes are not API paths: never shed. The slot is free again once the first answered.
    assert client.get("/livez").status_code == 200
    assert client.post("/recommend", json={"user_id": "u1"}).status_code == 200
    documented = client.get("/docs.json").json()["paths"]["/recommend"]["post"]["responses"]["503"]
    assert "Retry-After" in documented["headers"] and "SHOPML_MAX_IN_FLIGHT" in documented["description"]
