"""The turn router: what the shopper's turn is, read with the turn before it.

A MiniLM encoder with a classification head over (this message, the shopper's previous
message). Goals: a support request, a product request, a question about a product already
shown, small talk, or out of scope (a language the shop does not serve is decided before,
by ``training.support.language``). Below ``threshold`` confidence the answer is a
clarifying question, not a guess.

Training data (``router_examples``), built here and documented in each builder: Bitext
questions for support; templated product requests and product questions over the catalog's
vocabulary; written small-talk and out-of-scope phrases. The dev set
(``training.support.dev_set``) is never trained on; its dev half sets the threshold.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.support.encoder import resolve_encoder

LABELS = ("support", "product_request", "product_question", "small_talk", "out_of_scope")
CLARIFY = (
    "Sorry, I'm not sure I understood. Are you looking for a product, asking about one I showed "
    "you, or do you need help with an order?"
)

# Written phrases: what shoppers say that is neither a request nor a question.
SMALL_TALK = (
    "hi", "hello", "hey", "hey there", "hi there", "good morning", "good afternoon", "good evening",
    "thanks", "thank you", "thanks a lot", "thank you so much", "thx", "ty", "cheers", "much appreciated",
    "ok", "okay", "ok thanks", "alright", "got it", "sure", "cool", "great", "perfect", "nice", "awesome",
    "fine", "understood", "makes sense", "no worries", "never mind", "sounds good", "lol ok", "haha",
    "bye", "goodbye", "see you", "have a nice day", "that's all", "that's all, thanks", "bye for now",
    "how are you?", "how's it going", "you're helpful", "great job", "I'll think about it", "maybe later",
)  # fmt: skip
OUT_OF_SCOPE = (
    "what's the weather in {city}?", "will it rain in {city} tomorrow", "what is the capital of {country}?",
    "who won the game last night?", "tell me a joke", "write me a poem about {thing}",
    "what's {a} times {b}?", "can you do my homework?", "who is the president of {country}?",
    "recommend a good restaurant in {city}", "what time is it in {city}?", "how old is the universe",
    "translate hello into {language}", "what's the meaning of life", "can you book me a flight to {city}?",
    "who wrote Hamlet?", "how do I fix my car", "what's the score of the match", "sing me a song",
    "do you know a good doctor in {city}?", "what's the population of {country}?", "is {thing} healthy?",
)  # fmt: skip
_CITIES = ("Paris", "Toronto", "Berlin", "Sydney", "Chicago", "Madrid", "Tokyo", "Dublin")
_COUNTRIES = ("Australia", "Canada", "Brazil", "Japan", "Kenya", "Norway", "Peru", "India")
_THINGS = ("the sea", "autumn", "cats", "coffee", "chocolate", "the moon", "running", "pizza")

PRODUCT_REQUESTS = (
    "do you have {noun}s?", "I'm looking for a {noun}", "show me {noun}s", "I need a {adj} {noun}",
    "any {brand} {noun}s?", "{noun} under {price} dollars", "something from {category}",
    "I want a {noun} from {brand}", "show me {adj} {noun}s under ${price}", "a {noun} please",
    "do you sell {category} stuff?", "looking for a gift, maybe a {noun}", "{brand} {noun}",
    "something cheaper", "show me cheaper ones", "not {brand} please", "any other brands?",
    "what about {noun}s instead", "in the {sub} range?", "I'd rather have a {brand} one",
    "do you have it from {brand}?", "under {price}", "any {adj} ones?", "a {adj} one",
)  # fmt: skip
PRODUCT_QUESTIONS = (
    "how much is the {ord} one?", "price of the {ord}?", "is the {ord} one in stock?", "is it available?",
    "what brand is the {ord} one", "who makes it?", "tell me about the {ord} one", "what is the {ord} one?",
    "how much is it", "and the price?", "is that one in stock", "does the {ord} one come in {colour}?",
    "what's the cheapest one?", "which one is the best?", "what size is the {ord}?", "how much",
    "is the {noun} in stock", "how much are the {noun}s in your list", "and the {ord}?",
    "does it come from {brand}?", "what is it made of?", "is it any good?",
)  # fmt: skip
_ORDINALS = ("first", "second", "third", "1st", "2nd", "3rd", "last")
_COLOURS = ("black", "blue", "red", "white", "green")


def _support_questions(bitext: Path, limit: int, rng: random.Random) -> list[str]:
    import csv

    with bitext.open(newline="", encoding="utf-8") as handle:
        questions = [row["instruction"] for row in csv.DictReader(handle)]
    rng.shuffle(questions)
    return questions[:limit]


def router_examples(
    bitext: Path, vocabulary: dict, per_label: int = 600, seed: int = 0
) -> list[tuple[str, str, int]]:
    """(message, previous shopper message or "", label index), ``per_label`` of each label.

    ``vocabulary``: the catalog's words: categories, subcategories, brands, adjectives,
    nouns (``data_contracts.synthetic`` for the synthetic shop). Product questions follow a
    product request; the other labels follow a random earlier message half of the time, so
    the router learns to read the turn itself and use the previous one where it matters.
    """
    rng = random.Random(seed)
    v = vocabulary

    def fill(template: str) -> str:
        return template.format(
            noun=rng.choice(v["nouns"]).lower(),
            adj=rng.choice(v["adjectives"]).lower(),
            brand=rng.choice(v["brands"]),
            category=rng.choice(v["categories"]),
            sub=rng.choice(v["subcategories"]).lower(),
            price=rng.choice((15, 20, 25, 30, 40, 50, 75, 100)),
            ord=rng.choice(_ORDINALS),
            colour=rng.choice(_COLOURS),
            city=rng.choice(_CITIES),
            country=rng.choice(_COUNTRIES),
            thing=rng.choice(_THINGS),
            language=rng.choice(("French", "Spanish", "German")),
            a=rng.randint(3, 99),
            b=rng.randint(3, 99),
        )

    support = _support_questions(bitext, per_label, rng)
    texts = {
        "support": support,
        "product_request": [fill(rng.choice(PRODUCT_REQUESTS)) for _ in range(per_label)],
        "product_question": [fill(rng.choice(PRODUCT_QUESTIONS)) for _ in range(per_label)],
        "small_talk": [rng.choice(SMALL_TALK) for _ in range(per_label)],
        "out_of_scope": [fill(rng.choice(OUT_OF_SCOPE)) for _ in range(per_label)],
    }
    pool = [t for ts in texts.values() for t in ts]
    out = []
    for label, items in texts.items():
        for text in items:
            if label == "product_question":
                previous = fill(rng.choice(PRODUCT_REQUESTS))
            else:
                previous = rng.choice(pool) if rng.random() < 0.5 else ""
            out.append((text, previous, LABELS.index(label)))
    rng.shuffle(out)
    return out


@dataclass
class RouterConfig:
    """Training settings of the router."""

    encoder: str = "minilm"
    max_length: int = 48
    steps: int = 300
    batch_size: int = 32
    lr: float = 5e-5
    seed: int = 0
    # Below this top-class probability the router asks a clarifying question.
    threshold: float = 0.5


class Router(nn.Module):
    """``predict(messages, previous)`` → (label, confidence) per message."""

    def __init__(self, model: nn.Module, tokenizer, max_length: int = 48, threshold: float = 0.5):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.threshold = threshold

    @classmethod
    def from_encoder(cls, spec: str, max_length: int = 48) -> Router:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging

        folder = resolve_encoder(spec)
        verbosity = logging.get_verbosity()
        logging.set_verbosity_error()  # a fresh head on an encoder checkpoint is expected
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, num_labels=len(LABELS), local_files_only=True
            )
        finally:
            logging.set_verbosity(verbosity)
        return cls(model, AutoTokenizer.from_pretrained(folder, local_files_only=True), max_length)

    def logits(self, messages: list[str], previous: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            messages,
            [p or "" for p in previous],
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )
        return self.model(**batch).logits  # (B, len(LABELS))

    @torch.inference_mode()
    def probabilities(self, messages: list[str], previous: list[str], batch: int = 64) -> np.ndarray:
        self.model.eval()
        out = [
            torch.softmax(self.logits(messages[i : i + batch], previous[i : i + batch]), -1).numpy()
            for i in range(0, len(messages), batch)
        ]
        return np.concatenate(out) if out else np.zeros((0, len(LABELS)))

    def predict(self, messages: list[str], previous: list[str]) -> list[tuple[str | None, float]]:
        """The label per message, or None (ask a clarifying question) below the threshold."""
        probs = self.probabilities(messages, previous)
        best = probs.argmax(1)
        return [
            (LABELS[b] if p[b] >= self.threshold else None, float(p[b]))
            for b, p in zip(best, probs, strict=True)
        ]


def train_router(router: Router, examples: list[tuple[str, str, int]], config: RouterConfig) -> Router:
    """Fine-tune encoder and head with cross-entropy for ``config.steps`` steps."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    optimiser = torch.optim.AdamW(router.model.parameters(), lr=config.lr)
    router.model.train()
    for _ in range(config.steps):
        batch = rng.sample(examples, min(config.batch_size, len(examples)))
        logits = router.logits([b[0] for b in batch], [b[1] for b in batch])
        loss = nn.functional.cross_entropy(logits, torch.tensor([b[2] for b in batch]))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    router.model.eval()
    return router


def macro_accuracy(gold: list[str], predicted: list[str | None]) -> tuple[float, dict[str, float]]:
    """Mean over goals of the share of turns routed right (a clarifying question is not right)."""
    per = {}
    for label in sorted(set(gold)):
        rows = [p == g for g, p in zip(gold, predicted, strict=True) if g == label]
        per[label] = sum(rows) / len(rows)
    return float(np.mean(list(per.values()))), per


def choose_threshold(gold: list[str], probs: np.ndarray, candidates=(0.0, 0.3, 0.4, 0.5, 0.6, 0.7)) -> float:
    """The threshold with the best macro accuracy on (dev) turns; ties go to the higher one."""
    best, best_score = 0.0, -1.0
    for t in candidates:
        predicted = [LABELS[b] if p[b] >= t else None for b, p in zip(probs.argmax(1), probs, strict=True)]
        score = macro_accuracy(gold, predicted)[0]
        if score >= best_score:
            best, best_score = t, score
    return best
