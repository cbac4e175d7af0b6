"""OpenTelemetry spans of a request through the services' parts, off unless configured.

``SHOPML_TRACE_EXPORTER`` turns tracing on: ``console`` (spans as JSON on standard error) or
``otlp`` (OTLP over HTTP to ``SHOPML_TRACE_ENDPOINT``, e.g. http://127.0.0.1:4318/v1/traces,
a collector, Jaeger or Tempo); ``SHOPML_TRACE_SAMPLE_RATE`` (1.0) keeps that share of traces,
a caller's sampling decision first. Each API request is a server span that continues a
caller's W3C ``traceparent``, and the parts it runs are its children: the feature-store read
and the model on the recommender; routing, product search, the retriever, the generator and
the ranker on /chat. Answers carry the trace id in ``X-Trace-Id``, and log lines written
inside a span end with ``trace_id=...``.

Off, ``span`` returns one shared no-op context: no tracer, no context switch (``benchmarks/
serving.py`` measures both). The provider is this module's own, not the global one: BentoML's
tracing middleware (``SHOPML_TRACING``) installs its own and the two never meet.
"""

from __future__ import annotations

import logging
import os
from contextlib import AbstractContextManager, nullcontext

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

EXPORTERS = ("none", "console", "otlp")
_OFF = nullcontext()
_tracer: trace.Tracer | None = None
_provider = None
_propagator = TraceContextTextMapPropagator()


def settings_from_env() -> tuple[str, str | None, float]:
    """(exporter, endpoint, sample rate) from the environment; ValueError naming what is wrong."""
    exporter = os.environ.get("SHOPML_TRACE_EXPORTER", "none").strip().lower() or "none"
    if exporter not in EXPORTERS:
        raise ValueError(f"SHOPML_TRACE_EXPORTER must be one of {', '.join(EXPORTERS)}, not {exporter!r}")
    endpoint = os.environ.get("SHOPML_TRACE_ENDPOINT", "").strip() or None
    if exporter == "otlp" and endpoint is None:
        raise ValueError(
            "SHOPML_TRACE_EXPORTER=otlp needs SHOPML_TRACE_ENDPOINT (e.g. http://127.0.0.1:4318/v1/traces)"
        )
    text = os.environ.get("SHOPML_TRACE_SAMPLE_RATE", "1").strip()
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"SHOPML_TRACE_SAMPLE_RATE must be a number from 0 to 1, not {text!r}")
    return exporter, endpoint, rate


def configure(service: str, exporter: str, endpoint: str | None = None, sample_rate: float = 1.0, out=None):
    """Start tracing for ``service`` (``exporter`` "none" stops it); ``out``: the console's stream."""
    global _tracer, _provider
    shutdown()
    if exporter == "none":
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    if exporter == "console":
        span_exporter = ConsoleSpanExporter(out=out) if out is not None else ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter(endpoint=endpoint, timeout=5)
    _provider = TracerProvider(
        resource=Resource.create({"service.name": f"shopml-{service}"}),
        sampler=ParentBased(TraceIdRatioBased(sample_rate)),
    )
    # Spans leave in batches from a background thread: a slow collector never holds a request.
    _provider.add_span_processor(BatchSpanProcessor(span_exporter))
    _tracer = _provider.get_tracer("shopml")
    # Log lines written inside a span name its trace: the records are built with its id.
    logging.setLogRecordFactory(_record_with_trace_id)


def configure_from_env(service: str) -> None:
    configure(service, *settings_from_env())


def shutdown() -> None:
    """Flush what is pending and stop tracing."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
        logging.setLogRecordFactory(_plain_factory)
    _tracer = _provider = None


def enabled() -> bool:
    return _tracer is not None


def span(name: str, **attributes) -> AbstractContextManager:
    """A child span of the current one while tracing is on; else a shared no-op."""
    if _tracer is None:
        return _OFF
    return _tracer.start_as_current_span(name, attributes=attributes or None)


def server_span(name: str, headers: dict[str, str]) -> AbstractContextManager:
    """The span of one API request, continuing the caller's ``traceparent`` when it sent one."""
    if _tracer is None:
        return _OFF
    return _tracer.start_as_current_span(
        name, context=_propagator.extract(headers), kind=trace.SpanKind.SERVER
    )


def current_trace_id() -> str | None:
    """The current span's trace id (32 hex digits), or None outside a sampled span."""
    context = trace.get_current_span().get_span_context()
    # An unsampled trace is exported nowhere: its id would lead nowhere either.
    return f"{context.trace_id:032x}" if context.is_valid and context.trace_flags.sampled else None


def tracer() -> trace.Tracer | None:
    """The services' tracer while tracing is on (for parts that take one), else None."""
    return _tracer


_plain_factory = logging.getLogRecordFactory()


def _record_with_trace_id(*args, **kwargs) -> logging.LogRecord:
    record = _plain_factory(*args, **kwargs)
    trace_id = current_trace_id()
    if trace_id is not None:
        record.trace_id = trace_id
        record.msg = f"{record.msg} trace_id={trace_id}"
    return record
