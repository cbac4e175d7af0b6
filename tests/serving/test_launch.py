"""serving.launch: start a server, wait until it answers, stop it and its process group."""

from __future__ import annotations

import sys
import time

import pytest

from serving.launch import free_port, start_process


def test_a_ready_server_is_returned_and_stopped(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    running = start_process("files", command, port, log=tmp_path / "files.log", ready_path="/", timeout_s=30)
    assert running.url == f"http://127.0.0.1:{port}"
    running.stop()
    assert running.process.poll() is not None


def test_a_failed_start_is_reported_at_once_with_its_log(tmp_path):
    script = "print('Application startup failed. Exiting.', flush=True); import time; time.sleep(60)"
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="failed at start-up(.|\n)*Application startup failed"):
        start_process("broken", [sys.executable, "-c", script], free_port(), log=tmp_path / "b.log")
    # Reported before the process would have ended by itself (it sleeps 60 s), on a busy machine too.
    assert time.monotonic() - started < 50


def test_a_server_that_exits_is_reported(tmp_path):
    with pytest.raises(RuntimeError, match="stopped at start-up \\(exit 3\\)"):
        start_process(
            "gone", [sys.executable, "-c", "raise SystemExit(3)"], free_port(), log=tmp_path / "g.log"
        )
