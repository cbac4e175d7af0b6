"""The promotion gate: a trained model is served only if it beats the best baseline and the
model served now on validation; otherwise the best baseline is served, flagged as one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from training.model_store import read_promotion, write_promotion
from training.recommender.artifact import (
    Artifact,
    load_from_store,
    save_to_store,
)
from training.recommender.baselines import ItemToItem, fit_baselines
from training.recommender.data import (
    SequenceData,
    leave_one_out,
    split_fingerprint,
)
from training.recommender.evaluation import (
    evaluate_scorer,
    evaluate_with_baselines,
    vocabulary_scorer,
)
from training.recommender.inference import Recommender


def promoted_tag(name: str = "recommender", home: Path | str | None = None) -> str | None:
    """The tag serving should load, or None if nothing was promoted yet."""
    record = read_promotion(name, home)
    return None if record is None else record["tag"]


def previous_tag(name: str = "recommender", home: Path | str | None = None) -> str | None:
    """The tag served before the promoted one, or None if nothing was promoted before it."""
    record = read_promotion(name, home)
    if record is None:
        return None
    for decision in reversed(record.get("history", [])):
        if decision.get("served") == record["tag"] and decision.get("previous") not in (None, record["tag"]):
            return decision["previous"]
    return None


def tag_for(spec: str, name: str = "recommender", home: Path | str | None = None) -> str:
    """A model tag for a tag or an alias ("promoted", "previous"); ValueError if the alias
    names nothing yet."""
    tag = {"promoted": promoted_tag, "previous": previous_tag}.get(spec, lambda *_: spec)(name, home)
    if tag is None:
        raise ValueError(f"no {spec} {name} in the model store")
    return tag


def _write_promotion(name: str, home: Path | str | None, tag: str, decision: dict) -> None:
    history = (read_promotion(name, home) or {}).get("history", [])
    record = {
        "tag": tag,
        "baseline": decision["baseline"],
        "history": [*history, decision],
        **{k: decision[k] for k in ("scores", "split", "at")},
    }
    write_promotion(name, record, home)


def promote_tag(tag: str, reason: str, name: str = "recommender", home: Path | str | None = None) -> dict:
    """Serve ``tag`` from now on, for ``reason`` (an experiment's verdict); the decision."""
    current = read_promotion(name, home) or {}
    decision = {
        "candidate": tag,
        "previous": current.get("tag"),
        "on": "experiment",
        "promoted": True,
        "baseline": None,
        "served": tag,
        "reason": reason,
        "scores": current.get("scores", {}),
        "split": current.get("split"),
        "at": datetime.now(UTC).isoformat(),
    }
    _write_promotion(name, home, tag, decision)
    return decision


def promoted_baseline(name: str = "recommender", home: Path | str | None = None) -> str | None:
    """The baseline's name when the promoted artifact is a baseline served in place of a model."""
    record = read_promotion(name, home)
    return None if record is None else record.get("baseline")


def baseline_artifact(baseline: ItemToItem, data: SequenceData, max_len: int, metrics: dict) -> Artifact:
    """A fitted baseline as a servable artifact, flagged as a baseline in ``extra``."""
    return Artifact(
        model=baseline.to_module(max_len=max_len),
        items=list(data.items),
        metrics=metrics,
        extra={"baseline": baseline.name, "split": split_fingerprint(data)},
    )


def promote_if_better(
    candidate_tag: str,
    data: SequenceData,
    metric: str = "ndcg@10",
    name: str = "recommender",
    home: Path | str | None = None,
    challenger: bool = False,
) -> dict:
    """Promote ``candidate_tag`` only if, on the validation split of ``data``, it beats the
    best baseline and the promoted trained model. When neither trained model beats the best
    baseline, that baseline is saved to the store and promoted in their place (flagged as a
    baseline), so serving answers with it rather than with popularity.

    ``challenger``: a candidate that passes does not replace a promoted trained model at once;
    the decision says ``challenger: True`` and the caller starts an experiment between the two
    (``pipelines/retraining.py``). With nothing trained promoted yet it is promoted as usual.

    The baselines are refitted on ``data``'s training part; EASE's l2 is tuned on the same
    validation cases, which favours the baseline: the gate errs on the side of not promoting.
    Returns the decision with the figures.
    """
    split = leave_one_out(data)
    candidate = load_from_store(candidate_tag, home=home)
    cases, n = split.valid, data.num_items
    baselines = fit_baselines(split.train, n, split.valid, split.train_positive)
    report = evaluate_with_baselines(
        vocabulary_scorer(Recommender(candidate.model, candidate.items), data.items),
        split.train,
        cases,
        n,
        k=int(metric.split("@")[1]) if "@" in metric else 10,
        sampled=0,
        baselines=baselines,
    )
    best_baseline = report["best_baseline"]
    scores = {"candidate": report[metric], **{k: v[metric] for k, v in report["baselines"].items()}}
    current = promoted_tag(name, home)
    # A promoted baseline is no rival: the one refitted on this data supersedes it.
    if current is not None and current != candidate.tag and promoted_baseline(name, home) is None:
        incumbent = load_from_store(current, home=home)
        rec = Recommender(incumbent.model, incumbent.items)
        scores["promoted"] = evaluate_scorer(vocabulary_scorer(rec, data.items), cases, n, sampled=0)[metric]
    bar = scores[best_baseline]
    passed = scores["candidate"] > bar and scores["candidate"] > scores.get("promoted", float("-inf"))
    # A trained champion is there to test the candidate against with shoppers.
    trial = challenger and passed and "promoted" in scores
    promote = passed and not trial
    rivals = {k: v for k, v in scores.items() if k != "candidate"}
    best_rival = max(rivals, key=rivals.get)
    decision = {
        "candidate": candidate.tag,
        "previous": current,
        "metric": metric,
        "on": "validation",
        "scores": scores,
        "best_baseline": best_baseline,
        "promoted": promote,
        "challenger": trial,
        "baseline": None,
        "served": candidate.tag if promote else current,
        "reason": (
            f"{metric} {scores['candidate']:.4f} beats {best_rival} ({rivals[best_rival]:.4f})"
            + ("; it becomes the challenger of the promoted model" if trial else "")
            if passed
            else f"{metric} {scores['candidate']:.4f} does not beat {best_rival} ({rivals[best_rival]:.4f})"
        ),
        "split": split_fingerprint(data),
        "at": datetime.now(UTC).isoformat(),
    }
    if promote:
        _write_promotion(name, home, candidate.tag, decision)
    elif not trial and scores.get("promoted", float("-inf")) <= bar:
        # No trained model beats the best baseline: serve that baseline, flagged as one.
        baseline = baseline_artifact(
            baselines[best_baseline],
            data,
            candidate.model.config.max_len,
            {"on": "validation", **report["baselines"][best_baseline]},
        )
        tag = save_to_store(baseline, name=name, labels={"baseline": best_baseline}, home=home)
        decision.update(served=tag, baseline=best_baseline)
        decision["reason"] += f"; no trained model beats {best_baseline}, which is served ({tag})"
        _write_promotion(name, home, tag, decision)
    return decision
