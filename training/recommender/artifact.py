"""The model artifact: safetensors weights, JSON config, item vocabulary and metrics.

Saved to the BentoML model store as plain files (no pickle anywhere), with the sha256 of
each in ``checksums.json``. Loading verifies those first, refuses NaN or infinite weights,
checks the weights against the config and the vocabulary against its recorded
fingerprint, and fails with ``ArtifactMismatch`` (an ``ArtifactError``) naming the file and
what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from training.artifact_files import (
    CHECKSUMS,
    ArtifactError,
    check_finite,
    load_tensors,
    read_json,
    seal,
    verify,
)
from training.model_store import store_kwargs
from training.recommender.baselines import BaselineConfig, BaselineModel
from training.recommender.model import RecommenderConfig, SASRec

MODEL_NAME = "recommender"
FORMAT_VERSION = 1
FILES = ("model.safetensors", "config.json", "items.json", "metrics.json", CHECKSUMS)


class ArtifactMismatch(ArtifactError):
    """An artifact is corrupt or does not fit the config or vocabulary it is loaded with."""


def vocabulary_fingerprint(items: list[str]) -> str:
    return hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()[:16]


# What ``config.json``'s "kind" names; artifacts written before baselines were servable have none.
KINDS = {"sasrec": (RecommenderConfig, SASRec), "baseline": (BaselineConfig, BaselineModel)}


def model_kind(model: SASRec | BaselineModel) -> str:
    return "baseline" if isinstance(model, BaselineModel) else "sasrec"


@dataclass
class Artifact:
    model: SASRec | BaselineModel  # a trained model, or the baseline promoted in its place
    items: list[str]
    metrics: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # training settings, split fingerprint, side info
    tag: str | None = None


def write_files(artifact: Artifact, folder: Path) -> None:
    """Write the files of an artifact into ``folder``, their checksums last."""
    folder.mkdir(parents=True, exist_ok=True)
    model = artifact.model
    if len(artifact.items) != model.config.num_items:
        raise ArtifactMismatch(
            f"vocabulary has {len(artifact.items)} items but the model has {model.config.num_items}"
        )
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    check_finite(state, "the model to save")
    save_file(state, str(folder / "model.safetensors"))
    config = {
        "format_version": FORMAT_VERSION,
        "kind": model_kind(model),
        "model": model.config.to_dict(),
        "vocabulary_size": len(artifact.items),
        "vocabulary_fingerprint": vocabulary_fingerprint(artifact.items),
        "extra": artifact.extra,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "items.json").write_text(json.dumps(artifact.items))
    (folder / "metrics.json").write_text(json.dumps(artifact.metrics, indent=2))
    seal(folder)


def read_files(
    folder: Path,
    expected_items: list[str] | None = None,
    expected_config: RecommenderConfig | BaselineConfig | None = None,
) -> Artifact:
    """Rebuild an artifact; raise ``ArtifactMismatch`` if anything is corrupt or does not fit."""
    missing = [name for name in FILES if not (folder / name).exists()]
    if missing:
        raise ArtifactMismatch(f"{folder} is not a recommender artifact: missing {', '.join(missing)}")
    try:
        verify(folder)
    except ArtifactError as e:
        raise ArtifactMismatch(str(e)) from e
    config_file = folder / "config.json"
    config = _json(config_file)
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
        version = config.get("format_version") if isinstance(config, dict) else None
        raise ArtifactMismatch(
            f"{config_file}: artifact format {version} cannot be read by this code (format {FORMAT_VERSION})"
        )
    kind = config.get("kind", "sasrec")
    if kind not in KINDS:
        raise ArtifactMismatch(f"{config_file}: unknown model kind {kind!r}; expected one of {sorted(KINDS)}")
    config_class, model_class = KINDS[kind]
    try:
        model_config = config_class.from_dict(config["model"])
        fingerprint = config["vocabulary_fingerprint"]
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactMismatch(f"{config_file}: not a recommender config ({type(e).__name__}: {e})") from e
    items = _json(folder / "items.json")
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ArtifactMismatch(f"{folder / 'items.json'}: not a list of item ids")
    if len(items) != model_config.num_items or vocabulary_fingerprint(items) != fingerprint:
        raise ArtifactMismatch(
            f"items.json ({len(items)} items, fingerprint {vocabulary_fingerprint(items)}) does not match the "
            f"config ({model_config.num_items} items, fingerprint {fingerprint})"
        )
    if expected_items is not None and list(expected_items) != items:
        raise ArtifactMismatch(
            f"the artifact was trained on another item vocabulary: it has {len(items)} items "
            f"(fingerprint {vocabulary_fingerprint(items)}), expected {len(expected_items)} "
            f"(fingerprint {vocabulary_fingerprint(list(expected_items))})"
        )
    if expected_config is not None and expected_config != model_config:
        diff = {
            k: (v, getattr(expected_config, k))
            for k, v in model_config.to_dict().items()
            if getattr(expected_config, k) != v
        }
        raise ArtifactMismatch(
            f"the artifact's config differs from the expected one (artifact, expected): {diff}"
        )
    model = model_class(model_config)
    weights = folder / "model.safetensors"
    try:
        state = load_tensors(weights)  # verify() has checked that every value is finite
    except ArtifactError as e:
        raise ArtifactMismatch(str(e)) from e
    own = model.state_dict()
    missing_keys = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing_keys or unexpected or wrong:
        raise ArtifactMismatch(
            f"{weights}: the weights do not fit the config: "
            f"missing {missing_keys}, unexpected {unexpected}, "
            f"wrong shape {[(k, tuple(state[k].shape), tuple(own[k].shape)) for k in wrong]}"
        )
    model.load_state_dict(state)
    metrics = _json(folder / "metrics.json")
    return Artifact(model=model.eval(), items=items, metrics=metrics, extra=config.get("extra", {}))


def _json(path: Path):
    try:
        return read_json(path)
    except ArtifactError as e:
        raise ArtifactMismatch(str(e)) from e


def _flat_metrics(metrics: dict) -> dict:
    """Top-level numbers only, for the store's metadata (searchable in ``bentoml models get``)."""
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}


def save_to_store(
    artifact: Artifact, name: str = MODEL_NAME, labels: dict | None = None, home: Path | str | None = None
) -> str:
    """Save into the BentoML model store; returns the tag as a string."""
    import bentoml

    with bentoml.models.create(
        name,
        module="training.recommender",
        labels={"model": model_kind(artifact.model), **(labels or {})},
        metadata={**_flat_metrics(artifact.metrics), "num_items": len(artifact.items)},
        **store_kwargs(home),
    ) as stored:
        write_files(artifact, Path(stored.path))
    artifact.tag = str(stored.tag)
    return artifact.tag


def load_from_store(
    tag: str = f"{MODEL_NAME}:latest",
    expected_items: list[str] | None = None,
    expected_config: RecommenderConfig | None = None,
    home: Path | str | None = None,
) -> Artifact:
    import bentoml

    stored = bentoml.models.get(tag, **store_kwargs(home))
    artifact = read_files(Path(stored.path), expected_items, expected_config)
    artifact.tag = str(stored.tag)
    return artifact


def checkpoint_state(path: Path | str) -> dict[str, torch.Tensor]:
    """The model weights out of a Lightning checkpoint (tensors only, no arbitrary objects)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    prefix = "model."
    return {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
