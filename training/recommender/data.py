"""Interaction sequences: reading them, splitting them, making tensors.

Item ids are strings everywhere outside this module's arrays; ``SequenceData.items`` is
the vocabulary, and item index ``i + 1`` is ``items[i]`` (index 0 is padding).

Two evaluation protocols split the same data (``split``): leave-one-out (each user's last
positive is the test target, the one before it validation) and a global time split
(training before one moment, validation and test after it: what a shop deploying a model
trained up to today sees). From the warehouse, a step is either a positive (a purchase,
say: a training and evaluation target) or context (a view: an input only).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import polars as pl

# Events that say a shopper wanted the item; impressions and refunds are not interest.
DEFAULT_EVENT_TYPES = ("view", "add_to_cart", "purchase", "rec_click")


@dataclass
class ItemSide:
    """Per-item side information, aligned with the vocabulary (row 0 = padding)."""

    category: np.ndarray | None = None  # (N+1,) or (N+1, slots) int, 0 = unknown
    category_names: list[str] = field(default_factory=list)  # category index i+1 -> name
    price_bucket: np.ndarray | None = None  # (N+1,) int, 0 = unknown
    price_edges: list[float] = field(default_factory=list)  # bucket upper edges
    text: dict[str, str] = field(default_factory=dict)  # item id -> title and description
    in_stock: np.ndarray | None = None  # (N+1,) bool


@dataclass
class SequenceData:
    """Every user's item sequence in time order, as item indices into ``items``."""

    items: list[str]  # the vocabulary: index i+1 <-> items[i]
    users: list[str]
    sequences: list[np.ndarray]  # one int64 array per user, oldest first
    side: ItemSide = field(default_factory=ItemSide)
    # Per step, aligned with ``sequences``; None when the source has none (a pairs file).
    times: list[np.ndarray] | None = None  # event time, epoch seconds
    positive: list[np.ndarray] | None = None  # False: a context step (an input, never a target)

    @property
    def num_items(self) -> int:
        return len(self.items)

    def item_index(self) -> dict[str, int]:
        return {item: i + 1 for i, item in enumerate(self.items)}


def _from_frame(frame: pl.DataFrame, per_step: tuple[str, str] | None = None) -> SequenceData:
    """``user``, ``item`` string columns already in per-user time order; ``per_step`` names
    the time and positive columns to keep beside each step."""
    items = frame["item"].unique(maintain_order=True).to_list()
    index = {item: i + 1 for i, item in enumerate(items)}
    frame = frame.with_columns(pl.col("item").replace_strict(index, return_dtype=pl.Int64).alias("idx"))
    grouped = frame.group_by("user", maintain_order=True).agg(pl.col("idx"), *map(pl.col, per_step or ()))
    users = grouped["user"].to_list()
    sequences = [np.asarray(s, dtype=np.int64) for s in grouped["idx"].to_list()]
    data = SequenceData(items=items, users=users, sequences=sequences)
    if per_step:
        time, positive = per_step
        data.times = [np.asarray(t) for t in grouped[time].to_list()]
        data.positive = [np.asarray(p, dtype=bool) for p in grouped[positive].to_list()]
    return data


def read_sasrec_file(path: Path | str) -> SequenceData:
    """A SASRec-style file: ``user item`` per line, each user's lines in time order."""
    frame = pl.read_csv(
        path,
        separator=" ",
        has_header=False,
        new_columns=["user", "item"],
        schema_overrides={"user": pl.String, "item": pl.String},
    )
    if frame.height == 0:
        raise ValueError(f"{path} has no interactions")
    return _from_frame(frame)


def read_item_text(path: Path | str) -> dict[str, str]:
    """Tab-separated ``item_id<TAB>text`` lines."""
    text: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            item, sep, value = line.partition("\t")
            if not sep:
                raise ValueError(f"{path}:{number}: expected 'item_id<TAB>text'")
            text[item] = value
    return text


# An item keeps at most this many categories, and at most as many as 95% of the items
# have: every category slot is embedded for the whole catalogue at every training step.
MAX_CATEGORY_SLOTS = 16


def read_item_categories(path: Path | str, items: list[str]) -> tuple[np.ndarray, list[str]]:
    """A JSON object ``{item_id: [category, ...]}`` (e.g. the Amazon files' category path and
    brand) as an (N+1, slots) index array aligned with ``items`` (0 = none), and the names.

    An item with more categories than the slots keeps its first ones; an item the file does
    not name has none.
    """
    try:
        mapping = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read item categories: {e}") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, list) for v in mapping.values()):
        raise ValueError(f"{path}: expected a JSON object of item id -> list of categories")
    counts = [len(v) for v in mapping.values()] or [1]
    slots = int(min(MAX_CATEGORY_SLOTS, max(1, np.percentile(counts, 95))))
    names: dict[str, int] = {}
    category = np.zeros((len(items) + 1, slots), dtype=np.int64)
    for i, item in enumerate(items, 1):
        for slot, name in enumerate(mapping.get(item, [])[:slots]):
            category[i, slot] = names.setdefault(str(name), len(names) + 1)
    return category, list(names)


def price_buckets(prices: np.ndarray, num_buckets: int) -> tuple[np.ndarray, list[float]]:
    """Quantile buckets 1..num_buckets for known prices, 0 for NaN."""
    known = prices[~np.isnan(prices)]
    if known.size == 0:
        return np.zeros(prices.shape, dtype=np.int64), []
    edges = np.unique(np.quantile(known, np.linspace(0, 1, num_buckets + 1)[1:-1]))
    bucket = np.searchsorted(edges, prices, side="right") + 1
    bucket[np.isnan(prices)] = 0
    return bucket.astype(np.int64), edges.tolist()


def attach_catalog(data: SequenceData, catalog: pl.DataFrame, num_price_buckets: int = 10) -> None:
    """Side features from a catalog frame (item_id, title, description, category, price, in_stock)."""
    catalog = catalog.unique("item_id", keep="last")
    by_item = {row["item_id"]: row for row in catalog.iter_rows(named=True)}
    n = data.num_items + 1
    categories: dict[str, int] = {}
    category = np.zeros(n, dtype=np.int64)
    prices = np.full(n, np.nan)
    in_stock = np.ones(n, dtype=bool)
    text: dict[str, str] = {}
    for i, item in enumerate(data.items, 1):
        row = by_item.get(item)
        if row is None:
            continue
        if row.get("category"):
            category[i] = categories.setdefault(row["category"], len(categories) + 1)
        if row.get("price") is not None:
            prices[i] = float(row["price"])
        if row.get("in_stock") is not None:
            in_stock[i] = bool(row["in_stock"])
        words = [w for w in (row.get("title"), row.get("description")) if w]
        if words:
            text[item] = ". ".join(words)
    bucket, edges = price_buckets(prices, num_price_buckets)
    data.side = ItemSide(
        category=category,
        category_names=list(categories),
        price_bucket=bucket,
        price_edges=edges,
        text=text,
        in_stock=in_stock,
    )


def dataset_from_warehouse(
    conn,
    positives: tuple[str, ...] = DEFAULT_EVENT_TYPES,
    context: tuple[str, ...] = (),
    num_price_buckets: int = 10,
    with_catalog: bool = True,
) -> SequenceData:
    """Sequences from the warehouse ``events`` table, side features from ``catalog``.

    ``conn`` is a DuckDB connection. Events of the ``positives`` types are targets;
    ``context`` types (views, when purchases are the goal) only feed the history.
    Consecutive events of one user on one item (a view then a cart) are collapsed to one
    step, at the time of its last event, a positive if any of them was.
    """
    overlap = set(positives) & set(context)
    if overlap:
        raise ValueError(f"event types {sorted(overlap)} are named as both positives and context")
    if not positives:
        raise ValueError("no positive event types given")
    frame = conn.execute(
        """
        SELECT user_id AS user, item_id AS item, epoch(ts) AS ts, event_type IN (SELECT unnest(?)) AS positive
        FROM events
        WHERE user_id IS NOT NULL AND item_id IS NOT NULL AND event_type IN (SELECT unnest(?))
        ORDER BY user_id, ts, event_id
        """,
        [list(positives), [*positives, *context]],
    ).pl()
    if frame.filter(pl.col("positive")).height == 0:
        raise ValueError(f"the events table has no {', '.join(positives)} events")
    step = (
        (pl.col("user") != pl.col("user").shift(1)) | (pl.col("item") != pl.col("item").shift(1))
    ).fill_null(True)
    frame = (
        frame.with_columns(step.cum_sum().alias("step"))
        .group_by("step", maintain_order=True)
        .agg(pl.col("user").first(), pl.col("item").first(), pl.col("ts").max(), pl.col("positive").any())
    )
    data = _from_frame(frame, per_step=("ts", "positive"))
    data.times = [t.astype(np.int64) for t in data.times]
    if not context:
        data.positive = None  # every step is a positive: nothing to tell apart
    if with_catalog:
        tables = {row[0] for row in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "catalog" in tables:
            catalog = conn.execute(
                "SELECT item_id, title, description, category, price, in_stock FROM catalog ORDER BY item_id"
            ).pl()
            # Catalog items nobody has touched yet join the vocabulary: with side features
            # they can be recommended before their first event.
            known = set(data.items)
            data.items.extend(
                item for item in catalog["item_id"].unique(maintain_order=True) if item not in known
            )
            attach_catalog(data, catalog, num_price_buckets)
    return data


@dataclass
class EvalSet:
    """One evaluation case per user: the input history and the item to predict."""

    users: np.ndarray  # (U,) user positions in SequenceData.users
    histories: list[np.ndarray]  # full input history per case
    targets: np.ndarray  # (U,)
    # Items not ranked per case ("seen items filtered"); None: the whole history. With
    # context steps only the history's positives are: a viewed item may well be bought.
    seen: list[np.ndarray] | None = None

    @property
    def filtered(self) -> list[np.ndarray]:
        return self.histories if self.seen is None else self.seen


Protocol = Literal["leave-one-out", "time"]
PROTOCOLS: tuple[Protocol, ...] = get_args(Protocol)


@dataclass
class Split:
    """Training sequences and the validation and test cases of one protocol."""

    train: list[np.ndarray]
    valid: EvalSet
    test: EvalSet
    cold_items: np.ndarray  # item indices withheld from training (empty unless cold start)
    train_positive: list[np.ndarray] | None = None  # aligned with ``train``; None: all positives
    protocol: Protocol = "leave-one-out"
    # Time split only: validation cases from ``valid_from``, test cases from ``test_from``
    # (ISO dates); training holds what happened before ``valid_from``.
    valid_from: str | None = None
    test_from: str | None = None

    def describe(self) -> str:
        if self.protocol == "time":
            return (
                f"global time split: trained on events before {self.valid_from}, each user's first "
                f"positive from then validates and the first from {self.test_from} tests"
            )
        return "leave-one-out: each user's last positive tests, the one before validates"


class _Cases:
    """Collects evaluation cases: the history before step ``at`` and the item at it."""

    def __init__(self) -> None:
        self.users: list[int] = []
        self.histories: list[np.ndarray] = []
        self.targets: list[int] = []
        self.seen: list[np.ndarray] = []

    def add(self, user: int, seq: np.ndarray, positive: np.ndarray | None, at: int) -> None:
        self.users.append(user)
        self.histories.append(seq[:at])
        self.targets.append(int(seq[at]))
        self.seen.append(seq[:at] if positive is None else seq[:at][positive[:at]])

    def done(self, with_context: bool) -> EvalSet:
        return EvalSet(
            np.asarray(self.users, dtype=np.int64),
            self.histories,
            np.asarray(self.targets, dtype=np.int64),
            seen=self.seen if with_context else None,
        )


def _cold_items(data: SequenceData, cold_fraction: float, seed: int) -> np.ndarray:
    cold = np.zeros(data.num_items + 1, dtype=bool)
    if cold_fraction > 0:
        rng = np.random.default_rng(seed)
        chosen = rng.choice(
            np.arange(1, data.num_items + 1), int(round(cold_fraction * data.num_items)), replace=False
        )
        cold[chosen] = True
    return cold


def _add_training_part(split: Split, part: np.ndarray, positive: np.ndarray | None, cold: np.ndarray) -> None:
    if cold.any():
        keep = ~cold[part]
        part = part[keep]
        positive = None if positive is None else positive[keep]
    # A window needs an input before a target.
    if len(part) < 2 or (positive is not None and not positive[1:].any()):
        return
    split.train.append(part)
    if split.train_positive is not None:
        split.train_positive.append(positive)


def _empty_split(data: SequenceData, cold: np.ndarray, protocol: Protocol) -> Split:
    empty = EvalSet(np.zeros(0, dtype=np.int64), [], np.zeros(0, dtype=np.int64))
    return Split(
        train=[],
        valid=empty,
        test=empty,
        cold_items=np.flatnonzero(cold),
        train_positive=[] if data.positive is not None else None,
        protocol=protocol,
    )


def leave_one_out(data: SequenceData, cold_fraction: float = 0.0, seed: int = 0) -> Split:
    """Split each user's sequence at its last two positives; users with fewer than 3
    positives only train.

    With ``cold_fraction`` > 0 that share of items is removed from the training sequences
    entirely (never an input, never a target), so test cases whose target is one of them
    measure cold start.
    """
    cold = _cold_items(data, cold_fraction, seed)
    split = _empty_split(data, cold, "leave-one-out")
    valid, test = _Cases(), _Cases()
    for u, seq in enumerate(data.sequences):
        positive = data.positive[u] if data.positive is not None else None
        targets_at = np.flatnonzero(positive) if positive is not None else np.arange(len(seq))
        if len(targets_at) < 3:
            _add_training_part(split, seq, positive, cold)
            continue
        v, t = int(targets_at[-2]), int(targets_at[-1])
        valid.add(u, seq, positive, v)
        test.add(u, seq, positive, t)
        _add_training_part(split, seq[:v], None if positive is None else positive[:v], cold)
    with_context = data.positive is not None
    split.valid, split.test = valid.done(with_context), test.done(with_context)
    return split


def time_split(
    data: SequenceData,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    cold_fraction: float = 0.0,
    seed: int = 0,
) -> Split:
    """A global time split at two moments taken from the positives' times: the last
    ``test_fraction`` of them is the test period, the ``valid_fraction`` before it validation.

    Training gets every step before the validation period, for every user. A user with a
    positive in a period is one case of it: the first such positive, after the user's whole
    history up to it (so a test history includes the validation period); a user with no
    history before it is not a case (a new shopper gets the popular items).
    """
    if data.times is None:
        raise ValueError(
            "a time split needs event times, and a 'user item' pairs file has none: use leave-one-out"
        )
    if not (0 < valid_fraction and 0 < test_fraction and valid_fraction + test_fraction < 1):
        raise ValueError(
            f"valid and test fractions must be positive and sum under 1, got {valid_fraction}, {test_fraction}"
        )
    cold = _cold_items(data, cold_fraction, seed)
    split = _empty_split(data, cold, "time")
    positives = data.positive or [np.ones(len(s), dtype=bool) for s in data.sequences]
    times = np.concatenate([t[p] for t, p in zip(data.times, positives, strict=True)])
    valid_from, test_from = np.quantile(times, [1 - test_fraction - valid_fraction, 1 - test_fraction])
    if not valid_from < test_from:
        raise ValueError("the positives' times do not spread over distinct validation and test periods")
    valid, test = _Cases(), _Cases()
    for u, seq in enumerate(data.sequences):
        positive = data.positive[u] if data.positive is not None else None
        when, is_target = data.times[u], positives[u]
        trained = int(np.searchsorted(when, valid_from, side="left"))
        _add_training_part(split, seq[:trained], None if positive is None else positive[:trained], cold)
        in_valid = np.flatnonzero(is_target & (when >= valid_from) & (when < test_from))
        in_test = np.flatnonzero(is_target & (when >= test_from))
        for cases, found in ((valid, in_valid), (test, in_test)):
            found = found[found >= 1]
            if len(found):
                cases.add(u, seq, positive, int(found[0]))
    with_context = data.positive is not None
    split.valid, split.test = valid.done(with_context), test.done(with_context)
    split.valid_from, split.test_from = (
        datetime.fromtimestamp(float(t), UTC).isoformat(timespec="seconds") for t in (valid_from, test_from)
    )
    return split


def make_split(
    data: SequenceData, protocol: Protocol = "leave-one-out", cold_fraction: float = 0.0, seed: int = 0
) -> Split:
    if protocol == "leave-one-out":
        return leave_one_out(data, cold_fraction, seed)
    if protocol == "time":
        return time_split(data, cold_fraction=cold_fraction, seed=seed)
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def left_pad(sequences: list[np.ndarray], length: int) -> np.ndarray:
    """(len(sequences), length) int64, newest item last, zeros on the left."""
    out = np.zeros((len(sequences), length), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = seq[-length:]
        if len(tail):
            out[row, length - len(tail) :] = tail
    return out


def training_windows(
    sequences: list[np.ndarray], max_len: int, stride: int = 0, positive: list[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-item targets, each (W, max_len), left-padded.

    Every sequence gives its newest window; with ``stride`` > 0 a sequence longer than
    ``max_len`` also gives older windows ending every ``stride`` steps further back, so
    long histories are not cut off (more training signal per epoch). With ``positive``
    a context step is an input but never a target (its target is 0, no loss).
    """
    inputs, targets = [], []
    for i, seq in enumerate(sequences):
        # A context step's target is 0: no loss there.
        target_seq = seq if positive is None else np.where(positive[i], seq, 0)
        ends = [len(seq)]
        end = len(seq)
        while stride > 0 and end > max_len + 1:
            end -= stride
            if end >= 2:
                ends.append(end)
        for end in ends:
            start = max(0, end - max_len - 1)
            inputs.append(seq[start : end - 1])
            targets.append(target_seq[start + 1 : end])
    return left_pad(inputs, max_len), left_pad(targets, max_len)


# --- dataset and its fingerprint -------------------------------------------------------------


def build_dataset(
    source,
    item_text: str | Path | None = None,
    positives: tuple[str, ...] | None = None,
    context: tuple[str, ...] = (),
    item_categories: str | Path | None = None,
) -> SequenceData:
    """From a SASRec-style file path or a DuckDB connection to the warehouse; ``positives``
    and ``context`` name the warehouse's event types that are targets and inputs only;
    ``item_categories`` (``read_item_categories``) replaces the catalog's categories."""
    if isinstance(source, str | Path):
        if positives is not None or context:
            raise ValueError(
                "a 'user item' pairs file has no event types: positives and context need --warehouse"
            )
        data = read_sasrec_file(source)
    else:
        data = dataset_from_warehouse(source, positives or DEFAULT_EVENT_TYPES, context)
    if item_text is not None:
        data.side.text = read_item_text(item_text)
    if item_categories is not None:
        data.side.category, data.side.category_names = read_item_categories(item_categories, data.items)
    return data


def split_fingerprint(
    data: SequenceData, cold_fraction: float = 0.0, seed: int = 0, protocol: Protocol = "leave-one-out"
) -> str:
    """Same data and protocol -> same fingerprint; metrics are comparable only when equal."""
    h = hashlib.sha256()
    h.update(json.dumps({"protocol": protocol, "cold": cold_fraction, "seed": seed}).encode())
    h.update("\n".join(data.items).encode())
    for u, (user, seq) in enumerate(zip(data.users, data.sequences, strict=True)):
        h.update(user.encode())
        h.update(seq.tobytes())
        if data.positive is not None:
            h.update(data.positive[u].tobytes())
        if protocol == "time" and data.times is not None:
            h.update(data.times[u].tobytes())
    return h.hexdigest()[:16]
