"""support_evaluation: quality and latency of a support model on the held-out split."""

from __future__ import annotations

import io
import logging
import random
import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from training.support.artifact import SupportModel
from training.support.config import SupportConfig
from training.support.corpus import SupportCorpus
from training.support.metrics import cosine_rows, percentiles, r_at_1, recall_at_k, rouge_l, rouge_l_f1
from training.support.ranker import negative_pool, sample_negatives
from training.support.runtime import InMemoryStore, SupportRuntime, candidates_from

# The figure promotion compares (higher is better), and those it must not lose much on.
PRIMARY_METRIC = "ranker_r@1"
GUARD_METRICS = ("retrieval_recall@5",)

log = logging.getLogger(__name__)


@dataclass
class SupportReport:
    """Figures (flat, JSON-ready), per-intent rows, a markdown table and a PNG plot."""

    metrics: dict
    by_intent: pl.DataFrame
    table: str = ""
    plot_png: bytes = b""
    extra: dict = field(default_factory=dict)


def retrieval_by_intent(model: SupportModel, test: pl.DataFrame) -> pl.DataFrame:
    """Recall@1/@5 of answered questions with the test question's intent, per test row."""
    embeddings = model.retriever.encoder.encode(test["question"].to_list())
    hits = model.retriever.search_embeddings(embeddings, 5, kind="qa")
    intents = [[h.doc.intent for h in row] for row in hits]
    relevant = test["intent"].to_list()
    return pl.DataFrame(
        {
            "intent": relevant,
            "recall@1": recall_at_k(intents, relevant, 1),
            "recall@5": recall_at_k(intents, relevant, 5),
        }
    )


def ranker_r_at_1(
    model: SupportModel, test: pl.DataFrame, pool_qa: pl.DataFrame, n: int, seed: int
) -> pl.DataFrame:
    """R@1 of the right answer among n candidates, distractors from other intents of its category."""
    pool = negative_pool(pool_qa)
    rng = random.Random(seed)
    contexts, replies = [], []
    rows = test.select("question", "answer", "intent", "category").rows()
    for question, answer, intent, category in rows:
        group = [answer, *sample_negatives(pool, category, intent, n - 1, rng)]
        contexts += [question] * n
        replies += group
    scores = model.ranker.score_pairs(contexts, replies).reshape(len(rows), n)
    return pl.DataFrame(
        {"intent": [r[2] for r in rows], "category": [r[3] for r in rows], "r@1": r_at_1(scores)}
    )


def feedback_replay(model: SupportModel, feedback: pl.DataFrame) -> dict:
    """Replay rated replies: is a down-voted reply still chosen over the retrieved answers?"""
    out = {}
    for rating, name in ((-1, "downvoted_chosen_rate"), (1, "upvoted_chosen_rate")):
        rows = feedback.filter(pl.col("rating") == rating).select("context", "reply").rows()
        if not rows:
            continue
        chosen = []
        for context, reply in rows:
            hits = model.retriever.search(context, 10, kind="qa")
            others = [c.text for c in candidates_from(hits) if c.text != reply]
            scores = model.ranker.score(context, [reply, *others[:4]])
            chosen.append(float(np.argmax(scores) == 0))
        out[name] = float(np.mean(chosen))
        out[name.replace("_chosen_rate", "_replayed")] = len(rows)
    return out


def held_out_sample(corpus: SupportCorpus, config: SupportConfig, limit: int | None = None) -> pl.DataFrame:
    """The held-out rows the ranker figures use: ``limit`` of them (default the config's), seeded."""
    limit = config.eval_limit if limit is None else limit
    test = corpus.test()
    if test.height == 0:
        raise ValueError("the corpus has no held-out rows")
    return test.sample(n=min(limit, test.height), seed=config.seed) if limit else test


def ranker_figures(
    model: SupportModel, corpus: SupportCorpus, sample: pl.DataFrame
) -> tuple[pl.DataFrame, dict]:
    """R@1 among same-category candidates (per row), and end to end on retrieved candidates:
    which answer wins, how close it is to the reference, and how often it is a handover."""
    config = model.config
    ranking = ranker_r_at_1(model, sample, corpus.qa, config.ranker_candidates, config.seed)
    pipeline = SupportRuntime(model, InMemoryStore(), use_generator=False)
    handovers, intent_hits, rouge_ranked = [], [], []
    for question, answer, intent in sample.select("question", "answer", "intent").rows():
        hits = model.retriever.search(question, config.retrieve_k * 2, kind="qa")
        candidates = candidates_from(hits)[: config.retrieve_k]
        scores = pipeline.rank(question, candidates)
        best = int(np.argmax(scores))
        handovers.append(float(scores[best] < config.handover_threshold))
        chosen = next(h.doc for h in hits if h.doc.doc_id == candidates[best].source)
        intent_hits.append(float(chosen.intent == intent))
        rouge_ranked.append(rouge_l(candidates[best].text, answer))
    return ranking, {
        "ranker_r@1": float(ranking["r@1"].mean()),
        "ranker_candidates": config.ranker_candidates,
        "chosen_intent_accuracy": float(np.mean(intent_hits)),
        "rouge_l_ranked": float(np.mean(rouge_ranked)),
        "handover_rate": float(np.mean(handovers)),
        "handover_threshold": config.handover_threshold,
    }


def evaluate_model(
    model: SupportModel,
    corpus: SupportCorpus,
    limit: int | None = None,
    generation_limit: int | None = None,
    latency_queries: int | None = None,
) -> SupportReport:
    """Every figure of the support model on ``corpus``'s held-out split."""
    config = model.config
    generation_limit = config.generation_eval_limit if generation_limit is None else generation_limit
    latency_queries = config.latency_queries if latency_queries is None else latency_queries
    test = corpus.test()
    sample = held_out_sample(corpus, config, limit)
    retrieval = retrieval_by_intent(model, test)
    ranking, ranked = ranker_figures(model, corpus, sample)

    # Generation: the chosen reply (generated candidates ranked with the retrieved answers)
    # against the reference answers.
    generation = {"rouge_l": None, "generated_rows": 0}
    if model.generator is not None and generation_limit:
        generation = generation_figures(model, sample.head(generation_limit))

    latency = measure_latency(model, sample["question"].head(latency_queries).to_list())
    metrics = {
        "test_rows": test.height,
        "ranked_rows": sample.height,
        "retrieval_recall@1": float(retrieval["recall@1"].mean()),
        "retrieval_recall@5": float(retrieval["recall@5"].mean()),
        **ranked,
        **generation,
        **feedback_replay(model, corpus.feedback),
        **latency,
    }
    by_intent = (
        retrieval.group_by("intent")
        .agg(pl.len().alias("rows"), pl.col("recall@1").mean(), pl.col("recall@5").mean())
        .join(
            ranking.group_by("intent").agg(pl.col("r@1").mean().alias("ranker_r@1")), on="intent", how="left"
        )
        .sort("intent")
    )
    report = SupportReport(metrics, by_intent)
    report.table = render_table(metrics, by_intent)
    report.plot_png = render_plot(by_intent, latency)
    return report


# Grounding thresholds the gate is fitted over; GATE_SHUT (no cosine reaches it) stops generating.
GATE_SHUT = 1.01
GATE_THRESHOLDS = (-1.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, GATE_SHUT)


@dataclass
class SupportCase:
    """One held-out question through the support path with every generated candidate kept
    (the gate not applied): the candidates, their ranker scores and the reference answer."""

    candidates: list
    scores: np.ndarray
    reference: str
    milliseconds: float


def support_cases(model: SupportModel, rows: pl.DataFrame, exact: bool = False) -> list[SupportCase]:
    """``rows`` (one-turn dialogues) through retrieve → generate → rank, ungated. ``exact``:
    every candidate writes ``max_new_tokens`` tokens (latency benchmarks)."""
    pipeline = SupportRuntime(model, InMemoryStore(), use_generator=True, exact_generation=exact, route=False)
    cases = []
    for i, (question, answer) in enumerate(rows.select("question", "answer").rows()):
        start = time.perf_counter()
        _, candidates = pipeline.support_candidates(
            f"generation-{i}", [("user", question)], [question], {}, gate=False
        )
        scores = pipeline.rank(question, candidates) if candidates else np.zeros(0)
        cases.append(SupportCase(candidates, scores, answer, (time.perf_counter() - start) * 1000))
    return cases


def chosen_index(case: SupportCase, min_grounding: float, sources: str = "all") -> int:
    """The best-scored candidate the gate at ``min_grounding`` lets through (-1: none);
    ``sources``: "all", "generated" or "retrieved" candidates only."""
    allowed = [
        j
        for j, c in enumerate(case.candidates)
        if (c.source != "generated" or c.grounding >= min_grounding)
        and sources in ("all", "generated" if c.source == "generated" else "retrieved")
    ]
    return max(allowed, key=lambda j: case.scores[j]) if allowed else -1


def choose_gate(per_row: dict[float, np.ndarray]) -> tuple[float, float, float]:
    """(threshold, gain, standard error) from each threshold's per-row similarity to the
    references: the open threshold with the largest mean gain over the shut gate, provided
    the gain is more than twice the standard error of the paired differences; else shut.
    ``gain`` and its error are the best open threshold's, whether or not it passed."""
    shut = per_row[GATE_SHUT]
    gain, error = {}, {}
    for threshold, rows in per_row.items():
        if threshold != GATE_SHUT:
            diff = rows - shut
            gain[threshold] = float(diff.mean())
            error[threshold] = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else np.inf
    best = max(gain, key=lambda t: (gain[t], t))
    chosen = best if gain[best] > 2 * error[best] else GATE_SHUT
    return chosen, gain[best], error[best]


def fit_generation_gate(model: SupportModel, rows: pl.DataFrame) -> tuple[float, dict]:
    """The generation gate for ``model`` from ``rows`` (``choose_gate``): generating costs
    seconds a turn, and a gain inside the noise of a few rows is no reason to pay them.
    ``rows`` must not be the rows the figures are reported on."""
    cases = support_cases(model, rows)
    encode = model.retriever.encoder.encode
    similarity = [
        (encode([c.text for c in case.candidates]) @ encode([case.reference])[0]) if case.candidates else None
        for case in cases
    ]
    per_row = {}
    for threshold in GATE_THRESHOLDS:
        chosen = [chosen_index(case, threshold) for case in cases]
        per_row[threshold] = np.array(
            [sims[j] if j >= 0 else 0.0 for sims, j in zip(similarity, chosen, strict=True)]
        )
    best, gain, error = choose_gate(per_row)
    log.info("generation gate, mean similarity by threshold: %s", {t: v.mean() for t, v in per_row.items()})
    return best, {
        "generation_gate_threshold": best,
        "generation_gate_rows": len(cases),
        "generation_gate_similarity_open": float(per_row[GATE_THRESHOLDS[0]].mean()),
        "generation_gate_similarity_shut": float(per_row[GATE_SHUT].mean()),
        "generation_gate_similarity": float(per_row[best].mean()),
        "generation_gate_best_gain": gain,
        "generation_gate_best_gain_error": error,
    }


def generation_figures(model: SupportModel, rows: pl.DataFrame, exact: bool = False) -> dict:
    """Held-out questions (one-turn dialogues) through the support path with generation: the
    retrieved answers and the generated candidates, ranked by the cross-encoder.

    ``rouge_l`` and ``semantic_similarity``: ROUGE-L F1 (``rouge_l_f1``) and the retriever's
    encoder's cosine similarity (MiniLM in a real model) of the chosen candidate to the
    reference answer, both as the ranker saw them (placeholders kept, as in the references),
    with the model's generation gate, as serving chooses; ``*_ungated``: the ranker's choice
    among every candidate; ``*_retrieved``: the best-ranked retrieved answer, what
    retrieve-and-rank alone answers; ``*_generated``: the best-ranked generated candidate,
    over the rows where the generator left one; ``chosen_generated_share``: rows whose chosen
    candidate (gated) is a generated one; ``generation_handover_rate``: rows whose chosen
    candidate scores under the handover threshold (it is still scored: it is what the ranker
    preferred); ``support_reply_*``: wall time of candidates (all generated) and ranking per
    row. ``exact``: every candidate writes ``max_new_tokens`` tokens (latency benchmarks).
    """
    config = model.config
    cases = support_cases(model, rows, exact)
    references = [case.reference for case in cases]
    encode = model.retriever.encoder.encode
    ref_vectors = encode(references)

    def texts(min_grounding: float, sources: str = "all") -> list[str]:
        chosen = [chosen_index(case, min_grounding, sources) for case in cases]
        return [case.candidates[j].text if j >= 0 else "" for case, j in zip(cases, chosen, strict=True)]

    def figures(suffix: str, chosen: list[str], refs: list[str] = references, vectors=ref_vectors) -> dict:
        if not chosen:
            return {f"rouge_l{suffix}": None, f"semantic_similarity{suffix}": None}
        return {
            f"rouge_l{suffix}": float(rouge_l_f1(chosen, refs).mean()),
            f"semantic_similarity{suffix}": float(cosine_rows(encode(chosen), vectors).mean()),
        }

    gate = config.generation_min_grounding
    served = [chosen_index(case, gate) for case in cases]
    generated = texts(-np.inf, "generated")
    has = np.array([bool(t) for t in generated])
    latency = percentiles([case.milliseconds for case in cases])
    return {
        **figures("", texts(gate)),
        **figures("_ungated", texts(-np.inf)),
        **figures("_retrieved", texts(-np.inf, "retrieved")),
        **figures(
            "_generated",
            [t for t in generated if t],
            [r for r, h in zip(references, has, strict=True) if h],
            ref_vectors[has],
        ),
        "rows_with_generated": int(has.sum()),
        "chosen_generated_share": float(
            np.mean(
                [
                    j >= 0 and case.candidates[j].source == "generated"
                    for case, j in zip(cases, served, strict=True)
                ]
            )
        ),
        "generated_candidates_mean": float(
            np.mean([sum(c.source == "generated" for c in case.candidates) for case in cases])
        ),
        "generation_handover_rate": float(
            np.mean(
                [
                    j < 0 or case.scores[j] < config.handover_threshold
                    for case, j in zip(cases, served, strict=True)
                ]
            )
        ),
        "generation_min_grounding": gate,
        "generated_rows": rows.height,
        "generator_candidates": config.generator_candidates,
        "support_reply_p50_ms": round(latency["p50"], 1),
        "support_reply_p95_ms": round(latency["p95"], 1),
    }


def measure_latency(model: SupportModel, questions: list[str], with_generator: bool = True) -> dict:
    """Per-stage latency of support replies (fresh session each), in milliseconds: the support
    path itself, not routed (the router's cost is in benchmarks/assistant.py's chat figures)."""
    stages: dict[str, list[float]] = {}
    pipeline = SupportRuntime(model, InMemoryStore(), use_generator=with_generator, route=False)
    for i, question in enumerate(questions):
        start = time.perf_counter()
        out = pipeline.reply(f"latency-{i}", question)
        stages.setdefault("total_ms", []).append((time.perf_counter() - start) * 1000)
        for stage, ms in out["timings_ms"].items():
            stages.setdefault(stage, []).append(ms)
    return {
        f"latency_{stage.removesuffix('_ms')}_{p}_ms": round(v, 2)
        for stage, values in stages.items()
        for p, v in percentiles(values).items()
    }


def render_table(metrics: dict, by_intent: pl.DataFrame) -> str:
    lines = ["| metric | value |", "|---|---|"]
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"| {key} | {shown} |")
    lines += ["", "| intent | rows | recall@1 | recall@5 | ranker R@1 |", "|---|---|---|---|---|"]
    for row in by_intent.iter_rows(named=True):
        r1 = "" if row["ranker_r@1"] is None else f"{row['ranker_r@1']:.3f}"
        lines.append(
            f"| {row['intent']} | {row['rows']} | {row['recall@1']:.3f} | {row['recall@5']:.3f} | {r1} |"
        )
    return "\n".join(lines)


def render_plot(by_intent: pl.DataFrame, latency: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 1]})
    y = np.arange(by_intent.height)
    left.barh(y - 0.2, by_intent["recall@1"].to_numpy(), 0.4, label="retrieval recall@1")
    left.barh(y + 0.2, by_intent["ranker_r@1"].fill_null(0).to_numpy(), 0.4, label="ranker R@1")
    left.set_yticks(y, by_intent["intent"].to_list(), fontsize=7)
    left.set_xlim(0, 1)
    left.legend(loc="lower right", fontsize=8)
    left.set_title("held-out split, by intent")
    stages = [k for k in latency if k.endswith("_p50_ms")]
    right.bar(
        [s.removeprefix("latency_").removesuffix("_p50_ms") for s in stages], [latency[s] for s in stages]
    )
    right.set_yscale("log")
    right.set_ylabel("p50 ms")
    right.set_title("latency per stage")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def promote_if_better(
    candidate: dict, incumbent: dict | None, min_delta: float = 0.0, guard_drop: float = 0.02
) -> tuple[bool, str]:
    """Whether a candidate's figures beat the incumbent's, measured on the same held-out split.

    The primary metric must improve by more than ``min_delta`` (or tie while a guard metric
    improves); no guard metric may drop by more than ``guard_drop``.
    """
    if incumbent is None:
        return True, "no promoted model yet"
    new, old = candidate[PRIMARY_METRIC], incumbent.get(PRIMARY_METRIC)
    if old is None:
        return True, f"the promoted model has no {PRIMARY_METRIC}"
    for guard in GUARD_METRICS:
        if guard in incumbent and candidate[guard] < incumbent[guard] - guard_drop:
            return False, f"{guard} drops from {incumbent[guard]:.4f} to {candidate[guard]:.4f}"
    if new > old + min_delta:
        return True, f"{PRIMARY_METRIC} {new:.4f} > {old:.4f}"
    if new == old and any(candidate[g] > incumbent.get(g, float("inf")) for g in GUARD_METRICS):
        return True, f"{PRIMARY_METRIC} ties at {new:.4f} and a guard metric improves"
    return False, f"{PRIMARY_METRIC} {new:.4f} does not beat {old:.4f}"
