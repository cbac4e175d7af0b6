"""The support artifact is verified before it is used: checksums, finite weights, a known config."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
from safetensors.torch import load_file, save_file

from data_contracts.settings import Settings
from training.artifact_files import ArtifactError, seal
from training.support.artifact import SupportModel, load_support_model, model_path, save_support_model
from training.support.encoder import Document, Retriever
from training.support.ranker import CrossEncoder


@pytest.fixture(scope="module")
def saved(tiny_config, tiny_sentence_encoder, tmp_path_factory):
    """A support model from untrained tiny parts (no generator), saved once."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"))
    config = replace(tiny_config, generator=None)
    documents = [
        Document(f"d{i}", "qa", question, f"answer {i}", "cancel_order", "ORDER")
        for i, question in enumerate(["how do I cancel my order", "where is my parcel", "refund please"])
    ]
    model = SupportModel(
        config,
        Retriever.build(tiny_sentence_encoder, documents),
        CrossEncoder.from_encoder(config.encoder, config.ranker_max_length),
    )
    return settings, model_path(save_support_model(model, settings), settings)


@pytest.fixture
def copy(saved, tmp_path):
    settings, good = saved

    def make(name: str):
        target = tmp_path / name
        shutil.copytree(good, target)
        return target

    return make


def load(settings, path):
    return load_support_model(settings=settings, path=path, with_generator=False)


def test_every_file_is_checksummed_and_verified(saved, copy):
    settings, good = saved
    recorded = json.loads((good / "checksums.json").read_text())["files"]
    assert {"support.json", "index/embeddings.safetensors", "index/documents.json"} <= set(recorded)
    assert any(name.startswith("ranker/") and name.endswith(".safetensors") for name in recorded)
    assert load(settings, good).retriever.documents

    flipped = copy("flipped")
    weights = next((flipped / "ranker").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=rf"ranker/{weights.name} is corrupt: its sha256 differs"):
        load(settings, flipped)

    truncated = copy("truncated")
    index = truncated / "index" / "embeddings.safetensors"
    index.write_bytes(index.read_bytes()[:100])
    with pytest.raises(ArtifactError, match=r"embeddings\.safetensors is corrupt: .*\(truncated\)"):
        load(settings, truncated)
    seal(truncated)  # recorded as truncated: still named, as unreadable
    with pytest.raises(ArtifactError, match=r"embeddings\.safetensors is not a readable safetensors file"):
        load(settings, truncated)

    documents = copy("documents")
    (documents / "index" / "documents.json").write_text("[{")
    seal(documents)
    with pytest.raises(ArtifactError, match=r"documents\.json is not valid JSON"):
        load(settings, documents)


def test_nan_weights_are_refused(saved, copy):
    settings, _ = saved
    folder = copy("nan")
    weights = next((folder / "ranker").glob("*.safetensors"))
    state = load_file(str(weights))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name][0] = float("nan")
    save_file(state, str(weights), metadata={"format": "pt"})
    seal(folder)
    with pytest.raises(ArtifactError, match=rf"{weights.name}: tensor '{name}' has 1 NaN or infinite values"):
        load(settings, folder)


def test_an_unknown_config_key_is_named(saved, copy):
    settings, _ = saved
    folder = copy("config")
    meta = json.loads((folder / "support.json").read_text())
    meta["config"]["ranker_temperature"] = 2.0
    (folder / "support.json").write_text(json.dumps(meta))
    seal(folder)
    with pytest.raises(ArtifactError, match=r"support\.json: unknown config keys \['ranker_temperature'\]"):
        load(settings, folder)
