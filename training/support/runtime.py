"""The support runtime: what answers a shopper's turn, with dialogue state and feedback.

Each turn: language detection (a language the shop does not serve → a handover in it), then
the turn router over this and the previous shopper message (below its threshold → a
clarifying question), then the goal's path: support requests by retrieve → generate → rank;
product requests and product questions from the catalog (``training.support.products``);
small talk and out of scope with short replies (``training.support.small_talk``).

Plain Python, loaded once per process; the serving layer wraps ``reply`` and ``record_feedback``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import cachetools
import numpy as np
import torch
from opentelemetry import trace

from data_contracts.settings import Settings
from data_contracts.shop import ShopProfile
from data_contracts.support import validate_feedback_row
from training.support.artifact import SupportModel, load_support_model
from training.support.dialogue import (
    DEFAULT_TTL_S,
    DialogueStore,
    InMemoryStore,
    Turn,
    extract_slots,
    make_store,
    only_slots,
    redact,
)
from training.support.encoder import Hit
from training.support.language import LanguageConfig, LanguageDetector, handover_text
from training.support.placeholders import ask_for, clean_generated, fill_reply
from training.support.products import ProductAnswer, ProductAssistant, ProductState
from training.support.router import CLARIFY
from training.support.shop_facts import shop_fact_reply
from training.support.small_talk import out_of_scope_reply, small_talk_reply

MAX_MESSAGE_CHARS = 2000
HANDOVER_REPLY = handover_text("en")
# Passage embeddings kept for grounding generated replies: the passages of a shop's frequent
# questions repeat, and a passage is several times longer than a reply (384 floats each).
PASSAGE_CACHE_SIZE = 4096


class SessionForbidden(PermissionError):
    """The session belongs to another caller: its token is missing or wrong."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UnknownReplyError(LookupError):
    """Feedback names a reply_id this service never produced (or that has expired)."""


@dataclass(frozen=True)
class Candidate:
    text: str
    source: str  # "generated" or the doc_id of a retrieved answer
    category: str | None = None
    # A generated reply's cosine to the closest passage of its prompt (None when retrieved).
    grounding: float | None = None
    # The support contexts (indices) whose retrieval found it; empty: all (a generated reply).
    contexts: tuple[int, ...] = ()


def context_text(turns: list[Turn], user_turns: int = 2) -> str:
    """What the retriever and ranker read: the shopper's last messages, oldest first."""
    said = [text for role, text in turns if role == "user"]
    return " ".join(said[-user_turns:])


def support_contexts(turns: list[Turn]) -> list[str]:
    """What a support turn is matched against: the shopper's last message alone, and joined
    to the message before it. A follow-up ("it's order 48213377", "and make it the default")
    means nothing alone, while a new question after a product turn ("can I pay with PayPal"
    after "is the second racket in stock") is only diluted by it; the ranker's best score over
    both decides (on the dev dialogues each alone answered 22 and 27 of 35 support turns).
    A message that only gives slot values ("order 77342109") answers the last reply's
    question: the request before it is matched instead."""
    said = [text for role, text in turns if role == "user"]
    if len(said) >= 2 and only_slots(said[-1]):
        # "order 77342109" answers the question the last reply asked: the request it completes
        # is what to answer again, now with the order number known.
        return [said[-2]]
    return [said[-1]] if len(said) < 2 else [said[-1], " ".join(said[-2:])]


def merged_hits(per_context: list[list[Hit]]) -> list[Hit]:
    """The hits of several queries as one list, best score first, each document once."""
    best: dict[str, Hit] = {}
    for hits in per_context:
        for hit in hits:
            if hit.doc.doc_id not in best or hit.score > best[hit.doc.doc_id].score:
                best[hit.doc.doc_id] = hit
    return sorted(best.values(), key=lambda h: -h.score)


def candidates_from(hits: list[Hit]) -> list[Candidate]:
    """Retrieved answers as reply candidates: answered questions only, one per distinct answer."""
    seen, out = set(), []
    for hit in hits:
        if hit.doc.kind == "qa" and hit.doc.text not in seen:
            seen.add(hit.doc.text)
            out.append(Candidate(hit.doc.text, hit.doc.doc_id, hit.doc.category))
    return out


def reply_seed(seed: int, context: str) -> int:
    """The sampling seed of a reply: fixed by the model's seed and the dialogue, so the same
    dialogue gets the same candidates in every process."""
    return int.from_bytes(hashlib.sha256(f"{seed}\x00{context}".encode()).digest()[:4], "big")


def feedback_log_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / "support" / "feedback.jsonl"


class SupportRuntime:
    """``reply(session_id, message)`` and ``record_feedback(reply_id, rating, reason)``."""

    def __init__(
        self,
        model: SupportModel,
        store: DialogueStore | None = None,
        feedback_log: Path | None = None,
        profile: ShopProfile | None = None,
        use_generator: bool = True,
        num_threads: int | None = None,
        exact_generation: bool = False,
        languages: LanguageConfig | None = None,
        vocabulary: list[str] | None = None,
        products: ProductAssistant | None = None,
        route: bool = True,
        tracer: trace.Tracer | None = None,
    ):
        """``profile``: the shop's facts, which fill the replies' placeholders, and the languages
        it answers in (``languages`` overrides the detector's settings); ``vocabulary``: the
        shop's own words (product titles, brands), ignored by language detection;
        ``products``: product search and catalog facts (None: product turns say search is not
        available); ``route``: route turns with the model's router, when it has one (False:
        every turn takes the support path); ``tracer``: an OpenTelemetry tracer for the
        reply's steps (None: a no-op one)."""
        torch.set_num_threads(num_threads or model.config.num_threads)
        self.model = model
        self.store = store or InMemoryStore()
        self.feedback_log = feedback_log
        self.profile = profile or ShopProfile()
        self.use_generator = use_generator and model.generator is not None
        # Always write max_new_tokens tokens (benchmarks measure a fixed amount of generation).
        self.exact_generation = exact_generation
        self._log_lock = threading.Lock()
        languages = languages or LanguageConfig(served=self.profile.languages)
        self.detector = LanguageDetector(languages, vocabulary or ()).warm()
        self.router = model.router if route else None
        self.products = products or ProductAssistant(None, None)
        self.tracer = tracer or trace.NoOpTracer()
        self._passages: cachetools.LRUCache = cachetools.LRUCache(PASSAGE_CACHE_SIZE)
        self._passages_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        settings: Settings | None = None,
        tag: str | None = None,
        store: DialogueStore | None = None,
        use_generator: bool = True,
        profile: ShopProfile | None = None,
        int8_generator: bool = False,
        languages: LanguageConfig | None = None,
        vocabulary: list[str] | None = None,
        session_ttl_s: float = DEFAULT_TTL_S,
        products: ProductAssistant | None = None,
        decode_threads: int | None = None,
        tracer: trace.Tracer | None = None,
    ) -> SupportRuntime:
        """The promoted support model (or ``tag``) with the store of the settings' profile;
        ``int8_generator``: the generator's linear layers quantised (CPU serving);
        ``decode_threads``: torch threads of its decode steps (None: the decoder's default)."""
        settings = settings or Settings.from_env()
        model = load_support_model(tag, settings, with_generator=use_generator)
        if model.generator is not None and decode_threads is not None:
            model.generator.decode_threads = decode_threads
        if int8_generator and model.generator is not None:
            model.generator.quantize()
        store = store or make_store(
            settings.profile, Path(settings.data_dir), settings.redis_url, session_ttl_s
        )
        return cls(
            model,
            store,
            feedback_log_path(settings),
            profile,
            use_generator,
            languages=languages,
            vocabulary=vocabulary,
            products=products,
            tracer=tracer,
        )

    def open_session(self, session_id: str | None, token: str | None) -> tuple[str, str | None]:
        """The caller's session: ``(session_id, token)`` with a new token when the session is new.

        No id, or an id no live session has: a session bound to a fresh token (returned once;
        only its hash is stored). A live session: the caller must send its token, else
        ``SessionForbidden``; a session nobody used for the store's TTL is gone and new again.
        """
        session_id = session_id or uuid.uuid4().hex
        fresh = secrets.token_urlsafe(24)
        owner = self.store.claim_session(session_id, token_hash(fresh))
        if hmac.compare_digest(owner, token_hash(fresh)):
            return session_id, fresh
        if token is None or not hmac.compare_digest(owner, token_hash(token)):
            raise SessionForbidden(
                f"session {session_id!r} belongs to another caller; send its session_token"
            )
        return session_id, None

    def rank(self, context: str, candidates: list[Candidate]) -> np.ndarray:
        return self.model.ranker.score(context, [c.text for c in candidates])

    def rank_best(self, contexts: list[str], candidates: list[Candidate]) -> tuple[np.ndarray, np.ndarray]:
        """Each candidate's best ranker score over the contexts that retrieved it (all of them
        for a generated reply), and the index of that context; one batch for every pair."""
        pairs = [(i, j) for j, c in enumerate(candidates) for i in c.contexts or range(len(contexts))]
        probs = self.model.ranker.score_pairs(
            [contexts[i] for i, _ in pairs], [candidates[j].text for _, j in pairs]
        )
        scores = np.full(len(candidates), -np.inf)
        matched = np.zeros(len(candidates), dtype=int)
        for (i, j), p in zip(pairs, probs, strict=True):
            if p > scores[j]:
                scores[j], matched[j] = p, i
        return scores, matched

    def reply(self, session_id: str, message: str) -> dict:
        if not isinstance(session_id, str) or not session_id.strip():
            raise ValueError("session_id must be a non-empty string")
        if not isinstance(message, str) or not message.strip():
            raise ValueError("message must be a non-empty string")
        if len(message) > MAX_MESSAGE_CHARS:
            raise ValueError(f"message is longer than {MAX_MESSAGE_CHARS} characters")
        message = message.strip()
        config = self.model.config
        timings: dict[str, float] = {}

        self.store.append_turn(session_id, "user", message)
        found = extract_slots(message)
        if found:
            self.store.set_slots(session_id, found)
        turns = self.store.turns(session_id, config.context_turns)
        context = context_text(turns)

        with self.stage("language", timings):
            language = self.detector.detect(message)
        if not language.served:
            return self._handover(
                session_id, context, handover_text(language.language), language.language, timings
            )

        goal, confidence = self.route(turns, timings)
        if goal in ("support", "clarify") and (fact := shop_fact_reply(message, self.profile)):
            # Asked for a fact the shop's profile holds: stated from it, not looked up.
            text, facts = fact
            return self._direct_reply(
                session_id,
                context,
                text,
                language.language,
                timings,
                goal="support",
                confidence=confidence,
                sources=[
                    {"doc_id": f"shop_profile:{f}", "kind": "shop_profile", "intent": None, "score": 1.0}
                    for f in facts
                ],
                category="shop_profile",
            )
        if goal != "support":
            return self._answer_goal(
                session_id, message, context, goal, confidence, language.language, timings
            )
        return self._support(session_id, turns, context, confidence, language.language, timings)

    @contextmanager
    def stage(self, name: str, timings: dict[str, float]):
        """A step of a reply: its time in ``timings[name + "_ms"]`` and, when the service
        traces, a span ``support.<name>`` (a no-op tracer's costs about a microsecond)."""
        start = time.perf_counter()
        with self.tracer.start_as_current_span(f"support.{name}"):
            yield
        timings[f"{name}_ms"] = (time.perf_counter() - start) * 1000

    def route(self, turns: list[Turn], timings: dict[str, float]) -> tuple[str, float | None]:
        """The turn's goal from the router over (this, the previous) shopper message:
        a router label, or "clarify" below its threshold; "support" without a router."""
        if self.router is None:
            return "support", None
        said = [text for role, text in turns if role == "user"]
        with self.stage("route", timings):
            label, confidence = self.router.predict([said[-1]], [said[-2] if len(said) > 1 else ""])[0]
        return label or "clarify", confidence

    def _support(
        self,
        session_id: str,
        turns: list[Turn],
        context: str,
        confidence: float | None,
        language: str | None,
        timings: dict[str, float],
    ) -> dict:
        """retrieve → generate → rank, the placeholders filled; a handover below the threshold."""
        config = self.model.config
        contexts = support_contexts(turns)
        hits, candidates = self.support_candidates(session_id, turns, contexts, timings)
        with self.stage("rank", timings):
            scores, matched = self.rank_best(contexts, candidates)

        best = int(np.argmax(scores)) if len(scores) else -1
        if best >= 0:
            context = contexts[matched[best]]  # what the reply answers: what feedback trains on
        handover = best < 0 or float(scores[best]) < config.handover_threshold
        missing: list[str] = []
        text = HANDOVER_REPLY
        if not handover:
            said = " ".join(t for role, t in turns if role == "user")
            filled, missing = fill_reply(
                candidates[best].text, self.store.slots(session_id), self.profile, said
            )
            # A reply made only of stand-ins the shop has no value for says nothing: hand over.
            handover = not filled
            if filled:
                text = f"{filled}\n\n{ask_for(missing)}" if missing else filled
        reply_id = uuid.uuid4().hex
        self.store.save_reply(
            reply_id,
            {
                "session_id": session_id,
                "context": context,
                # The candidate as the ranker saw it (placeholders kept): what feedback trains on.
                "reply": HANDOVER_REPLY if handover else candidates[best].text,
                "category": None if handover else candidates[best].category,
                "handover": handover,
                "goal": "support",
            },
        )
        self.store.append_turn(session_id, "assistant", text)
        return {
            "reply": text,
            "reply_id": reply_id,
            "handover": handover,
            "missing_slots": missing,
            "sources": [
                {
                    "doc_id": h.doc.doc_id,
                    "kind": h.doc.kind,
                    "intent": h.doc.intent,
                    "score": round(h.score, 4),
                }
                for h in hits[: config.retrieve_k]
            ],
            # Shown filled like the reply: no candidate text carries a stand-in either.
            "candidates": [
                {
                    "source": c.source,
                    "score": round(float(s), 4),
                    "text": self._shown(c.text, session_id, turns),
                }
                for c, s in sorted(zip(candidates, scores, strict=True), key=lambda cs: -cs[1])
            ],
            "language": language,
            "goal": "support",
            "router_confidence": None if confidence is None else round(confidence, 4),
            "products": [],
            "timings_ms": {k: round(v, 2) for k, v in timings.items()},
        }

    def support_candidates(
        self,
        session_id: str,
        turns: list[Turn],
        contexts: list[str],
        timings: dict[str, float],
        gate: bool = True,
    ) -> tuple[list[Hit], list[Candidate]]:
        """The retrieved hits and the reply candidates of a support turn (``contexts``: what it
        is matched against, ``support_contexts``): the retrieved answers of every context,
        then (with the generator) up to ``generator_candidates`` replies written in one batched
        decode from the dialogue, the passages and the facts of the products in the
        conversation. A generated reply is cleaned (``clean_generated``) and dropped when no
        text of it would reach the shopper once its placeholders are resolved, or (``gate``)
        when it is further from its prompt's passages than ``generation_min_grounding``."""
        config = self.model.config
        with self.stage("retrieve", timings):
            retriever = self.model.retriever
            queries = retriever.encoder.encode(contexts)
            # Sources and passages from everything; reply candidates from answered questions only.
            hits = merged_hits(
                retriever.search_embeddings(queries, max(config.retrieve_k, config.prompt_passages))
            )
            qa_hits = retriever.search_embeddings(queries, config.retrieve_k * 2, kind="qa")
        # Each context's own best answers, so the one that fits is never crowded out.
        found: dict[str, Candidate] = {}
        for i, per_context in enumerate(qa_hits):
            for candidate in candidates_from(per_context)[: config.retrieve_k]:
                known = found.get(candidate.text, candidate)
                found[candidate.text] = replace(known, contexts=known.contexts + (i,))
        candidates = list(found.values())
        shut = gate and config.generation_min_grounding > 1
        if not self.use_generator or config.generator_candidates < 1 or shut:
            return hits, candidates

        with self.stage("generate", timings):
            passages = [h.doc.text for h in hits[: config.prompt_passages]]
            facts = self.products.facts(ProductState.from_dict(self.store.state(session_id)))
            texts = self.model.generator.candidates(
                turns,
                passages,
                config.generator_candidates,
                facts=facts,
                seed=reply_seed(config.seed, contexts[-1]),
                temperature=config.generator_temperature,
                top_p=config.generator_top_p,
                max_new_tokens=config.max_new_tokens,
                exact=self.exact_generation,
            )
        slots = self.store.slots(session_id)
        said = " ".join(t for role, t in turns if role == "user")
        category = hits[0].doc.category if hits else None
        kept = [
            cleaned
            for cleaned in (clean_generated(text, self.profile) for text in texts)
            if cleaned and fill_reply(cleaned, slots, self.profile, said)[0]
        ]
        with self.stage("ground", timings):
            for text, grounding in zip(kept, self.grounding(kept, passages), strict=True):
                if not gate or grounding >= config.generation_min_grounding:
                    candidates.append(Candidate(text, "generated", category, grounding))
        return hits, candidates

    def grounding(self, texts: list[str], passages: list[str]) -> list[float]:
        """Each text's MiniLM cosine to the closest passage (0 without passages). The texts
        are encoded apart from the passages (not padded to a passage's length), and passage
        embeddings are kept in an LRU cache."""
        if not texts or not passages:
            return [0.0] * len(texts)
        encoder = self.model.retriever.encoder
        with self._passages_lock:
            known = {p: self._passages[p] for p in passages if p in self._passages}
        missing = list(dict.fromkeys(p for p in passages if p not in known))
        if missing:
            vectors = encoder.encode(missing)
            with self._passages_lock:
                for passage, vector in zip(missing, vectors, strict=True):
                    self._passages[passage] = known[passage] = vector
        keys = np.stack([known[p] for p in passages])
        return (encoder.encode(texts) @ keys.T).max(axis=1).tolist()

    def _answer_goal(
        self,
        session_id: str,
        message: str,
        context: str,
        goal: str,
        confidence: float | None,
        language: str | None,
        timings: dict[str, float],
    ) -> dict:
        """Every goal but support: products, small talk, out of scope, a clarifying question."""
        products: list[dict] = []
        if goal in ("product_request", "product_question"):
            with self.stage("products", timings):
                state = ProductState.from_dict(self.store.state(session_id))
                handle = self.products.request if goal == "product_request" else self.products.question
                answer: ProductAnswer = handle(message, state)
                if answer.state is not state:
                    self.store.set_state(session_id, answer.state.to_dict())
                text, products = answer.text, [p.card() for p in answer.products]
        elif goal == "small_talk":
            text = small_talk_reply(message, self.profile)
        elif goal == "out_of_scope":
            text = out_of_scope_reply(self.profile)
        else:
            text = CLARIFY
        return self._direct_reply(
            session_id, context, text, language, timings, goal=goal, confidence=confidence, products=products
        )

    def _shown(self, text: str, session_id: str, turns: list[Turn]) -> str:
        said = " ".join(t for role, t in turns if role == "user")
        return fill_reply(text, self.store.slots(session_id), self.profile, said)[0]

    def _handover(
        self, session_id: str, context: str, text: str, language: str | None, timings: dict[str, float]
    ) -> dict:
        """A handover without looking anything up: a language the shop does not serve."""
        return self._direct_reply(
            session_id, context, text, language, timings, goal="other_language", handover=True
        )

    def _direct_reply(
        self,
        session_id: str,
        context: str,
        text: str,
        language: str | None,
        timings: dict[str, float],
        goal: str | None,
        handover: bool = False,
        confidence: float | None = None,
        products: list | None = None,
        sources: list | None = None,
        category: str | None = None,
    ) -> dict:
        """A reply that is not retrieved or ranked (product turns, small talk, handovers, the
        shop's facts): saved for feedback, added to the dialogue, answered in the /chat shape."""
        reply_id = uuid.uuid4().hex
        self.store.save_reply(
            reply_id,
            {
                "session_id": session_id,
                "context": context,
                "reply": text,
                "category": category,
                "handover": handover,
                "goal": goal,
            },
        )
        self.store.append_turn(session_id, "assistant", text)
        return {
            "reply": text,
            "reply_id": reply_id,
            "handover": handover,
            "missing_slots": [],
            "sources": sources or [],
            "candidates": [],
            "language": language,
            "goal": goal,
            "router_confidence": None if confidence is None else round(confidence, 4),
            "products": products or [],
            "timings_ms": {k: round(v, 2) for k, v in timings.items()},
        }

    def record_feedback(self, reply_id: str, rating: int, reason: str | None = None) -> dict:
        """Store a thumbs up (+1) or down (-1) on a reply; the next training run learns from it."""
        record = self.store.get_reply(reply_id) if isinstance(reply_id, str) else None
        if record is None:
            raise UnknownReplyError(f"unknown reply_id {reply_id!r}")
        row = validate_feedback_row({**record, "reply_id": reply_id, "rating": rating, "reason": reason})
        # The feedback file outlives the dialogue store: no personal data in clear.
        slot_values = tuple(self.store.slots(record["session_id"]).values())
        row["context"], row["reply"] = redact(row["context"], slot_values), redact(row["reply"], slot_values)
        row["session_id"] = record["session_id"]
        # Thumbs on support answers are the ranker's training pairs; on other turns (products,
        # small talk, handovers in another language) they are kept but not trained on.
        goal = record.get("goal", "support")
        row["target_kind"] = "reply" if goal == "support" else "assistant_reply"
        row["goal"] = goal
        row["ts"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.feedback_log is not None:
            self.feedback_log.parent.mkdir(parents=True, exist_ok=True)
            with self._log_lock, self.feedback_log.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
        return row
