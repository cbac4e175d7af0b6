"""Quiet on bad input: a client's 4xx is one INFO line without a traceback, rate limited."""

from __future__ import annotations

import logging

import pytest

from serving.logs import BENTOML_REQUEST_LOGGER, ClientErrorFilter

KEY = "log-key"


@pytest.fixture
def client(shop_settings, recommender_tag, monkeypatch, asgi_client):
    monkeypatch.setenv("SHOPML_RECOMMENDER_TAG", recommender_tag)
    monkeypatch.setenv("SHOPML_API_KEY", KEY)
    from serving.recommender.service import RecommenderService

    return asgi_client(RecommenderService)


def request_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == BENTOML_REQUEST_LOGGER]


def test_repeated_bad_requests_log_one_line_without_a_traceback(client, caplog):
    caplog.set_level(logging.INFO, logger="bentoml")
    for _ in range(20):
        answer = client.post("/recommend", json={"user_id": "secret-shopper@example.com", "k": 0})
        assert answer.status_code == 400
    records = request_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    (record,) = records
    assert record.levelno == logging.INFO and record.exc_info is None and not record.exc_text
    message = record.getMessage()
    assert message.startswith("400 on POST /recommend: 1 validation error(s): k: ")
    assert "\n" not in message and "secret-shopper" not in message
    # Another mistake is another line.
    assert client.post("/similar", json={"k": 3}).status_code == 400
    assert len(request_records(caplog)) == 2
    assert "item_id: Field required" in request_records(caplog)[-1].getMessage()


def make_record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except type(exc):
        import sys

        return logging.LogRecord(
            BENTOML_REQUEST_LOGGER,
            logging.ERROR,
            __file__,
            1,
            "Exception on %s [%s]",
            ("/recommend", "POST"),
            sys.exc_info(),
        )


def test_the_rate_limit_lets_the_line_through_again_with_a_count():
    from pydantic import BaseModel

    class Body(BaseModel):
        k: int

    def validation_error():
        try:
            Body(k="x")
        except Exception as e:
            return e

    now = [0.0]
    quiet = ClientErrorFilter(window_s=60, clock=lambda: now[0])
    assert quiet.filter(make_record(validation_error()))
    assert not any(quiet.filter(make_record(validation_error())) for _ in range(4))
    now[0] = 61.0
    again = make_record(validation_error())
    assert quiet.filter(again)
    assert again.getMessage().endswith("(4 more like it in the last 60 s)")


def test_server_errors_keep_their_traceback():
    record = make_record(RuntimeError("the model broke"))
    assert ClientErrorFilter().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None


@pytest.mark.integration
def test_served_bad_requests_log_one_line(shop_settings, recommender_tag):
    import httpx

    from serving.launch import serving
    from training.model_store import store_home

    env = {
        "SHOPML_DATA_DIR": str(shop_settings.data_dir),
        "SHOPML_RECOMMENDER_TAG": recommender_tag,
        "BENTOML_HOME": str(store_home()),
    }
    log = shop_settings.data_dir / "logs" / "quiet.log"
    with serving("recommender", env=env, log=log) as running:
        for _ in range(30):
            answer = httpx.post(f"{running.url}/recommend", json={"user_id": "u0", "k": 0}, timeout=10)
            assert answer.status_code == 400
    text = log.read_text(errors="replace")
    assert text.count("400 on POST /recommend: 1 validation error(s): k: ") == 1, text[-3000:]
    assert "Traceback" not in text and "[ERROR]" not in text
