"""Building the search index: versions, incremental embedding, flags, unreadable folders."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from search.index import SearchIndexError, build_index, current_version, load_index


def test_a_build_is_versioned_and_made_current(index_root, catalog):
    path = current_version(index_root)
    assert path.name == "v000001"
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["items"] == catalog.height == manifest["embedded"]
    assert manifest["out_of_stock"] == int((~catalog["in_stock"]).sum())
    index = load_index(index_root)
    assert len(index) == catalog.height and index.vectors.shape[0] == catalog.height
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1, atol=1e-4)


def test_only_changed_and_new_items_are_embedded_again(index_root, catalog, encoder):
    before = load_index(index_root)
    changed = catalog.with_columns(
        pl.when(pl.col("item_id") == "tent-1")
        .then(pl.lit("Ridge Dome Tent XL"))
        .otherwise(pl.col("title"))
        .alias("title"),
        # A price or stock change alone keeps the vector: only the text is embedded.
        pl.when(pl.col("item_id") == "tent-2")
        .then(pl.lit(True))
        .otherwise(pl.col("in_stock"))
        .alias("in_stock"),
        # So does a new description: BM25 reads it, the vector embeds title, brand and category.
        pl.when(pl.col("item_id") == "i000001")
        .then(pl.lit("Now with a longer cable."))
        .otherwise(pl.col("description"))
        .alias("description"),
    ).filter(pl.col("item_id") != "i000000")
    new = pl.DataFrame({"item_id": ["lamp-9"], "title": ["Glow Lamp"], "price": [9.0]})
    report = build_index(pl.concat([changed, new], how="diagonal_relaxed"), index_root, encoder)
    assert (report.version, report.embedded, report.delisted) == (2, 2, 1)
    assert report.reused == catalog.height - 2 + 1  # the delisted item keeps its vector
    after = load_index(index_root)
    assert after.version == 2 and after.in_stock[after.row_of["tent-2"]]
    # The delisted item is kept, flagged, with its vector, and never found.
    gone = after.row_of["i000000"]
    assert not after.listed[gone] and not after.in_stock[gone] and after.listed.sum() == len(after) - 1
    assert np.array_equal(after.vectors[gone], before.vectors[before.row_of["i000000"]])
    from search.engine import SearchEngine

    title = before.titles[before.row_of["i000000"]]
    found = SearchEngine(after, encoder).search(title, 50).hits
    assert found and "i000000" not in {h.item_id for h in found}
    kept = after.row_of["i000001"]
    assert np.array_equal(after.vectors[kept], before.vectors[before.row_of["i000001"]])
    assert SearchEngine(after, encoder).search("longer cable", 5).hits[0].item_id == "i000001"


def test_old_versions_are_pruned_to_two(index_root, catalog, encoder):
    for _ in range(3):
        build_index(catalog, index_root, encoder)
    assert sorted(p.name for p in index_root.glob("v*")) == ["v000003", "v000004"]
    assert current_version(index_root).name == "v000004"


def test_no_index_yet_is_none(tmp_path):
    assert load_index(tmp_path / "search") is None


def test_an_unreadable_index_names_its_folder(index_root):
    (current_version(index_root) / "vectors.npy").write_bytes(b"not numpy")
    with pytest.raises(SearchIndexError, match="v000001"):
        load_index(index_root)


def test_a_catalog_without_titles_is_refused(tmp_path, encoder):
    with pytest.raises(ValueError, match="title"):
        build_index(pl.DataFrame({"item_id": ["a"]}), tmp_path, encoder)
