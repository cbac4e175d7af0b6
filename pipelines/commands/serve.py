"""shopml serve: replicas of each service behind HAProxy on their usual ports (serving/balancer.py)."""

from __future__ import annotations

import argparse
import time

from data_contracts.settings import Settings
from pipelines.commands.live import PORTS
from serving import launch
from serving.balancer import Replica, haproxy_config, parse_weights, start_haproxy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replicas", type=int, default=2, help="replicas per service (default 2)")
    parser.add_argument(
        "--services",
        nargs="+",
        choices=tuple(PORTS),
        default=list(PORTS),
        help="which services (default both)",
    )
    parser.add_argument(
        "--tags", help="one model tag per replica, comma-separated: a canary between two builds"
    )
    parser.add_argument("--weights", help="one traffic weight per replica, e.g. 90,10 (default equal)")
    parser.add_argument("--stats-port", type=int, default=3190, help="HAProxy's statistics page (0: none)")


def replica_tags(text: str | None, replicas: int, services: list[str]) -> list[str | None]:
    if not text:
        return [None] * replicas
    tags = [t.strip() for t in text.split(",")]
    if len(services) != 1 or len(tags) != replicas or not all(tags):
        raise ValueError(f"--tags needs one service and {replicas} tags, one per replica; got {text!r}")
    return tags


def start_replicas(settings: Settings, args: argparse.Namespace, started: list[launch.Running]) -> dict:
    """Start every replica (appended to ``started`` as it comes up); service -> (port, replicas)."""
    weights = parse_weights(args.weights, args.replicas)
    tags = replica_tags(args.tags, args.replicas, args.services)
    logs = settings.data_dir / "logs"
    frontends = {}
    for service in args.services:
        replicas = []
        for n, (weight, tag) in enumerate(zip(weights, tags, strict=True), 1):
            port = launch.free_port()
            env = {f"SHOPML_{service.upper()}_TAG": tag} if tag else {}
            print(f"starting {service} replica {n} on 127.0.0.1:{port}", flush=True)
            started.append(launch.start(service, port, env=env, log=logs / f"{service}-{n}.log"))
            replicas.append(Replica(f"{service}{n}", port, weight))
        frontends[service] = (PORTS[service], replicas)
    return frontends


def run(args: argparse.Namespace) -> int:
    if args.replicas < 1:
        raise ValueError("--replicas must be at least 1")
    settings = Settings.from_env()
    started: list[launch.Running] = []
    try:
        frontends = start_replicas(settings, args, started)
        config = haproxy_config(frontends, args.stats_port or None)
        first = next(iter(frontends.values()))[0]
        started.append(
            start_haproxy(
                config, settings.data_dir / "haproxy", first, log=settings.data_dir / "logs" / "haproxy.log"
            )
        )
        for service, (port, replicas) in frontends.items():
            weights = ", ".join(f"{r.name} :{r.port} weight {r.weight}" for r in replicas)
            print(f"{service}: http://127.0.0.1:{port} -> {weights}")
        if args.stats_port:
            print(f"HAProxy statistics: http://127.0.0.1:{args.stats_port}/")
        print("serving; Ctrl-C stops the load balancer and every replica", flush=True)
        while all(r.process.poll() is None for r in started[-1:]):
            time.sleep(1)
        print("haproxy stopped", flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for running in reversed(started):
            running.stop()
