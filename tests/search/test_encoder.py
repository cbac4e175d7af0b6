"""The ONNX int8 encoder: close to PyTorch's vectors, exported once, carried by each index."""

from __future__ import annotations

import numpy as np
import pytest

from search.encoder import ONNX_FILE, Encoder, EncoderError
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
