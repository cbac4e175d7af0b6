"""Train, evaluate, save, load and serve a support model built from tiny models."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from training.artifact_files import seal
from training.support import training_steps
from training.support.artifact import (
    ArtifactError,
    load_support_model,
    model_path,
    promoted_tag,
    save_support_model,
)
from training.support.evaluate import GATE_THRESHOLDS, PRIMARY_METRIC
from training.support.runtime import SupportRuntime, UnknownReplyError


@pytest.fixture(scope="module")
def trained(tiny_config, sample_corpus, tiny_sentence_encoder, tmp_path_factory):
    from data_contracts.settings import Settings

    settings = Settings(data_dir=tmp_path_factory.mktemp("data"))
    model, corpus = training_steps.train_support_model(
        settings, tiny_config, sample_corpus, tiny_sentence_encoder
    )
    return settings, model, corpus


def test_train_evaluate_save_and_reload(trained):
    settings, model, corpus = trained
    assert model.adapter is not None  # a few LoRA steps ran
    report = training_steps.support_evaluation(model, corpus)
    m = report.metrics
    for key in ("retrieval_recall@1", "retrieval_recall@5", "ranker_r@1", "handover_rate", "rouge_l"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["retrieval_recall@1"] <= m["retrieval_recall@5"]
    assert m["generated_rows"] == 2
    assert "latency_rank_p50_ms" in m
    # Replies are generated unless the gate fitted on the validation rows is shut.
    assert ("latency_generate_p50_ms" in m) == (model.config.generation_min_grounding <= 1)
    assert report.plot_png.startswith(b"\x89PNG")
    assert "| ranker_r@1 |" in report.table
    assert report.by_intent.height == corpus.test()["intent"].n_unique()

    model.metrics = report.metrics
    tag = save_support_model(model, settings)
    decision = training_steps.promote_support_model(tag, report, None, settings)
    assert decision["promoted"] and promoted_tag(settings) == tag

    loaded = load_support_model(settings=settings)
    assert loaded.tag == tag
    question = corpus.test()["question"][0]
    a = model.retriever.search(question, 3)
    b = loaded.retriever.search(question, 3)
    assert [h.doc.doc_id for h in a] == [h.doc.doc_id for h in b]
    assert model.ranker.score(question, ["x", "y"]) == pytest.approx(
        loaded.ranker.score(question, ["x", "y"]), abs=1e-5
    )
    turns = [("user", question)]
    assert model.generator.generate(turns, ["p"]) == loaded.generator.generate(turns, ["p"])
    # The router travels with the model: same probabilities, same threshold (set on the dev half).
    assert loaded.router is not None and loaded.router.threshold == model.router.threshold
    messages, previous = ["how much is the second one?", "hi"], ["show me lamps", ""]
    assert loaded.router.probabilities(messages, previous) == pytest.approx(
        model.router.probabilities(messages, previous), abs=1e-5
    )
    assert 0.0 <= m["router_dev_accuracy"] <= 1.0 and m["router_threshold"] == model.router.threshold
    # The generation gate was fitted on validation rows and travels with the model too.
    assert m["generation_gate_threshold"] in GATE_THRESHOLDS and m["generation_gate_rows"] > 0
    assert model.config.generation_min_grounding == m["generation_gate_threshold"]
    assert loaded.config.generation_min_grounding == model.config.generation_min_grounding
    assert m["generation_gate_similarity"] >= m["generation_gate_similarity_shut"]

    # the same model evaluated again is not "better": it is not promoted over itself
    again = training_steps.promote_support_model(tag, report, report, settings)
    assert not again["promoted"] and not again["challenger"]
    # In challenger mode a model that beats the promoted one is tried on shoppers first.
    worse = replace(report, metrics={**report.metrics, PRIMARY_METRIC: report.metrics[PRIMARY_METRIC] - 0.1})
    trial = training_steps.promote_support_model("support:other", report, worse, settings, challenger=True)
    assert trial["challenger"] and not trial["promoted"] and promoted_tag(settings) == tag


def test_reply_is_multi_turn_and_feedback_is_logged(trained, tmp_path):
    _, model, corpus = trained
    log = tmp_path / "feedback.jsonl"
    # route=False: the support path itself (a tiny router's goals are arbitrary); the gate
    # open, as the tiny LM's noise usually shuts it.
    model = replace(model, config=replace(model.config, generation_min_grounding=-1.0))
    pipeline = SupportRuntime(model, feedback_log=log, route=False)
    first = pipeline.reply("s1", "I want to cancel order 12345678")
    assert set(first) >= {"reply", "reply_id", "sources", "candidates", "handover"}
    assert first["candidates"] == sorted(first["candidates"], key=lambda c: -c["score"])
    # The tiny LM writes noise, which the cleaning of generated text may drop: it ran.
    assert "generate_ms" in first["timings_ms"]
    assert "{{" not in first["reply"]
    second = pipeline.reply("s1", "and what about the refund?")
    assert second["reply_id"] != first["reply_id"]
    turns = pipeline.store.turns("s1", 10)
    assert [r for r, _ in turns] == ["user", "assistant", "user", "assistant"]
    assert pipeline.store.slots("s1")["order_number"] == "12345678"

    row = pipeline.record_feedback(first["reply_id"], -1, "not what I asked")
    assert row["rating"] == -1 and row["context"].startswith("I want to cancel")
    saved = [json.loads(line) for line in log.read_text().splitlines()]
    assert saved[0]["reply_id"] == first["reply_id"]


@pytest.mark.parametrize("message", ["", "   ", None, "x" * 3000])
def test_reply_rejects_bad_messages(trained, message):
    pipeline = SupportRuntime(trained[1], use_generator=False)
    with pytest.raises(ValueError):
        pipeline.reply("s1", message)


def test_feedback_rejects_unknown_replies_and_bad_ratings(trained):
    from data_contracts.support import FeedbackError

    pipeline = SupportRuntime(trained[1], use_generator=False, route=False)
    reply_id = pipeline.reply("s2", "how do I get an invoice")["reply_id"]
    with pytest.raises(UnknownReplyError):
        pipeline.record_feedback("no-such-reply", 1)
    with pytest.raises(FeedbackError):
        pipeline.record_feedback(reply_id, 0)


def test_handover_when_no_candidate_is_good_enough(trained):
    model = trained[1]
    strict = replace(model, config=replace(model.config, handover_threshold=1.01))
    out = SupportRuntime(strict, use_generator=False, route=False).reply("s3", "where is my parcel")
    assert out["handover"] and "colleague" in out["reply"]


def test_corrupt_or_mismatched_artifacts_fail_loudly(trained, tmp_path):
    settings, model, _ = trained
    tag = save_support_model(model, settings)
    good = model_path(tag, settings)

    def copy(name):
        target = tmp_path / name
        shutil.copytree(good, target)
        return target

    broken = copy("weights")
    (broken / "ranker" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ArtifactError, match="ranker"):
        load_support_model(settings=settings, path=broken)

    index = copy("index")
    (index / "index" / "embeddings.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ArtifactError, match="index"):
        load_support_model(settings=settings, path=index)

    docs = copy("documents")
    documents = json.loads((docs / "index" / "documents.json").read_text())
    (docs / "index" / "documents.json").write_text(json.dumps(documents[:-1]))
    with pytest.raises(ArtifactError, match="documents"):
        load_support_model(settings=settings, path=docs)

    meta = copy("meta")
    spec = json.loads((meta / "support.json").read_text())
    spec["encoder"]["fingerprint"] = "0" * 16
    (meta / "support.json").write_text(json.dumps(spec))
    seal(meta)  # past the checksums, to the fingerprint check
    with pytest.raises(ArtifactError, match="encoder"):
        load_support_model(settings=settings, path=meta)

    generator = copy("generator")
    gen_spec = json.loads((generator / "generator" / "generator.json").read_text())
    gen_spec["base"]["fingerprint"] = "changed"
    (generator / "generator" / "generator.json").write_text(json.dumps(gen_spec))
    seal(generator)
    with pytest.raises(ArtifactError, match="changed since training"):
        load_support_model(settings=settings, path=generator)

    router = copy("router")
    (router / "router" / "model.safetensors").write_bytes(b"\x00" * 8)
    with pytest.raises(ArtifactError, match="router"):
        load_support_model(settings=settings, path=router)
    labels = copy("router-labels")
    (labels / "router" / "router.json").write_text(
        json.dumps({"labels": ["a", "b"], "max_length": 8, "threshold": 0.5})
    )
    seal(labels)
    with pytest.raises(ArtifactError, match="labels"):
        load_support_model(settings=settings, path=labels)

    (meta / "support.json").write_text("{")
    with pytest.raises(ArtifactError, match="corrupt"):
        load_support_model(settings=settings, path=meta)
    with pytest.raises(ArtifactError, match="no support model"):
        load_support_model("support:doesnotexist", settings)


def test_grounding_is_the_cosine_to_the_closest_passage_and_passages_are_encoded_once(trained, monkeypatch):
    _, model, _ = trained
    runtime = SupportRuntime(model, route=False)
    texts = ["refunds take a few days", "we ship to most countries"]
    passages = ["Refunds reach your card within 5 days.", "We ship worldwide.", "We ship worldwide."]
    vectors = model.retriever.encoder.encode(texts + passages)
    expected = (vectors[:2] @ vectors[2:].T).max(axis=1)
    assert runtime.grounding(texts, passages) == pytest.approx(expected.tolist(), abs=1e-5)
    encoded = []
    encode = model.retriever.encoder.encode
    monkeypatch.setattr(model.retriever.encoder, "encode", lambda t: encoded.append(list(t)) or encode(t))
    again = runtime.grounding(["a new reply"], passages[:2])
    assert encoded == [["a new reply"]]  # the passages came from the cache
    runtime.grounding(["x"], ["a new passage", "We ship worldwide."])
    assert encoded[1:] == [["a new passage"], ["x"]]
    assert len(again) == 1 and runtime.grounding([], passages) == []
