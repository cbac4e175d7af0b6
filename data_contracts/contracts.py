"""Run the Great Expectations suites in data_contracts/expectations on a table.

Great Expectations validates pandas, so frames are converted here, at the border. Tables
larger than ``sample_rows`` are validated on a seeded sample: the row-level rules already
ran on every row in Polars, and whole-table properties (uniqueness) are checked in the
warehouse by the callers.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import polars as pl

SUITES_DIR = Path(__file__).parent / "expectations"


@dataclass
class ContractResult:
    suite: str
    success: bool
    rows_total: int
    rows_validated: int
    expectations: list[dict] = field(default_factory=list)

    @property
    def failed(self) -> list[dict]:
        return [e for e in self.expectations if not e["success"]]

    def describe(self) -> str:
        if self.success:
            return f"{self.suite}: {len(self.expectations)} expectations met on {self.rows_validated} rows"
        broken = ", ".join(f"{e['expectation']}({e['column'] or ''})" for e in self.failed)
        return f"{self.suite}: broken expectations: {broken}"


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.json"))


def load_suite_config(name: str) -> dict:
    path = SUITES_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no suite {name!r} in {SUITES_DIR} (have {suite_names()})")
    return json.loads(path.read_text())


_context_lock = threading.Lock()


def prewarm() -> None:
    """Import Great Expectations and build its context in a background thread.

    The import takes seconds; callers start it first thing so it overlaps with their I/O.
    """
    threading.Thread(target=_batch_definition, daemon=True).start()


def _batch_definition():
    with _context_lock:
        return _build_batch_definition()


@cache
def _build_batch_definition():
    import great_expectations as gx

    # GE logs every metric computation at INFO and draws progress bars; keep runs quiet.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    source = context.data_sources.add_pandas("shopml_warehouse")
    return source.add_dataframe_asset("table").add_batch_definition_whole_dataframe("whole")


def _suite(config: dict):
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    suite = gx.ExpectationSuite(name=config["name"])
    for expectation in config["expectations"]:
        suite.add_expectation_configuration(ExpectationConfiguration(**expectation))
    return suite


def columns_checked(config: dict) -> list[str] | None:
    """The columns a suite's expectations name; None when one looks at the whole table."""
    columns: list[str] = []
    for expectation in config["expectations"]:
        if expectation["type"].startswith("expect_table_"):
            return None
        kwargs = expectation["kwargs"]
        for key in ("column", "column_A", "column_B"):
            if key in kwargs and kwargs[key] not in columns:
                columns.append(kwargs[key])
        columns += [c for c in kwargs.get("column_list", []) if c not in columns]
    return columns


def validate(name: str, frame: pl.DataFrame, sample_rows: int = 50_000, seed: int = 0) -> ContractResult:
    """Validate ``frame`` against suite ``name``; never raises on a broken expectation."""
    # Only the columns the suite names cross into pandas: converting list columns (sequences)
    # costs seconds and no expectation reads them.
    config = load_suite_config(name)
    columns = columns_checked(config)
    checked = frame if columns is None else frame.select([c for c in columns if c in frame.columns])
    sample = checked if checked.height <= sample_rows else checked.sample(n=sample_rows, seed=seed)
    pandas_frame = sample.to_pandas(use_pyarrow_extension_array=True)
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": pandas_frame})
    result = batch.validate(_suite(config))
    expectations = []
    for r in result.results:
        kwargs = r.expectation_config.kwargs
        observed = r.result.get("observed_value", r.result.get("unexpected_count"))
        expectations.append(
            {
                "expectation": r.expectation_config.type,
                "column": kwargs.get("column") or kwargs.get("column_A"),
                "success": bool(r.success),
                "observed": observed
                if isinstance(observed, (int, float, str, bool, type(None)))
                else str(observed),
                "unexpected_count": r.result.get("unexpected_count"),
            }
        )
    return ContractResult(name, bool(result.success), frame.height, sample.height, expectations)
