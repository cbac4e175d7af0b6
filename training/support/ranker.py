"""The ranker: a cross-encoder (MiniLM + one logit) scoring (dialogue context, candidate reply).

Trained listwise on groups of one right answer and hard negatives (answers of other intents
of the same category), plus pointwise on feedback pairs (thumbs up 1, thumbs down 0).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytorch_lightning as pl_light
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from training.support.config import SupportConfig
from training.support.encoder import resolve_encoder
from training.support.int8 import int8_linears
from training.support.losses import listwise_ranking_loss, pointwise_loss


class CrossEncoder(nn.Module):
    """A sequence-classification transformer with one output: the relevance logit of a pair."""

    def __init__(self, model: nn.Module, tokenizer, max_length: int = 128):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length

    @classmethod
    def from_encoder(cls, spec: str, max_length: int = 128) -> CrossEncoder:
        """A fresh cross-encoder from a sentence encoder's weights (new, untrained head)."""
        return cls.load(resolve_encoder(spec), max_length)

    @classmethod
    def load(cls, folder: Path, max_length: int = 128) -> CrossEncoder:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging

        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"no ranker at {folder} (config.json missing)")
        # A fresh head from an encoder checkpoint is expected; its warning is noise here.
        verbosity = logging.get_verbosity()
        logging.set_verbosity_error()
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, num_labels=1, local_files_only=True
            )
        finally:
            logging.set_verbosity(verbosity)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        return cls(model.eval(), tokenizer, max_length)

    def save(self, folder: Path) -> None:
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)

    def quantize(self) -> CrossEncoder:
        """int8 linear layers (CPU only): 1.4-2x faster per candidate; R@1 within a point of fp32.

        Not what the service runs: scores move (by up to 0.3 on held-out pairs), so R@1 and
        the handover threshold would have to be read on the quantised ranker; benchmarks/support.py
        prints its figures beside the fp32 ones.
        """
        int8_linears(self.model)
        return self

    def tokenize(self, contexts: list[str], replies: list[str]) -> dict[str, torch.Tensor]:
        return dict(
            self.tokenizer(
                contexts,
                replies,
                padding=True,
                truncation="longest_first",
                max_length=self.max_length,
                return_tensors="pt",
            )
        )

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        return self.model(**batch).logits.squeeze(-1)  # (B,)

    @torch.inference_mode()
    def score(self, context: str, candidates: list[str], batch_size: int = 32) -> np.ndarray:
        """Probabilities (sigmoid of the logits) that each candidate answers the context."""
        return self.score_pairs([context] * len(candidates), candidates, batch_size)

    @torch.inference_mode()
    def score_pairs(self, contexts: list[str], replies: list[str], batch_size: int = 32) -> np.ndarray:
        self.eval()
        device = next(self.parameters()).device
        out = []
        for start in range(0, len(replies), batch_size):
            batch = self.tokenize(contexts[start : start + batch_size], replies[start : start + batch_size])
            logits = self(**{k: v.to(device) for k, v in batch.items()})
            out.append(torch.sigmoid(logits.float()).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def negative_pool(qa: pl.DataFrame) -> dict[str, dict[str, list[str]]]:
    """category → intent → answers: where hard negatives come from."""
    pool: dict[str, dict[str, list[str]]] = {}
    for category, intent, answer in qa.select("category", "intent", "answer").iter_rows():
        pool.setdefault(category, {}).setdefault(intent, []).append(answer)
    return pool


def sample_negatives(
    pool: dict[str, dict[str, list[str]]], category: str, intent: str, n: int, rng: random.Random
) -> list[str]:
    """n answers of other intents, from the same category first, then from any other."""
    same = [a for i, answers in pool.get(category, {}).items() if i != intent for a in answers]
    picked = rng.sample(same, min(n, len(same)))
    if len(picked) < n:
        other = [
            a
            for c, intents in pool.items()
            if c != category
            for i, ans in intents.items()
            if i != intent
            for a in ans
        ]
        picked += rng.sample(other, min(n - len(picked), len(other)))
    return picked


@dataclass
class RankerExamples(Dataset):
    """Listwise groups from Q&A rows, with fresh negatives each epoch, plus feedback pairs."""

    qa: pl.DataFrame
    feedback: pl.DataFrame
    negatives: int
    seed: int

    def __post_init__(self) -> None:
        self.rows = self.qa.select("question", "answer", "intent", "category").rows()
        self.pool = negative_pool(self.qa)
        self.feedback_rows = self.feedback.select("context", "reply", "rating").rows()
        self.calls = 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        question, answer, intent, category = self.rows[index]
        rng = random.Random(hash((self.seed, index, self.calls)))
        self.calls += 1
        group = [answer, *sample_negatives(self.pool, category, intent, self.negatives, rng)]
        item = {"context": question, "candidates": group}
        if self.feedback_rows:
            context, reply, rating = self.feedback_rows[rng.randrange(len(self.feedback_rows))]
            item["feedback"] = (context, reply, 1.0 if rating > 0 else 0.0)
        return item


class RankerModule(pl_light.LightningModule):
    """Owns the optimiser and the losses; the CrossEncoder only returns logits."""

    def __init__(self, ranker: CrossEncoder, lr: float, feedback_weight: float):
        super().__init__()
        self.ranker = ranker
        self.lr = lr
        self.feedback_weight = feedback_weight

    def collate(self, items: list[dict]) -> dict:
        width = min(len(item["candidates"]) for item in items)
        contexts = [item["context"] for item in items for _ in range(width)]
        replies = [c for item in items for c in item["candidates"][:width]]
        batch = {"groups": self.ranker.tokenize(contexts, replies), "width": width}
        feedback = [item["feedback"] for item in items if "feedback" in item]
        if feedback:
            batch["feedback"] = self.ranker.tokenize([f[0] for f in feedback], [f[1] for f in feedback])
            batch["feedback_labels"] = torch.tensor([f[2] for f in feedback])
        return batch

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        scores = self.ranker(**batch["groups"]).view(-1, batch["width"])  # (G, C)
        loss = listwise_ranking_loss(scores)
        if "feedback" in batch:
            fb = pointwise_loss(self.ranker(**batch["feedback"]), batch["feedback_labels"])
            loss = loss + self.feedback_weight * fb
            self.log("train/feedback_loss", fb, prog_bar=False, batch_size=len(batch["feedback_labels"]))
        self.log("train/loss", loss, prog_bar=True, batch_size=scores.size(0))
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.ranker.parameters(), lr=self.lr, weight_decay=0.01)


def trainer(max_steps: int, log_dir: Path | None = None) -> pl_light.Trainer:
    """One Lightning trainer for both trainable stages: bf16 on a GPU, fp32 on CPU."""
    gpu = torch.cuda.is_available()
    logger = pl_light.loggers.CSVLogger(str(log_dir), name="support") if log_dir else False
    return pl_light.Trainer(
        max_steps=max_steps,
        accelerator="auto",
        devices=1,
        precision="bf16-mixed" if gpu else "32-true",
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=True,
        enable_model_summary=False,
        log_every_n_steps=10,
    )


def train_ranker(
    ranker: CrossEncoder,
    qa_train: pl.DataFrame,
    feedback: pl.DataFrame,
    config: SupportConfig,
    log_dir: Path | None = None,
) -> CrossEncoder:
    """Fine-tune ``ranker`` in place for ``config.ranker_steps`` steps and return it."""
    if qa_train.height == 0:
        raise ValueError("no training Q&A rows for the ranker")
    if config.ranker_steps <= 0:
        return ranker
    pl_light.seed_everything(config.seed, verbose=False)
    module = RankerModule(ranker, config.ranker_lr, config.feedback_weight)
    data = RankerExamples(qa_train, feedback, config.ranker_negatives, config.seed)
    loader = DataLoader(
        data, batch_size=config.ranker_batch_groups, shuffle=True, collate_fn=module.collate, num_workers=0
    )
    ranker.train()
    trainer(config.ranker_steps, log_dir).fit(module, loader)
    return ranker.cpu().eval()
