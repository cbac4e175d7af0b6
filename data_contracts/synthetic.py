"""A synthetic shop, deterministic from a seed, streamed to the landing folder day by day.

Users have a taste over categories that drifts over time; item popularity is long-tailed
within each category; sessions follow a view → cart → purchase funnel. A configurable share
of rows is broken in every way the contracts must catch. Each day is generated and written
on its own, so ten million events never sit in memory at once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl

TOP_CATEGORIES = ("Electronics", "Home", "Fashion", "Beauty", "Sports", "Toys", "Books", "Garden")
SUB_CATEGORIES = ("Basics", "Premium", "Accessories", "Outlet")
BRANDS = ("Acme", "Northwind", "Globex", "Initech", "Umbra", "Zephyr", "Lumen", "Orbit", "Kestrel", "Nimbus")
ADJECTIVES = ("Classic", "Compact", "Deluxe", "Eco", "Smart", "Soft", "Ultra", "Vintage", "Bold", "Light")
NOUNS = {
    "Electronics": ("Headphones", "Charger", "Speaker", "Keyboard", "Camera"),
    "Home": ("Lamp", "Mug", "Blanket", "Vase", "Clock"),
    "Fashion": ("Jacket", "Scarf", "Sneakers", "Belt", "Hat"),
    "Beauty": ("Serum", "Lipstick", "Shampoo", "Perfume", "Cream"),
    "Sports": ("Yoga Mat", "Dumbbell", "Bottle", "Racket", "Helmet"),
    "Toys": ("Puzzle", "Robot", "Plush Bear", "Kite", "Blocks"),
    "Books": ("Novel", "Cookbook", "Atlas", "Comic", "Guide"),
    "Garden": ("Planter", "Hose", "Shears", "Seeds", "Lantern"),
}
BAD_KINDS = ("null_user", "null_item", "negative_price", "unknown_item", "future_ts", "duplicate", "bad_type")


@dataclass(frozen=True)
class ShopConfig:
    """Size and shape of the synthetic shop."""

    users: int = 2_000
    items: int = 1_000
    days: int = 30
    events_per_day: int = 6_000  # on average; the funnel decides the exact number
    start: date = date(2026, 9, 1)
    # Share of event rows broken on purpose (spread over BAD_KINDS), plus malformed lines.
    bad_share: float = 0.01
    seed: int = 7
    mean_views_per_session: float = 5.0
    cart_rate: float = 0.12
    purchase_rate: float = 0.35


@dataclass
class ShopSummary:
    events: int  # rows in the daily event files
    bad_rows: int
    feed_rows: int  # lines in the partner feeds, malformed ones included
    malformed_lines: int
    catalog_rows: int
    days: int
    files: list[str]


def _items(config: ShopConfig, rng: np.random.Generator) -> pl.DataFrame:
    n = config.items
    top = rng.integers(0, len(TOP_CATEGORIES), n)
    sub = rng.integers(0, len(SUB_CATEGORIES), n)
    brand = rng.integers(0, len(BRANDS), n)
    adjective = rng.integers(0, len(ADJECTIVES), n)
    noun = rng.integers(0, 5, n)
    price = np.round(np.exp(rng.normal(3.2, 0.8, n)) * (1 + (sub == 1)), 2)
    titles, descriptions, categories = [], [], []
    for i in range(n):
        cat = TOP_CATEGORIES[top[i]]
        thing = NOUNS[cat][noun[i]]
        titles.append(f"{BRANDS[brand[i]]} {ADJECTIVES[adjective[i]]} {thing}")
        descriptions.append(
            f"A {ADJECTIVES[adjective[i]].lower()} {thing.lower()} by {BRANDS[brand[i]]}"
            f" from our {SUB_CATEGORIES[sub[i]].lower()} {cat.lower()} range."
        )
        categories.append(f"{cat} > {SUB_CATEGORIES[sub[i]]}")
    return pl.DataFrame(
        {
            "item_id": [f"i{i:06d}" for i in range(n)],
            "title": titles,
            "description": descriptions,
            "category": categories,
            "brand": [BRANDS[b] for b in brand],
            "price": price,
            "currency": "USD",
            "in_stock": rng.random(n) > 0.05,
            "top": top,
        }
    )


def generate_shop(config: ShopConfig, landing_dir: Path) -> ShopSummary:
    """Write catalog files and one folder of event files per day under ``landing_dir``."""
    rng = np.random.default_rng(config.seed)
    landing_dir = Path(landing_dir)
    files: list[str] = []
    items = _items(config, rng)
    start = datetime.combine(config.start, datetime.min.time(), tzinfo=timezone.utc)
    files += _write_catalog(config, items, start, landing_dir, rng)

    n_cat = len(TOP_CATEGORIES)
    taste = rng.dirichlet(np.full(n_cat, 0.3), config.users)
    activity = rng.pareto(1.5, config.users) + 1
    activity /= activity.sum()
    # Long-tailed popularity inside each category (Zipf over a random order).
    item_top = items["top"].to_numpy()
    item_price = items["price"].to_numpy()
    by_cat: list[tuple[np.ndarray, np.ndarray]] = []
    for c in range(n_cat):
        members = np.flatnonzero(item_top == c)
        if members.size == 0:
            members = np.arange(config.items)
        weights = 1.0 / np.arange(1, members.size + 1) ** 1.1
        members = rng.permutation(members)
        by_cat.append((members, np.cumsum(weights) / weights.sum()))

    sessions_per_day = max(1, int(config.events_per_day / (config.mean_views_per_session * 1.2)))
    total = bad = feed_rows = malformed = 0
    for d in range(config.days):
        day = config.start + timedelta(days=d)
        day_dir = landing_dir / "events" / day.isoformat()
        day_dir.mkdir(parents=True, exist_ok=True)
        frame = _day_events(config, rng, d, start, sessions_per_day, taste, activity, by_cat, item_price)
        frame, n_bad = _break_rows(config, rng, frame)
        path = day_dir / f"events-{day.isoformat()}.parquet"
        frame.write_parquet(path)
        files.append(str(path))
        total += frame.height
        bad += n_bad
        if config.bad_share > 0:
            lines, broken = _write_partner_feed(day_dir / f"partner-feed-{day.isoformat()}.csv", frame)
            feed_rows += lines
            malformed += broken
            files.append(str(day_dir / f"partner-feed-{day.isoformat()}.csv"))
        # Taste drifts: a tenth of the users move part of their taste to another category.
        movers = rng.random(config.users) < 0.1
        target = np.eye(n_cat)[rng.integers(0, n_cat, config.users)]
        taste[movers] = 0.7 * taste[movers] + 0.3 * target[movers]

    summary = ShopSummary(total, bad, feed_rows, malformed, config.items, config.days, files)
    (landing_dir / "synthetic_shop.json").write_text(
        json.dumps({"config": asdict(config), "summary": asdict(summary)}, default=str, indent=1)
    )
    return summary


def _write_catalog(config, items, start, landing_dir, rng) -> list[str]:
    catalog_dir = landing_dir / "catalog"
    catalog_dir.mkdir(parents=True, exist_ok=True)
    first = items.drop("top").with_columns(pl.lit(start).alias("updated_at"))
    if config.bad_share > 0:
        broken = first.head(3).with_columns(
            pl.Series("price", [-5.0, 10.0, 12.0]),
            pl.Series("title", ["Broken price", None, "Orphan"]),
            pl.Series("item_id", [first["item_id"][0], first["item_id"][1], None]),
        )
        first = pl.concat([first, broken])
    # Half way through, a tenth of the items change price or stock: the catalog keeps history.
    changed = (
        items.drop("top")
        .sample(fraction=0.1, seed=config.seed)
        .with_columns(
            (pl.col("price") * 0.8).round(2),
            ~pl.col("in_stock"),
            pl.lit(start + timedelta(days=config.days // 2)).alias("updated_at"),
        )
    )
    paths = []
    for frame, when in ((first, start), (changed, start + timedelta(days=config.days // 2))):
        path = catalog_dir / f"catalog-{when.date().isoformat()}.parquet"
        frame.write_parquet(path)
        paths.append(str(path))
    return paths


def _day_events(config, rng, d, start, n_sessions, taste, activity, by_cat, item_price) -> pl.DataFrame:
    users = rng.choice(config.users, n_sessions, p=activity)
    cum = np.cumsum(taste[users], axis=1)
    cats = (rng.random(n_sessions)[:, None] > cum).sum(axis=1).clip(0, taste.shape[1] - 1)
    lengths = 1 + rng.geometric(1.0 / config.mean_views_per_session, n_sessions) - 1
    session_of_view = np.repeat(np.arange(n_sessions), lengths)
    n_views = session_of_view.size
    # A fifth of the views wander to another category.
    view_cats = cats[session_of_view]
    wander = rng.random(n_views) < 0.2
    view_cats[wander] = rng.integers(0, taste.shape[1], wander.sum())
    view_items = np.empty(n_views, dtype=np.int64)
    draws = rng.random(n_views)
    for c, (members, cum_w) in enumerate(by_cat):
        mask = view_cats == c
        view_items[mask] = members[np.searchsorted(cum_w, draws[mask]).clip(0, members.size - 1)]
    session_start = rng.random(n_sessions) * 86_000
    gaps = rng.exponential(40.0, n_views)
    first_of_session = np.r_[0, np.cumsum(lengths)[:-1]]
    offsets = np.cumsum(gaps)
    offsets -= np.repeat(offsets[first_of_session] - gaps[first_of_session], lengths)
    view_secs = session_start[session_of_view] + offsets
    carted = rng.random(n_views) < config.cart_rate
    bought = carted & (rng.random(n_views) < config.purchase_rate)

    def part(mask, kind, delay):
        idx = np.flatnonzero(mask)
        return idx, np.full(idx.size, kind), view_secs[idx] + delay

    parts = [
        part(np.ones(n_views, bool), "view", 0.0),
        part(carted, "add_to_cart", 5.0),
        part(bought, "purchase", 60.0),
    ]
    idx = np.concatenate([p[0] for p in parts])
    kinds = np.concatenate([p[1] for p in parts])
    secs = np.concatenate([p[2] for p in parts])
    order = np.argsort(secs, kind="stable")
    idx, kinds, secs = idx[order], kinds[order], secs[order]
    day_start = start + timedelta(days=d)
    items_idx = view_items[idx]
    n = idx.size
    has_price = kinds != "view"
    return pl.DataFrame(
        {
            "event_id": [f"syn-{day_start:%Y%m%d}-{i:07d}" for i in range(n)],
            "ts": pl.Series(
                np.datetime64(day_start.replace(tzinfo=None), "us") + (secs * 1e6).astype("timedelta64[us]")
            ),
            "user_id": np.char.add("u", np.char.zfill(users[session_of_view[idx]].astype(str), 6)),
            "item_id": np.char.add("i", np.char.zfill(items_idx.astype(str), 6)),
            "event_type": kinds,
            "session_id": np.char.add(f"s{d:04d}-", session_of_view[idx].astype(str)),
            "quantity": np.where(has_price, 1, 0),
            "price": np.where(has_price, item_price[items_idx], np.nan),
            "source": "synthetic",
        }
    ).with_columns(
        pl.col("ts").dt.replace_time_zone("UTC"),
        pl.when(pl.col("quantity") > 0).then(pl.col("quantity")).alias("quantity"),
        pl.col("price").fill_nan(None),
    )


def _break_rows(config, rng, frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Break ``bad_share`` of the rows, cycling through every kind the contracts catch."""
    n_bad = int(round(frame.height * config.bad_share))
    if n_bad == 0:
        return frame, 0
    rows = rng.choice(frame.height, n_bad, replace=False)
    # Start the cycle at a random kind so that small days still see every kind over time.
    offset = int(rng.integers(len(BAD_KINDS)))
    kinds = np.array([BAD_KINDS[(offset + i) % len(BAD_KINDS)] for i in range(n_bad)])
    row_kind = np.full(frame.height, "", dtype=object)
    row_kind[rows] = kinds
    k = pl.Series("k", row_kind, pl.String)
    frame = frame.with_columns(
        pl.when(k == "null_user").then(None).otherwise(pl.col("user_id")).alias("user_id"),
        pl.when(k == "null_item")
        .then(None)
        .when(k == "unknown_item")
        .then(pl.lit("ghost-") + pl.col("item_id"))
        .otherwise(pl.col("item_id"))
        .alias("item_id"),
        pl.when(k == "negative_price")
        .then(-pl.col("price").fill_null(9.99))
        .otherwise(pl.col("price"))
        .alias("price"),
        pl.when(k == "future_ts")
        .then(pl.col("ts") + pl.duration(days=365 * 80))
        .otherwise(pl.col("ts"))
        .alias("ts"),
        pl.when(k == "bad_type").then(pl.lit("clicked")).otherwise(pl.col("event_type")).alias("event_type"),
    )
    duplicates = frame.filter(k == "duplicate")
    return pl.concat([frame, duplicates]), n_bad


def _write_partner_feed(path: Path, frame: pl.DataFrame) -> tuple[int, int]:
    """A small CSV feed from a partner with malformed lines and a truncated last line.

    Returns (data lines, malformed lines).
    """
    sample = (
        frame.filter(pl.col("user_id").is_not_null())
        .head(20)
        .with_columns(
            pl.col("event_id").str.replace("syn-", "partner-"),
            pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"),
            pl.lit("partner").alias("source"),
        )
    )
    text = sample.write_csv()
    lines = text.rstrip("\n").split("\n")
    lines.insert(3, "this line,has,too few fields")
    lines.insert(5, lines[4] + ",surplus,fields")
    # The feed was cut off mid-line.
    lines[-1] = lines[-1][: len(lines[-1]) // 2]
    path.write_text("\n".join(lines))
    return len(lines) - 1, 3
