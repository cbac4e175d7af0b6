"""The support model's training steps: corpus → ranker, generator → evaluation → promotion.

The orchestrator wraps each of these; none of them knows about it.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from dataclasses import replace
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
from training.support.evaluate import (
    SupportReport,
    evaluate_model,
    fit_generation_gate,
    promote_if_better,
    render_table,
)
from training.support.generator import Generator, generator_examples, load_base, train_generator
from training.support.products import ProductCatalog
from training.support.ranker import CrossEncoder, train_ranker
from training.support.router import Router, RouterConfig, choose_threshold, router_examples, train_router
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
        # The rows the steps read (each once), not the whole split: a short CPU fine-tune.
        needed = config.generator_steps * config.generator_batch_size
        train = train.sample(n=min(needed, train.height), seed=config.seed)
        # Passages retrieved among articles only: the answer itself must not be in the prompt.
        embeddings = retriever.encoder.encode(train["question"].to_list())
        hits = retriever.search_embeddings(embeddings, config.prompt_passages, kind="article")
        passages = [[h.doc.text for h in row] for row in hits]
        facts = prompt_facts(settings, train.height, config)
        examples = generator_examples(
            tokenizer, train, passages, config.generator_max_length, config.generator_reply_tokens, facts
        )
        adapter = train_generator(model, tokenizer, examples, config, log_dir)
        # The adapter is saved as it is; replies come from a merged copy (a plain Llama model,
        # which the fast decoder reads), as a loaded artifact's do.
        model = copy.deepcopy(adapter).merge_and_unload().eval()
    generator = Generator(model, tokenizer, info, config.max_new_tokens, lora=adapter is not None)
    return generator, adapter


def warehouse_catalog(settings: Settings) -> ProductCatalog | None:
    """The warehouse's catalog, or None when there is none (or it cannot be read now)."""
    from data_contracts import warehouse

    path = Path(settings.warehouse_path)
    if not path.exists():
        return None
    try:
        with warehouse.connect(path, read_only=True) as conn:
            if warehouse.table_exists(conn, "catalog"):
                catalog = ProductCatalog.from_frame(warehouse.read(conn, "SELECT * FROM catalog"))
                return catalog if len(catalog) else None
    except Exception as e:  # a locked or unready warehouse: the callers have a fallback
        log.warning("cannot read the catalog from %s (%s)", path, e)
    return None


def prompt_facts(settings: Settings, rows: int, config: SupportConfig) -> list[list[str]]:
    """Product facts for generator training prompts: a ``generator_facts_share`` of the rows
    get one to three catalog products (as a product turn before the question would leave
    them), the others none; all empty without a catalog. Seeded."""
    catalog = warehouse_catalog(settings)
    lines = [p.fact_line() for p in catalog.products.values()] if catalog is not None else []
    rng = random.Random(config.seed)
    return [
        rng.sample(lines, rng.randint(1, min(3, len(lines))))
        if lines and rng.random() < config.generator_facts_share
        else []
        for _ in range(rows)
    ]


def router_vocabulary(settings: Settings) -> dict:
    """The catalog's words for the router's templates: the warehouse's catalog when there is
    one, else the synthetic shop's (``data_contracts.synthetic``, what ``shopml run`` builds)."""
    from data_contracts import synthetic

    catalog = warehouse_catalog(settings)
    if catalog is not None:
        return catalog.vocabulary.router_vocabulary()
    return {
        "categories": list(synthetic.TOP_CATEGORIES),
        "subcategories": list(synthetic.SUB_CATEGORIES),
        "brands": list(synthetic.BRANDS),
        "adjectives": list(synthetic.ADJECTIVES),
        "nouns": [n for ns in synthetic.NOUNS.values() for n in ns],
    }


def support_router(
    config: SupportConfig, vocabulary: dict, bitext: Path | None = None, dev_set: Path | None = None
) -> tuple[Router, dict]:
    """The turn router fine-tuned from the encoder on ``router_examples``; its clarifying-question
    threshold chosen on the dev set's dev half (its test half is never read here)."""
    from training.support.corpus import bitext_path
    from training.support.dev_set import DEV_SET, load_dev_set
    from training.support.router import LABELS, macro_accuracy

    torch.set_num_threads(config.num_threads)
    router_config = RouterConfig(
        encoder=config.encoder,
        max_length=config.router_max_length,
        steps=config.router_steps,
        batch_size=config.router_batch_size,
        lr=config.router_lr,
        seed=config.seed,
    )
    examples = router_examples(bitext or bitext_path(), vocabulary, config.router_per_label, config.seed)
    router = train_router(
        Router.from_encoder(config.encoder, config.router_max_length), examples, router_config
    )
    rows = []
    for dialogue in load_dev_set("dev", dev_set or DEV_SET):
        previous = ""
        for turn in dialogue:
            if turn.goal != "other_language":  # decided before the router, by language detection
                rows.append((turn.goal, turn.text, previous))
            previous = turn.text
    probs = router.probabilities([t for _, t, _ in rows], [p for _, _, p in rows])
    gold = [g for g, _, _ in rows]
    router.threshold = choose_threshold(gold, probs)
    predicted = [
        LABELS[b] if p[b] >= router.threshold else None for b, p in zip(probs.argmax(1), probs, strict=True)
    ]
    macro, per_goal = macro_accuracy(gold, predicted)
    figures = {
        "router_examples": len(examples),
        "router_steps": config.router_steps,
        "router_threshold": router.threshold,
        "router_dev_accuracy": round(macro, 4),
        **{f"router_dev_accuracy_{goal}": round(v, 4) for goal, v in per_goal.items()},
    }
    return router, figures


def as_served(model: SupportModel) -> SupportModel:
    """``model`` as the service runs it: on a CPU its generator is an int8 copy (the trained
    generator stays as it is, to be saved). What is fitted and measured on generated replies
    uses this one."""
    if model.generator is None or torch.cuda.is_available():
        return model
    return replace(model, generator=copy.deepcopy(model.generator).quantize())


def train_support_model(
    settings: Settings,
    config: SupportConfig,
    corpus: SupportCorpus | None = None,
    encoder: SentenceEncoder | None = None,
    vocabulary: dict | None = None,
    bitext: Path | None = None,
) -> tuple[SupportModel, SupportCorpus]:
    """Corpus (unless given), retriever index, ranker, generator and turn router: an unsaved
    SupportModel. ``vocabulary``: the catalog words of the router's templates (default
    ``router_vocabulary(settings)``); ``bitext``: its support questions (default the corpus's file)."""
    torch.set_num_threads(config.num_threads)
    seconds: dict[str, float] = {}  # wall time of each stage, in the metrics as train_seconds_*
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[f"train_seconds_{stage}"] = round(now - clock, 1)
        clock = now

    encoder = encoder or SentenceEncoder.load(config.encoder)
    corpus = corpus or support_corpus(settings, config, encoder)
    log_dir = Path(settings.data_dir) / "support" / "logs"
    retriever = support_retriever(corpus, encoder)
    lap("corpus_and_index")
    ranker = support_ranker(corpus, config, log_dir=log_dir)
    lap("ranker")
    generator, adapter = support_generator(corpus, retriever, config, settings, log_dir)
    lap("generator")
    router, figures = None, {}
    if config.router:
        router, figures = support_router(config, vocabulary or router_vocabulary(settings), bitext)
        log.info("router: %s", figures)
        lap("router")
    model = SupportModel(config, retriever, ranker, generator, adapter=adapter, router=router)
    model.metrics = dict(figures)
    validation = corpus.validation()
    if generator is not None and config.generation_gate_rows and validation.height:
        rows = validation.sample(n=min(config.generation_gate_rows, validation.height), seed=config.seed)
        threshold, gate = fit_generation_gate(as_served(model), rows)
        model.config = replace(config, generation_min_grounding=threshold)
        model.metrics.update(gate)
        log.info("generation gate: %s", gate)
        lap("generation_gate")
    model.metrics.update(seconds)
    log.info("support training stages: %s", seconds)
    return model, corpus


def support_evaluation(model: SupportModel, corpus: SupportCorpus) -> SupportReport:
    """The held-out figures, with the router's dev-half figures from its training step."""
    torch.set_num_threads(model.config.num_threads)
    start = time.perf_counter()
    report = evaluate_model(as_served(model), corpus)
    report.metrics["evaluation_seconds"] = round(time.perf_counter() - start, 1)
    # What training fitted on its own held-out rows: the router's dev half, the generation gate.
    fitted = {
        k: v
        for k, v in model.metrics.items()
        if k.startswith(("router_", "generation_gate_", "train_seconds_"))
    }
    if fitted:
        report.metrics.update(fitted)
        report.table = render_table(report.metrics, report.by_intent)
    return report


def incumbent_report(
    settings: Settings, corpus: SupportCorpus, config: SupportConfig
) -> SupportReport | None:
    """The promoted model evaluated on the same held-out split, for a fair comparison."""
    if promoted_tag(settings) is None:
        return None
    incumbent = load_support_model(settings=settings, with_generator=False)
    return evaluate_model(incumbent, corpus, limit=config.eval_limit, generation_limit=0, latency_queries=0)


def promote_support_model(
    tag: str,
    report: SupportReport,
    incumbent: SupportReport | None,
    settings: Settings,
    challenger: bool = False,
) -> dict:
    """Promote ``tag`` when it beats the promoted model on the same split; returns the decision.
    ``challenger``: when a promoted model is there, a passing ``tag`` does not replace it at
    once (``challenger: True`` in the decision; the caller starts an experiment between them)."""
    better, reason = promote_if_better(report.metrics, incumbent.metrics if incumbent else None)
    trial = challenger and better and incumbent is not None
    if better and not trial:
        promote(tag, report.metrics, settings)
    if trial:
        reason += "; it becomes the challenger of the promoted model"
    return {"tag": tag, "promoted": better and not trial, "challenger": trial, "reason": reason}


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
