"""HAProxy in front of service replicas on this machine: ``shopml serve --replicas N``.

Each service gets one frontend (its usual port) and one backend of replicas, each a ``bentoml
serve`` of its own on a free port. HAProxy checks ``GET /readyz`` every second (two failures
take a replica out, two successes bring it back), so a replica that is loading, has lost its
feature store or was stopped gets no traffic. A request whose connection to a replica fails,
or whose replica dies before answering, is sent again to another one (``retry-on
conn-failure empty-response junk-response``, ``option redispatch``; ``option
http-buffer-request`` reads each request whole first, without which a replica killed under
load failed 4 requests in one test run): the APIs' requests are small, and a recommendation,
a search or a chat turn asked twice is answered twice, never half. An event posted twice when
its replica died mid-append is appended twice. Weights per
replica make a canary between two builds: ``--tags A,B --weights 90,10``.

HAProxy is Debian's package (``apt-get install haproxy``); the README and ``.ci/run`` install it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from serving import launch
from serving.launch import Running

HEALTH_PATH = "/readyz"


@dataclass(frozen=True)
class Replica:
    name: str
    port: int
    weight: int = 100


def haproxy_config(frontends: dict[str, tuple[int, list[Replica]]], stats_port: int | None = None) -> str:
    """The configuration: service -> (frontend port, replicas)."""
    lines = [
        "global",
        "    maxconn 4096",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout http-request 10s",
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response junk-response",
        # A request is read whole before it goes to a replica, so it can be sent again.
        "    option http-buffer-request",
        "    option http-keep-alive",
        # The replicas answer /readyz for the load balancer; their own logs count the requests.
        "    option dontlognull",
    ]
    if stats_port is not None:
        lines += ["frontend stats", f"    bind 127.0.0.1:{stats_port}", "    stats enable", "    stats uri /"]
    for service, (port, replicas) in frontends.items():
        if not replicas:
            raise ValueError(f"{service} has no replicas")
        lines += [
            f"frontend {service}",
            f"    bind 127.0.0.1:{port}",
            f"    default_backend {service}_replicas",
            f"backend {service}_replicas",
            "    balance roundrobin",
            f"    option httpchk GET {HEALTH_PATH}",
            "    http-check expect status 200",
            "    default-server inter 1s fall 2 rise 2",
        ]
        lines += [f"    server {r.name} 127.0.0.1:{r.port} weight {r.weight} check" for r in replicas]
    return "\n".join(lines) + "\n"


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).exists()), None
    )
    if found is None:
        raise FileNotFoundError("haproxy is not installed: `apt-get install haproxy` (Debian's package)")
    return found


def start_haproxy(config: str, folder: Path, ready_port: int, log: Path | None = None) -> Running:
    """HAProxy in the foreground with ``config`` (written to ``folder``), ready once the
    frontend on ``ready_port`` answers its health path through a healthy replica."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "haproxy.cfg"
    path.write_text(config)
    binary = haproxy_binary()
    check = subprocess.run([binary, "-c", "-q", "-f", str(path)], capture_output=True, text=True)
    if check.returncode:
        raise ValueError(f"haproxy refuses {path}: {(check.stdout + check.stderr).strip()[-1000:]}")
    return launch.start_process("haproxy", [binary, "-db", "-f", str(path)], ready_port, log=log)


def parse_weights(text: str | None, replicas: int) -> list[int]:
    if not text:
        return [100] * replicas
    try:
        weights = [int(w) for w in text.split(",")]
    except ValueError:
        raise ValueError(f"--weights must be integers, one per replica, not {text!r}") from None
    if len(weights) != replicas or any(w < 0 or w > 256 for w in weights) or not any(weights):
        raise ValueError(f"--weights needs {replicas} weights from 0 to 256, not all 0; got {text!r}")
    return weights
