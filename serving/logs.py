"""Quiet on bad input: a client's 4xx is one INFO line without a traceback, rate limited.

BentoML logs every request its pydantic validation rejects (and every 4xx ``BentoMLException``)
at ERROR with the full traceback, ~25 lines for a typo in a client's JSON. A filter on that
logger rewrites such records into one line that names the path, the status and the fields at
fault (never their values: they may hold personal data), and lets the same line through at
most once per window, saying how many were held back. Server errors pass unchanged.
"""

from __future__ import annotations

import logging
import threading
import time

# The logger BentoML's ``log_exception`` writes to.
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"
WINDOW_S = 60.0
MAX_KEYS = 1024


def client_error(exc: BaseException) -> tuple[int, str] | None:
    """(status, summary) when ``exc`` is a client's fault, else None."""
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_context=False)[:5]
        )
        return 400, f"{exc.error_count()} validation error(s): {fields}"
    if isinstance(exc, BentoMLException) and 400 <= exc.error_code.value < 500:
        return exc.error_code.value, f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


class ClientErrorFilter(logging.Filter):
    """Turns 4xx exception records into rate-limited one-line INFO records."""

    def __init__(self, window_s: float = WINDOW_S, clock=time.monotonic):
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}  # line → (emitted at, held back since)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        found = client_error(exc) if exc is not None else None
        if found is None:
            return True
        status, summary = found
        path, method = (record.args or ("?", "?"))[:2] if isinstance(record.args, tuple) else ("?", "?")
        line = f"{status} on {method} {path}: {summary}"
        now = self.clock()
        with self._lock:
            emitted, held = self._last.get(line, (None, 0))
            if emitted is not None and now - emitted < self.window_s:
                self._last[line] = (emitted, held + 1)
                return False
            if len(self._last) >= MAX_KEYS:
                self._last.clear()
            self._last[line] = (now, 0)
        if held:
            line += f" ({held} more like it in the last {self.window_s:.0f} s)"
        record.msg, record.args = line, None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_client_errors(window_s: float = WINDOW_S) -> None:
    """Install the filter on BentoML's request logger (once per process)."""
    logger = logging.getLogger(BENTOML_REQUEST_LOGGER)
    if not any(isinstance(f, ClientErrorFilter) for f in logger.filters):
        logger.addFilter(ClientErrorFilter(window_s))
