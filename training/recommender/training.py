"""Training a recommender: the model built for the data, the Lightning fit that keeps the
best validation weights, the test evaluation against the baselines."""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import get_args

import numpy as np
import torch

from training.recommender.artifact import (
    Artifact,
    checkpoint_state,
)
from training.recommender.baselines import ItemToItem, fit_baselines
from training.recommender.data import (
    EvalSet,
    Protocol,
    SequenceData,
    Split,
    make_split,
    split_fingerprint,
)
from training.recommender.evaluation import (
    PriorTables,
    best_weight,
    evaluate_scorer,
    evaluate_with_baselines,
    model_scorer,
    prior_ndcg,
)
from training.recommender.losses import Sampling
from training.recommender.model import RecommenderConfig, SASRec
from training.recommender.settings import (
    PROFILES,
    Features,
    Precision,
    ProfileName,
    TrainSettings,
    model_config,
)


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
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger

    from training.recommender.lightning import (
        SASRecModule,
        ScheduleAwareEarlyStopping,
        SequenceDataModule,
        TimeBudget,
    )

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
    early_stopping = ScheduleAwareEarlyStopping(monitor="val/ndcg@10", mode="max", patience=settings.patience)
    from training.recommender.auto import MAX_EPOCHS

    budget = TimeBudget(
        settings.max_minutes,
        settings.max_cpu_minutes,
        grow_to=MAX_EPOCHS if settings.epochs_from_cap else None,
    )
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
        # The schedule was fitted to the cap at the pace measured (shortened, or grown when
        # the plan came from the cap), and it ended inside it.
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


# Weights of the co-occurrence prior tried on validation, in units of one co-occurrence count
# per unit of the model's logit. On Toys (S3Rec file, one quick run) validation NDCG@10 was
# flat from 2 to 8; 0 keeps the model alone where the prior does not help.
PRIOR_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0)
# How the prior is built, chosen on validation with its weight: "followers" counts what came
# after an item, "both" what came before or after it; the first is the co-occurrence
# baseline's own and wins ties. The newest items read and their decay stay the baseline's:
# on Sports (S3Rec file, one run) the best of seven (recent, decay) pairs differed from the
# baseline's by 0.0001 validation NDCG@10, within the noise of 35k cases, and scoring them
# took 490 s after the capped training.
PRIOR_DIRECTIONS = ("followers", "both")
# Weights of the second, linear prior (EASE's largest weights of each item, scaled to a mean
# of 1), tried on validation on top of the co-occurrence prior chosen first. On Sports (S3Rec
# file, one trained model) validation NDCG@10 rose from 0.0439 to 0.0452 and HR@10 from
# 0.0714 to 0.0743 with it; 0 keeps it out where it does not help.
EASE_PRIOR_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def attach_prior(
    model: SASRec,
    split: Split,
    neighbours: int,
    baselines: dict[str, ItemToItem],
    weights=PRIOR_WEIGHTS,
    ease_weights=EASE_PRIOR_WEIGHTS,
) -> dict:
    """Add the co-occurrence baseline's counts (its window, recency and decay) to the trained
    model's scores, in the direction and with the weight that score best on the validation
    cases; then EASE's largest weights of each item, with the weight that scores best on top.

    Sparse shop data is where they differ most: a transformer over 8-item histories smooths
    away which item followed which, and co-occurrence keeps exactly that; EASE reads the whole
    history without order. ``baselines`` are ``fit_baselines`` on ``split``, the ones the report
    compares against. The choices, the validation NDCG@10 of their weights and the best of each
    direction are returned for the report.
    """
    start = time.perf_counter()
    co = baselines["cooccurrence"]
    variants = {
        d: PriorTables(*co.neighbours(neighbours, both_directions=d == "both"), co.recent, co.decay)
        for d in PRIOR_DIRECTIONS
    }
    ndcg = prior_ndcg(model, split.valid, variants, weights)
    best_ndcg = {d: max(by_weight.values()) for d, by_weight in ndcg.items()}
    direction = max(PRIOR_DIRECTIONS, key=lambda d: best_ndcg[d])  # the first of equals
    t, weight = variants[direction], best_weight(ndcg[direction])
    model.set_prior(t.items, t.counts, weight, t.recent, t.decay)
    report = {
        "weight": weight,
        "direction": direction,
        "neighbours": neighbours,
        "recent": t.recent,
        "decay": t.decay,
        "valid_ndcg@10_by_weight": {str(w): round(v, 5) for w, v in ndcg[direction].items()},
        "valid_ndcg@10_best_by_direction": {d: round(v, 5) for d, v in best_ndcg.items()},
    }
    ease = baselines.get("ease")
    if ease is not None and ease.weights is not None and len(ease_weights):
        tables = PriorTables(*ease.neighbours(neighbours), model.config.max_len, 1.0)
        by_weight = prior_ndcg(model, split.valid, {"ease": tables}, ease_weights, chosen=[(t, weight)])[
            "ease"
        ]
        model.set_ease_prior(tables.items, tables.counts, best_weight(by_weight))
        report["ease"] = {
            "weight": model.config.ease_prior_weight,
            "valid_ndcg@10_by_weight": {str(w): round(v, 5) for w, v in by_weight.items()},
        }
    report["seconds"] = round(time.perf_counter() - start, 1)  # after the capped training
    return report


# --- evaluation ----------------------------------------------------------------------------------


def evaluate(
    model: SASRec,
    split: Split,
    num_items: int,
    k: int = 10,
    sampled: int = 100,
    on: str = "test",
    baselines: dict[str, ItemToItem] | None = None,
) -> dict:
    """Model and baselines on the same cases: full ranking, seen filtered, plus sampled-100.
    ``baselines`` already fitted on ``split`` are used as they are."""
    cases = split.test if on == "test" else split.valid
    result = evaluate_with_baselines(
        model,
        split.train,
        cases,
        num_items,
        k=k,
        sampled=sampled,
        baselines=baselines,
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
            features=features,
        )
        settings = replace(settings, **choice.train)
        model_overrides, chosen = choice.model, choice.why
    config = model_config(data, profile, features, **(model_overrides or {}))
    result = fit(data, split, config, settings)
    model = result.artifact.model
    prior = None
    baselines = fit_baselines(split.train, data.num_items, split.valid, split.train_positive)
    if settings.prior_neighbours > 0 and len(split.valid.targets):
        prior = attach_prior(model, split, settings.prior_neighbours, baselines)
    metrics = evaluate(model, split, data.num_items, baselines=baselines)
    if prior is not None:
        # The model alone, on the same test cases: what the priors added.
        config = model.config
        weights = config.prior_weight, config.ease_prior_weight
        config.prior_weight = config.ease_prior_weight = 0.0
        alone = evaluate_scorer(model_scorer(model), split.test, data.num_items, sampled=0)
        config.prior_weight, config.ease_prior_weight = weights
        metrics["prior"] = prior | {"test_without_prior": {k: alone[k] for k in ("hr@10", "ndcg@10", "mrr")}}
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
