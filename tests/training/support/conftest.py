"""Fixtures of the support model tests: tiny models trained on the committed samples."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# BentoML fixes its model store at first use: point it at a temporary folder before any import.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="shopml-support-bentoml-")
os.environ["HF_HUB_OFFLINE"] = "1"

from training.support.config import SupportConfig  # noqa: E402
from training.support.corpus import SAMPLE_DIR, build_corpus, read_bitext  # noqa: E402
from training.support.encoder import SentenceEncoder  # noqa: E402
from training.support.tiny import tiny_causal_lm, tiny_encoder  # noqa: E402

BITEXT_SAMPLE = SAMPLE_DIR / "bitext" / "bitext_sample.csv"
ABCD_SAMPLE = SAMPLE_DIR / "abcd"


@pytest.fixture(scope="session")
def sample_texts() -> list[str]:
    qa, _ = read_bitext(BITEXT_SAMPLE)
    return qa["question"].to_list() + qa["answer"].to_list()


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory, sample_texts) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"), sample_texts)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory, sample_texts) -> Path:
    return tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"), sample_texts)


@pytest.fixture(scope="session")
def tiny_config(tiny_encoder_dir, tiny_lm_dir) -> SupportConfig:
    return SupportConfig(
        encoder=str(tiny_encoder_dir),
        generator=str(tiny_lm_dir),
        ranker_steps=30,
        ranker_batch_groups=4,
        ranker_max_length=64,
        generator_steps=3,
        generator_batch_size=2,
        generator_max_length=96,
        max_new_tokens=8,
        eval_limit=20,
        generation_eval_limit=2,
        latency_queries=3,
        handover_threshold=0.3,
        router_steps=20,
        router_per_label=20,
        router_batch_size=16,
        router_max_length=32,
    )


@pytest.fixture(scope="session")
def tiny_sentence_encoder(tiny_encoder_dir) -> SentenceEncoder:
    return SentenceEncoder.load(str(tiny_encoder_dir))


@pytest.fixture(scope="session")
def sample_corpus(tiny_sentence_encoder):
    return build_corpus(tiny_sentence_encoder.encode, BITEXT_SAMPLE, ABCD_SAMPLE, threshold=0.98)
