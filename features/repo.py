"""The feature repo as the Feast CLI sees it; run from the project root:

    export SHOPML_FEAST_ROOT=$PWD/data/feast SHOPML_FEAST_PROJECT=shopml
    feast -c features -f features/environments/local/feature_store.yaml plan

(the production yaml also needs SHOPML_FEAST_REDIS and SHOPML_FEAST_REGISTRY_URL; see
``FeatureStoreConfig.variables``). The objects are the ones ``features.store.apply``
registers, for the data folder of the shopml settings. Code should call
``features.store.apply`` instead, which needs no environment variables.
"""

from data_contracts.settings import Settings
from features.config import FeatureStoreConfig
from features.entities import item, user
from features.services import make_services
from features.sources import make_sources
from features.views import make_views

_sources = make_sources(FeatureStoreConfig.from_settings(Settings.from_env()).offline_dir)
_views = make_views(_sources)

user_history = _sources.user_history
user_recent_items_push = _sources.user_recent_items_push
item_features_source = _sources.item_features
user_recent_items = _views.user_recent_items
item_features = _views.item_features
user_stats = _views.user_stats
recommender_v1, recommender_items_v1 = make_services(_views)

__all__ = [
    "user",
    "item",
    "user_history",
    "user_recent_items_push",
    "item_features_source",
    "user_recent_items",
    "item_features",
    "user_stats",
    "recommender_v1",
    "recommender_items_v1",
]
