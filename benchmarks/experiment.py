"""Does an experiment detect a known difference? The trained recommender against popularity,
with simulated shoppers on this machine; prints one JSON line.

    python benchmarks/experiment.py [--requests 2000] [--seconds 600]

Needs the shop ``shopml run`` leaves in ``data/`` (its warehouse and promoted recommender).
The recommender is served on 127.0.0.1 with a 50/50 split, ``champion=promoted`` against
``challenger=popularity`` (no model: the catalog's most popular items), under a new experiment
name each run; its served and event logs go to a temporary landing folder, so the shop's own
data is untouched. ``shopml simulate`` replays held-out shoppers (every item of a warehouse
sequence but the last as the session; a click when the list holds the last item), one list
each. Then the served lists and clicks are read from those logs as the feedback loop reads
them, and ``experiment_results`` (the asset's computation) gives the click-through per
variant, the challenger's lift with its 95% interval and the z-test's p-value.

Keys: ``requests``, ``requests_to_significance`` (the simulator's checks every 50 shoppers:
the first count from which p < 0.05 held), ``significant``, ``lift`` / ``lift_low`` /
``lift_high`` (challenger over champion), ``ctr``, ``offline_ndcg@10`` (the evaluation report's
test figures of the model and of most-popular) and ``sign_matches_offline`` (the online lift
has the sign of the offline NDCG difference).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_contracts.settings import Settings  # noqa: E402
from pipelines.commands import simulate  # noqa: E402
from pipelines.experiments import experiment_results  # noqa: E402
from pipelines.ingest import logs  # noqa: E402
from serving import launch  # noqa: E402
from serving.experiments import ExperimentRegistry  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=2_000, help="simulated shoppers, at most")
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def clicks_table(landing: Path) -> pl.DataFrame:
    """The rec_click events the service logged, typed as the warehouse's events table."""
    frames = [pl.read_ndjson(p) for p in sorted((landing / "events").rglob("*.jsonl")) if p.stat().st_size]
    if not frames:
        return pl.DataFrame(
            schema={
                "rec_id": pl.String,
                "user_id": pl.String,
                "item_id": pl.String,
                "event_type": pl.String,
                "ts": pl.Datetime("us", "UTC"),
            }
        )
    events = pl.concat(frames, how="diagonal_relaxed")
    return events.select(
        "rec_id", "user_id", "item_id", "event_type", pl.col("ts").str.to_datetime(time_zone="UTC")
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = Settings.from_env()
    report_path = settings.reports_dir / "recommender.json"
    if not settings.warehouse_path.exists() or not report_path.exists():
        raise SystemExit(f"no shop in {settings.data_dir}: run `shopml run` (or `make run`) first")
    report = json.loads(report_path.read_text())
    offline = {
        "champion": report["ndcg@10"],
        "challenger": report["baselines"]["most_popular"]["ndcg@10"],
    }
    name = f"simulated-{int(time.time())}"
    with tempfile.TemporaryDirectory(prefix="shopml-experiment-bench-") as tmp:
        landing = Path(tmp) / "landing"
        env = {
            "SHOPML_LANDING_DIR": str(landing),
            "SHOPML_RECOMMENDER_VARIANTS": "champion=promoted:50,challenger=popularity:50",
            "SHOPML_RECOMMENDER_EXPERIMENT": name,
            "SHOPML_CACHE_TTL_S": "0",
            "SHOPML_WORKERS": "1",
        }
        started = time.perf_counter()
        with launch.serving("recommender", env=env) as running:
            sim_args = argparse.Namespace(
                url=running.url,
                api_key=None,
                requests=args.requests,
                seconds=args.seconds,
                k=10,
                check_every=50,
                prefix="sim",
                seed=args.seed,
            )
            simulated = simulate.simulate(sim_args, settings)
        conn = duckdb.connect()
        conn.register("served_frame", logs.read_log(landing, "served").clean.to_arrow())
        conn.execute("CREATE TABLE served_recommendations AS SELECT * FROM served_frame")
        conn.register("events_frame", clicks_table(landing).to_arrow())
        conn.execute("CREATE TABLE events AS SELECT * FROM events_frame")
        results = experiment_results(conn, ExperimentRegistry(settings.experiments_dir), only=name)
    ctr = {r["variant"]: r for r in results.filter(pl.col("metric") == "ctr").iter_rows(named=True)}
    challenger = ctr["challenger"]
    offline_diff = offline["challenger"] - offline["champion"]
    print(
        json.dumps(
            {
                "bench": "experiment",
                "experiment": name,
                "split": "champion=promoted (trained recommender) 50, challenger=popularity 50",
                "click_model": "a click when the list of 10 holds the held-out last item of a warehouse sequence",
                "requests": simulated["requests"],
                "errors": simulated["errors"],
                "requests_to_significance": simulated["requests_to_significance"],
                "ctr": {v: round(r["value"], 4) for v, r in ctr.items()},
                "users": {v: r["users"] for v, r in ctr.items()},
                "lift": round(challenger["lift"], 4),
                "lift_low": round(challenger["lift_low"], 4),
                "lift_high": round(challenger["lift_high"], 4),
                "p_value": challenger["p_value"],
                "significant": bool(challenger["significant"]),
                "srm_p_value": challenger["srm_p_value"],
                "offline_ndcg@10": {k: round(v, 4) for k, v in offline.items()},
                "sign_matches_offline": (challenger["diff"] < 0) == (offline_diff < 0),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
