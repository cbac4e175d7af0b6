"""Language detection benchmark: per-message cost and false handovers; one JSON line.

    python benchmarks/language.py

Times ``LanguageDetector.detect`` (lingua over the 13 languages of
``training.support.language.DETECTED``) on every Bitext question (the full file from
../shared when present, else the committed sample) and counts how many of them, all English,
would be handed over as foreign (must be 0); also the model load time.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from training.support.corpus import bitext_path
    from training.support.language import DETECTED, LanguageDetector

    path = bitext_path()
    with path.open(newline="", encoding="utf-8") as handle:
        questions = [row["instruction"] for row in csv.DictReader(handle)]
    start = time.perf_counter()
    detector = LanguageDetector().warm()
    load_s = time.perf_counter() - start
    times, foreign = [], 0
    for question in questions:
        start = time.perf_counter()
        found = detector.detect(question)
        times.append((time.perf_counter() - start) * 1000)
        foreign += not found.served
    times.sort()
    print(
        json.dumps(
            {
                "bench": "language",
                "file": str(path),
                "messages": len(questions),
                "languages": len(DETECTED),
                "load_s": round(load_s, 2),
                "detect_p50_ms": round(statistics.median(times), 4),
                "detect_p99_ms": round(times[int(0.99 * (len(times) - 1))], 4),
                "detect_mean_ms": round(statistics.fmean(times), 4),
                "english_handed_over_as_foreign": foreign,
            }
        )
    )


if __name__ == "__main__":
    main()
