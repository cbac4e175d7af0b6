"""Feature services: the versioned set of features a model version reads."""

from __future__ import annotations

from feast import FeatureService

from features.views import Views

RECOMMENDER_V1 = "recommender_v1"
RECOMMENDER_ITEMS_V1 = "recommender_items_v1"


def make_services(views: Views) -> list[FeatureService]:
    return [
        FeatureService(
            name=RECOMMENDER_V1,
            features=[views.user_recent_items, views.user_stats],
            description="Inputs of the SASRec recommender, version 1: sequence and user counts",
            tags={"model": "recommender", "version": "1"},
        ),
        # Keyed by item, so a separate service: a user-keyed request cannot join it.
        FeatureService(
            name=RECOMMENDER_ITEMS_V1,
            features=[views.item_features],
            description="Item side features of the recommender, version 1",
            tags={"model": "recommender", "version": "1"},
        ),
    ]
