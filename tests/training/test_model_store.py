"""The shared model store: promotion records written whole, a corrupt one named."""

from __future__ import annotations

import pytest

from training.artifact_files import ArtifactError
from training.model_store import promotion_path, read_promotion, write_promotion


def test_promotion_records_round_trip_and_a_corrupt_one_is_named(tmp_path):
    assert read_promotion("recommender", tmp_path) is None
    write_promotion("recommender", {"tag": "recommender:a", "history": []}, tmp_path)
    write_promotion("support", {"tag": "support:b"}, tmp_path)
    assert read_promotion("recommender", tmp_path)["tag"] == "recommender:a"
    assert read_promotion("support", tmp_path) == {"tag": "support:b"}
    assert not list(promotion_path("support", tmp_path).parent.glob("*.tmp"))  # renamed into place
    promotion_path("support", tmp_path).write_text("{not json")
    with pytest.raises(ArtifactError, match="support.json is corrupt"):
        read_promotion("support", tmp_path)
    promotion_path("support", tmp_path).write_text('{"metrics": {}}')
    with pytest.raises(ArtifactError, match="corrupt"):
        read_promotion("support", tmp_path)
