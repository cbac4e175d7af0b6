"""The support model's training steps: corpus → ranker, generator → evaluation → promotion.

The orchestrator wraps each of these; none of them knows about it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import polars as pl
import torch

from data_contracts.settings import Settings
from training.support.artifact import (
    SupportModel,
    generator_cache,
    load_support_model,
    promote,
    promoted_tag,
)
from training.support.config import SupportConfig
from training.support.corpus import SupportCorpus, build_corpus
from training.support.encoder import Document, Retriever, SentenceEncoder
from training.support.evaluate import SupportReport, evaluate_model, promote_if_better
from training.support.generator import Generator, generator_examples, load_base, train_generator
from training.support.ranker import CrossEncoder, train_ranker
from training.support.runtime import feedback_log_path

log = logging.getLogger(__name__)


def feedback_files(settings: Settings) -> list[Path]:
    """Past feedback: the reply pipeline's log and JSON-lines files landed under feedback/."""
    files = [feedback_log_path(settings)]
    if Path(settings.feedback_landing).exists():
        files += sorted(Path(settings.feedback_landing).glob("*.jsonl"))
    return [f for f in files if f.exists()]


def support_corpus(
    settings: Settings,
    config: SupportConfig,
    encoder: SentenceEncoder | None = None,
    bitext: Path | None = None,
    abcd: Path | None = None,
    extra_feedback: list[Path] | None = None,
) -> SupportCorpus:
    """The cleaned, deduplicated, leak-free-split support corpus with past feedback."""
    torch.set_num_threads(config.num_threads)
    encoder = encoder or SentenceEncoder.load(config.encoder)
    return build_corpus(
        encoder.encode,
        bitext=bitext,
        abcd=abcd,
        feedback_files=feedback_files(settings) + list(extra_feedback or []),
        test_fraction=config.test_fraction,
        threshold=config.near_duplicate_threshold,
        seed=config.seed,
        max_rows=config.max_rows,
    )


def documents(corpus: SupportCorpus) -> list[Document]:
    """What the retriever indexes: KB articles and the training split's answered questions."""
    docs = [
        Document(a, "article", f"{t}\n{b}", b, i, c)
        for a, t, b, i, c in corpus.articles.select(
            "article_id", "title", "body", "intent", "category"
        ).iter_rows()
    ]
    docs += [
        Document(q_id, "qa", q, a, i, c)
        for q_id, q, a, i, c in corpus.train()
        .select("qa_id", "question", "answer", "intent", "category")
        .iter_rows()
    ]
    return docs


def support_retriever(corpus: SupportCorpus, encoder: SentenceEncoder) -> Retriever:
    docs = documents(corpus)
    if corpus.question_embeddings is None or corpus.question_embeddings.shape[1] != encoder.dim:
        return Retriever.build(encoder, docs)
    # The corpus already embedded every question (for the split): embed only the articles.
    articles = [d for d in docs if d.kind == "article"]
    train_rows = (corpus.qa["split"] == "train").to_numpy()
    embeddings = np.concatenate(
        [encoder.encode([d.key for d in articles]), corpus.question_embeddings[train_rows]]
    )
    return Retriever(encoder, docs, embeddings)


def support_ranker(
    corpus: SupportCorpus,
    config: SupportConfig,
    ranker: CrossEncoder | None = None,
    log_dir: Path | None = None,
) -> CrossEncoder:
    """The cross-encoder fine-tuned on the training split and on past feedback."""
    torch.set_num_threads(config.num_threads)
    ranker = ranker or CrossEncoder.from_encoder(config.encoder, config.ranker_max_length)
    return train_ranker(ranker, corpus.train(), corpus.feedback, config, log_dir)


def support_generator(
    corpus: SupportCorpus,
    retriever: Retriever,
    config: SupportConfig,
    settings: Settings,
    log_dir: Path | None = None,
) -> tuple[Generator | None, object | None]:
    """The generator (LoRA fine-tuned when ``generator_steps`` > 0) and its adapter to save."""
    if config.generator is None:
        return None, None
    torch.set_num_threads(config.num_threads)
    model, tokenizer, info = load_base(config.generator, generator_cache(settings))
    adapter = None
    if config.generator_steps > 0:
        train = corpus.train()
        # Passages retrieved among articles only: the answer itself must not be in the prompt.
        embeddings = retriever.encoder.encode(train["question"].to_list())
        hits = retriever.search_embeddings(embeddings, config.prompt_passages, kind="article")
        passages = [[h.doc.text for h in row] for row in hits]
        examples = generator_examples(tokenizer, train, passages, config.generator_max_length)
        adapter = train_generator(model, tokenizer, examples, config, log_dir)
        model = adapter
    generator = Generator(model, tokenizer, info, config.max_new_tokens)
    return generator, adapter


def train_support_model(
    settings: Settings,
    config: SupportConfig,
    corpus: SupportCorpus | None = None,
    encoder: SentenceEncoder | None = None,
) -> tuple[SupportModel, SupportCorpus]:
    """Corpus (unless given), retriever index, ranker and generator: an unsaved SupportModel."""
    torch.set_num_threads(config.num_threads)
    encoder = encoder or SentenceEncoder.load(config.encoder)
    corpus = corpus or support_corpus(settings, config, encoder)
    log_dir = Path(settings.data_dir) / "support" / "logs"
    retriever = support_retriever(corpus, encoder)
    ranker = support_ranker(corpus, config, log_dir=log_dir)
    generator, adapter = support_generator(corpus, retriever, config, settings, log_dir)
    return SupportModel(config, retriever, ranker, generator, adapter=adapter), corpus


def support_evaluation(model: SupportModel, corpus: SupportCorpus) -> SupportReport:
    torch.set_num_threads(model.config.num_threads)
    return evaluate_model(model, corpus)


def incumbent_report(
    settings: Settings, corpus: SupportCorpus, config: SupportConfig
) -> SupportReport | None:
    """The promoted model evaluated on the same held-out split, for a fair comparison."""
    if promoted_tag(settings) is None:
        return None
    incumbent = load_support_model(settings=settings, with_generator=False)
    return evaluate_model(incumbent, corpus, limit=config.eval_limit, generation_limit=0, latency_queries=0)


def promote_support_model(
    tag: str, report: SupportReport, incumbent: SupportReport | None, settings: Settings
) -> dict:
    """Promote ``tag`` when it beats the promoted model on the same split; returns the decision."""
    better, reason = promote_if_better(report.metrics, incumbent.metrics if incumbent else None)
    if better:
        promote(tag, report.metrics, settings)
    return {"tag": tag, "promoted": better, "reason": reason}


def write_report(report: SupportReport, folder: Path, extra: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(
        json.dumps({**report.metrics, **(extra or {})}, indent=1, default=str)
    )
    (folder / "report.md").write_text(report.table + "\n")
    (folder / "report.png").write_bytes(report.plot_png)
    report.by_intent.write_csv(folder / "by_intent.csv")


def corpus_summary(corpus: SupportCorpus) -> pl.DataFrame:
    return corpus.qa.group_by("split", "category").agg(pl.len().alias("rows")).sort("split", "category")
