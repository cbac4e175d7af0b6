"""Start a service with ``bentoml serve`` on 127.0.0.1, wait until it is ready, stop it.

The one place that runs a server process: the main job, the serving benchmark and the live
tests all go through it. Each server gets its own process group, so stopping it stops its
workers too and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVICES = {
    "recommender": "serving.recommender.service:RecommenderService",
    "support": "serving.support.service:SupportService",
}


@dataclass
class Running:
    name: str
    url: str
    process: subprocess.Popen
    log: Path | None
    answers: list[tuple[str, dict]] = field(default_factory=list)

    def stop(self, timeout_s: float = 30) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def kill_tree(pid: int) -> None:
    """SIGKILL a server and every process under it, as a crash would (BentoML's workers may
    lead process groups of their own, so the group alone is not enough); wait until gone."""
    import psutil

    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        dying = [*root.children(recursive=True), root]
        for process in dying:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        psutil.wait_procs(dying, timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bentoml_command(service: str, port: int) -> list[str]:
    """``bentoml serve`` of a service name (``recommender``, ``support``) or an import target."""
    target = SERVICES.get(service, service)
    return [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1", "--port", str(port)]


def start_process(
    name: str,
    command: list[str],
    port: int,
    env: dict | None = None,
    log: Path | None = None,
    ready_path: str = "/readyz",
    timeout_s: float = 300,
) -> Running:
    """Run ``command`` (a server on 127.0.0.1:port); return once GET ``ready_path`` answers 200.

    ``env`` is added to this process's environment. Output goes to ``log`` (else discarded);
    a server that exits or is not ready in time raises, with the end of its log.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # bentoml serve sets its own
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    output = open(log, "w") if log is not None else subprocess.DEVNULL  # noqa: SIM115 (the child owns it)
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
    )
    if log is not None:
        output.close()
    running = Running(name, f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"the {name} server stopped at start-up (exit {process.returncode}){_tail(log)}"
            )
        if _startup_failed(log):  # BentoML's supervisor keeps running after its worker gave up
            running.stop()
            raise RuntimeError(f"the {name} server failed at start-up{_tail(log)}")
        with contextlib.suppress(urllib.error.URLError, OSError):
            with urllib.request.urlopen(running.url + ready_path, timeout=2) as response:
                if response.status == 200:
                    return running
        if time.monotonic() > deadline:
            running.stop()
            raise TimeoutError(f"the {name} server was not ready within {timeout_s:.0f} s{_tail(log)}")
        time.sleep(0.5)


def start(
    service: str,
    port: int | None = None,
    env: dict | None = None,
    log: Path | None = None,
    timeout_s: float = 300,
) -> Running:
    """``bentoml serve`` one service on 127.0.0.1 (a free port unless given); wait until ready."""
    port = port or free_port()
    return start_process(service, bentoml_command(service, port), port, env, log, timeout_s=timeout_s)


@contextlib.contextmanager
def serving(
    service: str, port: int | None = None, env: dict | None = None, log: Path | None = None
) -> Iterator[Running]:
    running = start(service, port, env, log)
    try:
        yield running
    finally:
        running.stop()


def _startup_failed(log: Path | None) -> bool:
    if log is None or not log.exists():
        return False
    return "Application startup failed" in log.read_text(errors="replace")


def _tail(log: Path | None, chars: int = 3000) -> str:
    if log is None or not log.exists():
        return ""
    return f"; end of {log}:\n{log.read_text(errors='replace')[-chars:]}"
