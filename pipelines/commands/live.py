"""Start the services on 127.0.0.1 and send them a few real requests (used by `shopml run`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from serving import launch
from serving.launch import Running

PORTS = {"recommender": 3100, "support": 3101}


def start(name: str, log_dir: Path, timeout_s: float = 300) -> Running:
    """`bentoml serve` one service on its usual port in the background; wait until it is ready."""
    return launch.start(name, PORTS[name], log=log_dir / f"{name}.log", timeout_s=timeout_s)


def build_bento(name: str) -> str:
    """`bentoml build` of a service's bentofile into the model store's home; returns the tag."""
    done = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "-f", f"serving/{name}/bentofile.yaml", "-o", "tag", "."],
        cwd=launch.REPO,
        capture_output=True,
        text=True,
    )
    tags = [line.split("__tag__:", 1)[1].strip() for line in done.stdout.splitlines() if "__tag__:" in line]
    if done.returncode or not tags:
        raise RuntimeError(f"bentoml build of {name} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return tags[-1]


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
    """A recommendation, a click on its first item, a fresh recommendation, similar items, a search."""
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
    # A slip and a plural, personalised by the same shopper's sequence.
    post(service, "/search", {"query": "smart hedphones", "k": 3, "user_id": user_id})


# A shopper's conversation: find a product, narrow it, ask about one of them, a support
# question, thanks, and a message in a language the shop does not serve.
CONVERSATION = (
    "hi, I'm looking for headphones",
    "something cheaper",
    "how much is the second one?",
    "what is your return policy?",
    "thanks!",
    "¿Tienen auriculares inalámbricos?",
)


def try_support(service: Running) -> None:
    """The conversation through /chat in one session, each turn printed as the shopper sees it."""
    session: dict = {}
    for message in CONVERSATION:
        answer = post(service, "/chat", {**session, "message": message})
        # The token comes with the session's first answer only.
        session = {"session_id": answer["session_id"], "session_token": session.get("session_token")}
        session["session_token"] = answer.get("session_token") or session["session_token"]
        products = "; ".join(f"{p['title']} ({p['price']})" for p in answer.get("products") or [])
        print(
            f"  shopper:   {message}\n  assistant: {answer['reply']}"
            + (f"\n    [{products}]" if products else "")
        )
    if answer.get("reply_id"):
        post(service, "/feedback", {"target_id": answer["reply_id"], "rating": 1, "reason": "sample request"})


def stop(services: list[Running]) -> None:
    for service in services:
        service.stop()
