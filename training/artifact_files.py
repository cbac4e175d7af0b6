"""Verified model files: a sha256 of every file at save time, checked before anything is read.

Both models' artifacts are folders of plain files (safetensors, JSON, tokenizer files).
``seal`` records the size and sha256 of each file in ``checksums.json``; ``verify`` checks
them and that every floating-point tensor of every safetensors file is finite, so flipped
bytes, a truncated copy or NaN weights stop the load with a message that names the file
and says what is wrong. Every such failure is one exception type, ``ArtifactError``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

CHECKSUMS = "checksums.json"
_CHUNK = 1 << 20


class ArtifactError(ValueError):
    """A model artifact is missing, corrupt, tampered with or does not fit the code loading it."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def seal(folder: Path) -> dict[str, dict]:
    """Record the size and sha256 of every file under ``folder`` in ``checksums.json``."""
    files = {
        path.relative_to(folder).as_posix(): {"bytes": path.stat().st_size, "sha256": sha256(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != CHECKSUMS
    }
    (folder / CHECKSUMS).write_text(json.dumps({"algorithm": "sha256", "files": files}, indent=1))
    return files


def verify(folder: Path) -> None:
    """Raise ``ArtifactError`` unless every file recorded in ``checksums.json`` is there, unchanged,
    and every safetensors file among them holds only finite floating-point values."""
    record = folder / CHECKSUMS
    try:
        files = json.loads(record.read_text())["files"]
    except FileNotFoundError as e:
        raise ArtifactError(
            f"{record} is missing: the artifact's files cannot be verified (saved by older code? retrain it)"
        ) from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ArtifactError(f"{record} is corrupt ({type(e).__name__}: {e})") from e
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise ArtifactError(f"{path} is missing (recorded in {CHECKSUMS})")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise ArtifactError(
                f"{path} is corrupt: it has {size} bytes, {expected['bytes']} were saved "
                f"({'truncated' if size < expected['bytes'] else 'longer than saved'})"
            )
        if sha256(path) != expected["sha256"]:
            raise ArtifactError(
                f"{path} is corrupt: its sha256 differs from the one recorded when it was saved"
            )
    for name in files:
        if name.endswith(".safetensors"):
            check_finite_file(folder / name)


def check_finite(tensors: dict[str, torch.Tensor], where: str) -> None:
    """Raise ``ArtifactError`` naming the first tensor with a NaN or infinite value."""
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ArtifactError(
                f"{where}: tensor {key!r} has {bad} NaN or infinite values of {tensor.numel()}"
            )


def check_finite_file(path: Path) -> None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open has keys(), not iteration)
                check_finite({key: handle.get_tensor(key)}, str(path))
    except ArtifactError:
        raise
    except (SafetensorError, OSError, ValueError) as e:
        raise ArtifactError(f"{path} is not a readable safetensors file ({e})") from e


def read_json(path: Path):
    """A JSON file of an artifact; ``ArtifactError`` naming it if missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ArtifactError(f"{path} is missing") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path} is not valid JSON ({e})") from e


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file; ``ArtifactError`` naming it if missing or unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ArtifactError(f"{path} is not a readable safetensors file ({e})") from e
