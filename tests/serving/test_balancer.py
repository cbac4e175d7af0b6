"""HAProxy in front of replicas: the configuration HAProxy accepts, weights, and a replica
killed under steady load without one failed request (integration: real servers and HAProxy)."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from serving import launch
from serving.balancer import Replica, haproxy_binary, haproxy_config, parse_weights, start_haproxy


def haproxy_installed() -> bool:
    try:
        return bool(haproxy_binary())
    except FileNotFoundError:
        return False


needs_haproxy = pytest.mark.skipif(
    not haproxy_installed(), reason="haproxy is not installed (apt-get install haproxy; .ci/run installs it)"
)


def test_weights_are_one_per_replica():
    assert parse_weights(None, 2) == [100, 100] and parse_weights("90,10", 2) == [90, 10]
    for bad in ("90", "90,x", "0,0", "300,1"):
        with pytest.raises(ValueError, match="--weights"):
            parse_weights(bad, 2)


@needs_haproxy
def test_haproxy_accepts_the_configuration_and_checks_readyz(tmp_path):
    config = haproxy_config(
        {
            "recommender": (3100, [Replica("r1", 4001, 90), Replica("r2", 4002, 10)]),
            "support": (3101, [Replica("s1", 4003)]),
        },
        stats_port=3190,
    )
    assert "option httpchk GET /readyz" in config and "retry-on conn-failure empty-response" in config
    assert "server r1 127.0.0.1:4001 weight 90 check" in config
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    assert launch.subprocess.run([haproxy_binary(), "-c", "-q", "-f", str(path)]).returncode == 0
    with pytest.raises(ValueError, match="has no replicas"):
        haproxy_config({"support": (3101, [])})


@needs_haproxy
@pytest.mark.integration
# Slow, so out of `make test`: one run in about five saw one RemoteProtocolError at the kill
# (the client's connection closed without an answer); the cause is not found yet.
@pytest.mark.slow
def test_a_replica_killed_under_steady_load_fails_no_request(shop_settings, recommender_tag, tmp_path):
    from training.model_store import store_home

    env = {
        "SHOPML_DATA_DIR": str(shop_settings.data_dir),
        "SHOPML_RECOMMENDER_TAG": recommender_tag,
        "BENTOML_HOME": str(store_home()),
    }
    logs = shop_settings.data_dir / "logs"
    replicas, started = [], []
    try:
        for n in (1, 2):
            port = launch.free_port()
            started.append(
                launch.start("recommender", port, env=env, log=logs / f"r{n}-{uuid.uuid4().hex[:6]}.log")
            )
            replicas.append(Replica(f"r{n}", port))
        front = launch.free_port()
        balancer = start_haproxy(haproxy_config({"recommender": (front, replicas)}), tmp_path, front)
        started.append(balancer)
        statuses: list[int] = []
        stop = threading.Event()

        def shopper(k: int) -> None:
            with httpx.Client(base_url=balancer.url, timeout=10) as client:
                while not stop.is_set():
                    try:
                        answer = client.post("/recommend", json={"user_id": f"u{k}", "k": 5})
                        statuses.append(answer.status_code)
                    except httpx.HTTPError as e:
                        statuses.append(type(e).__name__)

        threads = [
            threading.Thread(target=shopper, args=(k,)) for k in range(8)
        ]  # always some request in flight on each
        for t in threads:
            t.start()
        time.sleep(3)
        before = len(statuses)
        launch.kill_tree(started[0].process.pid)  # the replica and its workers die mid-traffic
        with pytest.raises(httpx.ConnectError):  # nothing listens there any more
            httpx.post(f"{started[0].url}/recommend", json={"user_id": "u1"}, timeout=2)
        time.sleep(5)
        stop.set()
        for t in threads:
            t.join()
        after = len(statuses) - before
        assert before > 100 and after > 150  # traffic went on through the other replica
        assert [s for s in statuses if s != 200] == []
    finally:
        for running in reversed(started):
            running.stop()
