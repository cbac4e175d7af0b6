"""The support service: replies, handover fallbacks, feedback on replies and recommendations."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from data_contracts.landing_log import LandingLog
from serving.config import ServingConfig
from serving.support.engine import SupportEngine, UnknownReplyError
from serving.support.schemas import ChatRequest, FeedbackRequest
from training.support.runtime import SupportRuntime

KEY = "support-key"


def landed(settings, kind):
    return [
        json.loads(line)
        for p in sorted((settings.landing_dir / kind).rglob("*.jsonl"))
        for line in p.read_text().splitlines()
    ]


@pytest.fixture
def engine(settings, support_tag):
    return SupportEngine.from_settings(settings, ServingConfig(support_tag=support_tag, breaker_reset_s=60))


def test_chat_replies_with_sources_and_scores_and_logs_the_reply(engine, settings, support_tag):
    out = asyncio.run(engine.chat(ChatRequest(session_id="s1", message="I want to cancel order 12345678")))
    assert out.fallback is None and not out.handover and out.model_version == support_tag
    assert out.sources and out.candidates
    assert [c.score for c in out.candidates] == sorted((c.score for c in out.candidates), reverse=True)
    (reply,) = landed(settings, "replies")
    assert reply["reply_id"] == out.reply_id and reply["message"].startswith("I want to cancel")
    assert (
        reply["sources"] == [s.doc_id for s in out.sources] and reply["top_score"] == out.candidates[0].score
    )


def test_feedback_on_a_reply_and_on_a_recommendation_is_logged(engine, settings):
    reply = asyncio.run(
        engine.chat(ChatRequest(session_id="s2", message="how do I get an invoice", user_id="u9"))
    )
    thumbs = asyncio.run(
        engine.feedback(FeedbackRequest(target_id=reply.reply_id, rating=-1, reason="wrong"))
    )
    assert thumbs.logged and thumbs.target_kind == "reply"
    LandingLog(settings).write("served", {"rec_id": "cd" * 16, "user_id": "u9", "items": ["i1"]})
    rec = asyncio.run(
        engine.feedback(FeedbackRequest(target_id="cd" * 16, target_kind="recommendation", rating=1))
    )
    first, second = landed(settings, "feedback")
    assert first["target_id"] == reply.reply_id and first["session_id"] == "s2" and first["user_id"] == "u9"
    assert first["rating"] == -1 and first["reason"] == "wrong"
    assert second["feedback_id"] == rec.feedback_id and second["target_kind"] == "recommendation"
    with pytest.raises(UnknownReplyError):
        asyncio.run(engine.feedback(FeedbackRequest(target_id="ef" * 16, rating=1)))
    # A recommendation that was never served is refused like an unknown reply (404).
    with pytest.raises(UnknownReplyError, match="no recommendation with this id was served"):
        asyncio.run(
            engine.feedback(FeedbackRequest(target_id="ab" * 16, target_kind="recommendation", rating=1))
        )


def test_slow_or_failing_pipeline_hands_over_and_the_breaker_opens(settings, support_tag):
    class SlowRuntime(SupportRuntime):
        def reply(self, session_id, message):
            time.sleep(0.3)
            return super().reply(session_id, message)

    engine = SupportEngine.from_settings(
        settings, ServingConfig(support_tag=support_tag, chat_timeout_s=0.05)
    )
    engine.runtime.__class__ = SlowRuntime
    out = asyncio.run(engine.chat(ChatRequest(session_id="s3", message="where is my parcel")))
    assert out.fallback == "timeout" and out.handover and "colleague" in out.reply

    class BrokenStore:
        def append_turn(self, *args):
            raise ConnectionError("Redis dialogue store is unreachable")

    engine = SupportEngine.from_settings(settings, ServingConfig(support_tag=support_tag, breaker_failures=2))
    engine.runtime.store = BrokenStore()
    reasons = [
        asyncio.run(engine.chat(ChatRequest(session_id="s4", message="hello"))).fallback for _ in range(4)
    ]
    assert reasons == ["model_error", "model_error", "unavailable", "unavailable"]
    assert all(r["handover"] for r in landed(settings, "replies"))


@pytest.fixture
def client(settings, support_tag, monkeypatch, asgi_client):
    monkeypatch.setenv("SHOPML_SUPPORT_TAG", support_tag)
    monkeypatch.setenv("SHOPML_API_KEY", KEY)
    from serving.support.service import SupportService

    return asgi_client(SupportService)


def test_http_chat_and_feedback(client):
    r = client.post("/chat", json={"session_id": "s1", "message": "I need a refund"})
    assert r.status_code == 200, r.text
    reply_id = r.json()["reply_id"]
    body = {"target_id": reply_id, "rating": 1}
    assert client.post("/feedback", json=body).status_code == 401
    ok = client.post("/feedback", json=body, headers={"X-API-Key": KEY})
    assert ok.status_code == 200 and ok.json()["logged"]
    unknown = client.post("/feedback", json={"target_id": "0" * 32, "rating": 1}, headers={"X-API-Key": KEY})
    assert unknown.status_code == 404 and "unknown reply_id" in unknown.json()["error"]
    assert client.get("/readyz").status_code == 200
    assert {"/chat", "/feedback"} <= set(client.get("/docs.json").json()["paths"])


@pytest.mark.parametrize(
    "path,body",
    [
        ("/chat", {"session_id": "s1"}),
        ("/chat", {"session_id": "s1", "message": ""}),
        ("/chat", {"session_id": "s1", "message": "   "}),
        ("/chat", {"session_id": "s1", "message": "x" * 2001}),
        ("/chat", {"session_id": "", "message": "hi"}),
        ("/feedback", {"target_id": "0" * 32, "rating": 0}),
        ("/feedback", {"target_id": "0" * 32, "rating": 2}),
        ("/feedback", {"target_id": "not-an-id", "rating": 1}),
        ("/feedback", {"target_id": "0" * 32, "rating": 1, "reason": "r" * 501}),
        ("/feedback", {"target_id": "0" * 32, "rating": 1, "target_kind": "article"}),
    ],
)
def test_bad_input_is_a_400(client, path, body):
    r = client.post(path, json=body, headers={"X-API-Key": KEY})
    assert r.status_code == 400, r.text
    assert r.json()["error"]


@pytest.mark.parametrize(
    "message, language",
    [("我想取消订单", "zh"), ("¿Dónde está mi pedido?", "es"), ("Ich möchte die Jacke zurückgeben", "de")],
)
def test_a_language_the_shop_does_not_serve_gets_a_handover_in_that_language(engine, message, language):
    from training.support.language import HANDOVER_TEXTS

    out = asyncio.run(engine.chat(ChatRequest(session_id=f"lang-{language}", message=message)))
    assert out.handover and out.language == language and out.reply == HANDOVER_TEXTS[language]
    assert out.sources == [] and out.candidates == []


def test_short_messages_are_answered_not_handed_over_as_foreign(engine):
    from training.support.language import HANDOVER_TEXTS

    foreign = {text for code, text in HANDOVER_TEXTS.items() if code != "en"}
    session, token = None, None
    for message in ("ok", "thx", "cheers", "order 12345678", "#00108"):
        out = asyncio.run(engine.chat(ChatRequest(session_id=session, session_token=token, message=message)))
        session, token = out.session_id, token or out.session_token
        assert out.reply not in foreign and out.language in (None, "en"), message


def test_replies_and_candidates_carry_no_stand_in_and_no_example_order_number(engine):
    from training.support.placeholders import leaks

    for session, message in (("p1", "I want to cancel order 12345678"), ("p2", "how do I get an invoice")):
        out = asyncio.run(engine.chat(ChatRequest(session_id=session, message=message)))
        for text in [out.reply] + [c.text for c in out.candidates]:
            assert leaks(text) == [], text
            assert set(re.findall(r"\d{5,}", text)) <= {"12345678"}, text


def test_a_session_belongs_to_its_caller(engine):
    from serving.support.engine import SessionForbidden

    first = asyncio.run(engine.chat(ChatRequest(message="I want to cancel order 12345678")))
    assert first.session_token and first.session_id
    again = asyncio.run(
        engine.chat(
            ChatRequest(
                session_id=first.session_id, session_token=first.session_token, message="and the refund?"
            )
        )
    )
    assert again.session_id == first.session_id and again.session_token is None and again.fallback is None
    # Another caller who knows or guesses the id, without the token or with a wrong one.
    for token in (None, "x" * 32):
        with pytest.raises(SessionForbidden):
            asyncio.run(
                engine.chat(
                    ChatRequest(session_id=first.session_id, session_token=token, message="what is my order?")
                )
            )
    assert engine.breaker.state == "closed"  # refusals are not failures of the store
    # A client-chosen id starts a session of its own, bound to the token it gets back.
    own = asyncio.run(engine.chat(ChatRequest(session_id="chosen-id", message="hello")))
    assert own.session_id == "chosen-id" and own.session_token


def test_http_refuses_another_callers_session_with_403(client):
    first = client.post("/chat", json={"message": "I want to cancel order 12345678"})
    assert first.status_code == 200, first.text
    session = first.json()["session_id"]
    stolen = client.post("/chat", json={"session_id": session, "message": "which order was it?"})
    assert stolen.status_code == 403 and "another caller" in stolen.json()["error"]
    assert "12345678" not in stolen.text
    mine = client.post(
        "/chat",
        json={"session_id": session, "session_token": first.json()["session_token"], "message": "thanks"},
    )
    assert mine.status_code == 200, mine.text


def test_the_reply_log_holds_no_personal_data_in_clear(engine, settings):
    message = "cancel order 12345678 please, my email is jo.doe@example.com"
    out = asyncio.run(engine.chat(ChatRequest(message=message)))
    (logged,) = [r for r in landed(settings, "replies") if r["reply_id"] == out.reply_id]
    for secret in ("12345678", "jo.doe@example.com"):
        assert secret not in json.dumps(logged), logged
    assert logged["message"] == "cancel order <redacted> please, my email is <redacted>"  # the slots


def test_the_service_generates_by_default_and_a_switch_turns_it_off(monkeypatch):
    from data_contracts.settings import Settings

    monkeypatch.delenv("SHOPML_SUPPORT_GENERATE", raising=False)
    assert ServingConfig().support_generate and ServingConfig.from_env(Settings()).support_generate
    for off in ("0", "false", "no"):
        monkeypatch.setenv("SHOPML_SUPPORT_GENERATE", off)
        assert not ServingConfig.from_env(Settings()).support_generate


@pytest.fixture(scope="session")
def second_support_tag(support_tag) -> str:
    """Another version of the tiny support model, for a traffic split."""
    from training.support.artifact import load_support_model, save_support_model

    return save_support_model(load_support_model(support_tag, with_generator=False))


def test_a_support_split_answers_each_shopper_with_their_variant_and_logs_it(
    settings, support_tag, second_support_tag, monkeypatch
):
    from serving.experiments import ExperimentRegistry

    monkeypatch.setenv(
        "SHOPML_SUPPORT_VARIANTS", f"champion={support_tag}:50,challenger={second_support_tag}:50"
    )
    monkeypatch.setenv("SHOPML_SUPPORT_EXPERIMENT", "chat-exp")
    engine = SupportEngine.from_settings(settings, ServingConfig())
    versions = {"champion": support_tag, "challenger": second_support_tag}
    seen = {}
    for n in range(12):
        user = f"u{n}"
        first = asyncio.run(engine.chat(ChatRequest(message="how do I get an invoice", user_id=user)))
        again = asyncio.run(engine.chat(ChatRequest(message="where is my refund", user_id=user)))
        assert first.experiment == "chat-exp" and first.variant in versions
        assert again.variant == first.variant and again.session_id != first.session_id  # sticky per shopper
        assert first.model_version == versions[first.variant]
        seen[user] = first.variant
    assert set(seen.values()) == {"champion", "challenger"}
    logged = landed(settings, "replies")
    assert len(logged) == 24
    assert all(r["experiment"] == "chat-exp" and r["variant"] == seen[r["user_id"]] for r in logged)
    record = ExperimentRegistry(settings.experiments_dir).get("chat-exp")
    assert record["service"] == "support"
    assert {v["name"]: v["version"] for v in record["variants"]} == versions
    # A stop sends everyone to the champion, outside the experiment.
    ExperimentRegistry(settings.experiments_dir).stop("chat-exp", "test")
    engine.experiment_stopped = lambda: True
    after = asyncio.run(engine.chat(ChatRequest(message="thanks", user_id="u1")))
    assert after.experiment is None and after.variant is None and after.model_version == support_tag


def test_a_support_split_refuses_a_popularity_arm_and_a_version_not_in_the_store(
    settings, support_tag, monkeypatch
):
    from training.artifact_files import ArtifactError

    monkeypatch.setenv("SHOPML_SUPPORT_VARIANTS", f"champion={support_tag}:50,popularity:50")
    with pytest.raises(ValueError, match="no popularity arm"):
        SupportEngine.from_settings(settings, ServingConfig())
    monkeypatch.setenv("SHOPML_SUPPORT_VARIANTS", f"champion={support_tag}:50,challenger=support:nothere:50")
    with pytest.raises(ArtifactError, match="no support model 'support:nothere'"):
        SupportEngine.from_settings(settings, ServingConfig())


@pytest.fixture
def kept_promotion(settings):
    """The store's support promotion record, put back as it was after the test."""
    from training.model_store import promotion_path
    from training.support.artifact import promoted_tag

    promoted_tag(settings)  # points BentoML at the store first
    path = promotion_path("support")
    before = path.read_bytes() if path.exists() else None
    yield
    if before is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(before)


def test_a_promotion_keeps_the_version_it_replaced_as_previous(
    settings, support_tag, second_support_tag, kept_promotion
):
    from training.support.artifact import previous_tag, promote, promoted_tag, tag_for

    promote(support_tag, {}, settings)
    promote(second_support_tag, {}, settings)
    assert promoted_tag(settings) == second_support_tag and previous_tag(settings) == support_tag
    promote(second_support_tag, {}, settings)  # promoting it again keeps what came before it
    assert previous_tag(settings) == support_tag
    assert (
        tag_for("previous", settings) == support_tag and tag_for("promoted", settings) == second_support_tag
    )
    assert tag_for("support:v", settings) == "support:v"
