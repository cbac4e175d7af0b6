"""Plain functions for each step: dataset, training, evaluation, promotion, plot.

The Dagster assets wrap these; the CLI and the benchmark call them directly.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch

from training.flags import setting
from training.recommender.artifact import (
    Artifact,
    checkpoint_state,
    load_from_store,
    save_to_store,
    store_home,
)
from training.recommender.baselines import ItemToItem, fit_baselines
from training.recommender.data import (
    DEFAULT_EVENT_TYPES,
    Protocol,
    SequenceData,
    Split,
    dataset_from_warehouse,
    leave_one_out,
    make_split,
    read_sasrec_file,
)
from training.recommender.evaluation import (
    Scorer,
    evaluate_scorer,
    evaluate_with_baselines,
    model_scorer,
)
from training.recommender.inference import Recommender, score_histories
from training.recommender.losses import LossName, Sampling
from training.recommender.model import RecommenderConfig, SASRec

ProfileName = Literal["smoke", "quick", "full", "auto"]
LrSchedule = Literal["constant", "cosine"]
Precision = Literal["auto", "bf16-mixed", "32-true"]


@dataclass
class TrainSettings:
    """How to train; ``PROFILES`` holds the presets, flags override single fields."""

    loss: LossName = setting(
        "ce",
        "training loss: ce = full softmax over the catalogue; sampled_softmax = softmax over the "
        "target and num_negatives shared negatives, logQ-corrected (SASRec+SS); gbce = generalised "
        "BCE over num_negatives uniform negatives per sequence (gSASRec); bce = one negative",
    )
    num_negatives: int = setting(1024, "negatives per batch (sampled_softmax) or per sequence (gbce)")
    negative_sampling: Sampling = setting(
        "uniform",
        "where sampled_softmax draws negatives: uniform, or popularity (training counts; the logQ "
        "correction removes its bias towards popular items)",
    )
    gbce_t: float = setting(0.75, "gBCE calibration: 0 = plain BCE, 1 = fully calibrated (gSASRec uses 0.75)")
    lr: float = setting(1e-3, "learning rate")
    lr_schedule: LrSchedule = setting(
        "constant",
        "cosine: a short warm-up, then the rate falls to 0 at max_epochs (set max_epochs to what "
        "the time budget allows); constant keeps it",
    )
    weight_decay: float = setting(0.0, "AdamW weight decay")
    batch_size: int = setting(128, "sequences per batch")
    max_epochs: int = setting(200, "epochs at most")
    max_minutes: float | None = setting(None, "wall-clock cap on training plus validation, in minutes")
    # On a shared machine it stands in for "N minutes on an idle machine", which a
    # wall-clock cap cannot measure.
    max_cpu_minutes: float | None = setting(
        None, "CPU-time cap (all threads of this process) on training plus validation, in minutes"
    )
    patience: int = setting(10, "validation rounds without a better NDCG@10 before stopping")
    val_every: int = setting(1, "epochs between validation rounds")
    window_stride: int = setting(0, ">0 also trains on older windows of histories longer than max_len")
    seed: int = setting(0, "random seed")
    num_threads: int = 2  # CPU threads for torch; set explicitly, the default oversubscribes
    accelerator: str = "auto"
    devices: int | str = setting("auto", "devices per node (Lightning), e.g. 2")
    num_nodes: int = setting(1, "nodes (Lightning)")
    strategy: str = setting("auto", "Lightning strategy: ddp for several GPUs or nodes (ddp_spawn in tests)")
    # Without native bf16 (AVX512-BF16 or AMX) bf16 on a CPU is slower than fp32.
    precision: Precision = setting(
        "auto",
        "auto: bf16 autocast on a GPU, fp32 on a CPU; bf16-mixed makes a CPU with AVX512-BF16 or AMX "
        "about twice as fast",
    )
    output_dir: Path = setting(Path("data/recommender"), "checkpoints and CSV logs")
    progress_bar: bool = True


# The fields ``shopml train recommender`` takes as flags.
TRAIN_FLAGS = (
    "loss",
    "num_negatives",
    "negative_sampling",
    "gbce_t",
    "lr",
    "lr_schedule",
    "weight_decay",
    "batch_size",
    "max_epochs",
    "max_minutes",
    "max_cpu_minutes",
    "patience",
    "val_every",
    "window_stride",
    "seed",
    "precision",
    "devices",
    "num_nodes",
    "strategy",
    "output_dir",
)


@dataclass
class Profile:
    model: dict = field(default_factory=dict)  # RecommenderConfig overrides
    train: dict = field(default_factory=dict)  # TrainSettings overrides


PROFILES: dict[str, Profile] = {
    # Seconds: a check that every part is wired (tests, a first look); not a useful model.
    "smoke": Profile(
        model={"max_len": 20, "hidden": 32, "num_blocks": 1, "dropout": 0.2},
        train={"max_epochs": 2, "max_minutes": 1.0, "patience": 1, "batch_size": 128},
    ),
    # Minutes on a 2-core CPU: short sequences, a capped run; used by the main job.
    "quick": Profile(
        model={"max_len": 50, "hidden": 64, "num_blocks": 2, "dropout": 0.2},
        train={"max_epochs": 30, "max_minutes": 5.0, "patience": 3, "batch_size": 128},
    ),
    # The published protocol (full cross-entropy, max_len 200), meant for a GPU, with the
    # model and schedule that measured best there on ML-1M: NDCG@10 0.192 / HR@10 0.337
    # (stopped early at epoch 45), where the published SASRec shape (hidden 64, one head,
    # constant rate 1e-3, batch 128, no windows) reached 0.172 / 0.307 in 86 epochs.
    "full": Profile(
        model={"max_len": 200, "hidden": 128, "num_blocks": 2, "num_heads": 2, "ffn_mult": 4, "dropout": 0.2},
        train={
            "max_epochs": 60,
            "max_minutes": None,
            "patience": 10,
            "batch_size": 64,
            "lr": 2e-3,
            "lr_schedule": "cosine",
            "window_stride": 200,
        },
    ),
    # Shape, length, loss and the schedule's length chosen from the data and the budget
    # (``training.recommender.auto``): what a shop's data needs without a flag per data set.
    "auto": Profile(train={"max_minutes": 30.0, "patience": 10, "lr_schedule": "cosine"}),
}


@dataclass
class Features:
    """Which item side features to use; each needs its data in ``SequenceData.side``."""

    category: bool = False
    price: bool = False
    text: bool = False


@dataclass
class TrainResult:
    artifact: Artifact
    split: Split
    train_seconds: float
    train_cpu_seconds: float  # CPU time of this process while training (all threads)
    epochs: int
    best_epoch: int | None
    # Why training ended: "max_epochs", "early_stopping" (patience rounds without a better
    # validation NDCG@10), "max_minutes" or "max_cpu_minutes" (the cap, validation included),
    # "max_epochs_fitted_to_cap" (the schedule shortened to the epochs the cap held).
    stop_reason: str
    checkpoint: str | None
    log_dir: str | None


# --- dataset -------------------------------------------------------------------------------------


def build_dataset(
    source,
    item_text: str | Path | None = None,
    positives: tuple[str, ...] | None = None,
    context: tuple[str, ...] = (),
) -> SequenceData:
    """From a SASRec-style file path or a DuckDB connection to the warehouse; ``positives``
    and ``context`` name the warehouse's event types that are targets and inputs only."""
    if isinstance(source, str | Path):
        if positives is not None or context:
            raise ValueError(
                "a 'user item' pairs file has no event types: positives and context need --warehouse"
            )
        data = read_sasrec_file(source)
    else:
        data = dataset_from_warehouse(source, positives or DEFAULT_EVENT_TYPES, context)
    if item_text is not None:
        from training.recommender.data import read_item_text

        data.side.text = read_item_text(item_text)
    return data


def split_fingerprint(
    data: SequenceData, cold_fraction: float = 0.0, seed: int = 0, protocol: Protocol = "leave-one-out"
) -> str:
    """Same data and protocol -> same fingerprint; metrics are comparable only when equal."""
    h = hashlib.sha256()
    h.update(json.dumps({"protocol": protocol, "cold": cold_fraction, "seed": seed}).encode())
    h.update("\n".join(data.items).encode())
    for u, (user, seq) in enumerate(zip(data.users, data.sequences, strict=True)):
        h.update(user.encode())
        h.update(seq.tobytes())
        if data.positive is not None:
            h.update(data.positive[u].tobytes())
        if protocol == "time" and data.times is not None:
            h.update(data.times[u].tobytes())
    return h.hexdigest()[:16]


# --- model ---------------------------------------------------------------------------------------


def model_config(
    data: SequenceData, profile: ProfileName = "quick", features: Features | None = None, **overrides
) -> RecommenderConfig:
    features = features or Features()
    values = {**PROFILES[profile].model, **overrides}
    side = data.side
    if features.category:
        if side.category is None:
            raise ValueError("category features asked for but the data has no catalog categories")
        values["num_categories"] = max(len(side.category_names), 1)
    if features.price:
        if side.price_bucket is None:
            raise ValueError("price features asked for but the data has no catalog prices")
        values["num_price_buckets"] = len(side.price_edges) + 1
    if features.text:
        if not side.text:
            raise ValueError("text features asked for but no item has text (pass --item-text or a catalog)")
        from training.recommender.text import TEXT_DIM

        values["text_dim"] = TEXT_DIM
    return RecommenderConfig(num_items=data.num_items, **values)


def build_model(data: SequenceData, split: Split, config: RecommenderConfig) -> SASRec:
    """A fresh model with the data's side features loaded.

    Items absent from the training sequences get no id vector (it would stay random, and
    the full softmax would push it down as a negative); they are scored from their side
    features, which is what lets a new item be recommended.
    """
    model = SASRec(config)
    n = data.num_items + 1
    in_train = np.zeros(n, dtype=bool)
    if split.train:
        in_train[np.concatenate(split.train)] = True
    in_train[0] = True
    side = {"has_id": torch.from_numpy(in_train)}
    if config.num_categories:
        side["category"] = torch.from_numpy(data.side.category)
    if config.num_price_buckets:
        side["price_bucket"] = torch.from_numpy(data.side.price_bucket)
    if config.text_dim:
        from training.recommender.text import item_text_matrix

        matrix, _ = item_text_matrix(data.items, data.side.text)
        side["text"] = torch.from_numpy(matrix)
    model.set_side_features(**side)
    return model


# --- training ------------------------------------------------------------------------------------


def negative_proposal(split: Split, num_items: int, sampling: Sampling) -> torch.Tensor | None:
    """(N+1,) probabilities of drawing each item as a negative; None for uniform."""
    if sampling == "uniform":
        return None
    if sampling != "popularity":
        raise ValueError(f"unknown negative_sampling {sampling!r}; expected uniform or popularity")
    counts = np.bincount(np.concatenate(split.train), minlength=num_items + 1).astype(np.float64)
    counts[0] = 0.0
    return torch.from_numpy(counts / counts.sum()).float()


def fit(
    data: SequenceData,
    split: Split,
    config: RecommenderConfig,
    settings: TrainSettings,
) -> TrainResult:
    """Train with Lightning, keep the best validation NDCG@10 weights, return them unevaluated."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger

    from training.recommender.lightning import SASRecModule, SequenceDataModule, TimeBudget

    torch.set_num_threads(settings.num_threads)
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    model = build_model(data, split, config)
    module = SASRecModule(
        model,
        settings.loss,
        settings.num_negatives,
        settings.lr,
        settings.weight_decay,
        lr_schedule=settings.lr_schedule,
        num_threads=settings.num_threads,
        proposal=negative_proposal(split, data.num_items, settings.negative_sampling),
        gbce_t=settings.gbce_t,
    )
    datamodule = SequenceDataModule(
        split, config.max_len, settings.batch_size, settings.window_stride, settings.seed
    )
    out = Path(settings.output_dir)
    checkpoint = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="best-{epoch}", monitor="val/ndcg@10", mode="max", save_top_k=1
    )

    if settings.precision not in get_args(Precision):
        raise ValueError(f"unknown precision {settings.precision!r}; expected one of {get_args(Precision)}")
    on_gpu = torch.cuda.is_available() and settings.accelerator in ("auto", "gpu", "cuda")
    precision = settings.precision
    if precision == "auto":
        precision = "bf16-mixed" if on_gpu else "32-true"
    early_stopping = EarlyStopping(monitor="val/ndcg@10", mode="max", patience=settings.patience)
    budget = TimeBudget(settings.max_minutes, settings.max_cpu_minutes)
    trainer = pl.Trainer(
        accelerator=settings.accelerator,
        devices=settings.devices,
        num_nodes=settings.num_nodes,
        strategy=settings.strategy,
        precision=precision,
        max_epochs=settings.max_epochs,
        # TimeBudget, not Lightning's max_time: the cap must hold for validation too.
        check_val_every_n_epoch=settings.val_every,
        callbacks=[checkpoint, early_stopping, budget],
        logger=CSVLogger(out, name="logs"),
        use_distributed_sampler=False,
        enable_progress_bar=settings.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        deterministic=False,
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    budget.begin()
    trainer.fit(module, datamodule=datamodule)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    if budget.reason is not None:
        stop_reason = budget.reason
    elif early_stopping.stopped_epoch > 0:
        stop_reason = "early_stopping"
    elif budget.refitted is not None and trainer.current_epoch >= budget.refitted:
        # The cap held fewer epochs than planned at the pace measured: the schedule was
        # shortened to end inside it, and it did.
        stop_reason = "max_epochs_fitted_to_cap"
    elif trainer.current_epoch >= settings.max_epochs:
        stop_reason = "max_epochs"
    else:
        stop_reason = "interrupted"
    best = checkpoint.best_model_path
    if best and Path(best).exists():
        model.load_state_dict(checkpoint_state(best))
    found = re.search(r"epoch=(\d+)", Path(best).name) if best else None
    best_epoch = int(found.group(1)) + 1 if found else None
    extra = {
        "train_settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "side": {
            "category_names": data.side.category_names if config.num_categories else [],
            "price_edges": data.side.price_edges if config.num_price_buckets else [],
        },
    }
    return TrainResult(
        artifact=Artifact(model=model.cpu().eval(), items=list(data.items), extra=extra),
        split=split,
        train_seconds=seconds,
        train_cpu_seconds=cpu_seconds,
        epochs=trainer.current_epoch,
        best_epoch=best_epoch,
        stop_reason=stop_reason,
        checkpoint=best or None,
        log_dir=trainer.logger.log_dir if trainer.logger else None,
    )


# --- evaluation ----------------------------------------------------------------------------------


def evaluate(
    model: SASRec, split: Split, num_items: int, k: int = 10, sampled: int = 100, on: str = "test"
) -> dict:
    """Model and baselines on the same cases: full ranking, seen filtered, plus sampled-100."""
    cases = split.test if on == "test" else split.valid
    result = evaluate_with_baselines(
        model,
        split.train,
        cases,
        num_items,
        k=k,
        sampled=sampled,
        valid=split.valid,
        train_positive=split.train_positive,
    )
    seen = "seen positives filtered" if split.train_positive is not None else "seen items filtered"
    result["protocol"] = f"{split.describe()}; {on} cases, full ranking, {seen}; sampled{sampled} is an extra"
    if split.protocol == "time":
        result["periods"] = {"valid_from": split.valid_from, "test_from": split.test_from}
    return result


def cold_start_hr(model: SASRec, split: Split, k: int = 10) -> dict:
    """HR@k on test cases whose target was withheld from training (needs a cold split)."""
    cold = np.zeros(model.config.num_items + 1, dtype=bool)
    cold[split.cold_items] = True
    pick = np.flatnonzero(cold[split.test.targets])
    if len(pick) == 0:
        return {f"hr@{k}": None, "cases": 0}
    from training.recommender.data import EvalSet

    cases = EvalSet(
        split.test.users[pick],
        [split.test.histories[i] for i in pick],
        split.test.targets[pick],
        seen=None if split.test.seen is None else [split.test.seen[i] for i in pick],
    )
    result = evaluate_scorer(model_scorer(model), cases, model.config.num_items, k=k, sampled=0)
    return {f"hr@{k}": result[f"hr@{k}"], f"ndcg@{k}": result[f"ndcg@{k}"], "cases": len(pick)}


def train(
    data: SequenceData,
    profile: ProfileName = "quick",
    features: Features | None = None,
    settings: TrainSettings | None = None,
    model_overrides: dict | None = None,
    cold_fraction: float = 0.0,
    given: dict | None = None,
    protocol: Protocol = "leave-one-out",
) -> TrainResult:
    """Split by ``protocol``, train, evaluate on the test split; the metrics land in the artifact.

    With the ``auto`` profile the rule of ``training.recommender.auto`` fills in the model and
    the schedule; ``model_overrides`` and ``given`` (training values set explicitly, e.g. by
    flags) are kept as they are."""
    settings = settings or replace(TrainSettings(), **PROFILES[profile].train)
    split = make_split(data, protocol, cold_fraction=cold_fraction, seed=settings.seed)
    chosen = None
    if profile == "auto":
        from training.recommender import auto

        choice = auto.choose(
            data,
            split,
            settings.max_minutes or settings.max_cpu_minutes,
            settings.num_threads,
            given_model=model_overrides,
            given_train=given,
        )
        settings = replace(settings, **choice.train)
        model_overrides, chosen = choice.model, choice.why
    config = model_config(data, profile, features, **(model_overrides or {}))
    result = fit(data, split, config, settings)
    metrics = evaluate(result.artifact.model, split, data.num_items)
    if chosen is not None:
        metrics["auto"] = chosen
    metrics.update(
        train_seconds=result.train_seconds,
        train_cpu_seconds=result.train_cpu_seconds,
        epochs=result.epochs,
        best_epoch=result.best_epoch,
        stop_reason=result.stop_reason,
        split=split_fingerprint(data, cold_fraction, settings.seed, protocol),
    )
    result.artifact.metrics = metrics
    return result


def settings_for(profile: ProfileName, **overrides) -> TrainSettings:
    values = {**PROFILES[profile].train, **{k: v for k, v in overrides.items() if v is not None}}
    return replace(TrainSettings(), **values)


# --- promotion -----------------------------------------------------------------------------------


def _promotion_file(name: str, home: Path | str | None) -> Path:
    return store_home(home) / "promotions" / f"{name}.json"


def promoted_tag(name: str = "recommender", home: Path | str | None = None) -> str | None:
    """The tag serving should load, or None if nothing was promoted yet."""
    path = _promotion_file(name, home)
    if not path.exists():
        return None
    return json.loads(path.read_text())["tag"]


def vocabulary_scorer(recommender: Recommender, items: list[str]) -> Scorer:
    """Score histories given in ``items``' indices with a model of another vocabulary.

    Histories are mapped through the string ids; items the model does not know get -inf,
    so two models with different vocabularies are compared on exactly the same cases.
    """
    to_model = np.array([0] + [recommender.index.get(item, 0) for item in items], dtype=np.int64)
    known = torch.from_numpy(to_model > 0)
    gather = torch.from_numpy(to_model)

    def score(histories):
        mapped = [to_model[h][to_model[h] > 0] for h in histories]
        model_scores = score_histories(recommender.model, mapped)
        scores = model_scores[:, gather]
        scores[:, ~known] = float("-inf")
        return scores

    return score


def _write_promotion(name: str, home: Path | str | None, tag: str, decision: dict) -> None:
    path = _promotion_file(name, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    history = json.loads(path.read_text()).get("history", []) if path.exists() else []
    record = {
        "tag": tag,
        "baseline": decision["baseline"],
        "history": [*history, decision],
        **{k: decision[k] for k in ("scores", "split", "at")},
    }
    # Write then rename, so a reader never sees half a file.
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        json.dump(record, tmp, indent=2)
    os.replace(tmp.name, path)


def promoted_baseline(name: str = "recommender", home: Path | str | None = None) -> str | None:
    """The baseline's name when the promoted artifact is a baseline served in place of a model."""
    path = _promotion_file(name, home)
    return json.loads(path.read_text()).get("baseline") if path.exists() else None


def baseline_artifact(baseline: ItemToItem, data: SequenceData, max_len: int, metrics: dict) -> Artifact:
    """A fitted baseline as a servable artifact, flagged as a baseline in ``extra``."""
    return Artifact(
        model=baseline.to_module(max_len=max_len),
        items=list(data.items),
        metrics=metrics,
        extra={"baseline": baseline.name, "split": split_fingerprint(data)},
    )


def promote_if_better(
    candidate_tag: str,
    data: SequenceData,
    metric: str = "ndcg@10",
    name: str = "recommender",
    home: Path | str | None = None,
) -> dict:
    """Promote ``candidate_tag`` only if, on the validation split of ``data``, it beats the
    best baseline and the promoted trained model. When neither trained model beats the best
    baseline, that baseline is saved to the store and promoted in their place (flagged as a
    baseline), so serving answers with it rather than with popularity.

    The baselines are refitted on ``data``'s training part; EASE's l2 is tuned on the same
    validation cases, which favours the baseline: the gate errs on the side of not promoting.
    Returns the decision with the figures.
    """
    split = leave_one_out(data)
    candidate = load_from_store(candidate_tag, home=home)
    cases, n = split.valid, data.num_items
    baselines = fit_baselines(split.train, n, split.valid, split.train_positive)
    report = evaluate_with_baselines(
        vocabulary_scorer(Recommender(candidate.model, candidate.items), data.items),
        split.train,
        cases,
        n,
        k=int(metric.split("@")[1]) if "@" in metric else 10,
        sampled=0,
        baselines=baselines,
    )
    best_baseline = report["best_baseline"]
    scores = {"candidate": report[metric], **{k: v[metric] for k, v in report["baselines"].items()}}
    current = promoted_tag(name, home)
    # A promoted baseline is no rival: the one refitted on this data supersedes it.
    if current is not None and current != candidate.tag and promoted_baseline(name, home) is None:
        incumbent = load_from_store(current, home=home)
        rec = Recommender(incumbent.model, incumbent.items)
        scores["promoted"] = evaluate_scorer(vocabulary_scorer(rec, data.items), cases, n, sampled=0)[metric]
    bar = scores[best_baseline]
    promote = scores["candidate"] > bar and scores["candidate"] > scores.get("promoted", float("-inf"))
    rivals = {k: v for k, v in scores.items() if k != "candidate"}
    best_rival = max(rivals, key=rivals.get)
    decision = {
        "candidate": candidate.tag,
        "previous": current,
        "metric": metric,
        "on": "validation",
        "scores": scores,
        "best_baseline": best_baseline,
        "promoted": promote,
        "baseline": None,
        "served": candidate.tag if promote else current,
        "reason": (
            f"{metric} {scores['candidate']:.4f} beats {best_rival} ({rivals[best_rival]:.4f})"
            if promote
            else f"{metric} {scores['candidate']:.4f} does not beat {best_rival} ({rivals[best_rival]:.4f})"
        ),
        "split": split_fingerprint(data),
        "at": datetime.now(UTC).isoformat(),
    }
    if promote:
        _write_promotion(name, home, candidate.tag, decision)
    elif scores.get("promoted", float("-inf")) <= bar:
        # No trained model beats the best baseline: serve that baseline, flagged as one.
        baseline = baseline_artifact(
            baselines[best_baseline],
            data,
            candidate.model.config.max_len,
            {"on": "validation", **report["baselines"][best_baseline]},
        )
        tag = save_to_store(baseline, name=name, labels={"baseline": best_baseline}, home=home)
        decision.update(served=tag, baseline=best_baseline)
        decision["reason"] += f"; no trained model beats {best_baseline}, which is served ({tag})"
        _write_promotion(name, home, tag, decision)
    return decision


# --- plot ----------------------------------------------------------------------------------------


def metrics_plot_png(metrics: dict, k: int = 10) -> bytes:
    """Bar chart of HR@k, NDCG@k and MRR for the model and each baseline, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"hr@{k}", f"ndcg@{k}", "mrr"]
    rows = {"model": metrics, **metrics.get("baselines", {})}
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    width = 0.8 / len(rows)
    for i, (label, values) in enumerate(rows.items()):
        ax.bar(np.arange(len(names)) + i * width, [values.get(m, 0.0) for m in names], width, label=label)
    ax.set_xticks(np.arange(len(names)) + width * (len(rows) - 1) / 2, names)
    ax.set_ylabel("score")
    ax.set_title("Recommender, leave-one-out test, full ranking")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
