"""support_corpus: Q&A pairs (Bitext), KB articles (ABCD) and past feedback, cleaned and split.

The split is leak-free: questions whose embeddings are near-copies (cosine >= threshold) are
joined into groups, and whole groups go to one side. A random row split of Bitext leaves most
test questions next to a near-copy in training, which inflates every retrieval figure.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from data_contracts.schemas import SUPPORT_ARTICLE_SCHEMA, SUPPORT_QA_SCHEMA
from data_contracts.support import clean_text, read_feedback

# Committed samples (with their licences) used when ../shared/datasets is absent.
SAMPLE_DIR = Path(__file__).parent / "data"
BITEXT_FILE = "Bitext_Sample_Customer_Support_Training_Dataset.csv"

LEAK_REPORT_THRESHOLDS = (0.8, 0.85, 0.9, 0.95)

Embed = Callable[[list[str]], np.ndarray]


class CorpusError(ValueError):
    """A support data file is missing, unreadable or lacks required columns."""


def default_dataset_dir() -> Path:
    """../shared/datasets relative to the repository root."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def bitext_path(dataset_dir: Path | None = None) -> Path:
    full = (dataset_dir or default_dataset_dir()) / "bitext-customer-support" / BITEXT_FILE
    return full if full.exists() else SAMPLE_DIR / "bitext" / "bitext_sample.csv"


def abcd_dir(dataset_dir: Path | None = None) -> Path:
    full = (dataset_dir or default_dataset_dir()) / "abcd-kb"
    return full if (full / "guidelines.json").exists() else SAMPLE_DIR / "abcd"


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9{} ]+", "", text.lower()).strip()


def _stable_id(prefix: str, *parts: str) -> str:
    return prefix + hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:12]


@dataclass
class CleanStats:
    """Where every input row went: rows_in = rows_clean + rows_rejected + rows_duplicate."""

    rows_in: int = 0
    rows_clean: int = 0
    rows_duplicate: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


def read_bitext(path: Path, max_rows: int | None = None) -> tuple[pl.DataFrame, CleanStats]:
    """Bitext rows → Q&A pairs: cleaned, empty rows rejected, exact duplicates dropped."""
    if not path.exists():
        raise CorpusError(f"Bitext file not found: {path}")
    stats = CleanStats()
    rows, seen = [], set()
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"instruction", "response", "intent", "category"} - set(reader.fieldnames or [])
        if missing:
            raise CorpusError(f"{path}: missing columns {sorted(missing)}")
        for raw in reader:
            if max_rows is not None and stats.rows_in >= max_rows:
                break
            stats.rows_in += 1
            question = clean_text(raw["instruction"])
            answer = clean_text(raw["response"], keep_lines=True)
            intent = clean_text(raw["intent"]).lower()
            category = clean_text(raw["category"]).upper()
            if not question:
                stats.reject("empty_question")
                continue
            if not answer:
                stats.reject("empty_answer")
                continue
            if not intent or not category:
                stats.reject("missing_intent")
                continue
            key = (_key(question), intent)
            if key in seen:
                stats.rows_duplicate += 1
                continue
            seen.add(key)
            rows.append(
                {
                    "qa_id": _stable_id("qa-", question, answer),
                    "question": question,
                    "answer": answer,
                    "intent": intent,
                    "category": category,
                    "source": "bitext",
                }
            )
    stats.rows_clean = len(rows)
    return pl.DataFrame(rows, schema=SUPPORT_QA_SCHEMA), stats


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def read_abcd(folder: Path) -> pl.DataFrame:
    """ABCD guidelines → one article per subflow (title, the agent's steps, required actions)."""
    guidelines_path = folder / "guidelines.json"
    if not guidelines_path.exists():
        raise CorpusError(f"ABCD guidelines not found: {guidelines_path}")
    try:
        guidelines = json.loads(guidelines_path.read_text())
        kb = json.loads((folder / "kb.json").read_text()) if (folder / "kb.json").exists() else {}
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{folder}: malformed JSON ({exc})") from exc
    rows = []
    for flow, spec in guidelines.items():
        for subflow, body in spec.get("subflows", {}).items():
            lines = [f"{flow} ({spec.get('description', '')}): {subflow}."]
            for instruction in body.get("instructions", []):
                lines.append(clean_text(instruction))
            for action in body.get("actions", []):
                lines.append(clean_text(action.get("text")))
                lines.extend(f"- {clean_text(s)}" for s in action.get("subtext", []))
            intent = _slug(subflow)
            actions = kb.get(intent) or kb.get(_kb_name(flow, subflow))
            if actions:
                lines.append("Required actions: " + ", ".join(actions) + ".")
            text = "\n".join(line for line in lines if line)
            rows.append(
                {
                    "article_id": _stable_id("kb-", flow, subflow),
                    "title": f"{flow}: {subflow}",
                    "body": text,
                    "intent": intent,
                    "category": _slug(flow),
                    "source": "abcd",
                }
            )
    return pl.DataFrame(rows, schema=SUPPORT_ARTICLE_SCHEMA).unique(
        "article_id", keep="first", maintain_order=True
    )


def _kb_name(flow: str, subflow: str) -> str:
    # kb.json names some subflows verb-first ("refund_initiate" for "Initiate Refund").
    words = _slug(subflow).split("_")
    return "_".join(words[1:] + words[:1]) if len(words) > 1 else words[0]


def read_feedback_files(paths: Iterable[Path]) -> tuple[pl.DataFrame, list[dict]]:
    """Feedback from JSON-lines files; an unparsable line is rejected, never dropped silently."""
    rows: list = []
    rejected = []
    for path in paths:
        if not path.exists():
            raise CorpusError(f"feedback file not found: {path}")
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                rejected.append({"row": f"{path.name}:{number}", "reason": f"malformed JSON ({exc.msg})"})
    frame, bad = read_feedback(rows)
    return frame, rejected + bad


# --- leak-free split


def near_duplicate_groups(embeddings: np.ndarray, threshold: float, chunk: int = 1024) -> np.ndarray:
    """Connected components of the graph 'cosine >= threshold' (rows are L2-normalised)."""
    n = len(embeddings)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, n, chunk):
        sims = embeddings[start : start + chunk] @ embeddings.T  # (chunk, N)
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows + start, cols, strict=True):
            if c > r:
                a, b = find(r), find(c)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return np.array([find(i) for i in range(n)])


def group_split(groups: np.ndarray, strata: list[str], test_fraction: float, seed: int) -> np.ndarray:
    """Whole groups to the test side until each stratum (intent) holds ~test_fraction of its rows."""
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(groups), dtype=bool)
    # A group belongs to the stratum of its first row; groups rarely span intents.
    by_stratum: dict[str, list[int]] = {}
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        if g not in members:
            by_stratum.setdefault(strata[i], []).append(int(g))
        members.setdefault(int(g), []).append(i)
    for stratum in sorted(by_stratum):
        stratum_groups = by_stratum[stratum]
        total = sum(len(members[g]) for g in stratum_groups)
        target = test_fraction * total
        taken = 0
        for g in rng.permutation(stratum_groups):
            size = len(members[g])
            if taken >= target:
                break
            # Skip a group that would overshoot by more than half its size (a giant cluster
            # stays on the training side).
            if taken + size - target > size / 2:
                continue
            is_test[members[g]] = True
            taken += size
    return is_test


def leaked_test_rows(embeddings: np.ndarray, is_test: np.ndarray, threshold: float) -> int:
    """How many test rows have a near-copy (cosine >= threshold) on the training side."""
    test, train = embeddings[is_test], embeddings[~is_test]
    if len(test) == 0 or len(train) == 0:
        return 0
    best = np.concatenate([(test[i : i + 1024] @ train.T).max(1) for i in range(0, len(test), 1024)])
    return int((best >= threshold).sum())


@dataclass
class SupportCorpus:
    """The support_corpus asset: Q&A pairs with a `split` column, articles, feedback and figures."""

    qa: pl.DataFrame
    articles: pl.DataFrame
    feedback: pl.DataFrame
    stats: dict
    # Embeddings of the questions (rows of ``qa``), reused to index the training split.
    question_embeddings: np.ndarray | None = None

    def train(self) -> pl.DataFrame:
        return self.qa.filter(pl.col("split") == "train")

    def validation(self) -> pl.DataFrame:
        """Held-out rows that training may fit choices on (half of the held-out groups)."""
        return self.qa.filter(pl.col("split") == "validation")

    def test(self) -> pl.DataFrame:
        """Held-out rows that only measure."""
        return self.qa.filter(pl.col("split") == "test")


def build_corpus(
    embed: Embed,
    bitext: Path | None = None,
    abcd: Path | None = None,
    feedback_files: Iterable[Path] = (),
    feedback_rows: Iterable[dict] = (),
    test_fraction: float = 0.2,
    threshold: float = 0.9,
    seed: int = 0,
    max_rows: int | None = None,
) -> SupportCorpus:
    """Read, clean, deduplicate and split the support data; ``embed`` maps texts to unit vectors."""
    bitext = bitext or bitext_path()
    abcd = abcd or abcd_dir()
    qa, clean = read_bitext(bitext, max_rows)
    if qa.height < 2:
        raise CorpusError(f"{bitext}: fewer than two usable Q&A rows")
    articles = read_abcd(abcd)
    feedback, rejected = read_feedback_files(list(feedback_files))
    extra, extra_rejected = read_feedback(feedback_rows)
    feedback = pl.concat([feedback, extra]).unique("reply_id", keep="last", maintain_order=True)

    embeddings = embed(qa["question"].to_list())
    groups = near_duplicate_groups(embeddings, threshold)
    is_test = group_split(groups, qa["intent"].to_list(), test_fraction, seed)
    if not is_test.any() or is_test.all():
        raise CorpusError(
            f"the split at near-duplicate threshold {threshold} leaves one side empty "
            f"({len(np.unique(groups))} groups of {qa.height} questions); raise the threshold"
        )
    # Half of the held-out groups validate what training fits on held-out rows (the generation
    # gate); the other half only measures.
    held_out = np.flatnonzero(is_test)
    is_validation = np.zeros(qa.height, dtype=bool)
    is_validation[held_out] = group_split(
        groups[held_out], qa["intent"].gather(held_out).to_list(), 0.5, seed + 1
    )
    if is_validation[held_out].all():  # too few groups to halve: measuring comes first
        is_validation[:] = False
    # The figure to beat: a random row split of the same size.
    random_test = np.zeros(qa.height, dtype=bool)
    random_test[np.random.default_rng(seed).permutation(qa.height)[: int(is_test.sum())]] = True
    qa = qa.with_columns(
        pl.Series("group", groups, dtype=pl.Int64),
        pl.Series("split", np.where(is_validation, "validation", np.where(is_test, "test", "train"))),
    )
    stats = {
        "bitext_file": str(bitext),
        "abcd_dir": str(abcd),
        "rows_in": clean.rows_in,
        "rows_clean": clean.rows_clean,
        "rows_duplicate": clean.rows_duplicate,
        "rows_rejected": clean.rows_rejected,
        "rejected_reasons": clean.rejected,
        "articles": articles.height,
        "feedback_rows": feedback.height,
        "feedback_rejected": len(rejected) + len(extra_rejected),
        "feedback_rejected_rows": (rejected + extra_rejected)[:20],
        "near_duplicate_threshold": threshold,
        "near_duplicate_groups": int(len(np.unique(groups))),
        "largest_group": int(np.bincount(groups).max()),
        "train_rows": int((~is_test).sum()),
        "validation_rows": int(is_validation.sum()),
        "test_rows": int((is_test & ~is_validation).sum()),
        "leaked_test_rows_random_split": leaked_test_rows(embeddings, random_test, threshold),
        "leaked_test_rows": leaked_test_rows(embeddings, is_test, threshold),
        # The same count at other thresholds: how close the nearest training question still is.
        "leak_by_threshold": {
            f"{t:.2f}": {
                "random_split": leaked_test_rows(embeddings, random_test, t),
                "leak_free_split": leaked_test_rows(embeddings, is_test, t),
            }
            for t in LEAK_REPORT_THRESHOLDS
        },
    }
    return SupportCorpus(
        qa=qa, articles=articles, feedback=feedback, stats=stats, question_embeddings=embeddings
    )
