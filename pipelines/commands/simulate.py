"""shopml simulate: shoppers replayed against a live recommender on this machine, to see an
experiment detect a difference before real shoppers do.

Each simulated shopper is a held-out sequence of the warehouse's ``user_sequences``: the
service sees every item but the last as the shopper's session (``session_item_ids``, under a
new ``user_id`` the online store does not know, so nothing of the held-out item leaks), and
the shopper clicks (``POST /events``, a ``rec_click`` with the list's ``rec_id``) when the list
holds that last item: the click model of a leave-one-out hit. One list per shopper, in a
seeded order, bounded by ``--requests`` and ``--seconds``; only loopback addresses are
accepted. Every ``--check-every`` shoppers the two-sided test of each challenger's
click-through against the champion (``pipelines.experiments``) is run on the answers so far:
``requests_to_significance`` is the first count from which it stays significant. The clicks
land in the event log like real ones, so ``shopml ingest`` and the feedback loop's
``experiment_results`` see the same experiment.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

import numpy as np

from data_contracts import warehouse
from data_contracts.settings import Settings

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SESSION_ITEMS = 50  # the request schema's limit on session items


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:3100", help="the recommender (loopback only)")
    parser.add_argument("--api-key", help="for POST /events when the service has one (SHOPML_API_KEY)")
    parser.add_argument("--requests", type=int, default=2_000, help="shoppers replayed, at most")
    parser.add_argument("--seconds", type=float, default=300.0, help="time allowed, at most")
    parser.add_argument("--k", type=int, default=10, help="items per list")
    parser.add_argument("--check-every", type=int, default=50, help="shoppers between significance checks")
    parser.add_argument("--prefix", default="sim", help="simulated user ids are PREFIX-<n>-<user_id>")
    parser.add_argument("--seed", type=int, default=0)


def held_out(settings: Settings, seed: int) -> list[tuple[str, list[str], str]]:
    """(user_id, history, last item) of every user with two items or more, shuffled by ``seed``."""
    if not settings.warehouse_path.exists():
        raise ValueError(f"no warehouse at {settings.warehouse_path}: run `shopml run` first")
    with warehouse.connect(settings.warehouse_path, read_only=True) as conn:
        if not warehouse.table_exists(conn, "user_sequences"):
            raise ValueError("the warehouse has no user_sequences: run `shopml ingest` first")
        rows = conn.execute(
            "SELECT user_id, item_ids FROM user_sequences WHERE len(item_ids) >= 2 ORDER BY user_id"
        ).fetchall()
    shoppers = [(user, items[:-1][-SESSION_ITEMS:], items[-1]) for user, items in rows]
    random.Random(seed).shuffle(shoppers)
    return shoppers


def _post(url: str, body: dict, api_key: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def first_lasting_significance(checks: list[tuple[int, bool]]) -> int | None:
    """The first request count from which every later check was significant."""
    lasting = None
    for count, significant in checks:
        if not significant:
            lasting = None
        elif lasting is None:
            lasting = count
    return lasting


def click_through_tests(clicks: dict[str, list[int]], champion: str) -> dict[str, dict]:
    """Per challenger: its click-through against the champion's (one list per shopper)."""
    from pipelines.experiments import Rate, compare

    rates = {v: Rate.of(np.array(c, dtype=float), np.ones(len(c))) for v, c in clicks.items()}
    return {
        v: {**compare(rates[champion], rate), "ctr": rate.value, "shoppers": len(clicks[v])}
        for v, rate in rates.items()
        if v != champion and champion in rates
    }


def simulate(args: argparse.Namespace, settings: Settings) -> dict:
    host = urlparse(args.url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"shopml simulate only sends traffic to this machine, not to {host!r}")
    shoppers = held_out(settings, args.seed)[: args.requests]
    deadline = time.monotonic() + args.seconds
    clicks: dict[str, list[int]] = {}
    champion = experiment = None
    checks: list[tuple[int, bool]] = []
    errors = 0
    started = time.monotonic()
    for n, (user, history, last) in enumerate(shoppers, 1):
        if time.monotonic() > deadline:
            break
        sim_user = f"{args.prefix}-{args.seed}-{user}"
        try:
            answer = _post(
                f"{args.url}/recommend", {"user_id": sim_user, "k": args.k, "session_item_ids": history}
            )
            variant = answer.get("variant") or "none"
            if champion is None:
                experiment = answer.get("experiment")
                champion = _champion(settings, experiment, variant)
            hit = last in [i["item_id"] for i in answer["items"]]
            if hit:
                _post(
                    f"{args.url}/events",
                    {
                        "user_id": sim_user,
                        "item_id": last,
                        "event_type": "rec_click",
                        "rec_id": answer["rec_id"],
                    },
                    args.api_key,
                )
        except (urllib.error.URLError, TimeoutError, KeyError, ValueError):
            errors += 1
            continue
        clicks.setdefault(variant, []).append(int(hit))
        if n % args.check_every == 0 and len(clicks) > 1:
            tests = click_through_tests(clicks, champion)
            checks.append((n, any(t["p_value"] < 0.05 for t in tests.values())))
    return {
        "experiment": experiment,
        "champion": champion,
        "requests": sum(len(c) for c in clicks.values()),
        "errors": errors,
        "seconds": round(time.monotonic() - started, 1),
        "ctr": {v: round(float(np.mean(c)), 4) for v, c in clicks.items()},
        "versus_champion": click_through_tests(clicks, champion) if len(clicks) > 1 else {},
        "requests_to_significance": first_lasting_significance(checks),
    }


def _champion(settings: Settings, experiment: str | None, first_seen: str | None) -> str | None:
    """The experiment's champion as the service recorded it, else the first variant seen."""
    from serving.experiments import ExperimentRegistry

    record = ExperimentRegistry(settings.experiments_dir).get(experiment) if experiment else None
    return record["variants"][0]["name"] if record else first_seen


def run(args: argparse.Namespace) -> int:
    print(json.dumps(simulate(args, Settings.from_env()), default=str))
    return 0
