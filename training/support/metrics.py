"""Metrics of the support model, each testable on hand-computed inputs."""

from __future__ import annotations

import re

import numpy as np


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+|\{\{[^}]+\}\}", text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, O(len(a) * len(b)))."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 over lowercased word tokens (Lin, 2004, with beta = 1); our own implementation."""
    pred, ref = tokens(prediction), tokens(reference)
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l_f1(predictions: list[str], references: list[str]) -> np.ndarray:
    """ROUGE-L F1 per pair as published (Google's ``rouge-score``: its tokenizer, Porter
    stemming), for generation figures meant to be compared with other work."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return np.array(
        [
            scorer.score(ref, pred)["rougeL"].fmeasure
            for pred, ref in zip(predictions, references, strict=True)
        ]
    )


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b`` (0 for a zero row)."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-12), 0.0)


def recall_at_k(retrieved: list[list[str]], relevant: list[str], k: int) -> np.ndarray:
    """1.0 for each query whose top-k labels contain its relevant label, else 0.0."""
    return np.array([float(rel in labels[:k]) for labels, rel in zip(retrieved, relevant, strict=True)])


def r_at_1(scores: np.ndarray) -> np.ndarray:
    """Per row of a (Q, C) score matrix whose column 0 is the right candidate: 1.0 if it wins.

    Ties count as a miss, so a constant scorer gets 0, not 1.
    """
    return (scores[:, 0] > scores[:, 1:].max(axis=1)).astype(float)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan")}
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}
