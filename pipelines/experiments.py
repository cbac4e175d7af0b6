"""Experiment results: per variant of each traffic split, what shoppers did with what it served.

Recommender splits, from the served logs (``served_recommendations``, written by the service
with the experiment and variant of every answer) and the shopper events, per variant: users,
served lists, click-through (lists with a ``rec_click``), add-to-cart and purchase of a clicked
item by the same shopper within ``window_hours`` of the click. Support splits, from the replies
log (``support_replies``) and the thumbs up/down (``feedback``): the thumbs-up rate of the rated
replies and the handover rate of all replies, per shopper (or session, when the caller gave no
shopper id: the support service's unit of assignment). Shoppers are the unit of assignment, so a
shopper's lists are not independent: each rate is a ratio of per-shopper sums, its interval
from the delta method (Deng et al., "Applying the Delta Method in Metric Analytics", 2018), and
each challenger is tested against the champion with a two-sided z-test. The sample-ratio
check compares shoppers per variant with the weights the service registered (chi-square).

The ``experiment_guard`` check fails when a challenger is significantly worse than the champion
on a guarded metric (click-through; thumbs-up and handover) or the split does not match its
weights; ``shopml experiment stop`` then sends all traffic back to the champion.
"""

import io
import math
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import numpy as np
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from dagster_duckdb import DuckDBResource
from scipy import stats

from data_contracts import warehouse
from pipelines.reports import plot_metadata
from pipelines.resources import ShopSettings
from serving.experiments import ExperimentRegistry

GROUP = "experiments"
ALPHA = 0.05  # two-sided, for the difference of a challenger against the champion
SRM_ALPHA = 0.001  # a split this unlikely under its weights is broken, not unlucky
DEFAULT_WINDOW_HOURS = 24.0


@dataclass(frozen=True)
class Metric:
    """A rate per variant: the sum of one per-shopper column over the sum of another."""

    name: str
    numerator: str
    denominator: str
    higher_is_better: bool = True
    guarded: bool = False  # the guard fails when a challenger is significantly worse on it


RECOMMENDER_METRICS = (
    Metric("ctr", "ctr", "served", guarded=True),
    Metric("add_to_cart", "add_to_cart", "served"),
    Metric("purchase", "purchase", "served"),
)
SUPPORT_METRICS = (
    Metric("thumbs_up", "thumbs_up", "rated", guarded=True),
    Metric("handover", "handover", "served", higher_is_better=False, guarded=True),
)


def per_shopper(conn: duckdb.DuckDBPyConnection, experiment: str, window_hours: float) -> pl.DataFrame:
    """One row per (variant, user_id): lists served, and lists clicked, carted and bought."""
    return conn.execute(
        """
        WITH served AS (
            SELECT rec_id, user_id, variant FROM served_recommendations WHERE experiment = $name
        ),
        clicks AS (
            SELECT e.rec_id, e.user_id, e.item_id, min(e.ts) AS ts
            FROM events e JOIN served s ON s.rec_id = e.rec_id
            WHERE e.event_type = 'rec_click'
            GROUP BY ALL
        ),
        converted AS (
            SELECT c.rec_id,
                   bool_or(x.event_type = 'add_to_cart') AS carted,
                   bool_or(x.event_type = 'purchase') AS bought
            FROM clicks c JOIN events x
              ON x.user_id = c.user_id AND x.item_id = c.item_id
             AND x.ts >= c.ts AND x.ts <= c.ts + to_microseconds(CAST($window * 3600e6 AS BIGINT))
             AND x.event_type IN ('add_to_cart', 'purchase')
            GROUP BY c.rec_id
        )
        SELECT s.variant, s.user_id,
               count(*) AS served,
               count(DISTINCT c.rec_id) AS ctr,
               count(*) FILTER (WHERE v.carted) AS add_to_cart,
               count(*) FILTER (WHERE v.bought) AS purchase
        FROM served s
        LEFT JOIN (SELECT DISTINCT rec_id FROM clicks) c ON c.rec_id = s.rec_id
        LEFT JOIN converted v ON v.rec_id = s.rec_id
        GROUP BY ALL
        """,
        {"name": experiment, "window": float(window_hours)},
    ).pl()


def per_support_shopper(
    conn: duckdb.DuckDBPyConnection, experiment: str, window_hours: float
) -> pl.DataFrame:
    """One row per (variant, shopper or session): replies served, handed over, rated, and
    rated thumbs up (a reply's last rating counts). ``window_hours`` is not used: feedback is
    on the reply itself."""
    rated = (
        "SELECT target_id, arg_max(rating, ts) AS rating FROM feedback WHERE target_kind = 'reply' GROUP BY 1"
        if warehouse.table_exists(conn, "feedback")
        else "SELECT NULL::VARCHAR AS target_id, NULL::BIGINT AS rating WHERE false"
    )
    return conn.execute(
        f"""
        WITH rated AS ({rated})
        SELECT r.variant, coalesce(r.user_id, r.session_id) AS user_id,
               count(*) AS served,
               count(*) FILTER (WHERE r.handover) AS handover,
               count(f.rating) AS rated,
               count(*) FILTER (WHERE f.rating = 1) AS thumbs_up
        FROM support_replies r LEFT JOIN rated f ON f.target_id = r.reply_id
        WHERE r.experiment = $name
        GROUP BY ALL
        """,
        {"name": experiment},
    ).pl()


# Per service: the log table its answers are in, its per-shopper counts, and its metrics.
SERVICES = {
    "recommender": ("served_recommendations", per_shopper, RECOMMENDER_METRICS),
    "support": ("support_replies", per_support_shopper, SUPPORT_METRICS),
}


@dataclass(frozen=True)
class Rate:
    """A ratio of per-shopper sums, sum(x) / sum(n), and the delta method's variance of it."""

    value: float
    variance: float

    @classmethod
    def of(cls, x: np.ndarray, n: np.ndarray) -> "Rate":
        users = len(n)
        if users == 0 or n.sum() == 0:
            return cls(math.nan, math.nan)
        rate = x.sum() / n.sum()
        if users < 2:
            return cls(float(rate), math.nan)
        mean_n = n.mean()
        cov = np.cov(x, n, ddof=1)  # [[var x, cov x n], [cov x n, var n]]
        variance = (cov[0, 0] - 2 * rate * cov[0, 1] + rate**2 * cov[1, 1]) / (users * mean_n**2)
        return cls(float(rate), float(max(variance, 0.0)))

    def interval(self, alpha: float = ALPHA) -> tuple[float, float]:
        half = stats.norm.ppf(1 - alpha / 2) * math.sqrt(self.variance)
        return self.value - half, self.value + half


def compare(champion: Rate, challenger: Rate, alpha: float = ALPHA) -> dict:
    """Absolute and relative difference (challenger - champion), its interval and p-value."""
    diff = challenger.value - champion.value
    se = math.sqrt(champion.variance + challenger.variance)
    if not se > 0:
        return {
            "diff": diff,
            "lift": math.nan,
            "lift_low": math.nan,
            "lift_high": math.nan,
            "p_value": math.nan,
        }
    half = stats.norm.ppf(1 - alpha / 2) * se
    p_value = float(2 * stats.norm.sf(abs(diff) / se))
    base = champion.value
    # The lift's interval divides the difference's by the champion's rate (its own error
    # ignored): close enough at the sample sizes where the test means anything.
    lift = diff / base if base > 0 else math.nan
    return {
        "diff": diff,
        "lift": lift,
        "lift_low": (diff - half) / base if base > 0 else math.nan,
        "lift_high": (diff + half) / base if base > 0 else math.nan,
        "p_value": p_value,
    }


def sample_ratio_p(users: dict[str, int], weights: dict[str, int]) -> float | None:
    """Chi-square p-value of shoppers per variant against the weights; None without weights."""
    names = [n for n in weights if weights[n] > 0]
    if not names or set(users) - set(names):
        return None
    observed = np.array([users.get(n, 0) for n in names], dtype=float)
    if observed.sum() == 0 or len(names) < 2:
        return None
    expected = (
        observed.sum() * np.array([weights[n] for n in names], dtype=float) / sum(weights[n] for n in names)
    )
    return float(stats.chisquare(observed, expected).pvalue)


def _experiments(conn: duckdb.DuckDBPyConnection, table: str, only: str | None) -> list[str]:
    """The experiments that served answers logged in ``table`` (none before it has the column)."""
    if not warehouse.table_exists(conn, table):
        return []
    columns = {row[0] for row in conn.execute(f"DESCRIBE {table}").fetchall()}
    if "experiment" not in columns:
        return []
    names = conn.execute(
        f"SELECT DISTINCT experiment FROM {table} WHERE experiment IS NOT NULL ORDER BY 1"
    ).fetchall()
    return [n for (n,) in names if only is None or n == only]


def experiment_results(
    conn: duckdb.DuckDBPyConnection,
    registry: ExperimentRegistry,
    window_hours: float = DEFAULT_WINDOW_HOURS,
    only: str | None = None,
) -> pl.DataFrame:
    """One row per experiment, variant and metric (see the module's docstring)."""
    rows = []
    for service, (table, counts, metrics) in SERVICES.items():
        if service == "recommender" and not warehouse.table_exists(conn, "events"):
            continue
        for name in _experiments(conn, table, only):
            rows += _experiment_rows(
                name, service, counts(conn, name, window_hours), metrics, registry, window_hours
            )
    frame = pl.DataFrame(rows, schema=RESULT_SCHEMA) if rows else pl.DataFrame(schema=RESULT_SCHEMA)
    return frame.with_columns(pl.lit(datetime.now(UTC)).alias("computed_at"))


def _experiment_rows(
    name: str,
    service: str,
    shoppers: pl.DataFrame,
    metrics: tuple[Metric, ...],
    registry: ExperimentRegistry,
    window_hours: float,
) -> list[dict]:
    record = registry.get(name) or {}
    order = [v["name"] for v in record.get("variants", [])]
    seen = shoppers["variant"].unique().sort().to_list()
    variants = [v for v in order if v in seen] + [v for v in seen if v not in order]
    champion = order[0] if order else variants[0]
    weights = {v["name"]: v["weight"] for v in record.get("variants", [])}
    parts = {v: shoppers.filter(pl.col("variant") == v) for v in variants}
    users = {v: part.height for v, part in parts.items()}
    srm = sample_ratio_p(users, weights)
    rates = {
        variant: {
            m.name: Rate.of(
                part[m.numerator].to_numpy().astype(float), part[m.denominator].to_numpy().astype(float)
            )
            for m in metrics
        }
        for variant, part in parts.items()
    }
    rows = []
    for variant, part in parts.items():
        for metric in metrics:
            rate = rates[variant][metric.name]
            low, high = rate.interval()
            versus = (
                compare(rates[champion][metric.name], rate)
                if variant != champion and champion in rates
                else dict.fromkeys(("diff", "lift", "lift_low", "lift_high", "p_value"), None)
            )
            significant = versus["p_value"] is not None and versus["p_value"] < ALPHA
            rows.append(
                {
                    "experiment": name,
                    "service": service,
                    "variant": variant,
                    "champion": variant == champion,
                    "weight": weights.get(variant),
                    "users": users[variant],
                    "served": int(part["served"].sum()),
                    "metric": metric.name,
                    "value": rate.value,
                    "ci_low": low,
                    "ci_high": high,
                    **versus,
                    "significant": significant,
                    "worse": significant and (versus["diff"] < 0) == metric.higher_is_better,
                    "guarded": metric.guarded,
                    "srm_p_value": srm,
                    "stopped_at": record.get("stopped_at"),
                    "window_hours": float(window_hours),
                }
            )
    return rows


RESULT_SCHEMA: dict[str, pl.DataType] = {
    "experiment": pl.String(),
    "service": pl.String(),  # recommender or support
    "variant": pl.String(),
    "champion": pl.Boolean(),
    "weight": pl.Int64(),
    "users": pl.Int64(),  # shoppers (support: shoppers or anonymous sessions)
    "served": pl.Int64(),  # answers served: recommendation lists or support replies
    "metric": pl.String(),
    "value": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "diff": pl.Float64(),  # challenger - champion; null for the champion
    "lift": pl.Float64(),  # diff / champion's value
    "lift_low": pl.Float64(),
    "lift_high": pl.Float64(),
    "p_value": pl.Float64(),
    "significant": pl.Boolean(),
    "worse": pl.Boolean(),  # significantly worse than the champion, in the metric's direction
    "guarded": pl.Boolean(),  # the guard fails on a challenger worse on this metric
    "srm_p_value": pl.Float64(),  # null when the experiment's weights are not on record
    "stopped_at": pl.String(),
    "window_hours": pl.Float64(),
}


def verdicts(results: pl.DataFrame) -> dict[str, list[str]]:
    """Experiment -> what is wrong with it (empty: nothing): a challenger significantly worse
    on a guarded metric, or a sample-ratio mismatch."""
    out: dict[str, list[str]] = {}
    for (name,), part in results.group_by("experiment", maintain_order=True):
        problems = []
        srm = part["srm_p_value"][0]
        if srm is not None and srm < SRM_ALPHA:
            first = part["metric"][0]
            users = dict(part.filter(pl.col("metric") == first).select("variant", "users").iter_rows())
            problems.append(f"sample ratio mismatch (p = {srm:.2g}; shoppers per variant {users})")
        for row in part.filter(pl.col("guarded") & pl.col("worse")).iter_rows(named=True):
            problems.append(
                f"{row['variant']} is worse than the champion on {row['metric']}: lift {row['lift']:+.1%} "
                f"[{row['lift_low']:+.1%}, {row['lift_high']:+.1%}], p = {row['p_value']:.2g}"
            )
        out[name] = problems
    return out


def _cell(value, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2%}" if percent else f"{value:.4f}"


def format_results(results: pl.DataFrame) -> str:
    """The results as a text table per experiment, with the guard's verdict."""
    if results.is_empty():
        return (
            "no experiment has served traffic yet (set SHOPML_RECOMMENDER_VARIANTS or "
            "SHOPML_SUPPORT_VARIANTS and serve)"
        )
    lines = []
    problems = verdicts(results)
    for (name,), part in results.group_by("experiment", maintain_order=True):
        first = part.row(0, named=True)
        srm = first["srm_p_value"]
        status = f"stopped {first['stopped_at'][:19]}" if first["stopped_at"] else "running"
        lines.append(
            f"experiment {name} ({first['service']}; {status}; window {first['window_hours']:g} h; "
            f"sample ratio p = {_cell(srm) if srm is not None else 'unknown (no record)'})"
        )
        metrics = part["metric"].unique(maintain_order=True).to_list()
        header = f"  {'variant':<16}{'weight':>7}{'users':>8}{'served':>8}"
        header += "".join(f"{m:>24}{'lift':>24}{'p':>8}" for m in metrics)
        lines.append(header)
        for (variant,), rows in part.group_by("variant", maintain_order=True):
            by_metric = {r["metric"]: r for r in rows.iter_rows(named=True)}
            row = by_metric[metrics[0]]
            mark = "*" if row["champion"] else ""
            text = f"  {variant + mark:<16}{row['weight'] if row['weight'] is not None else '-':>7}"
            text += f"{row['users']:>8}{row['served']:>8}"
            for metric in metrics:
                r = by_metric[metric]
                value = f"{_cell(r['value'], True)} [{_cell(r['ci_low'], True)}, {_cell(r['ci_high'], True)}]"
                lift = (
                    "-"
                    if r["lift"] is None
                    else f"{_cell(r['lift'], True)} [{_cell(r['lift_low'], True)}, {_cell(r['lift_high'], True)}]"
                )
                text += f"{value:>24}{lift:>24}{_cell(r['p_value']):>8}"
            lines.append(text)
        verdict = problems.get(name) or []
        lines.append("  guard: " + ("; ".join(verdict) if verdict else "passes") + "   (* champion)")
    return "\n".join(lines)


def plot_results(results: pl.DataFrame) -> bytes:
    """Each metric's rate per variant with its 95% interval, one panel per metric (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    metrics = results["metric"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        part = results.filter(pl.col("metric") == metric)
        labels = [f"{e}\n{v}" for e, v in zip(part["experiment"], part["variant"], strict=True)]
        values, low, high = (
            part[c].fill_nan(0).fill_null(0).to_numpy() for c in ("value", "ci_low", "ci_high")
        )
        errors = np.vstack([values - low, high - values])
        ax.bar(range(len(labels)), values, yerr=np.clip(errors, 0, None), capsize=4)
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(metric)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=80)
    plt.close(fig)
    return out.getvalue()


class ExperimentResultsConfig(Config):
    window_hours: float = DEFAULT_WINDOW_HOURS  # a click's add-to-cart or purchase counts this long


@asset(
    name="experiment_results",
    group_name=GROUP,
    deps=[
        AssetKey("served_recommendations"),
        AssetKey("events"),
        AssetKey("support_replies"),
        AssetKey("feedback"),
    ],
    description="Per variant of each traffic split: users, served lists, click-through, add-to-cart "
    "and purchase after a click (recommender); thumbs-up and handover rates (support); with "
    "intervals, tests against the champion and a sample-ratio check",
    check_specs=[
        AssetCheckSpec(
            "experiment_guard",
            asset="experiment_results",
            description="No challenger significantly worse than its champion on click-through "
            "(recommender) or on thumbs-up or handover (support), and every split matches its weights",
        )
    ],
)
def experiment_results_asset(
    config: ExperimentResultsConfig, warehouse_db: DuckDBResource, settings: ShopSettings
):
    registry = ExperimentRegistry(settings.get().experiments_dir)
    with warehouse_db.get_connection() as conn:
        results = experiment_results(conn, registry, config.window_hours)
        with warehouse.transaction(conn):
            warehouse.replace_table(conn, "experiment_results", results)
    metadata = {
        "experiments": results["experiment"].n_unique(),
        "table": MetadataValue.md(f"```\n{format_results(results)}\n```"),
    }
    if not results.is_empty():
        metadata["plot"] = plot_metadata(plot_results(results))
    yield MaterializeResult(metadata=metadata)
    problems = verdicts(results)
    failing = {name: p for name, p in problems.items() if p}
    yield AssetCheckResult(
        check_name="experiment_guard",
        passed=not failing,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "failing": MetadataValue.json(failing),
            "action": "shopml experiment stop NAME sends all traffic back to the champion"
            if failing
            else "none",
        },
    )
