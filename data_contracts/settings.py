"""One settings object for every part: paths, store URLs and the profile.

Values come from environment variables (``SHOPML_*``) with embedded defaults that run on
one machine; the ``production`` profile switches the stores to Redis and PostgreSQL by
configuration only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal

Profile = Literal["local", "production"]
TrainingProfile = Literal["smoke", "quick", "full"]


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SHOPML_{name}", default)


def _choice(name: str, default: str, choices: tuple[str, ...]):
    value = _env(name, default)
    if value not in choices:
        raise ValueError(f"SHOPML_{name} must be one of {choices}, not {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Where everything lives. Build with ``Settings.from_env()``; override per test."""

    profile: Profile = "local"
    # Root of all generated data (git-ignored).
    data_dir: Path = Path("data")
    # The DuckDB warehouse file.
    warehouse_path: Path = field(default=Path("data/warehouse.duckdb"))
    # Landing folder: landing/events/<YYYY-MM-DD>/*, landing/catalog/*, landing/feedback/*.
    landing_dir: Path = field(default=Path("data/landing"))
    # Items kept per user in user_sequences and the online store.
    sequence_length: int = 50
    # Allowed clock skew for event timestamps ahead of "now", in minutes.
    future_skew_minutes: int = 10
    # Largest number of rows a Great Expectations suite validates in full; larger tables are
    # validated on a seeded sample (uniqueness is always checked on the whole table in DuckDB).
    contract_sample_rows: int = 50_000
    # "quick": minutes on a 2-core CPU (main job, tests); "full": the published protocol, for a GPU.
    training_profile: TrainingProfile = "quick"
    # Where evaluation reports (tables, plots) are written.
    reports_dir: Path = field(default=Path("data/reports"))
    # The BentoML model store (BENTOML_HOME) where trained models are saved and served from.
    model_store: Path = field(default=Path("data/bentoml"))
    # The search index's item encoder: "auto" (the ONNX transformer unless embedding the
    # catalog would take longer than the budget below, then the static encoder distilled from
    # it), or one of "onnx", "static", "torch" always.
    search_encoder: str = "auto"
    search_embed_budget_seconds: int = 600
    redis_url: str = "redis://127.0.0.1:6379/0"
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/test"
    # The retraining loop (pipelines/retraining.py): a weekly run, and one sooner when this
    # many new served rows (recommendation lists and support replies) have landed since the
    # last; a model that passes the offline gate then serves ``challenger_weight`` percent of
    # shoppers for at most ``challenger_days`` days, and is promoted when the experiment's
    # guard passes with at least ``challenger_min_users`` shoppers in each variant.
    retrain_cron: str = "0 3 * * 1"
    retrain_min_new_rows: int = 50_000
    challenger_weight: int = 10
    challenger_days: float = 7.0
    challenger_min_users: int = 200

    def __post_init__(self):
        if not 0 < self.challenger_weight < 100:
            raise ValueError(
                f"SHOPML_CHALLENGER_WEIGHT must be a percentage in 1..99, not {self.challenger_weight}"
            )
        if self.challenger_days <= 0:
            raise ValueError(f"SHOPML_CHALLENGER_DAYS must be positive, not {self.challenger_days}")
        if self.retrain_min_new_rows < 1 or self.challenger_min_users < 1:
            raise ValueError("SHOPML_RETRAIN_MIN_NEW_ROWS and SHOPML_CHALLENGER_MIN_USERS must be at least 1")

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(_env("DATA_DIR", "data"))
        return cls(
            profile=_choice("PROFILE", "local", ("local", "production")),
            data_dir=data_dir,
            warehouse_path=Path(_env("WAREHOUSE", str(data_dir / "warehouse.duckdb"))),
            landing_dir=Path(_env("LANDING_DIR", str(data_dir / "landing"))),
            sequence_length=int(_env("SEQUENCE_LENGTH", "50")),
            future_skew_minutes=int(_env("FUTURE_SKEW_MINUTES", "10")),
            contract_sample_rows=int(_env("CONTRACT_SAMPLE_ROWS", "50000")),
            training_profile=_choice("TRAINING_PROFILE", "quick", ("smoke", "quick", "full")),
            reports_dir=Path(_env("REPORTS_DIR", str(data_dir / "reports"))),
            model_store=Path(_env("MODEL_STORE", str(data_dir / "bentoml"))),
            search_encoder=_choice("SEARCH_ENCODER", "auto", ("auto", "onnx", "static", "torch")),
            search_embed_budget_seconds=int(_env("SEARCH_EMBED_BUDGET_SECONDS", "600")),
            redis_url=_env("REDIS_URL", "redis://127.0.0.1:6379/0"),
            postgres_url=_env("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
            retrain_cron=_env("RETRAIN_CRON", "0 3 * * 1"),
            retrain_min_new_rows=int(_env("RETRAIN_MIN_NEW_ROWS", "50000")),
            challenger_weight=int(_env("CHALLENGER_WEIGHT", "10")),
            challenger_days=float(_env("CHALLENGER_DAYS", "7")),
            challenger_min_users=int(_env("CHALLENGER_MIN_USERS", "200")),
        )

    def future_skew(self) -> timedelta:
        return timedelta(minutes=self.future_skew_minutes)

    @property
    def events_landing(self) -> Path:
        return self.landing_dir / "events"

    @property
    def catalog_landing(self) -> Path:
        return self.landing_dir / "catalog"

    @property
    def feedback_landing(self) -> Path:
        return self.landing_dir / "feedback"

    @property
    def experiments_dir(self) -> Path:
        """One record per traffic-split experiment a service started (serving/experiments.py)."""
        return self.data_dir / "experiments"

    @property
    def search_index_dir(self) -> Path:
        """The product search index's versions (``CURRENT`` names the one served)."""
        return self.data_dir / "search"

    @property
    def sources_landing(self) -> Path:
        """The shop's own source files (``*.yaml``), beside the shipped ones."""
        return self.landing_dir / "sources"

    @property
    def rejected_landing(self) -> Path:
        """Landed files that could not be read, each with a ``.reason.txt`` beside it."""
        return self.landing_dir / "_rejected"


def use_model_store(settings: Settings) -> Path:
    """Point BentoML at the configured model store; call before the first ``import bentoml``.

    An explicit BENTOML_HOME in the environment wins.
    """
    home = Path(os.environ.setdefault("BENTOML_HOME", str(settings.model_store.resolve())))
    home.mkdir(parents=True, exist_ok=True)
    return home
