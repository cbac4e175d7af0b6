"""Product search: quality of BM25, dense, their fusion and the personal re-rank on a documented
query set; latency in process and over HTTP on a 100,000-item catalog; or (``--scale N``) the
time and memory of building the index for N synthetic items.

The query set (each query with its relevant item set; seeded, so the same every run):
- ``retail_alias``: Online Retail II (../shared) lists several descriptions for one StockCode
  over the year, written by the shop's staff. The catalog title is the most frequent one; every
  other product description of the same code (upper-case product text, two or more words, not
  the title up to case and punctuation) is a query whose relevant set is that one item.
- ``retail_typed``: two or three content words of an item's title in a shuffled order, as a
  shopper types them; relevant: every item whose title holds all of those words.
- ``retail_slip``: the same queries with one typing slip (a letter dropped, doubled, swapped
  with its neighbour or replaced) in the longest word.
- ``synthetic_paraphrase``: the synthetic shop's catalog, queried with other words for its
  products ("earphones" for Headphones, "trainers" for Sneakers), alone, after a brand or
  after an adjective; relevant: every item of that noun (and brand or adjective).
Queries are split by a hash of their text: 30% tune the fusion weights (a small grid), 70%
are the test split every reported figure comes from.

Personal re-rank: a SASRec (quick profile, a few minutes) is trained on Online Retail II
customers' purchase sequences with leave-one-out; for each test customer the query is two
content words of their held-out last item's title and the relevant set is that item. Its
figures compare the fusion with and without the re-rank on the same queries; the blend's
weight is tuned on the tune split of these customers.

Metrics: NDCG@10 with binary gains, and recall@10 as the share of the relevant set in the
top 10 with the set capped at 10 (so a query with 300 relevant items can reach 1).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RETAIL = ROOT.parent / "shared/datasets/online-retail-ii-2009-2010/online_retail_ii_2009_2010.parquet"
PRODUCT_CODE = r"^\d{5}[A-Za-z]*$"
MODEL_CODE = re.compile(r" \d{4}-\d+$")  # the synthetic titles' suffix
STOP = {"and", "the", "for", "with", "of", "in", "set", "a", "to", "on", "pack"}
PARAPHRASES = {
    "Headphones": ["earphones", "headset"],
    "Speaker": ["loudspeaker", "sound box"],
    "Keyboard": ["keypad"],
    "Camera": ["photo camera"],
    "Charger": ["power adapter"],
    "Lamp": ["light", "desk light"],
    "Mug": ["cup", "coffee cup"],
    "Blanket": ["throw", "quilt"],
    "Clock": ["alarm clock", "timepiece"],
    "Jacket": ["coat"],
    "Sneakers": ["trainers", "running shoes"],
    "Hat": ["cap"],
    "Scarf": ["shawl"],
    "Perfume": ["fragrance", "scent"],
    "Shampoo": ["hair wash"],
    "Cream": ["lotion", "moisturiser"],
    "Bottle": ["water flask", "flask"],
    "Dumbbell": ["hand weight"],
    "Racket": ["tennis racquet"],
    "Helmet": ["bike helmet"],
    "Plush Bear": ["teddy bear", "soft toy bear"],
    "Blocks": ["building bricks"],
    "Robot": ["robot toy"],
    "Novel": ["fiction book"],
    "Cookbook": ["recipe book"],
    "Atlas": ["map book", "world maps"],
    "Comic": ["graphic novel"],
    "Hose": ["garden hose pipe"],
    "Shears": ["pruning scissors", "clippers"],
    "Seeds": ["flower seeds"],
    "Planter": ["flower pot", "plant pot"],
    "Lantern": ["outdoor light"],
}
ADJECTIVE_WORDS = {
    "Compact": "small",
    "Light": "lightweight",
    "Vintage": "retro",
    "Soft": "soft",
    "Smart": "smart",
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=100_000, help="synthetic catalog size for latency")
    p.add_argument("--scale", type=int, help="only build an index of this many synthetic items and report it")
    p.add_argument("--retail", type=Path, default=RETAIL)
    p.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads of the build"
    )
    p.add_argument("--personal-minutes", type=float, default=4.0, help="training cap of the personal model")
    p.add_argument("--no-http", action="store_true", help="skip the service latency")
    p.add_argument(
        "--latency-only", action="store_true", help="build the catalog and measure latency; no quality"
    )
    p.add_argument("--latency-queries", type=int, default=400)
    p.add_argument(
        "--backend",
        choices=("auto", "onnx", "static", "torch"),
        default="auto",
        help="the item encoder; auto: onnx unless it would run past --embed-budget (as the asset does)",
    )
    p.add_argument("--embed-budget", type=float, default=600.0, help="seconds, for --backend auto")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def split_of(text: str) -> str:
    return "tune" if int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) % 10 < 3 else "test"


# --- catalogs ---------------------------------------------------------------------------------


def synthetic_catalog(n: int, seed: int) -> pl.DataFrame:
    """The synthetic shop's item generator at any size; each title ends in a model code, as real
    titles often do, so that embedded texts are distinct (a catalog of repeated texts would
    make embedding look cheaper than it is)."""
    from data_contracts.synthetic import ShopConfig, _items

    items = _items(ShopConfig(items=n, seed=seed), np.random.default_rng(seed)).drop("top")
    codes = pl.Series([f" {i % 9973:04d}-{i // 9973}" for i in range(n)])  # MODEL_CODE
    return items.with_columns((pl.col("title") + codes).alias("title"))


def retail_frames(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(catalog, invoice lines of products) of Online Retail II."""
    raw = pl.read_parquet(path).rename({"Customer ID": "customer"})
    lines = raw.filter(
        pl.col("StockCode").cast(pl.String).str.contains(PRODUCT_CODE)
        & pl.col("Description").is_not_null()
        & (pl.col("Quantity") > 0)
    ).with_columns(
        pl.col("StockCode").cast(pl.String).alias("item_id"), pl.col("Description").str.strip_chars()
    )
    titles = (
        lines.group_by("item_id", "Description")
        .agg(pl.len().alias("n"))
        .sort(["item_id", "n", "Description"], descending=[False, True, False])
        .group_by("item_id", maintain_order=True)
        .first()
    )
    prices = (
        lines.filter(pl.col("Price") > 0).group_by("item_id").agg(pl.col("Price").median().alias("price"))
    )
    catalog = titles.join(prices, on="item_id", how="left").select(
        "item_id",
        pl.col("Description").str.to_titlecase().alias("title"),
        "price",
        pl.lit(True).alias("in_stock"),
    )
    return catalog, lines


# --- query sets -------------------------------------------------------------------------------


def normal(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def content_words(title: str) -> list[str]:
    return [w for w in re.findall(r"[a-z]+", title.lower()) if len(w) >= 3 and w not in STOP]


def slip(word: str, rng: np.random.Generator) -> str:
    i = int(rng.integers(1, len(word) - 1))
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return word[:i] + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i] + word[i:]
    if kind == 2:
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    letter = "abcdefghijklmnopqrstuvwxyz"[int(rng.integers(0, 26))]
    return word[:i] + letter + word[i + 1 :]


def retail_queries(catalog: pl.DataFrame, lines: pl.DataFrame, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    title_of = dict(catalog.select("item_id", "title").iter_rows())
    normal_titles = {normal(t) for t in title_of.values()}
    queries = []
    aliases = lines.select("item_id", "Description").unique().sort("item_id", "Description")
    for item, description in aliases.iter_rows():
        text = normal(description)
        words = re.findall(r"[A-Za-z]+", description)
        if (
            len(words) >= 2
            and description.upper() == description
            and text != normal(title_of[item])
            and text not in normal_titles
        ):
            queries.append({"set": "retail_alias", "query": description.lower(), "relevant": {item}})
    words_of = {item: set(content_words(t)) for item, t in title_of.items()}
    items = sorted(title_of)
    for item in rng.choice(items, size=min(800, len(items)), replace=False):
        words = content_words(title_of[item])
        if len(words) < 2:
            continue
        chosen = list(rng.choice(words, size=min(len(words), int(rng.integers(2, 4))), replace=False))
        relevant = {i for i, w in words_of.items() if set(chosen) <= w}
        queries.append({"set": "retail_typed", "query": " ".join(chosen), "relevant": relevant})
        longest = max(chosen, key=len)
        if len(longest) >= 5:
            slipped = [slip(w, rng) if w == longest else w for w in chosen]
            queries.append({"set": "retail_slip", "query": " ".join(slipped), "relevant": relevant})
    return queries


def synthetic_queries(catalog: pl.DataFrame) -> list[dict]:
    from data_contracts.synthetic import BRANDS

    nouns = {noun: [] for noun in PARAPHRASES}
    for item, title in catalog.select("item_id", "title").iter_rows():
        title = MODEL_CODE.sub("", title)
        for noun in nouns:
            if title.endswith(" " + noun):
                nouns[noun].append((item, title))
    queries = []
    for noun, words in PARAPHRASES.items():
        for word in words:
            queries.append(
                {"set": "synthetic_paraphrase", "query": word, "relevant": {i for i, _ in nouns[noun]}}
            )
            for brand in BRANDS[:4]:
                relevant = {i for i, t in nouns[noun] if t.startswith(brand + " ")}
                queries.append(
                    {"set": "synthetic_paraphrase", "query": f"{brand} {word}", "relevant": relevant}
                )
            for adjective, synonym in ADJECTIVE_WORDS.items():
                relevant = {i for i, t in nouns[noun] if f" {adjective} " in t}
                queries.append(
                    {"set": "synthetic_paraphrase", "query": f"{synonym} {word}", "relevant": relevant}
                )
    return [q for q in queries if q["relevant"]]


# --- metrics ----------------------------------------------------------------------------------


def figures(ranked: list[str], relevant: set[str]) -> tuple[float, float]:
    """(NDCG@10, recall@10 capped at 10) of one ranked list."""
    top = ranked[:10]
    gains = [1.0 if i in relevant else 0.0 for i in top]
    dcg = sum(g / np.log2(r + 2) for r, g in enumerate(gains))
    ideal = sum(1 / np.log2(r + 2) for r in range(min(10, len(relevant))))
    return dcg / ideal, sum(gains) / min(10, len(relevant))


def evaluate(engine, queries, **kw) -> dict:
    ndcg, recall = [], []
    for q in queries:
        result = engine.search(q["query"], 10, personal=q.get("personal"), **kw)
        n, r = figures([h.item_id for h in result.hits], q["relevant"])
        ndcg.append(n)
        recall.append(r)
    return {
        "ndcg@10": round(float(np.mean(ndcg)), 4),
        "recall@10": round(float(np.mean(recall)), 4),
        "queries": len(queries),
    }


# --- the personal re-rank ---------------------------------------------------------------------


def personal_queries(catalog: pl.DataFrame, lines: pl.DataFrame, minutes: float, threads: int, seed: int):
    """Customers' held-out last purchases as queries, each with the trained model's scorer."""
    from training.recommender.data import build_dataset
    from training.recommender.inference import Recommender
    from training.recommender.settings import Features, settings_for
    from training.recommender.training import train as train_recommender

    bought = (
        lines.filter(pl.col("customer").is_not_null())
        .sort("InvoiceDate", "Invoice", "item_id")
        .unique(["customer", "Invoice", "item_id"], keep="first", maintain_order=True)
        .select(pl.col("customer").cast(pl.Int64).cast(pl.String), "item_id")
    )
    work = Path(tempfile.mkdtemp(prefix="shopml-search-bench-"))
    pairs = work / "retail-pairs.txt"
    bought.write_csv(pairs, separator=" ", include_header=False)
    data = build_dataset(pairs)
    settings = settings_for(
        "quick",
        max_minutes=minutes,
        num_threads=threads,
        seed=seed,
        output_dir=work / "model",
        progress_bar=False,
    )
    result = train_recommender(data, "quick", Features(), settings, {})
    recommender = Recommender(result.artifact.model, result.artifact.items)
    rng = np.random.default_rng(seed)
    title_of = dict(catalog.select("item_id", "title").iter_rows())
    queries = []
    for user, seq in zip(data.users, data.sequences, strict=True):
        if len(seq) < 5:
            continue
        items = [data.items[i - 1] for i in seq]
        history, target = items[:-1], items[-1]
        words = content_words(title_of.get(target, ""))
        if len(words) < 2:
            continue
        query = " ".join(rng.choice(words, size=2, replace=False))
        queries.append(
            {
                "set": "personal",
                "query": query,
                "relevant": {target},
                "personal": (lambda h: lambda ids: recommender.scores_for(h, ids))(history),
                "split": split_of(f"{user}:{query}"),
            }
        )
    return queries, {
        "ndcg@10": result.artifact.metrics["ndcg@10"],
        "train_seconds": round(result.train_seconds, 1),
    }


# --- latency ----------------------------------------------------------------------------------


def in_process_latency(engine, queries: list[str]) -> tuple[float, float]:
    engine.config = replace(engine.config, query_cache=0)
    times = []
    for q in queries:
        t = time.perf_counter()
        engine.search(q, 10)
        times.append(time.perf_counter() - t)
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 99) * 1000)


def http_latency(data_dir: Path, queries: list[str]) -> float:
    from serving import launch

    os.environ.update({"SHOPML_DATA_DIR": str(data_dir), "SHOPML_SEARCH_QUERY_CACHE": "0"})
    port = launch.free_port()
    # No recommender model or feature store here, so /readyz stays false: wait for /livez,
    # then for /search to answer from the index.
    command = launch.bentoml_command("recommender", port)
    service = launch.start_process(
        "recommender", command, port, None, data_dir / "recommender.log", ready_path="/livez", timeout_s=300
    )
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                conn.request(
                    "POST", "/search", json.dumps({"query": "warm up"}), {"Content-Type": "application/json"}
                )
                if json.loads(conn.getresponse().read()).get("index_ready"):
                    break
            except (OSError, http.client.HTTPException, json.JSONDecodeError):
                conn.close()
            time.sleep(0.5)
        times = []
        for q in queries:
            body = json.dumps({"query": q, "k": 10})
            t = time.perf_counter()
            conn.request("POST", "/search", body, {"Content-Type": "application/json"})
            answer = conn.getresponse().read()
            times.append(time.perf_counter() - t)
            if not json.loads(answer).get("index_ready"):
                raise RuntimeError(f"the service has no index: {answer[:200]}")
        return float(np.percentile(times[20:], 50) * 1000)
    finally:
        service.stop()


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from search.config import SearchConfig
    from search.encoder import Encoder
    from search.engine import SearchEngine
    from search.index import build_index, load_index

    torch.set_num_threads(args.threads)
    encoder = Encoder(backend="onnx" if args.backend == "auto" else args.backend, threads=args.threads)
    budget = args.embed_budget if args.backend == "auto" else None

    def build(catalog: pl.DataFrame, root: Path, **kw):
        return build_index(catalog, root, encoder, threads=args.threads, embed_budget_seconds=budget, **kw)

    def engine_of(root: Path) -> SearchEngine:
        index = load_index(root)  # queried with the encoder the build chose, as the service does
        return SearchEngine(index, Encoder.for_index(index.manifest, index.path), SearchConfig())

    work = Path(tempfile.mkdtemp(prefix="shopml-search-"))
    if args.scale:
        catalog = synthetic_catalog(args.scale, args.seed)
        report = build(catalog, work / "data" / "search")
        print(
            json.dumps(
                {
                    "items": report.items,
                    "build_seconds": report.seconds,
                    "embed_seconds": report.embed_seconds,
                    "graph_seconds": report.graph_seconds,
                    "lexical_seconds": report.lexical_seconds,
                    "encoder": report.encoder_backend,
                    "encoder_choice": report.encoder_choice,
                    "peak_rss_mb": round(peak_rss_mb(), 1),
                    "threads": args.threads,
                    # Other processes' share of the cores: a figure taken at 4 is not a 2-core figure.
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                }
            )
        )
        return 0

    line: dict = {}
    # Quality on Online Retail II (real descriptions) and the synthetic catalog's paraphrases.
    sets: dict[str, tuple[SearchEngine, list[dict]]] = {}
    if args.retail.exists() and not args.latency_only:
        catalog, lines = retail_frames(args.retail)
        build(catalog, work / "retail")
        engine = engine_of(work / "retail")
        sets["retail"] = (engine, retail_queries(catalog, lines, args.seed))
    elif not args.latency_only:
        print(f"no Online Retail II file at {args.retail}: real-description queries skipped", file=sys.stderr)
    synthetic = synthetic_catalog(args.items, args.seed)
    data_dir = work / "data"
    report = build(synthetic, data_dir / "search")
    line.update(
        items=report.items,
        build_seconds=report.seconds,
        embed_seconds=report.embed_seconds,
        encoder=report.encoder_backend,
        encoder_choice=report.encoder_choice,
    )
    torch.set_num_threads(1)  # as the service runs it
    big = engine_of(data_dir / "search")
    sets["synthetic"] = (big, synthetic_queries(synthetic))
    # Latency first, before anything else has run in this process: distinct queries of the
    # synthetic set (tune and test alike: no figure of quality comes from this), cache off.
    latency_queries = [q["query"] for q in sets["synthetic"][1]][: args.latency_queries]
    rng = np.random.default_rng(args.seed)
    latency_queries += [f"{q} {slip('headphones', rng)}" for q in ("cheap", "smart", "blue", "small")]
    line["p50_ms"], line["p99_ms"] = (round(v, 2) for v in in_process_latency(big, latency_queries))
    big.config = replace(big.config, query_cache=SearchConfig().query_cache)
    line["latency_queries"] = len(latency_queries)
    if not args.no_http:
        line["http_p50_ms"] = round(http_latency(data_dir, latency_queries), 2)

    if args.latency_only:
        line["peak_rss_mb"] = round(peak_rss_mb(), 1)
        print(json.dumps(line))
        return 0
    tune = [(e, q) for e, qs in sets.values() for q in qs if split_of(q["query"]) == "tune"]
    test = [(e, q) for e, qs in sets.values() for q in qs if split_of(q["query"]) == "test"]
    # One weight setting for every catalog: tuned on the pooled tune split.
    best, best_ndcg = None, -1.0
    for lexical, dense in ((1, 1), (1, 0.5), (1, 2), (2, 1), (1, 1.5), (1.5, 1)):
        for rrf_k in (10, 60):
            scores = []
            for engine, _ in sets.values():
                engine.config = replace(
                    engine.config, lexical_weight=lexical, dense_weight=dense, rrf_k=rrf_k
                )
            for engine, q in tune:
                result = engine.search(q["query"], 10)
                scores.append(figures([h.item_id for h in result.hits], q["relevant"])[0])
            if np.mean(scores) > best_ndcg:
                best, best_ndcg = (
                    {"lexical_weight": lexical, "dense_weight": dense, "rrf_k": rrf_k},
                    float(np.mean(scores)),
                )
    for engine, _ in sets.values():
        engine.config = replace(engine.config, **best)
    line["fusion_weights"] = best | {"tune_ndcg@10": round(best_ndcg, 4), "tune_queries": len(tune)}

    def on_test(**kw) -> dict:
        per_set: dict[str, list] = {}
        for engine, q in test:
            result = engine.search(q["query"], 10, **kw)
            per_set.setdefault(q["set"], []).append(figures([h.item_id for h in result.hits], q["relevant"]))
        pooled = [f for fs in per_set.values() for f in fs]
        return {
            "ndcg@10": round(float(np.mean([f[0] for f in pooled])), 4),
            "recall@10": round(float(np.mean([f[1] for f in pooled])), 4),
            "by_set": {s: round(float(np.mean([f[0] for f in fs])), 4) for s, fs in sorted(per_set.items())},
            "queries": len(pooled),
        }

    fusion = on_test()
    bm25 = on_test(dense=False)
    dense = on_test(lexical=False)
    line.update(
        {
            "recall@10": fusion["recall@10"],
            "ndcg@10": fusion["ndcg@10"],
            "bm25_ndcg@10": bm25["ndcg@10"],
            "dense_ndcg@10": dense["ndcg@10"],
            "bm25_recall@10": bm25["recall@10"],
            "dense_recall@10": dense["recall@10"],
            "ndcg@10_by_set": {"fusion": fusion["by_set"], "bm25": bm25["by_set"], "dense": dense["by_set"]},
            "test_queries": fusion["queries"],
        }
    )

    if "retail" in sets:
        engine = sets["retail"][0]
        queries, model = personal_queries(catalog, lines, args.personal_minutes, args.threads, args.seed)
        tune_p = [q for q in queries if q["split"] == "tune"]
        test_p = [q for q in queries if q["split"] == "test"]
        best_w, best_n = 0.0, -1.0
        for weight in (0.1, 0.3, 0.5, 1.0):
            engine.config = replace(engine.config, personal_weight=weight)
            n = evaluate(engine, tune_p)["ndcg@10"]
            if n > best_n:
                best_w, best_n = weight, n
        engine.config = replace(engine.config, personal_weight=best_w)
        without = evaluate(engine, [{k: v for k, v in q.items() if k != "personal"} for q in test_p])
        with_personal = evaluate(engine, test_p)
        line.update(
            {
                "personal_ndcg@10": with_personal["ndcg@10"],
                "personal_baseline_ndcg@10": without["ndcg@10"],
                "personal_recall@10": with_personal["recall@10"],
                "personal_baseline_recall@10": without["recall@10"],
                "personal_weight": best_w,
                "personal_queries": with_personal["queries"],
                "personal_model": model,
            }
        )

    line["peak_rss_mb"] = round(peak_rss_mb(), 1)
    line["threads"] = {"build": args.threads, "query": 1}
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
