"""The ``auto`` profile: shape, regularisation, length, loss and schedule chosen from the data.

The rule, in order (every choice and its reason lands in the training report):

1. **Length**: ``max_len`` is the smallest of 50, 100 and 200 that holds the 90th percentile
   of the training histories (SASRec used 50 on its Amazon and Steam sets, 200 on ML-1M).
2. **Shape and regularisation** follow how long a typical history is. Short histories
   (median under 20 items: a shop's reviews or orders, the Amazon sets at about 8) get the
   SASRec paper's setting for its sparse sets: hidden 64, two blocks, one head, a 1x
   feed-forward layer and dropout 0.5, batch 128 at rate 1e-3. The paper used 0.5 on the
   sparse sets "due to their sparsity" and 0.2 on ML-1M; the wider model that suits ML-1M
   here overfit a 9-item history within six epochs. Long histories (ML-1M's median is
   96) keep the setting that measured best on ML-1M: hidden 128, two heads, a 4x
   feed-forward layer, dropout 0.2, batch 64 at 2e-3 and older windows every 100 items.
3. **Loss**: full-softmax cross-entropy, the strongest published SASRec loss, unless its
   epochs are so dear that fewer than ``MIN_EPOCHS`` fit the budget and the sampled softmax
   over 1,024 shared negatives (logQ-corrected) makes an epoch at least ``SAMPLED_SAVING``
   times cheaper; when the transformer, not the catalogue, is what costs, the full softmax stays.
   The cost of an epoch is measured, not guessed: a few training steps of each candidate
   are timed on the data's own batches before training.
4. **Schedule**: a cosine rate decaying to zero over as many epochs as the budget holds
   (validation rounds included), at most ``MAX_EPOCHS``; early stopping and the best
   checkpoint still apply. Without a budget, ``MAX_EPOCHS``. The plan is an estimate from a
   few probed batches: training refits it to the pace of its first epochs, growing or
   shrinking the schedule (``lightning.TimeBudget``).

Explicit flags win over every choice; the report says which values were chosen and which given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from training.recommender.data import SequenceData, Split

MIN_EPOCHS = 30  # below this a cosine schedule has not converged on the sets measured
MAX_EPOCHS = 200  # the published runs' ceiling
SHORT_MEDIAN = 20  # median history length under which the sparse setting applies
SAMPLED_SAVING = 2.0  # the sampled softmax must make an epoch this many times cheaper
PROBE_BATCHES = 12  # timed training steps per candidate loss
BUDGET_SHARE = 0.92  # of the cap planned for; the rest absorbs the estimate's error

SPARSE = {
    "model": {"hidden": 64, "num_blocks": 2, "num_heads": 1, "ffn_mult": 1, "dropout": 0.5},
    "train": {"batch_size": 128, "lr": 1e-3, "window_stride": 0},
}
DENSE = {
    "model": {"hidden": 128, "num_blocks": 2, "num_heads": 2, "ffn_mult": 4, "dropout": 0.2},
    "train": {"batch_size": 64, "lr": 2e-3, "window_stride": 100},
}


@dataclass
class Choice:
    model: dict  # RecommenderConfig values
    train: dict  # TrainSettings values
    why: dict = field(default_factory=dict)  # the data's figures and the reason of each choice


def history_figures(split: Split) -> dict:
    lengths = np.array([len(s) for s in split.train]) if split.train else np.zeros(1)
    return {
        "users": len(split.train),
        "median_history": float(np.median(lengths)),
        "p90_history": float(np.percentile(lengths, 90)),
        "interactions": int(lengths.sum()),
    }


def choose_shape(split: Split) -> Choice:
    """Steps 1 and 2: the model's length, shape and regularisation, and the batch and rate."""
    figures = history_figures(split)
    max_len = next((n for n in (50, 100, 200) if n >= figures["p90_history"]), 200)
    sparse = figures["median_history"] < SHORT_MEDIAN
    preset = SPARSE if sparse else DENSE
    why = {
        **figures,
        "max_len": f"smallest of 50/100/200 holding the 90th percentile history ({figures['p90_history']:.0f})",
        "shape": (
            f"median history {figures['median_history']:.0f} < {SHORT_MEDIAN}: the sparse setting"
            if sparse
            else f"median history {figures['median_history']:.0f} >= {SHORT_MEDIAN}: the long-history setting"
        ),
    }
    return Choice({"max_len": max_len, **preset["model"]}, dict(preset["train"]), why)


def probe_model(data: SequenceData, split: Split, model_values: dict, features=None):
    """The model training will run, side features included (they cost on every step)."""
    from training.recommender.settings import model_config
    from training.recommender.training import build_model

    return build_model(data, split, model_config(data, "auto", features, **model_values))


def seconds_per_epoch(model, split: Split, train_values: dict, loss: str, threads: int) -> float:
    """An epoch's training time, from ``PROBE_BATCHES`` timed steps on the data's own batches.

    Batches are cut to their longest window, so their cost varies with length, and a shop's
    lengths are skewed: a few long batches cost as much as many short ones, and a random few
    batches miss them (that under-estimated a Sports epoch by half). The probe times batches
    spread over the range of padded sizes and sums a line fitted to them over every batch.
    """
    from training.recommender.lightning import SequenceDataModule
    from training.recommender.losses import compute_loss

    torch.set_num_threads(threads)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_values["lr"])
    module = SequenceDataModule(
        split, model.config.max_len, train_values["batch_size"], train_values.get("window_stride", 0)
    )
    batches = module.train_dataloader().batch_sampler.batches()
    if not batches:
        return 0.0
    lengths = module.windows.lengths
    sizes = np.array([len(b) * max(int(lengths[b].max()), 1) for b in batches], dtype=np.float64)
    order = np.argsort(sizes)
    picks = order[np.linspace(0, len(order) - 1, min(PROBE_BATCHES, len(order))).astype(int)]
    timed_sizes, elapsed = [], []
    for step, pick in enumerate([picks[-1], *picks]):  # the first step pays for allocations
        batch = module._collate_windows(batches[pick].tolist())
        start = time.perf_counter()
        loss_value = compute_loss(
            loss,
            model(batch["seq"]),
            model.item_vectors(),
            batch["targets"],
            train_values.get("num_negatives", 1024),
        )
        optimizer.zero_grad()
        loss_value.backward()
        optimizer.step()
        if step:
            elapsed.append(time.perf_counter() - start)
            timed_sizes.append(sizes[pick])
    if len(set(timed_sizes)) < 2:
        return float(np.mean(elapsed)) * len(batches)
    slope, intercept = np.polyfit(timed_sizes, elapsed, 1)
    return float(max(slope * sizes.sum() + intercept * len(batches), np.min(elapsed) * len(batches)))


def seconds_per_validation(model, split: Split) -> float:
    """One validation round: full-catalogue scores for every validation case, timed on 512."""
    from training.recommender.data import left_pad

    cases = split.valid.histories
    if not len(cases):
        return 0.0
    model.eval()
    sample = cases[:512]
    start = time.perf_counter()
    with torch.no_grad():
        model.full_sort_scores(torch.from_numpy(left_pad(list(sample), model.config.max_len)))
    return (time.perf_counter() - start) * len(cases) / len(sample)


def choose(
    data: SequenceData,
    split: Split,
    minutes: float | None,
    threads: int,
    given_model: dict | None = None,
    given_train: dict | None = None,
    features=None,
) -> Choice:
    """The whole rule; ``given_*`` are the caller's explicit values, kept as they are;
    ``features`` (``settings.Features``) are the side features training will use."""
    given_model, given_train = given_model or {}, given_train or {}
    choice = choose_shape(split)
    model = {**choice.model, **given_model}
    train = {**choice.train, **given_train}
    why = choice.why
    budget = minutes * 60 * BUDGET_SHARE if minutes else None
    # One probe model for every timing: building it embeds the side features (item texts).
    probe = probe_model(data, split, model, features)
    validation = seconds_per_validation(probe, split) / max(train.get("val_every", 1), 1)

    def fits(loss: str) -> float:
        return budget / (epoch[loss] + validation) if budget else float(MAX_EPOCHS)

    # The full softmax first; the sampled one only when too few full-softmax epochs fit.
    epoch: dict[str, float] = {}
    for loss in [given_train["loss"]] if "loss" in given_train else ["ce", "sampled_softmax"]:
        epoch[loss] = seconds_per_epoch(probe, split, train, loss, threads)
        if fits(loss) >= MIN_EPOCHS:
            break
    loss = list(epoch)[-1]
    if "loss" in given_train:
        why["loss"] = "given"
    elif loss == "ce":
        why["loss"] = f"full softmax: {fits('ce'):.0f} epochs fit the budget (>= {MIN_EPOCHS})"
    elif epoch["sampled_softmax"] * SAMPLED_SAVING > epoch["ce"]:
        # The loss is not what makes an epoch dear (the transformer is): keep the better one.
        loss = "ce"
        why["loss"] = (
            f"full softmax: only {fits('ce'):.0f} epochs fit, but the sampled softmax would not "
            f"make an epoch {SAMPLED_SAVING:g}x cheaper"
        )
    else:
        why["loss"] = f"sampled softmax: only {fits('ce'):.0f} full-softmax epochs would fit (< {MIN_EPOCHS})"
    train["loss"] = loss
    if "max_epochs" in given_train:
        why["max_epochs"] = "given"
    else:
        train["max_epochs"] = int(min(MAX_EPOCHS, max(1, fits(loss))))
        train["epochs_from_cap"] = budget is not None
        why["max_epochs"] = (
            f"{epoch[loss]:.1f} s per epoch and {validation:.1f} s per validation round measured: "
            f"{train['max_epochs']} epochs fit {BUDGET_SHARE:.0%} of the {minutes:g}-minute cap "
            "(refitted to the pace of the first epochs)"
            if budget
            else f"no cap: {MAX_EPOCHS}"
        )
    why["seconds_per_epoch"] = {name: round(s, 2) for name, s in epoch.items()}
    why["seconds_per_validation"] = round(validation, 2)
    train.setdefault("lr_schedule", "cosine")
    return Choice(model, train, why)
