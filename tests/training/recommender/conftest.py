"""Tiny data for the recommender tests: sequences that follow a learnable rule."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

# pythonpath = ["tests"] lets tests/training shadow the real `training` package as a
# namespace package when the repository root is not on sys.path; put the root first.
_REPO = str(Path(__file__).resolve().parents[3])
if sys.path[0] != _REPO:
    sys.path.insert(0, _REPO)
for _name in [m for m in sys.modules if m == "training" or m.startswith("training.")]:
    if getattr(sys.modules[_name], "__file__", None) is None:
        del sys.modules[_name]

from training.recommender.data import SequenceData  # noqa: E402

ML1M = Path(__file__).resolve().parents[3].parent / "shared/datasets/ml-1m/ml-1m-sasrec-prefix.txt"


def rule_sequences(num_users: int = 120, num_items: int = 40, length: int = 12, seed: int = 0) -> list[list[str]]:
    """Each user walks the catalogue in steps of +1 (mostly) from a random start, so the
    next item is predictable from the last one and popularity alone cannot guess it."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num_users):
        item = int(rng.integers(num_items))
        seq = []
        for _ in range(int(rng.integers(length - 4, length + 1))):
            seq.append(f"i{item}")
            item = (item + (1 if rng.random() < 0.9 else 3)) % num_items
        out.append(seq)
    return out


def write_sasrec(path: Path, sequences: list[list[str]]) -> Path:
    with open(path, "w") as f:
        for u, seq in enumerate(sequences):
            for item in seq:
                f.write(f"u{u} {item}\n")
    return path


@pytest.fixture
def rule_file(tmp_path) -> Path:
    return write_sasrec(tmp_path / "rule.txt", rule_sequences())


@pytest.fixture
def rule_data(rule_file) -> SequenceData:
    from training.recommender.data import read_sasrec_file

    return read_sasrec_file(rule_file)
