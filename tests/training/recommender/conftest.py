"""Tiny data for the recommender tests: sequences that follow a learnable rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.recommender.data import SequenceData

ML1M = Path(__file__).resolve().parents[3].parent / "shared/datasets/ml-1m/ml-1m-sasrec-prefix.txt"


def rule_sequences(num_users: int = 200, num_items: int = 30, seed: int = 0) -> list[list[str]]:
    """Each user interleaves two walks of step +1 from random starts (a, b, a+1, b+1, ...),
    so the next item is the one two steps back plus one: the model can learn that, while
    popularity cannot and co-occurrence only partly can."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num_users):
        starts = rng.choice(num_items, 2, replace=False)
        length = int(rng.integers(12, 17))
        out.append([f"i{(starts[t % 2] + t // 2) % num_items}" for t in range(length)])
    return out


def write_sasrec(path: Path, sequences: list[list[str]]) -> Path:
    with open(path, "w") as f:
        for u, seq in enumerate(sequences):
            for item in seq:
                f.write(f"u{u} {item}\n")
    return path


@pytest.fixture
def ml1m_path() -> Path:
    if not ML1M.exists():
        pytest.skip(f"ML-1M sequence file not found at {ML1M} (../shared/datasets from the repo root)")
    return ML1M


@pytest.fixture
def rule_file(tmp_path) -> Path:
    return write_sasrec(tmp_path / "rule.txt", rule_sequences())


@pytest.fixture
def rule_data(rule_file) -> SequenceData:
    from training.recommender.data import read_sasrec_file

    return read_sasrec_file(rule_file)
