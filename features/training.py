"""Point-in-time training data: each (user, timestamp) row gets the sequence as it was then.

This goes through Feast's historical retrieval over the offline ``user_history`` source,
never through the online store: Feast joins, per row, the newest state at or before the
row's timestamp, so no later event can leak into a training example.
"""

from __future__ import annotations

import polars as pl
from feast import FeatureStore

from features.services import RECOMMENDER_V1
from features.views import LAST_EVENT_TS, RECENT_EVENT_TYPES, RECENT_ITEM_IDS

ROW = "__row"


def historical_sequences(
    store: FeatureStore, entity_rows: pl.DataFrame, feature_service: str = RECOMMENDER_V1
) -> pl.DataFrame:
    """Features of ``feature_service`` for each ``(user_id, event_timestamp)`` row.

    The state at ``event_timestamp`` includes events at exactly that time; pass the target
    event's time minus a microsecond to get only what came strictly before it. Rows come
    back in the input order; a user with no event yet has empty lists and null times.
    """
    missing = {"user_id", "event_timestamp"} - set(entity_rows.columns)
    if missing:
        raise ValueError(f"entity_rows lacks column(s) {sorted(missing)}")
    if entity_rows.height == 0:
        raise ValueError("entity_rows is empty")
    entity_df = (
        entity_rows.select(
            pl.col("user_id").cast(pl.String),
            pl.col("event_timestamp").cast(pl.Datetime("us", "UTC")),
        )
        .with_row_index(ROW)
        .to_pandas()
    )
    service = store.get_feature_service(feature_service)
    table = store.get_historical_features(entity_df=entity_df, features=service).to_arrow()
    frame = pl.from_arrow(table).sort(ROW).drop(ROW)
    lists = [c for c in (RECENT_ITEM_IDS, RECENT_EVENT_TYPES) if c in frame.columns]
    return frame.with_columns(
        [pl.col(c).fill_null(pl.lit([], dtype=pl.List(pl.String))) for c in lists]
        + ([pl.col(LAST_EVENT_TS).cast(pl.Datetime("us", "UTC"))] if LAST_EVENT_TS in frame.columns else [])
    )
