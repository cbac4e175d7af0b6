"""shopml simulate: held-out shoppers replayed against a recommender on this machine, a click
when the list holds the shopper's last item, and when a difference became significant."""

from __future__ import annotations

import argparse
import http.server
import json
import random
import threading

import pytest

from data_contracts import warehouse
from pipelines.commands.simulate import first_lasting_significance, held_out, simulate


def test_significance_counts_from_the_check_after_which_it_held():
    assert (
        first_lasting_significance([(50, False), (100, True), (150, False), (200, True), (250, True)]) == 200
    )
    assert first_lasting_significance([(50, True), (100, False)]) is None
    assert first_lasting_significance([]) is None


def sequences(settings, users: int) -> None:
    with warehouse.connect(settings.warehouse_path) as conn:
        conn.execute("CREATE TABLE user_sequences (user_id TEXT, item_ids TEXT[])")
        rows = [(f"u{n}", [f"i{n}", f"i{n + 1}", f"i{n + 2}"]) for n in range(users)] + [("short", ["i1"])]
        conn.executemany("INSERT INTO user_sequences VALUES (?, ?)", rows)


class Shop(http.server.BaseHTTPRequestHandler):
    """A recommender's two endpoints: variant "a" lists the shopper's next item for 60% of
    shoppers, "b" for 10%."""

    clicks: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/recommend":
            user = body["user_id"]
            variant = "a" if hash(user) % 2 == 0 else "b"
            last = int(body["session_item_ids"][-1][1:])
            lists_it = random.Random(user).random() < (0.6 if variant == "a" else 0.1)
            items = [f"i{last + 1}"] if lists_it else ["i999999"]
            out = {"rec_id": f"r-{user}", "experiment": "exp", "variant": variant}
            out["items"] = [{"item_id": i} for i in items]
        else:
            Shop.clicks.append(body)
            out = {"logged": True}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_held_out_shoppers_hide_their_last_item_and_click_when_it_is_listed(settings):
    sequences(settings, 400)
    shoppers = held_out(settings, seed=1)
    assert len(shoppers) == 400 and shoppers != held_out(settings, seed=2)
    assert all(history[-1] == f"i{int(last[1:]) - 1}" for _, history, last in shoppers)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Shop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Shop.clicks = []
    try:
        args = argparse.Namespace(
            url=f"http://127.0.0.1:{server.server_port}",
            api_key=None,
            requests=300,
            seconds=60,
            k=10,
            check_every=50,
            prefix="sim",
            seed=0,
        )
        out = simulate(args, settings)
    finally:
        server.shutdown()
    assert out["requests"] == 300 and out["errors"] == 0 and out["experiment"] == "exp"
    assert 0.45 < out["ctr"]["a"] < 0.75 and 0.02 < out["ctr"]["b"] < 0.2
    assert len(Shop.clicks) == sum(1 for c in Shop.clicks if c["event_type"] == "rec_click") > 80
    assert all(c["user_id"].startswith("sim-0-u") and c["rec_id"] == f"r-{c['user_id']}" for c in Shop.clicks)
    assert out["requests_to_significance"] in (50, 100)  # a 50-point gap shows at once
    champion = out["champion"]
    assert set(out["versus_champion"]) == {"a", "b"} - {champion}


def test_traffic_goes_only_to_this_machine(settings):
    args = argparse.Namespace(url="http://example.com:3100", requests=1, seconds=1, seed=0)
    with pytest.raises(ValueError, match="only sends traffic to this machine"):
        simulate(args, settings)
