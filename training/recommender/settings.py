"""How the recommender trains: the settings, the presets (profiles) and the model's shape
for a data set and its side features."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from training.flags import setting
from training.recommender.data import (
    SequenceData,
)
from training.recommender.losses import LossName, Sampling
from training.recommender.model import RecommenderConfig

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
    prior_neighbours: int = setting(
        64,
        "after training, add the co-occurrence counts of each item's this many most frequent "
        "followers, and its this many largest EASE weights, to the scores, each with a weight "
        "chosen on validation (0 there: left out); 0 = never",
    )
    # Set by the auto rule when it planned max_epochs from the cap: the schedule may then grow
    # to what the measured pace fits, not only shrink (``lightning.TimeBudget``).
    epochs_from_cap: bool = False
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
    "prior_neighbours",
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
        values["category_slots"] = side.category.shape[1] if side.category.ndim == 2 else 1
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


def settings_for(profile: ProfileName, **overrides) -> TrainSettings:
    values = {**PROFILES[profile].train, **{k: v for k, v in overrides.items() if v is not None}}
    return replace(TrainSettings(), **values)
