"""Tracing: off costs a shared no-op; on, a request is a server span continuing the caller's
traceparent, its parts are children (threads included), log lines name the trace, and spans
leave by the console or OTLP over HTTP."""

from __future__ import annotations

import http.server
import io
import json
import logging
import threading

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serving import tracing
from serving.config import ServingConfig
from serving.http import GuardMiddleware
from serving.resilience import in_thread

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


@pytest.fixture(autouse=True)
def tracing_off_afterwards():
    yield
    tracing.shutdown()


def console_spans(out: io.StringIO) -> list[dict]:
    """The JSON objects the console exporter wrote (one per span, pretty-printed)."""
    decoder, text, spans, at = json.JSONDecoder(), out.getvalue(), [], 0
    while True:
        start = text.find("{", at)
        if start < 0:
            return spans
        span, at = decoder.raw_decode(text, start)
        spans.append(span)


def test_the_settings_are_read_and_checked(monkeypatch):
    assert tracing.settings_from_env() == ("none", None, 1.0)
    monkeypatch.setenv("SHOPML_TRACE_EXPORTER", "otlp")
    with pytest.raises(ValueError, match="needs SHOPML_TRACE_ENDPOINT"):
        tracing.settings_from_env()
    monkeypatch.setenv("SHOPML_TRACE_ENDPOINT", "http://127.0.0.1:4318/v1/traces")
    monkeypatch.setenv("SHOPML_TRACE_SAMPLE_RATE", "0.25")
    assert tracing.settings_from_env() == ("otlp", "http://127.0.0.1:4318/v1/traces", 0.25)
    assert ServingConfig.from_env().trace_exporter == "otlp"
    for name, value, says in [
        ("SHOPML_TRACE_EXPORTER", "zipkin", "must be one of none, console, otlp"),
        ("SHOPML_TRACE_SAMPLE_RATE", "2", "from 0 to 1"),
    ]:
        monkeypatch.setenv(name, value)
        with pytest.raises(ValueError, match=says):
            ServingConfig.from_env()
        monkeypatch.delenv(name)


def test_off_a_span_is_one_shared_no_op():
    assert not tracing.enabled() and tracing.tracer() is None
    assert tracing.span("a") is tracing.span("b") is tracing.server_span("c", {})
    with tracing.span("a"):
        assert tracing.current_trace_id() is None


def app_behind_the_guard() -> TestClient:
    log = logging.getLogger("shopml.test.tracing")

    async def answer(request):
        with tracing.span("part.on_the_loop"):
            pass

        def in_a_thread():
            with tracing.span("part.in_a_thread"):
                log.warning("working")

        await in_thread(in_a_thread, timeout_s=5)
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/answer", answer, methods=["POST"])])
    guarded = GuardMiddleware(app, frozenset({"/answer"}), config=ServingConfig(), service="test")
    return TestClient(guarded)


def test_a_request_is_a_server_span_continuing_the_callers_trace(caplog):
    out = io.StringIO()
    tracing.configure("test", "console", out=out)
    client = app_behind_the_guard()
    with caplog.at_level(logging.WARNING, logger="shopml.test.tracing"):
        answer = client.post("/answer", json={}, headers={"traceparent": TRACEPARENT})
    assert answer.status_code == 200 and answer.headers["x-trace-id"] == CALLER_TRACE
    assert [r.getMessage() for r in caplog.records] == [f"working trace_id={CALLER_TRACE}"]
    fresh = client.post("/answer", json={})  # no traceparent: a new trace
    assert fresh.headers["x-trace-id"] not in ("", CALLER_TRACE)
    tracing.shutdown()  # flushes the batch
    spans = {s["name"]: s for s in console_spans(out) if s["context"]["trace_id"] == f"0x{CALLER_TRACE}"}
    assert set(spans) == {"POST /answer", "part.on_the_loop", "part.in_a_thread"}
    server = spans["POST /answer"]
    assert server["kind"] == "SpanKind.SERVER" and server["parent_id"] == "0x00f067aa0ba902b7"
    assert server["attributes"]["http.response.status_code"] == 200
    assert server["resource"]["attributes"]["service.name"] == "shopml-test"
    for child in ("part.on_the_loop", "part.in_a_thread"):
        assert spans[child]["parent_id"] == server["context"]["span_id"]


def test_off_the_answer_has_no_trace_header():
    answer = app_behind_the_guard().post("/answer", json={}, headers={"traceparent": TRACEPARENT})
    assert answer.status_code == 200 and "x-trace-id" not in answer.headers


def test_a_sample_rate_of_zero_records_nothing_but_a_callers_sampled_trace():
    out = io.StringIO()
    tracing.configure("test", "console", sample_rate=0.0, out=out)
    client = app_behind_the_guard()
    assert "x-trace-id" not in client.post("/answer", json={}).headers  # not sampled
    assert client.post("/answer", json={}, headers={"traceparent": TRACEPARENT}).headers["x-trace-id"]
    tracing.shutdown()
    assert {s["context"]["trace_id"] for s in console_spans(out)} == {f"0x{CALLER_TRACE}"}


def test_spans_leave_by_otlp_over_http():
    received: list[bytes] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the handler's name is http.server's)
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tracing.configure("test", "otlp", f"http://127.0.0.1:{server.server_port}/v1/traces")
        with tracing.server_span("POST /chat", {}), tracing.span("support.generate"):
            pass
        tracing.shutdown()
    finally:
        server.shutdown()
    names = set()
    for body in received:
        request = ExportTraceServiceRequest.FromString(body)
        names |= {s.name for r in request.resource_spans for ss in r.scope_spans for s in ss.spans}
    assert names == {"POST /chat", "support.generate"}
