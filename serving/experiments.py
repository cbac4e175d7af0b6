"""Traffic splits between model versions: which variant answers a shopper, fixed by a hash.

An experiment is configured per service, e.g. for the recommender::

    SHOPML_RECOMMENDER_VARIANTS="champion=promoted:90,challenger=recommender:ab12cd:10"

Each entry is ``[name=]model:weight``: ``model`` is a model tag or an alias (``promoted``: the
version the promotion gate serves; ``previous``: the one it served before; ``popularity``: no
model, the catalog's most popular items, the arm that asks whether personalisation pays), ``name`` the
variant's name in answers and logs (default: ``model`` as written). The first variant is the
champion. A shopper is assigned from a hash of the experiment's name and their id, so the same
shopper always gets the same variant, in every worker and replica, and a new experiment
reshuffles everyone. ``SHOPML_RECOMMENDER_EXPERIMENT`` names the experiment (default: a name
derived from the split, so changing the split starts a new one); ``..._EXPERIMENT_START`` and
``..._EXPERIMENT_END`` (ISO 8601) bound it: outside them everyone gets the champion.

``ExperimentRegistry`` keeps one JSON record per experiment under ``<data dir>/experiments/``:
the service writes it when it starts the split (the weights the analysis checks the observed
split against), and ``shopml experiment stop`` marks it stopped, which every worker reads
within seconds and answers with the champion from then on, outside the experiment.

The retraining loop (``pipelines/retraining.py``) plans experiments in the same registry: a
retrained model that passes the offline gate becomes the challenger of the promoted one
(``ExperimentRegistry.plan``). Without a split in the environment, a service starting up
serves the newest planned experiment of its own that is neither stopped nor over
(``configured_experiment``); a split in the environment, or a pinned model tag, always wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ALIASES = ("promoted", "previous")
POPULARITY = "popularity"  # a variant without a model: the catalog's popularity ranking


@dataclass(frozen=True)
class Variant:
    name: str
    model: str  # a model tag, or an alias in ALIASES
    weight: int


@dataclass(frozen=True)
class Experiment:
    name: str
    variants: tuple[Variant, ...]
    start: datetime | None = None
    end: datetime | None = None

    @property
    def champion(self) -> Variant:
        return self.variants[0]

    def running(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        return (self.start is None or now >= self.start) and (self.end is None or now < self.end)

    def live(self, stopped: bool) -> bool:
        """Splitting traffic now: inside its window and not stopped."""
        return self.running() and not stopped

    def assign(self, unit_id: str, now: datetime | None = None) -> Variant:
        """The variant of a shopper (or session): a point in [0, total weight) from a hash of
        the experiment's name and ``unit_id``; the champion while the experiment is not running."""
        if not self.running(now):
            return self.champion
        digest = hashlib.sha256(f"{self.name}\x00{unit_id}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") % sum(v.weight for v in self.variants)
        for variant in self.variants:
            if point < variant.weight:
                return variant
            point -= variant.weight
        raise AssertionError("unreachable: the weights sum to the modulus")


def parse_variants(text: str) -> tuple[Variant, ...]:
    """``[name=]model:weight`` entries, comma-separated; ValueError naming what is wrong."""
    variants = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, _, spec = entry.rpartition("=") if "=" in entry else ("", "", entry)
        model, colon, weight = spec.rpartition(":")
        if not colon or not model or not weight.strip().isdigit():
            raise ValueError(
                f"variant {entry!r} is not [name=]model:weight, e.g. 'challenger=recommender:ab12:10'"
            )
        variants.append(Variant(name.strip() or model.strip(), model.strip(), int(weight)))
    if len(variants) < 2:
        raise ValueError(f"an experiment needs at least two variants, not {text!r}")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names repeat in {text!r}: give each a name=")
    if sum(v.weight for v in variants) == 0:
        raise ValueError(f"the variants' weights in {text!r} sum to 0")
    return tuple(variants)


def _time(name: str, value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 time, not {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def experiment_from_env(service: str) -> Experiment | None:
    """The experiment configured for ``service`` ("recommender"), or None when none is."""
    prefix = f"SHOPML_{service.upper()}"
    text = os.environ.get(f"{prefix}_VARIANTS", "").strip()
    if not text:
        return None
    variants = parse_variants(text)
    canonical = ",".join(f"{v.name}={v.model}:{v.weight}" for v in variants)
    default_name = f"{service}-{hashlib.sha256(canonical.encode()).hexdigest()[:8]}"
    experiment = Experiment(
        os.environ.get(f"{prefix}_EXPERIMENT", "").strip() or default_name,
        variants,
        _time(f"{prefix}_EXPERIMENT_START", os.environ.get(f"{prefix}_EXPERIMENT_START", "").strip()),
        _time(f"{prefix}_EXPERIMENT_END", os.environ.get(f"{prefix}_EXPERIMENT_END", "").strip()),
    )
    if experiment.start and experiment.end and experiment.end <= experiment.start:
        raise ValueError(f"{prefix}_EXPERIMENT_END must come after its start")
    return experiment


def experiment_from_record(record: dict) -> Experiment:
    """The experiment a registry record describes (its variants by model tag)."""
    return Experiment(
        record["name"],
        tuple(Variant(v["name"], v["model"], int(v["weight"])) for v in record["variants"]),
        _time("start", record.get("start") or ""),
        _time("end", record.get("end") or ""),
    )


def planned_experiment(service: str, registry: ExperimentRegistry) -> Experiment | None:
    """The newest experiment the retraining loop planned for ``service`` that is neither
    stopped nor over, or None (a damaged record starts nothing; `shopml experiment report`
    names it)."""
    now = datetime.now(UTC)
    planned = [
        (record.get("registered_at", ""), experiment_from_record(record))
        for record in registry.planned()[0]
        if record.get("service") == service
    ]
    live = [(at, e) for at, e in planned if e.end is None or now < e.end]
    return max(live, key=lambda pair: pair[0])[1] if live else None


def configured_experiment(service: str, registry: ExperimentRegistry, pinned: bool) -> Experiment | None:
    """The split a starting service serves: its environment's, else (unless a model tag is
    ``pinned``) the one the retraining loop planned, else None."""
    experiment = experiment_from_env(service)
    if experiment is None and not pinned:
        experiment = planned_experiment(service, registry)
    return experiment


class ExperimentRegistry:
    """The record of every experiment a service started: ``<folder>/<name>.json``."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"{name!r} is not an experiment name")
        return self.folder / f"{name}.json"

    def get(self, name: str) -> dict | None:
        path = self.path(name)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"experiment record {path} cannot be read ({exc})") from exc

    def all(self) -> list[dict]:
        return [self.get(p.stem) for p in sorted(self.folder.glob("*.json"))]

    def planned(self) -> tuple[list[dict], list[str]]:
        """The records the retraining loop planned and nobody stopped yet, and why each
        damaged record could not be read (one damaged record holds none of the others up)."""
        records, damaged = [], []
        for path in sorted(self.folder.glob("*.json")):
            try:
                record = self.get(path.stem)
            except ValueError as exc:
                damaged.append(str(exc))
                continue
            if record and record.get("planned_by") and not record.get("stopped_at"):
                records.append(record)
        return records, damaged

    def _write(self, record: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(record["name"])
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(path)  # readers see the old record or the new one, never half of one

    def register(self, service: str, experiment: Experiment, versions: dict[str, str]) -> dict:
        """The experiment's record, written the first time a worker starts it (``versions``:
        variant name -> the model version it serves)."""
        record = self.get(experiment.name)
        if record is None:
            record = {
                "name": experiment.name,
                "service": service,
                "variants": [
                    {"name": v.name, "model": v.model, "weight": v.weight, "version": versions.get(v.name)}
                    for v in experiment.variants
                ],
                "start": experiment.start.isoformat() if experiment.start else None,
                "end": experiment.end.isoformat() if experiment.end else None,
                "registered_at": datetime.now(UTC).isoformat(),
                "stopped_at": None,
                "stop_reason": None,
            }
            self._write(record)
        return record

    def plan(
        self,
        service: str,
        champion: str,
        challenger: str,
        weight: int,
        days: float,
        reason: str,
        offline_metrics: dict | None = None,
        now: datetime | None = None,
    ) -> dict:
        """A planned experiment: ``challenger`` (a model tag) serves ``weight`` percent of the
        shoppers of ``service`` beside ``champion`` (the promoted tag) for ``days`` days, from
        the next start of the service; ``offline_metrics``, the challenger's figures from the
        gate, travel with a promotion. Planning the same challenger again returns its record."""
        name = f"{service}-challenger-{hashlib.sha256(challenger.encode()).hexdigest()[:8]}"
        record = self.get(name)
        if record is not None:
            return record
        now = now or datetime.now(UTC)
        record = {
            "name": name,
            "service": service,
            "variants": [
                {"name": "champion", "model": champion, "weight": 100 - weight, "version": champion},
                {"name": "challenger", "model": challenger, "weight": weight, "version": challenger},
            ],
            "start": now.isoformat(),
            "end": (now + timedelta(days=days)).isoformat(),
            "registered_at": now.isoformat(),
            "planned_by": "retraining",
            "plan_reason": reason,
            "offline_metrics": offline_metrics or {},
            "stopped_at": None,
            "stop_reason": None,
            "decision": None,
        }
        self._write(record)
        return record

    def stop(self, name: str, reason: str, decision: str | None = None) -> dict:
        """Mark ``name`` stopped (a second stop keeps the first time and reason); ``decision``
        ("promoted", "rejected", "kept") records what the retraining loop made of it."""
        record = self.get(name)
        if record is None:
            known = ", ".join(r["name"] for r in self.all()) or "none"
            raise ValueError(f"no experiment {name!r} was started (known: {known})")
        if record.get("stopped_at") is None:
            record.update(stopped_at=datetime.now(UTC).isoformat(), stop_reason=reason)
            if decision is not None:
                record["decision"] = decision
            self._write(record)
        return record


class StopFlag:
    """Whether an experiment was stopped, read from its record at most every ``refresh_s``
    seconds: a request pays a clock read, and a stop reaches every worker within that time."""

    def __init__(self, registry: ExperimentRegistry, name: str, refresh_s: float = 5.0):
        self.registry, self.name, self.refresh_s = registry, name, refresh_s
        self._lock = threading.Lock()
        self._stopped = False
        self._checked_at = float("-inf")

    def __call__(self) -> bool:
        if self._stopped:
            return True  # a stopped experiment never starts again: a new split is a new one
        now = time.monotonic()
        if now - self._checked_at >= self.refresh_s:
            with self._lock:
                self._checked_at = now
                try:
                    record = self.registry.get(self.name)
                except ValueError:
                    record = None  # a damaged record keeps the split as configured
                self._stopped = bool(record and record.get("stopped_at"))
        return self._stopped
