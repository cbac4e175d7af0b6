"""Start the services on 127.0.0.1 and send them a few real requests (used by `shopml run`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

SERVICES = {
    "recommender": ("serving.recommender.service:RecommenderService", 3100),
    "support": ("serving.support.service:SupportService", 3101),
}


@dataclass
class Running:
    name: str
    url: str
    process: subprocess.Popen
    log: Path
    answers: list[tuple[str, dict]] = field(default_factory=list)


def start(name: str, log_dir: Path, timeout_s: float = 300) -> Running:
    """`bentoml serve` one service in the background; wait until /readyz answers."""
    target, port = SERVICES[name]
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    bentoml = Path(sys.executable).parent / "bentoml"
    process = subprocess.Popen(
        [str(bentoml), "serve", target, "--host", "127.0.0.1", "--port", str(port)],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the {name} service stopped at start-up; see {log}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return Running(name, url, process, log)
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    process.terminate()
    raise TimeoutError(f"the {name} service was not ready within {timeout_s:.0f} s; see {log}")


def post(service: Running, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        service.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    if os.environ.get("SHOPML_API_KEY"):
        request.add_header("X-API-Key", os.environ["SHOPML_API_KEY"])
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    service.answers.append((path, answer))
    return answer


def try_recommender(service: Running, user_id: str) -> None:
    """A recommendation, a click on its first item, a fresh recommendation, similar items."""
    first = post(service, "/recommend", {"user_id": user_id, "k": 5})
    if first["items"]:
        item = first["items"][0]["item_id"]
        post(
            service,
            "/events",
            {"user_id": user_id, "item_id": item, "event_type": "rec_click", "rec_id": first["rec_id"]},
        )
        post(service, "/recommend", {"user_id": user_id, "k": 5})
        post(service, "/similar", {"item_id": item, "k": 3})


def try_support(service: Running) -> None:
    answer = post(service, "/chat", {"session_id": "main-job", "message": "How do I cancel my order?"})
    if answer.get("reply_id"):
        post(service, "/feedback", {"target_id": answer["reply_id"], "rating": 1, "reason": "sample request"})


def stop(services: list[Running]) -> None:
    for service in services:
        service.process.terminate()
    for service in services:
        try:
            service.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.process.kill()
