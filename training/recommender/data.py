"""Interaction sequences: reading them, splitting them leave-one-out, making tensors.

Item ids are strings everywhere outside this module's arrays; ``SequenceData.items`` is
the vocabulary, and item index ``i + 1`` is ``items[i]`` (index 0 is padding).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

# Events that say a shopper wanted the item; impressions and refunds are not interest.
DEFAULT_EVENT_TYPES = ("view", "add_to_cart", "purchase", "rec_click")


@dataclass
class ItemSide:
    """Per-item side information, aligned with the vocabulary (row 0 = padding)."""

    category: np.ndarray | None = None  # (N+1,) int, 0 = unknown
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

    @property
    def num_items(self) -> int:
        return len(self.items)

    def item_index(self) -> dict[str, int]:
        return {item: i + 1 for i, item in enumerate(self.items)}


def _from_frame(frame: pl.DataFrame) -> SequenceData:
    """``user``, ``item`` string columns already in per-user time order."""
    items = frame["item"].unique(maintain_order=True).to_list()
    index = {item: i + 1 for i, item in enumerate(items)}
    frame = frame.with_columns(pl.col("item").replace_strict(index, return_dtype=pl.Int64).alias("idx"))
    grouped = frame.group_by("user", maintain_order=True).agg(pl.col("idx"))
    users = grouped["user"].to_list()
    sequences = [np.asarray(s, dtype=np.int64) for s in grouped["idx"].to_list()]
    return SequenceData(items=items, users=users, sequences=sequences)


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
    event_types: tuple[str, ...] = DEFAULT_EVENT_TYPES,
    num_price_buckets: int = 10,
    with_catalog: bool = True,
) -> SequenceData:
    """Sequences from the warehouse ``events`` table, side features from ``catalog``.

    ``conn`` is a DuckDB connection. Consecutive repeats of the same item by one user
    (a view then a cart of one item) are collapsed to one step.
    """
    frame = conn.execute(
        """
        SELECT user_id AS user, item_id AS item
        FROM events
        WHERE user_id IS NOT NULL AND item_id IS NOT NULL AND event_type IN (SELECT unnest(?))
        ORDER BY user_id, ts, event_id
        """,
        [list(event_types)],
    ).pl()
    frame = frame.filter(
        (pl.col("user") != pl.col("user").shift(1))
        | (pl.col("item") != pl.col("item").shift(1))
        | pl.col("user").shift(1).is_null()
    )
    if frame.height == 0:
        raise ValueError(f"the events table has no {', '.join(event_types)} events")
    data = _from_frame(frame)
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
    histories: list[np.ndarray]  # full input history per case (seen items are all of it)
    targets: np.ndarray  # (U,)


@dataclass
class LeaveOneOut:
    """Last item test, second-last validation, everything before that for training."""

    train: list[np.ndarray]
    valid: EvalSet
    test: EvalSet
    cold_items: np.ndarray  # item indices withheld from training (empty unless cold start)


def leave_one_out(data: SequenceData, cold_fraction: float = 0.0, seed: int = 0) -> LeaveOneOut:
    """Split each user's sequence; users with fewer than 3 items only train.

    With ``cold_fraction`` > 0 that share of items is removed from the training sequences
    entirely (never an input, never a target), so test cases whose target is one of them
    measure cold start.
    """
    cold = np.zeros(data.num_items + 1, dtype=bool)
    if cold_fraction > 0:
        rng = np.random.default_rng(seed)
        chosen = rng.choice(
            np.arange(1, data.num_items + 1), int(round(cold_fraction * data.num_items)), replace=False
        )
        cold[chosen] = True
    train, v_users, v_hist, v_tgt, t_users, t_hist, t_tgt = [], [], [], [], [], [], []
    for u, seq in enumerate(data.sequences):
        if len(seq) < 3:
            part = seq
        else:
            part = seq[:-2]
            v_users.append(u)
            v_hist.append(seq[:-2])
            v_tgt.append(seq[-2])
            t_users.append(u)
            t_hist.append(seq[:-1])
            t_tgt.append(seq[-1])
        if cold_fraction > 0:
            part = part[~cold[part]]
        if len(part) >= 2:
            train.append(part)

    def as_set(users, hist, tgt) -> EvalSet:
        return EvalSet(np.asarray(users, dtype=np.int64), hist, np.asarray(tgt, dtype=np.int64))

    return LeaveOneOut(
        train=train,
        valid=as_set(v_users, v_hist, v_tgt),
        test=as_set(t_users, t_hist, t_tgt),
        cold_items=np.flatnonzero(cold),
    )


def left_pad(sequences: list[np.ndarray], length: int) -> np.ndarray:
    """(len(sequences), length) int64, newest item last, zeros on the left."""
    out = np.zeros((len(sequences), length), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = seq[-length:]
        if len(tail):
            out[row, length - len(tail) :] = tail
    return out


def training_windows(
    sequences: list[np.ndarray], max_len: int, stride: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-item targets, each (W, max_len), left-padded.

    Every sequence gives its newest window; with ``stride`` > 0 a sequence longer than
    ``max_len`` also gives older windows ending every ``stride`` steps further back, so
    long histories are not cut off (more training signal per epoch).
    """
    inputs, targets = [], []
    for seq in sequences:
        ends = [len(seq)]
        end = len(seq)
        while stride > 0 and end > max_len + 1:
            end -= stride
            if end >= 2:
                ends.append(end)
        for end in ends:
            window = seq[max(0, end - max_len - 1) : end]
            inputs.append(window[:-1])
            targets.append(window[1:])
    return left_pad(inputs, max_len), left_pad(targets, max_len)
