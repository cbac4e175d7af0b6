"""The production profile end to end, on this machine's PostgreSQL and Redis: the pipeline is
materialised with Dagster's storage on PostgreSQL, the feature store on Redis (registry on
PostgreSQL), and both services answer over HTTP with their state on Redis."""

from __future__ import annotations

import json

import httpx
import pytest
import redis

from pipelines.commands.ingest import dagster_instance, ingest_landed, run_job

pytestmark = pytest.mark.integration
KEY = "production-key"


def test_pipeline_materialised_and_served_on_postgres_and_redis(production, tiny_shop, support_tag):
    from features.config import FeatureStoreConfig, open_store
    from features.online import open_sequences
    from serving.launch import serving
    from training.model_store import store_home

    instance = dagster_instance(production)
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    run_ids = ingest_landed(production, instance=instance)
    run_ids += [run_job(production, job, instance=instance) for job in ("features_job", "recommender_job")]
    assert all(instance.get_run_by_id(r).is_success for r in run_ids)
    assert instance.get_run_records(), "the runs are recorded in PostgreSQL"

    config = FeatureStoreConfig.from_settings(production)
    sequences = open_sequences(open_store(config), config)
    user = "u000001"
    assert sequences.read(user).item_ids, "the online store on Redis has the user's sequence"

    recommender_tag = json.loads((production.reports_dir / "recommender.json").read_text())["tag"]
    env = {
        "BENTOML_HOME": str(store_home()),
        "SHOPML_RECOMMENDER_TAG": recommender_tag,
        "SHOPML_SUPPORT_TAG": support_tag,
        "SHOPML_SUPPORT_GENERATE": "0",
        "SHOPML_API_KEY": KEY,
    }
    logs = production.data_dir / "logs"
    with serving("recommender", env=env, log=logs / "recommender.log") as rec:
        answer = httpx.post(f"{rec.url}/recommend", json={"user_id": user, "k": 3}, timeout=30).json()
        assert answer["fallback"] is None and answer["model_version"] == recommender_tag
        assert len(answer["items"]) == 3
        click = {"user_id": user, "item_id": answer["items"][0]["item_id"], "event_type": "rec_click"}
        event = httpx.post(f"{rec.url}/events", json=click, headers={"X-API-Key": KEY}, timeout=30)
        assert event.status_code == 200 and event.json()["stored_online"]
    assert sequences.read(user).item_ids[-1] == click["item_id"], "the click reached Redis"

    session = "production-session"
    with serving("support", env=env, log=logs / "support.log") as support:
        first = httpx.post(
            f"{support.url}/chat",
            json={"session_id": session, "message": "I want to cancel my order"},
            timeout=60,
        )
        assert first.status_code == 200, first.text
        token = first.json()["session_token"]
        second = httpx.post(
            f"{support.url}/chat",
            json={"session_id": session, "session_token": token, "message": "it is order 12345"},
            timeout=60,
        )
        assert second.status_code == 200, second.text
        feedback = httpx.post(
            f"{support.url}/feedback",
            json={"target_id": second.json()["reply_id"], "rating": 1},
            headers={"X-API-Key": KEY},
            timeout=30,
        )
        assert feedback.status_code == 200, feedback.text
    keys = [k.decode() for k in redis.Redis.from_url(production.redis_url).keys(f"*{session}*")]
    assert keys, "the dialogue state is kept in Redis"
