"""Every Feast object of the repo, assembled for one configured data folder."""

from __future__ import annotations

from pathlib import Path

from feast.feast_object import FeastObject

from features.entities import item, user
from features.services import make_services
from features.sources import make_sources
from features.views import make_views


def feast_objects(offline_dir: Path) -> list[FeastObject]:
    sources = make_sources(offline_dir)
    views = make_views(sources)
    return [
        user,
        item,
        sources.user_history,
        sources.user_recent_items_push,
        sources.item_features,
        views.user_recent_items,
        views.item_features,
        views.user_stats,
        *make_services(views),
    ]
