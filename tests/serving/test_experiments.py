"""Traffic splits: sticky, reproducible assignment by hash; each variant's model answers, and
the variant is in the answer and in the served log."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from data_contracts.landing_log import LandingLog
from serving.catalog import Catalog
from serving.config import ServingConfig
from serving.experiments import Experiment, Variant, experiment_from_env, parse_variants
from serving.recommender.engine import RecommenderEngine, load_variants, open_online_store
from serving.recommender.schemas import RecommendRequest
from tests.serving.conftest import tiny_recommender_tag

SPLIT = (Variant("champion", "promoted", 90), Variant("challenger", "recommender:x", 10))


def test_variants_are_parsed_with_names_aliases_and_tags():
    assert parse_variants("champion=promoted:90, challenger=recommender:ab12:10") == SPLIT[:1] + (
        Variant("challenger", "recommender:ab12", 10),
    )
    assert [v.name for v in parse_variants("promoted:50,previous:50")] == ["promoted", "previous"]
    for bad, says in [
        ("promoted:90", "at least two"),
        ("promoted:ninety,previous:10", "name=]model:weight"),
        ("a=promoted:50,a=previous:50", "repeat"),
        ("promoted:0,previous:0", "sum to 0"),
    ]:
        with pytest.raises(ValueError, match=says):
            parse_variants(bad)


def test_assignment_is_sticky_reproducible_and_follows_the_weights():
    experiment = Experiment("rec-test", SPLIT)
    users = [f"u{i}" for i in range(20_000)]
    first = [experiment.assign(u).name for u in users]
    assert first == [Experiment("rec-test", SPLIT).assign(u).name for u in users]  # any process
    share = Counter(first)["challenger"] / len(users)
    assert 0.09 < share < 0.11
    # Another experiment reshuffles: about 10% of each variant's users move between them.
    other = [Experiment("rec-test-2", SPLIT).assign(u).name for u in users]
    moved = sum(a != b for a, b in zip(first, other, strict=True)) / len(users)
    assert 0.12 < moved < 0.24


def test_outside_its_window_everyone_gets_the_champion():
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    experiment = Experiment("rec-window", SPLIT, start, end)
    users = [f"u{i}" for i in range(500)]
    inside = {experiment.assign(u, datetime(2026, 1, 15, tzinfo=UTC)).name for u in users}
    assert inside == {"champion", "challenger"}
    for when in (datetime(2025, 12, 31, tzinfo=UTC), end):
        assert {experiment.assign(u, when).name for u in users} == {"champion"}


def test_the_experiment_is_read_from_the_environment_and_named_by_its_split(monkeypatch):
    assert experiment_from_env("recommender") is None
    monkeypatch.setenv("SHOPML_RECOMMENDER_VARIANTS", "champion=promoted:90,challenger=recommender:x:10")
    first = experiment_from_env("recommender")
    monkeypatch.setenv("SHOPML_RECOMMENDER_VARIANTS", "champion=promoted:80,challenger=recommender:x:20")
    assert experiment_from_env("recommender").name != first.name  # a new split, a new experiment
    monkeypatch.setenv("SHOPML_RECOMMENDER_EXPERIMENT", "winter-test")
    monkeypatch.setenv("SHOPML_RECOMMENDER_EXPERIMENT_START", "2026-12-01T00:00:00")
    named = experiment_from_env("recommender")
    assert named.name == "winter-test" and named.start == datetime(2026, 12, 1, tzinfo=UTC)
    monkeypatch.setenv("SHOPML_RECOMMENDER_EXPERIMENT_END", "yesterday")
    with pytest.raises(ValueError, match="ISO 8601"):
        experiment_from_env("recommender")


def split_engine(settings, experiment: Experiment, landing=None, **options) -> RecommenderEngine:
    """An engine serving ``experiment`` over the test shop, each variant's model loaded."""
    variants = load_variants(settings, experiment)
    return RecommenderEngine(
        variants[experiment.champion.name],
        Catalog.load(settings.warehouse_path),
        lambda: open_online_store(settings),
        landing,
        ServingConfig(cache_ttl_s=0),
        experiment,
        variants,
        **options,
    )


def test_each_variant_answers_with_its_own_model_and_says_so(shop_settings, recommender_tag):
    challenger_tag = tiny_recommender_tag(seed=1)
    experiment = Experiment(
        "rec-engine", (Variant("champion", recommender_tag, 50), Variant("challenger", challenger_tag, 50))
    )
    engine = split_engine(shop_settings, experiment, LandingLog(shop_settings))
    variants = engine.variants
    seen = {}
    for user in ("u0", "u1", "u2", "u3", "u4", "u5"):
        out = asyncio.run(engine.recommend(RecommendRequest(user_id=user)))
        assigned = experiment.assign(user).name
        assert out.experiment == "rec-engine" and out.variant == assigned
        assert out.model_version == variants[assigned].version
        seen[assigned] = out.model_version
    assert seen == {"champion": recommender_tag, "challenger": challenger_tag}
    logged = [
        json.loads(line)
        for path in (shop_settings.landing_dir / "served").rglob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert {(r["variant"], r["model_version"]) for r in logged} == set(seen.items())
    assert {r["experiment"] for r in logged} == {"rec-engine"}


def test_a_stopped_or_ended_experiment_answers_with_the_champion_outside_the_split(
    shop_settings, recommender_tag
):
    challenger_tag = tiny_recommender_tag(seed=1)
    experiment = Experiment(
        "rec-stop", (Variant("champion", recommender_tag, 1), Variant("challenger", challenger_tag, 99))
    )
    stopped = [False]
    engine = split_engine(shop_settings, experiment, experiment_stopped=lambda: stopped[0])
    users = [f"u{i}" for i in range(8)]
    before = [asyncio.run(engine.recommend(RecommendRequest(user_id=u))) for u in users]
    assert {o.variant for o in before} >= {"challenger"} and {o.experiment for o in before} == {"rec-stop"}
    stopped[0] = True
    after = [asyncio.run(engine.recommend(RecommendRequest(user_id=u))) for u in users]
    assert {(o.experiment, o.variant, o.model_version) for o in after} == {(None, None, recommender_tag)}
    stopped[0] = False
    engine.experiment = Experiment("rec-ended", experiment.variants, end=datetime(2026, 1, 1, tzinfo=UTC))
    ended = [asyncio.run(engine.recommend(RecommendRequest(user_id=u))) for u in users]
    assert {(o.experiment, o.model_version) for o in ended} == {(None, recommender_tag)}


def test_the_popularity_arm_answers_with_the_catalogs_ranking_not_as_a_fallback(
    shop_settings, recommender_tag
):
    experiment = Experiment(
        "rec-pop", (Variant("champion", recommender_tag, 50), Variant("challenger", "popularity", 50))
    )
    engine = split_engine(shop_settings, experiment)
    variants = engine.variants
    assert variants["challenger"] is None
    answers = {}
    for user in (f"u{i}" for i in range(12)):
        known = variants["champion"].recommender.items[:1]  # a session the model can read
        out = asyncio.run(engine.recommend(RecommendRequest(user_id=user, session_item_ids=known)))
        answers[out.variant] = (out.model_version, out.fallback)
    assert answers == {"champion": (recommender_tag, None), "challenger": ("popularity", None)}


def test_two_variants_of_one_tag_share_one_loaded_model(shop_settings, recommender_tag):
    experiment = Experiment("rec-same", (Variant("a", recommender_tag, 1), Variant("b", recommender_tag, 1)))
    variants = load_variants(shop_settings, experiment)
    assert variants["a"] is variants["b"]
