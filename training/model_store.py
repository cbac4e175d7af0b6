"""The model store both models share: BentoML's store on disk, and each model's promotion
record beside it (``<home>/promotions/<name>.json``: which tag serving loads, and why).

This is the one module that reaches into BentoML's internals (its home and an explicit
store for a given folder); the recommender and the support model both go through it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from training.artifact_files import ArtifactError


def store_home(home: Path | str | None = None) -> Path:
    """The BentoML home in use: ``home`` if given, else BentoML's own (BENTOML_HOME)."""
    if home is not None:
        return Path(home)
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.bentoml_home.get())


def store_kwargs(home: Path | str | None) -> dict:
    """Keyword arguments that make ``bentoml.models`` use the store under ``home`` (None:
    BentoML's own). BentoML fixes its home on first use; tests and jobs may need another."""
    if home is None:
        return {}
    from bentoml._internal.models import ModelStore

    folder = Path(home) / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return {"_model_store": ModelStore(str(folder))}


def promotion_path(name: str, home: Path | str | None = None) -> Path:
    return store_home(home) / "promotions" / f"{name}.json"


def read_promotion(name: str, home: Path | str | None = None) -> dict | None:
    """The promotion record of model ``name``, None before the first promotion."""
    path = promotion_path(name, home)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        record["tag"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ArtifactError(f"promotion record {path} is corrupt ({exc})") from exc
    return record


def write_promotion(name: str, record: dict, home: Path | str | None = None) -> None:
    """Replace the promotion record at once: a reader sees the old one or the new one."""
    path = promotion_path(name, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        json.dump(record, tmp, indent=2)
    os.replace(tmp.name, path)
