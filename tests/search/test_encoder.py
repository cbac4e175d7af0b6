"""The ONNX int8 encoder: close to PyTorch's vectors, exported once, carried by each index; the
static encoder distilled from the same checkpoint, and the build's choice between them."""

from __future__ import annotations

import numpy as np
import pytest

import search.index
from search.encoder import ONNX_FILE, STATIC_DIR, Encoder, EncoderError
from search.index import build_index, load_index
from search.text import dense_text
from serving.recommender.search import load_search_engine


@pytest.fixture(scope="module")
def onnx_encoder(tiny_encoder_spec, tmp_path_factory) -> Encoder:
    return Encoder(tiny_encoder_spec, threads=1, cache_dir=tmp_path_factory.mktemp("encoders"))


def test_onnx_vectors_match_pytorch(onnx_encoder, tiny_encoder_spec, catalog):
    texts = catalog["title"].to_list()[:64]
    onnx = onnx_encoder.encode_items(texts, batch_size=16)
    reference = Encoder(tiny_encoder_spec, backend="torch").encode_items(texts)
    assert onnx.shape == reference.shape and np.allclose(np.linalg.norm(onnx, axis=1), 1, atol=1e-4)
    assert (onnx * reference).sum(1).min() > 0.98  # int8 weights, per output channel
    # One query is embedded as it would be in a batch.
    assert np.dot(onnx_encoder.encode_query(texts[3]), onnx[3]) > 0.999
    assert onnx_encoder.encode_items([]).shape == (0, onnx_encoder.dim)


def test_the_export_is_cached_and_the_backends_never_share_vectors(onnx_encoder, tiny_encoder_spec):
    path = onnx_encoder.onnx_path()
    again = Encoder(tiny_encoder_spec, cache_dir=onnx_encoder.cache_dir)
    assert again.onnx_path() == path and again._torch is None  # no re-export, no PyTorch load
    assert again.fingerprint != Encoder(tiny_encoder_spec, backend="torch").fingerprint
    with pytest.raises(ValueError, match="backend"):
        Encoder(tiny_encoder_spec, backend="tensorrt")


def test_an_index_carries_its_encoder_and_the_service_reads_it(onnx_encoder, catalog, tmp_path, settings):
    root = settings.search_index_dir
    build_index(catalog, root, onnx_encoder)
    index = load_index(root)
    assert index.manifest["encoder"]["backend"] == "onnx" and (index.path / ONNX_FILE).exists()
    # The service needs neither the cache nor the PyTorch weights: the index's copy is enough.
    served = Encoder.for_index(index.manifest, index.path)
    served.cache_dir = tmp_path / "no-cache"
    text = dense_text("Ridge Dome Tent", "Sports > Camping", "Ridge")
    assert np.dot(served.encode_query(text), index.vectors[index.row_of["tent-1"]]) > 0.999
    assert served._torch is None and not served.cache_dir.exists()
    engine = load_search_engine(settings)
    assert engine is not None and engine.search("dome tent", 3).hits[0].item_id == "tent-1"


def test_a_damaged_encoder_file_is_a_clear_error_and_no_index_served(onnx_encoder, catalog, settings):
    root = settings.search_index_dir
    build_index(catalog, root, onnx_encoder)
    index = load_index(root)
    (index.path / ONNX_FILE).unlink()  # a hard link: replacing it leaves the cache intact
    (index.path / ONNX_FILE).write_bytes(b"not a model")
    with pytest.raises(EncoderError, match=ONNX_FILE):
        Encoder.for_index(index.manifest, index.path).encode_query("tent")
    assert load_search_engine(settings) is None


@pytest.fixture(scope="module")
def static_encoder(tiny_encoder_spec, tmp_path_factory) -> Encoder:
    return Encoder(
        tiny_encoder_spec, backend="static", threads=1, cache_dir=tmp_path_factory.mktemp("static")
    )


def test_static_vectors_are_unit_and_a_query_is_embedded_as_in_a_batch(static_encoder, catalog):
    texts = catalog["title"].to_list()[:64]
    vectors = static_encoder.encode_items(texts)
    assert vectors.shape == (64, static_encoder.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    assert np.dot(static_encoder.encode_query(texts[5]), vectors[5]) > 0.999
    assert static_encoder.encode_items([]).shape == (0, static_encoder.dim)
    # Distilled once: a second encoder reads the cached model.
    path = static_encoder.static_path()
    again = Encoder(static_encoder.spec, backend="static", cache_dir=static_encoder.cache_dir)
    assert again.static_path() == path and again._torch is None
    assert again.fingerprint not in (
        Encoder(static_encoder.spec).fingerprint,
        Encoder(static_encoder.spec, backend="torch").fingerprint,
    )


def test_a_build_over_its_budget_embeds_with_the_static_encoder(
    static_encoder, tiny_encoder_spec, catalog, settings, monkeypatch
):
    monkeypatch.setattr(search.index, "BUDGET_SAMPLE", 16)
    root = settings.search_index_dir
    transformer = Encoder(tiny_encoder_spec, backend="torch", cache_dir=static_encoder.cache_dir)
    within = build_index(catalog, settings.data_dir / "other", transformer, embed_budget_seconds=3600)
    assert within.encoder_backend == "torch" and "within" in within.encoder_choice
    assert within.embedded == catalog.height  # the timed sample's vectors are kept, not redone
    over = build_index(catalog, root, transformer, embed_budget_seconds=0)
    assert over.encoder_backend == "static" and "budget" in over.encoder_choice
    assert over.embedded == catalog.height  # another encoder: no vector can be reused
    index = load_index(root)
    assert index.manifest["encoder"]["backend"] == "static" and (index.path / STATIC_DIR).is_dir()
    assert index.manifest["encoder_choice"] == over.encoder_choice
    assert index.vectors.shape[1] == static_encoder.dim
    # The next build over budget keeps the static vectors of unchanged items.
    again = build_index(catalog, root, transformer, embed_budget_seconds=0)
    assert again.encoder_backend == "static" and again.embedded == 0
    # The service queries with the index's own static model, not the cache.
    served = Encoder.for_index(index.manifest, index.path)
    served.cache_dir = settings.data_dir / "no-cache"
    engine = load_search_engine(settings)
    assert engine is not None and engine.encoder.backend == "static"
    assert engine.search("ridge tent", 3).hits[0].item_id.startswith("tent-")
    assert not served.cache_dir.exists()


def test_a_damaged_static_model_is_a_clear_error_and_no_index_served(static_encoder, catalog, settings):
    root = settings.search_index_dir
    build_index(catalog, root, static_encoder)
    index = load_index(root)
    config = index.path / STATIC_DIR / "model.safetensors"
    config.unlink()  # a hard link: replacing it leaves the cache intact
    config.write_bytes(b"not a model")
    with pytest.raises(EncoderError, match=STATIC_DIR):
        Encoder.for_index(index.manifest, index.path).encode_query("tent")
    assert load_search_engine(settings) is None
