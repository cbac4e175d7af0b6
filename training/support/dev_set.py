"""The assistant's dev set: multi-turn shopper dialogues with each turn's goal and expectations.

``tests/data/assistant_dialogues/dialogues.jsonl`` (see its README): one dialogue a line,
each turn labelled with its goal (``GOALS``), the support intent, the language, the product
constraints of the whole dialogue so far, or the product referred to, and what a correct
answer must contain. Whatever is tuned is tuned on ``split == "dev"``; ``"test"`` only measures,
and so does ``"holdout"``, written after the test half had been read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

DEV_SET = Path(__file__).resolve().parents[2] / "tests" / "data" / "assistant_dialogues" / "dialogues.jsonl"
GOALS = ("support", "product_request", "product_question", "small_talk", "out_of_scope", "other_language")
SPLITS = ("dev", "test", "holdout")
Split = Literal["dev", "test", "holdout"]


@dataclass(frozen=True)
class DevTurn:
    dialogue_id: str
    turn: int
    text: str
    goal: str
    must: tuple[str, ...]
    intent: str | None = None  # support turns: the Bitext intent
    language: str | None = None  # other_language turns: ISO 639-1
    constraints: dict = field(default_factory=dict)  # product requests
    refers_to: int | None = None  # product questions: 1-based index in the last list (0: by content)
    attribute: str | None = None  # product questions: price, in_stock, brand, description, ...


def load_dev_set(split: Split | None = None, path: Path = DEV_SET) -> list[list[DevTurn]]:
    """The dialogues (lists of turns, in order) of ``split`` (all when None)."""
    dialogues = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row["split"] not in SPLITS:
            raise ValueError(f"{path}:{number}: split must be one of {SPLITS}, not {row['split']!r}")
        if split is not None and row["split"] != split:
            continue
        turns = []
        for t in row["turns"]:
            if t["goal"] not in GOALS:
                raise ValueError(f"{path}:{number}: unknown goal {t['goal']!r}")
            turns.append(
                DevTurn(
                    row["dialogue_id"],
                    t["turn"],
                    t["text"],
                    t["goal"],
                    tuple(t["must"]),
                    t.get("intent"),
                    t.get("language"),
                    t.get("constraints", {}),
                    t.get("refers_to"),
                    t.get("attribute"),
                )
            )
        dialogues.append(turns)
    return dialogues
