"""Shopping assistant benchmark: the dev set's test half through the runtime /chat runs; one JSON line.

    python benchmarks/assistant.py [--tag support:...] [--threads 2] [--generate [--zero-shot]]

Protocol:
- Dialogues: ``tests/data/assistant_dialogues`` (its README), the ``test`` half only (22
  dialogues, 158 shopper turns); nothing is tuned on it (the router's threshold comes from the
  dev half at training time). Each dialogue is one fresh session; its turns are sent in order,
  so later turns refer to the products the assistant itself showed.
- Model: the promoted support model (or ``--tag``), which must carry a router (``shopml train
  support`` trains one). Runtime: ``SupportRuntime.reply``, the code the service's /chat runs,
  with the example shop profile, the catalog titles as the language detector's vocabulary,
  and an in-memory dialogue store. Generation is off unless ``--generate`` (``generation`` in
  the output says which); with it the generator is int8 as the service runs it on a CPU and
  writes ``generator_candidates`` (the model's config, 4 by default; ``--candidates``) replies
  per support turn in one batched decode, ranked with the retrieved answers.
- Generated replies against references (``--generate``): ``--generation-rows`` (200) rows of
  the model's own held-out Bitext test split (``training.support.evaluate.held_out_sample``,
  the model's seed; the generation gate was fitted at training time on the other half of the
  held-out groups, ``validation``), each question a one-turn dialogue through the support path
  (``evaluate.generation_figures``). ``--zero-shot`` also runs the same rows with the
  generator's base model (no LoRA adapter, int8 too, the same gate) under ``zero_shot``.
- Catalog and index: the synthetic shop's catalog as ``shopml run`` lands it
  (``data_contracts.synthetic``, default ``ShopConfig``: 1,000 items, seed 7, the mid-month
  price and stock changes applied, rows the catalog contract rejects dropped), indexed with
  the real MiniLM encoder by ``search.index.build_index`` under
  ``<data dir>/benchmarks/assistant/search`` (rebuilt only when the catalog changes).

Figures:
- ``router_accuracy``: macro over the six goals of turns taken for their labelled goal (the
  response's ``goal``; a clarifying question is wrong; ``other_language`` is language
  detection's decision), and ``router_accuracy_by_goal``.
- ``handover_rate``: per goal, the share of turns handed over to a human.
- ``product_turns_with_products``: product-request turns answered with at least one product;
  ``product_constraints_met``: of those, the share whose products all satisfy the turn's
  labelled constraints (category, product word in the title, brand, excluded brand, price
  bound, cheaper than the cheapest product shown before).
- ``product_question_right_product``: product questions with a position (``refers_to`` >= 1)
  answered about the product at that position of the last list shown.
- ``product_fact_errors``: over every reply, a product card whose price, stock state or brand
  differs from the catalog row; a price, stock state or "by <brand>" written after a
  product's title (to the end of the reply when it is about one product, else to the end of
  that product's line or sentence) that differs from that product's row; a catalog brand named in a product reply that is neither a shown product's brand nor
  in the shopper's message. Must be 0.
- ``placeholder_leaks``: replies in which ``training.support.placeholders.leaks`` finds a
  stand-in. Must be 0.
- ``other_language_english_replies``: other-language turns answered (not handed over) or
  handed over in English. Must be 0.
- ``chat_p50_ms`` / ``chat_p95_ms``: wall time of ``reply`` per turn, all turns;
  ``chat_support_p50_ms`` / ``chat_support_p95_ms``: the turns that took the support path
  (the only ones that generate); ``dialogue_generation_gate``: the gate they ran with (the
  model's, or ``--gate``: a shut gate generates nothing, so ``--gate 0`` times generation).
- ``rouge_l``, ``semantic_similarity``: ROUGE-L F1 (Google's ``rouge-score``, stemmed) and
  MiniLM cosine similarity of the chosen reply (as ranked, placeholders kept, like the
  references) to the reference answer, mean over the rows, chosen as serving chooses (the
  model's generation gate applied); ``*_ungated``: the ranker's choice among every candidate;
  ``*_retrieved``: the best-ranked retrieved answer (retrieve-and-rank alone);
  ``*_generated``: the best-ranked generated candidate (the generator's own answer);
  ``chosen_generated_share``: rows where a generated candidate won the ranking, gated;
  ``generation_min_grounding``: the model's gate; ``support_reply_p50_ms``: retrieve,
  generate (every candidate, ungated) and rank per row.
Targets (DESIGN.md, issue 15): router macro accuracy >= 0.9; handover <= 15% on product and
small-talk turns; product turns with products >= 0.9; 0 fact errors, 0 leaks, 0 English replies
to other languages; chat p50 <= 1.5 s with generation on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRICE = re.compile(r"\$[\d,]+\.\d\d")


def shop_catalog():
    """The current catalog of the synthetic shop ``shopml run`` generates (its two catalog files,
    the contract's rejected rows dropped, the latest row of each item)."""
    import numpy as np
    import polars as pl

    from data_contracts import synthetic

    config = synthetic.ShopConfig()
    rng = np.random.default_rng(config.seed)
    items = synthetic._items(config, rng)
    start = datetime.combine(config.start, datetime.min.time(), tzinfo=UTC)
    with tempfile.TemporaryDirectory() as folder:
        files = synthetic._write_catalog(config, items, start, Path(folder), rng)
        frame = pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed")
    return (
        frame.filter(pl.col("item_id").is_not_null() & pl.col("title").is_not_null() & (pl.col("price") >= 0))
        .sort("updated_at")
        .unique("item_id", keep="last", maintain_order=True)
        .sort("item_id")
    )


def search_engine(catalog, data_dir: Path):
    """The index of ``catalog`` under ``data_dir/search`` (built with MiniLM when the catalog
    changed), loaded the way the support service loads it."""
    from data_contracts.settings import Settings
    from search.index import Encoder, build_index, current_version
    from serving.recommender.search import load_search_engine

    root = data_dir / "search"
    digest = hashlib.sha256(catalog.write_csv().encode()).hexdigest()[:16]
    stamp = data_dir / "catalog.sha256"
    if current_version(root) is None or not stamp.exists() or stamp.read_text() != digest:
        build_index(catalog, root, Encoder("minilm"))
        stamp.write_text(digest)
    engine = load_search_engine(Settings(data_dir=data_dir))
    if engine is None:
        raise SystemExit(f"the search index under {root} does not load (see the log above)")
    return engine


def fact_errors(out: dict, message: str, catalog) -> list[str]:
    """What the reply states about products that differs from the catalog (see the protocol)."""
    errors = []
    text = out["reply"]
    cards = out.get("products", [])
    start = 0  # a list names its products in order; two items may share a title
    for card in cards:
        row = catalog.get(card["item_id"])
        if row is None:
            errors.append(f"{card['item_id']} is not in the catalog")
            continue
        for key in ("price", "in_stock", "brand"):
            if card[key] != getattr(row, key):
                errors.append(f"{card['item_id']} card {key} {card[key]!r} != {getattr(row, key)!r}")
        at = text.find(row.title, start)
        if at >= 0:
            start = at + len(row.title)
        if at < 0:
            continue
        tail = text[at + len(row.title) :]
        if len(cards) > 1:  # a list: each product's facts are on its own line
            tail = re.split(r"\n|(?<=[.!?])\s", tail, maxsplit=1)[0]
        for price in PRICE.findall(tail):
            if float(price[1:].replace(",", "")) != row.price:
                errors.append(f"{row.item_id} price {price} != {row.price}")
        if ("out of stock" in tail and row.in_stock) or (
            re.search(r"(?<!out of )\bin stock", tail) and not row.in_stock
        ):
            errors.append(f"{row.item_id} stock in {tail!r} != {row.in_stock}")
        if m := re.search(r"\bby ([A-Z]\w+)", tail):
            if m.group(1) != row.brand:
                errors.append(f"{row.item_id} brand {m.group(1)} != {row.brand}")
    if out.get("goal") in ("product_request", "product_question"):
        shown_brands = {catalog.get(c["item_id"]).brand for c in cards if catalog.get(c["item_id"])}
        for brand in catalog.vocabulary.brands.values():
            if re.search(rf"\b{re.escape(brand)}\b", text) and brand not in shown_brands:
                if not re.search(rf"\b{re.escape(brand)}\b", message, re.I):
                    errors.append(f"brand {brand} named but neither shown nor asked about")
    return errors


def constraints_met(turn, products: list[dict], before: list[dict]) -> bool:
    c = turn.constraints
    for p in products:
        category = p["category"] or ""
        if c.get("category") and not (
            category == c["category"] or category.startswith(c["category"] + " > ")
        ):
            return False
        if c.get("noun") and c["noun"].lower().rstrip("s") not in p["title"].lower():
            return False
        if c.get("brand") and p["brand"] != c["brand"]:
            return False
        if c.get("exclude_brand") and p["brand"] == c["exclude_brand"]:
            return False
        if c.get("max_price") is not None and p["price"] > c["max_price"]:
            return False
        if c.get("cheaper_than_shown") and before and p["price"] >= min(b["price"] for b in before):
            return False
    return True


def step_medians(replies: list[dict]) -> dict[str, float]:
    """Per step (``timings_ms`` of the replies): the median over the replies that ran it."""
    steps: dict[str, list[float]] = {}
    for reply in replies:
        for name, ms in reply.get("timings_ms", {}).items():
            steps.setdefault(name, []).append(ms)
    return {name: round(statistics.median(values), 1) for name, values in steps.items()}


def generation_report(model, settings, args) -> dict:
    """The held-out reply figures of ``model`` (and of its generator's base with --zero-shot)."""
    from training.support import training_steps
    from training.support.artifact import generator_cache
    from training.support.evaluate import generation_figures, held_out_sample
    from training.support.generator import Generator, load_base

    corpus = training_steps.support_corpus(settings, model.config, model.retriever.encoder)
    sample = held_out_sample(corpus, model.config, args.generation_rows)
    started = time.perf_counter()
    out = {
        "generator_lora": model.generator.lora,
        "generator_precision": "int8 (as served on a CPU)",
        **generation_figures(model, sample),
        "generation_s": round(time.perf_counter() - started, 1),
        "generation_load_average_1m": round(os.getloadavg()[0], 2),
    }
    if args.zero_shot:
        base, tokenizer, info = load_base(model.generator.base["spec"], generator_cache(settings))
        zero_shot = Generator(base, tokenizer, info, model.generator.max_new_tokens).quantize()
        started = time.perf_counter()
        out["zero_shot"] = {
            **generation_figures(replace(model, generator=zero_shot), sample),
            "generation_s": round(time.perf_counter() - started, 1),
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", help="support model (default: the promoted one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--generate", action="store_true", help="generate candidates (default: off)")
    parser.add_argument(
        "--decode-threads",
        type=int,
        help="torch threads of a decode step (default: the service's, SHOPML_SUPPORT_DECODE_THREADS)",
    )
    parser.add_argument("--candidates", type=int, help="generated candidates per turn (default: the model's)")
    parser.add_argument(
        "--generation-rows", type=int, default=200, help="held-out rows for the reply figures"
    )
    parser.add_argument(
        "--gate",
        type=float,
        help="generation gate for the dialogues (default: the model's; 0 ranks every generated "
        "candidate, to time generation when the trained gate is shut)",
    )
    parser.add_argument("--zero-shot", action="store_true", help="also score the generator's base model")
    parser.add_argument("--skip-dialogues", action="store_true", help="only the held-out reply figures")
    parser.add_argument(
        "--show-turns",
        action="store_true",
        help="also write every turn (expected goal, routed goal, handover, reply) to stderr",
    )
    parser.add_argument(
        "--split",
        choices=("test", "dev", "holdout"),
        default="test",
        help="dialogue split (default the test half; holdout: dialogues written after the test half "
        "had been read; look at the dev half's misses when changing anything)",
    )
    args = parser.parse_args(argv)
    if args.decode_threads is None:
        from serving.config import ServingConfig

        args.decode_threads = ServingConfig.from_env().support_decode_threads

    import torch

    torch.set_num_threads(args.threads)
    from data_contracts.settings import Settings
    from data_contracts.shop import ShopProfile
    from training.support.artifact import load_support_model
    from training.support.dev_set import GOALS, load_dev_set
    from training.support.language import handover_text
    from training.support.placeholders import leaks
    from training.support.products import NOTHING_FITS, ProductAssistant, ProductCatalog
    from training.support.runtime import InMemoryStore, SupportRuntime

    settings = Settings.from_env()
    model = load_support_model(args.tag, settings, with_generator=args.generate)
    if args.generate:
        if model.generator is None:
            raise SystemExit(f"{model.tag} has no generator")
        model.generator.decode_threads = args.decode_threads
        model.generator.quantize()  # as the service runs it on a CPU
        if args.candidates is not None:
            model = replace(model, config=replace(model.config, generator_candidates=args.candidates))
    if model.router is None:
        raise SystemExit(f"{model.tag} has no turn router: train one with `shopml train support`")
    frame = shop_catalog()
    catalog = ProductCatalog.from_frame(frame)
    started = time.perf_counter()
    engine = search_engine(frame, Path(settings.data_dir) / "benchmarks" / "assistant")
    index_s = time.perf_counter() - started
    dialogue_gate = model.config.generation_min_grounding if args.gate is None else args.gate
    runtime = SupportRuntime(
        replace(model, config=replace(model.config, generation_min_grounding=dialogue_gate)),
        InMemoryStore(),
        profile=ShopProfile(),
        use_generator=args.generate,
        num_threads=args.threads,
        vocabulary=[p.title for p in catalog.products.values()],
        products=ProductAssistant(engine, catalog),
    )
    torch.set_num_threads(args.threads)
    runtime.reply("warm-up", "hello")

    generation = (
        generation_report(model, settings, args) if args.generate and args.generation_rows > 0 else {}
    )
    rows, times, order_times, fact_log = [], [], [], []
    for dialogue in [] if args.skip_dialogues else load_dev_set(args.split):
        session = f"bench-{dialogue[0].dialogue_id}"
        shown: list[dict] = []
        said = []
        for turn in dialogue:
            said.append(turn.text)
            start = time.perf_counter()
            out = runtime.reply(session, turn.text)
            times.append((time.perf_counter() - start) * 1000)
            order_times.append(times[-1])
            errors = fact_errors(out, " ".join(said), catalog)
            fact_log += [f"{turn.dialogue_id}/{turn.turn}: {e}" for e in errors]
            row = {"turn": turn, "out": out, "errors": errors, "before": shown}
            if turn.goal == "product_question" and turn.refers_to and shown:
                at = turn.refers_to - 1
                row["right_product"] = (
                    at < len(shown)
                    and len(out["products"]) == 1
                    and out["products"][0]["item_id"] == shown[at]["item_id"]
                )
            if out["goal"] == "product_request" and out["products"]:
                shown = out["products"]
            rows.append(row)
            if args.show_turns:
                print(
                    f"{turn.dialogue_id}/{turn.turn} {turn.goal}->{out['goal']}"
                    f"{' HANDOVER' if out['handover'] else ''} {turn.text!r}: {out['reply'][:100]!r}",
                    file=sys.stderr,
                )

    def share(values) -> float | None:
        values = list(values)
        return round(sum(values) / len(values), 4) if values else None

    by_goal = {
        goal: share(r["out"]["goal"] == goal for r in rows if r["turn"].goal == goal)
        for goal in GOALS
        if any(r["turn"].goal == goal for r in rows)
    }
    requests = [r for r in rows if r["turn"].goal == "product_request"]
    answered = [r for r in requests if r["out"]["products"]]
    foreign = [r for r in rows if r["turn"].goal == "other_language"]
    english = handover_text("en")
    times.sort()
    support_times = sorted(t for t, r in zip(order_times, rows, strict=True) if r["out"]["goal"] == "support")
    if args.skip_dialogues:
        print(json.dumps({"bench": "assistant", "model": model.tag, **generation, "threads": args.threads}))
        return 0
    print(
        json.dumps(
            {
                "bench": "assistant",
                "model": model.tag,
                "split": args.split,
                "dialogue_generation_gate": dialogue_gate if args.generate else None,
                "dialogues": len({r["turn"].dialogue_id for r in rows}),
                "turns": len(rows),
                "generation": args.generate,
                "decode_threads": args.decode_threads if args.generate else None,
                "router_threshold": model.router.threshold,
                "router_accuracy": round(statistics.fmean(by_goal.values()), 4),
                "router_accuracy_by_goal": by_goal,
                "clarify_rate": share(r["out"]["goal"] == "clarify" for r in rows),
                "handover_rate": {
                    goal: share(r["out"]["handover"] for r in rows if r["turn"].goal == goal)
                    for goal in by_goal
                },
                "product_turns_with_products": share(bool(r["out"]["products"]) for r in requests),
                # Of those: nothing fitted every constraint, said so, and the nearest were shown.
                "product_turns_nearest_only": share(
                    r["out"]["reply"].startswith(NOTHING_FITS) for r in answered
                ),
                "product_turns_without_products": [
                    f"{r['turn'].dialogue_id}/{r['turn'].turn} {r['turn'].text!r} -> {r['out']['goal']}: "
                    f"{r['out']['reply'][:80]!r}"
                    for r in requests
                    if not r["out"]["products"]
                ][:10],
                "product_constraints_met": share(
                    constraints_met(r["turn"], r["out"]["products"], r["before"]) for r in answered
                ),
                "product_question_right_product": share(
                    r["right_product"] for r in rows if "right_product" in r
                ),
                "product_fact_errors": len(fact_log),
                "product_fact_error_examples": fact_log[:5],
                "placeholder_leaks": sum(bool(leaks(r["out"]["reply"])) for r in rows),
                "other_language_english_replies": sum(
                    (not r["out"]["handover"]) or r["out"]["reply"] == english for r in foreign
                ),
                "chat_p50_ms": round(statistics.median(times), 1),
                "chat_p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
                "chat_support_p50_ms": round(statistics.median(support_times), 1) if support_times else None,
                # Where a support turn's time goes: the median of each step the runtime timed.
                "support_step_p50_ms": step_medians(
                    [r["out"] for r in rows if r["out"]["goal"] == "support"]
                ),
                "chat_support_p95_ms": (
                    round(support_times[int(0.95 * (len(support_times) - 1))], 1) if support_times else None
                ),
                **generation,
                "load_average_1m": round(os.getloadavg()[0], 2),
                "index_s": round(index_s, 1),
                "threads": args.threads,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
