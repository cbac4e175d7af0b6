"""The artifact round-trips through a temporary BentoML store and refuses what does not fit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.artifact_files import ArtifactError, seal
from training.recommender.artifact import (
    Artifact,
    ArtifactMismatch,
    load_from_store,
    read_files,
    save_to_store,
    write_files,
)
from training.recommender.inference import Recommender
from training.recommender.model import RecommenderConfig, SASRec


def make_artifact(num_items: int = 6, **kw) -> Artifact:
    torch.manual_seed(0)
    model = SASRec(RecommenderConfig(num_items=num_items, max_len=5, hidden=32, num_blocks=2, **kw)).eval()
    return Artifact(
        model=model, items=[f"sku-{i}" for i in range(num_items)], metrics={"ndcg@10": 0.5, "baselines": {}}
    )


def test_round_trip_through_the_store(tmp_path):
    artifact = make_artifact(text_dim=4)
    tag = save_to_store(artifact, home=tmp_path)
    assert tag.startswith("recommender:")
    folder = tmp_path / "models" / "recommender" / tag.split(":")[1]
    files = {p.name for p in folder.rglob("*") if p.is_file()}
    assert {"model.safetensors", "config.json", "items.json", "metrics.json"} <= files
    assert not any(name.endswith((".pkl", ".pt", ".pickle")) for name in files)
    loaded = load_from_store(tag, home=tmp_path)
    assert loaded.items == artifact.items and loaded.metrics["ndcg@10"] == 0.5
    seq = torch.tensor([[1, 2, 3]])
    assert torch.allclose(
        loaded.model.full_sort_scores(seq)[:, 1:], artifact.model.full_sort_scores(seq)[:, 1:]
    )
    assert load_from_store("recommender:latest", home=tmp_path).tag == tag


def test_mismatched_vocabulary_fails_loudly(tmp_path):
    artifact = make_artifact()
    write_files(artifact, tmp_path)
    other = [*artifact.items[:-1], "sku-new"]
    with pytest.raises(ArtifactMismatch, match="another item vocabulary"):
        read_files(tmp_path, expected_items=other)
    # A vocabulary file edited behind the config's back: its checksum shows it, and
    # with the checksums recorded again the fingerprint still does.
    (tmp_path / "items.json").write_text(json.dumps(other))
    with pytest.raises(ArtifactMismatch, match="items.json"):
        read_files(tmp_path)
    seal(tmp_path)
    with pytest.raises(ArtifactMismatch, match="fingerprint"):
        read_files(tmp_path)


def test_mismatched_config_fails_loudly(tmp_path):
    artifact = make_artifact()
    write_files(artifact, tmp_path)
    with pytest.raises(ArtifactMismatch, match="hidden"):
        read_files(
            tmp_path, expected_config=RecommenderConfig(num_items=6, max_len=5, hidden=64, num_blocks=2)
        )
    # Weights that do not fit the recorded config.
    config = json.loads((tmp_path / "config.json").read_text())
    config["model"]["num_blocks"] = 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    seal(tmp_path)
    with pytest.raises(ArtifactMismatch, match="missing"):
        read_files(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ArtifactMismatch, match="missing model.safetensors"):
        read_files(tmp_path)


def test_checksums_catch_flipped_and_truncated_files(tmp_path):
    write_files(make_artifact(), tmp_path)
    recorded = json.loads((tmp_path / "checksums.json").read_text())["files"]
    assert set(recorded) == {"model.safetensors", "config.json", "items.json", "metrics.json"}
    weights = tmp_path / "model.safetensors"
    good = weights.read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x01  # one bit inside a tensor: still a valid safetensors file
    weights.write_bytes(bytes(flipped))
    with pytest.raises(ArtifactMismatch, match=r"model\.safetensors is corrupt: its sha256 differs"):
        read_files(tmp_path)
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(
        ArtifactMismatch,
        match=r"model\.safetensors is corrupt: it has \d+ bytes, \d+ were saved \(truncated\)",
    ):
        read_files(tmp_path)
    weights.write_bytes(good)
    (tmp_path / "checksums.json").unlink()
    with pytest.raises(ArtifactMismatch, match="missing checksums.json"):
        read_files(tmp_path)


def test_unreadable_files_are_named_even_with_matching_checksums(tmp_path):
    write_files(make_artifact(), tmp_path)
    weights = tmp_path / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    seal(tmp_path)
    with pytest.raises(ArtifactMismatch, match=r"model\.safetensors is not a readable safetensors file"):
        read_files(tmp_path)
    weights.write_bytes(good)
    (tmp_path / "config.json").write_text('{"format_version": 1,')
    seal(tmp_path)
    with pytest.raises(ArtifactMismatch, match=r"config\.json is not valid JSON"):
        read_files(tmp_path)
    (tmp_path / "checksums.json").write_text("{")
    with pytest.raises(ArtifactMismatch, match=r"checksums\.json is corrupt"):
        read_files(tmp_path)


def test_nan_or_infinite_weights_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    artifact = make_artifact()
    write_files(artifact, tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    name = next(k for k in state if state[k].is_floating_point())
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, str(tmp_path / "model.safetensors"))
    seal(tmp_path)  # recorded as it is now: only the values are wrong
    with pytest.raises(ArtifactMismatch, match=rf"model\.safetensors: tensor '{name}' has \d+ NaN"):
        read_files(tmp_path)
    # A model that diverged is never written in the first place.
    with torch.no_grad():
        next(artifact.model.parameters())[0] = float("inf")
    with pytest.raises(ArtifactError, match="NaN or infinite"):
        write_files(artifact, tmp_path / "diverged")


def test_recommender_uses_string_ids_and_exclusions():
    artifact = make_artifact()
    in_stock = np.ones(7, dtype=bool)
    in_stock[artifact.items.index("sku-5") + 1] = False
    rec = Recommender(artifact.model, artifact.items, in_stock=in_stock)
    out = rec.recommend([["sku-0", "sku-1"], ["unknown-item"]], k=10, exclude=["sku-2"])
    assert len(out) == 2
    first = [item for item, _ in out[0]]
    assert set(first) == {"sku-3", "sku-4"}  # seen, excluded and out-of-stock items removed
    assert [s for _, s in out[0]] == sorted((s for _, s in out[0]), reverse=True)
    assert len(out[1]) == 4  # an unknown history still gets in-stock items
    similar = rec.similar("sku-0", k=3)
    assert "sku-0" not in [i for i, _ in similar] and len(similar) == 3
    with pytest.raises(KeyError):
        rec.similar("nope")
    with pytest.raises(ValueError, match="vocabulary"):
        Recommender(artifact.model, artifact.items[:-1])


def test_a_model_with_its_prior_round_trips(tmp_path):
    artifact = make_artifact()
    items = torch.tensor([[0, 0]] + [[i % 6 + 1, (i + 1) % 6 + 1] for i in range(1, 7)])
    artifact.model.set_prior(items, torch.rand(7, 2), weight=2.0, recent=3, decay=0.6)
    artifact.model.set_ease_prior(items.flip(1), torch.rand(7, 2), weight=0.5)
    loaded = load_from_store(save_to_store(artifact, home=tmp_path), home=tmp_path)
    assert loaded.model.config.prior_weight == 2.0 and loaded.model.config.prior_neighbours == 2
    assert loaded.model.config.ease_prior_weight == 0.5 and loaded.model.config.ease_prior_neighbours == 2
    seq = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(
        loaded.model.full_sort_scores(seq)[:, 1:], artifact.model.full_sort_scores(seq)[:, 1:]
    )
