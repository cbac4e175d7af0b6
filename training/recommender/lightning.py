"""The LightningModule (optimiser, loss call, validation metrics) and the data module.

The data module shards batches itself (the trainer runs with ``use_distributed_sampler=False``)
so that every DDP rank gets the same number of length-bucketed batches.
"""

from __future__ import annotations

import time

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping
from torch.utils.data import DataLoader, Dataset, Sampler

from training.recommender.data import EvalSet, Split, left_pad, training_windows
from training.recommender.evaluation import ranking_metrics, target_ranks
from training.recommender.losses import LossName, compute_loss
from training.recommender.model import SASRec


class _Windows(Dataset):
    def __init__(self, inputs: np.ndarray, targets: np.ndarray) -> None:
        self.inputs = torch.from_numpy(inputs)
        self.targets = torch.from_numpy(targets)
        self.lengths = (self.inputs > 0).sum(1).numpy()

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> int:
        return i


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of windows of similar length, in random order, split evenly across ranks.

    Similar lengths let each batch be cut to its longest window: ML-1M sequences are
    half padding at max_len 200, and padding costs as much as items.
    """

    def __init__(
        self, lengths: np.ndarray, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[np.ndarray]:
        """This epoch's batches (window indices), in the order they will be served."""
        rng = np.random.default_rng(self.seed + self.epoch)
        # Jitter the lengths so batches differ between epochs.
        order = np.argsort(self.lengths + rng.uniform(0, 8, len(self.lengths)), kind="stable")
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        rng.shuffle(batches)
        usable = (
            len(batches) - len(batches) % self.world_size if len(batches) >= self.world_size else len(batches)
        )
        return batches[:usable][self.rank :: self.world_size]

    def __iter__(self):
        batches = self.batches()
        self.epoch += 1
        return iter([b.tolist() for b in batches])

    def __len__(self) -> int:
        n = -(-len(self.lengths) // self.batch_size)
        return n // self.world_size if n >= self.world_size else n


class _Cases(Dataset):
    def __init__(self, cases: EvalSet, rank: int, world_size: int) -> None:
        self.index = np.arange(len(cases.targets))[rank::world_size]
        self.cases = cases

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> int:
        return int(self.index[i])


class SequenceDataModule(pl.LightningDataModule):
    """Training windows and validation/test cases of a split."""

    def __init__(
        self, split: Split, max_len: int, batch_size: int = 128, window_stride: int = 0, seed: int = 0
    ) -> None:
        super().__init__()
        self.split = split
        self.max_len = max_len
        self.batch_size = batch_size
        self.window_stride = window_stride
        self.seed = seed
        self.windows = _Windows(*training_windows(split.train, max_len, window_stride, split.train_positive))

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _collate_windows(self, idx: list[int]) -> dict[str, torch.Tensor]:
        idx_t = torch.as_tensor(idx)
        length = max(int(self.windows.lengths[idx].max()), 1)
        return {
            "seq": self.windows.inputs[idx_t, -length:],
            "targets": self.windows.targets[idx_t, -length:],
        }

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        sampler = BucketBatchSampler(self.windows.lengths, self.batch_size, self.seed, rank, world)
        if self.trainer is not None:
            sampler.set_epoch(self.trainer.current_epoch)
        return DataLoader(self.windows, batch_sampler=sampler, collate_fn=self._collate_windows)

    def _case_loader(self, cases: EvalSet) -> DataLoader:
        rank, world = self._rank()

        def collate(idx: list[int]) -> dict[str, torch.Tensor]:
            histories = [cases.histories[i] for i in idx]
            seen = [cases.filtered[i] for i in idx]
            return {
                "case": torch.as_tensor(idx),
                "seq": torch.from_numpy(left_pad(histories, self.max_len)),
                # Every seen item (maybe more than max_len of them), for the seen-item filter.
                "seen": torch.from_numpy(left_pad(seen, max(len(h) for h in seen))),
                "target": torch.from_numpy(cases.targets[idx]),
            }

        return DataLoader(_Cases(cases, rank, world), batch_size=512, collate_fn=collate)

    def val_dataloader(self) -> DataLoader:
        return self._case_loader(self.split.valid)

    def test_dataloader(self) -> DataLoader:
        return self._case_loader(self.split.test)


class SASRecModule(pl.LightningModule):
    """Owns the optimiser, the loss call and the metric logging; the model stays plain."""

    def __init__(
        self,
        model: SASRec,
        loss: LossName = "ce",
        num_negatives: int = 1024,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_schedule: str = "constant",
        k: int = 10,
        num_threads: int | None = None,
        proposal: torch.Tensor | None = None,
        gbce_t: float = 0.75,
    ) -> None:
        """``proposal`` (N+1,): the sampled softmax's negative distribution (None: uniform);
        ``gbce_t``: gBCE's calibration."""
        super().__init__()
        self.num_threads = num_threads
        self.model = model
        self.loss_name = loss
        self.num_negatives = num_negatives
        self.lr = lr
        self.weight_decay = weight_decay
        if lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown lr_schedule {lr_schedule!r}; expected constant or cosine")
        self.lr_schedule = lr_schedule
        self.k = k
        self.proposal = proposal
        self.gbce_t = gbce_t
        self._excluded: torch.Tensor | None = None
        self.schedule: CosineWithWarmup | None = None  # set by configure_optimizers (cosine only)
        self._ranks: list[torch.Tensor] = []
        self._cases: list[torch.Tensor] = []
        self.save_hyperparameters(ignore=["model", "proposal"])

    def on_fit_start(self) -> None:
        # Items with no training interactions (new, cold) are kept out of the softmax: as
        # never-positive negatives they would learn to score low from their text alone.
        # None when every item has interactions, so the usual step skips the masking pass.
        has_id = self.model.item_has_id
        self._excluded = None if bool(has_id.all()) else ~has_id
        if self.proposal is not None:
            self.proposal = self.proposal.to(self.device)

    def setup(self, stage: str) -> None:
        # Spawned DDP workers start with torch's default thread count; set it in each.
        if self.num_threads and self.device.type == "cpu":
            torch.set_num_threads(self.num_threads)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        hidden = self.model(batch["seq"])
        loss = compute_loss(
            self.loss_name,
            hidden,
            self.model.item_vectors(),
            batch["targets"],
            self.num_negatives,
            excluded=self._excluded,
            proposal=self.proposal,
            gbce_t=self.gbce_t,
        )
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["seq"].shape[0])
        if self.schedule is not None:  # the rate the scheduler set for this step
            self.log("train/lr", self.lr * self.schedule(self.global_step), batch_size=batch["seq"].shape[0])
        return loss

    def _rank_step(self, batch: dict[str, torch.Tensor]) -> None:
        scores = self.model.full_sort_scores(batch["seq"]).float()
        scores.scatter_(1, batch["seen"], float("-inf"))  # seen items; column 0 is padding anyway
        self._ranks.append(target_ranks(scores, batch["target"]))
        self._cases.append(batch["case"])

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._rank_step(batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._rank_step(batch)

    def _log_ranks(self, stage: str) -> None:
        ranks = (
            torch.cat(self._ranks) if self._ranks else torch.zeros(0, dtype=torch.long, device=self.device)
        )
        cases = (
            torch.cat(self._cases) if self._cases else torch.zeros(0, dtype=torch.long, device=self.device)
        )
        self._ranks, self._cases = [], []
        if self.trainer.world_size > 1:
            # Ranks hold shards of different sizes: pad to the longest, gather, drop padding.
            size = torch.tensor([len(ranks)], device=self.device)
            longest = int(self.all_gather(size).max())
            pad = longest - len(ranks)
            ranks = torch.cat([ranks, ranks.new_full((pad,), -1)])
            cases = torch.cat([cases, cases.new_full((pad,), -1)])
            ranks, cases = self.all_gather(ranks).reshape(-1), self.all_gather(cases).reshape(-1)
            keep = cases >= 0
            ranks = ranks[keep]
        if len(ranks) == 0:
            return
        for name, value in ranking_metrics(ranks, self.k).items():
            self.log(f"{stage}/{name}", value, prog_bar=name == f"ndcg@{self.k}", rank_zero_only=False)

    def on_validation_epoch_end(self) -> None:
        self._log_ranks("val")

    def on_test_epoch_end(self) -> None:
        self._log_ranks("test")

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.lr, weight_decay=self.weight_decay, betas=(0.9, 0.98)
        )
        if self.lr_schedule == "constant":
            return optimizer
        total = self.trainer.estimated_stepping_batches
        if not np.isfinite(total):
            raise ValueError("lr_schedule='cosine' needs a finite max_epochs to decay over")
        self.schedule = CosineWithWarmup(int(total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class CosineWithWarmup:
    """Multiplier of the base rate at each step: linear warm-up, then cosine down to zero at
    ``total_steps``. ``total_steps`` may change during training (``TimeBudget`` fits it to the
    cap at the pace measured), so the rate still reaches its end inside the cap."""

    def __init__(self, total_steps: int, warmup_fraction: float = 0.02) -> None:
        self.warmup_fraction = warmup_fraction
        self.resize(total_steps)

    def resize(self, total_steps: int) -> None:
        """End the decay at ``total_steps`` instead (the warm-up keeps its share)."""
        self.total_steps = total_steps
        self.warmup = max(1, int(total_steps * self.warmup_fraction))

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total_steps - self.warmup))
        return 0.5 * (1.0 + float(np.cos(np.pi * progress)))


class ScheduleAwareEarlyStopping(EarlyStopping):
    """Early stopping that waits out the first half of a cosine schedule.

    While the rate is high, validation NDCG wanders and a patience window can end training
    before the decay it was planned for: a Sports run stopped at epoch 34 of 56 with its best
    at 24 (model alone 0.0279 test NDCG@10), where the same setting run to the end of its
    schedule peaked at epoch 55 of 64 (0.0301). Past the half, and with a constant rate
    throughout, it is Lightning's early stopping unchanged.
    """

    def _run_early_stopping_check(self, trainer: pl.Trainer) -> None:
        cosine = trainer.lightning_module.lr_schedule == "cosine"
        if cosine and trainer.max_epochs and trainer.current_epoch + 1 < trainer.max_epochs / 2:
            return
        super()._run_early_stopping_check(trainer)


class TimeBudget(Callback):
    """Stops training so that training plus validation end within ``minutes`` of wall-clock
    time and ``cpu_minutes`` of this process's CPU time (all threads); None = no cap.

    Before each training batch may run on, the time a validation round takes is kept in
    reserve: the first one is estimated from one timed validation batch before training, later
    ones are the longest measured so far, with a margin. ``reason`` says which cap stopped it.
    """

    MARGIN = 1.25  # reserve this many times the validation round's measured time
    PACE_SHARE = 0.97  # of the cap that the refitted schedule plans for
    PACE_EPOCHS = 3  # the pace is the median duration of this many latest epochs
    # A schedule planned from the cap grows only in the first half of its epochs: later the
    # cosine is well under way and a longer one would raise the rate again.
    GROW_SHARE = 0.5

    def __init__(
        self, minutes: float | None, cpu_minutes: float | None = None, grow_to: int | None = None
    ) -> None:
        """``grow_to``: when ``max_epochs`` was planned from the cap (not given), the schedule
        may also grow, up to this many epochs, when the measured pace fits more."""
        self.limits = {"max_minutes": minutes, "max_cpu_minutes": cpu_minutes}
        self.grow_to = grow_to
        self.reason: str | None = None
        self.refitted: int | None = None  # the epochs the schedule was last fitted to
        self._start = {"max_minutes": 0.0, "max_cpu_minutes": 0.0}
        self._val_start = dict(self._start)
        self.val_seconds = {"max_minutes": 0.0, "max_cpu_minutes": 0.0}
        self._batch = dict(self.val_seconds)  # the longest training batch so far
        self._last = dict(self.val_seconds)
        self._epoch_ends: list[dict[str, float]] = []

    @staticmethod
    def _now() -> dict[str, float]:
        return {"max_minutes": time.perf_counter(), "max_cpu_minutes": time.process_time()}

    def begin(self) -> None:
        """Start the clocks (just before ``trainer.fit``, so that set-up counts too)."""
        self._start = self._now()
        self._last = dict(self._start)

    def on_train_start(self, trainer, pl_module) -> None:
        if all(v is None for v in self.limits.values()):
            return
        if not any(self._start.values()):
            self.begin()
        self.val_seconds = self._estimate_validation(trainer, pl_module)
        self._last = self._now()

    def _estimate_validation(self, trainer, pl_module) -> dict[str, float]:
        """One validation batch, timed, times the number of batches (0 without validation)."""
        loaders = trainer.datamodule.val_dataloader() if trainer.datamodule is not None else None
        if loaders is None or not trainer.enable_validation:
            return {k: 0.0 for k in self.limits}
        batches = len(loaders)
        batch = next(iter(loaders), None)
        if batch is None:
            return {k: 0.0 for k in self.limits}
        before = self._now()
        with torch.no_grad():
            was_training = pl_module.training
            pl_module.eval()
            pl_module.model.full_sort_scores(batch["seq"].to(pl_module.device))
            pl_module.train(was_training)
        after = self._now()
        return {k: (after[k] - before[k]) * batches for k in self.limits}

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = self._now()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        now = self._now()
        for k in self.limits:
            self.val_seconds[k] = max(self.val_seconds[k], now[k] - self._val_start[k])
        self._last = now

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Fit the schedule to the pace measured: when the cap holds fewer epochs than
        planned, ``max_epochs`` and a cosine rate's end move to the last epoch that fits, so
        the rate decays inside the cap instead of being cut off halfway down; when it holds
        more and the plan came from the cap (``grow_to``), they move out while the schedule
        is in its first half, so the cap is used rather than the planner's margin left idle.
        The pace is that of the latest epochs, so a slow stretch (another process on the
        machine, the first epoch's set-up) does not shorten the schedule for good."""
        done = trainer.current_epoch + 1
        schedule = getattr(pl_module, "schedule", None)
        if schedule is None or trainer.should_stop or all(v is None for v in self.limits.values()):
            return  # a constant rate loses nothing by being cut off: the cap alone decides
        self._epoch_ends.append(self._now())
        fits = min(
            self._epochs_that_fit(k, limit, done) for k, limit in self.limits.items() if limit is not None
        )
        planned = trainer.fit_loop.max_epochs
        if done <= fits < planned:
            trainer.fit_loop.max_epochs = fits
            schedule.resize(min(schedule.total_steps, fits * trainer.num_training_batches))
            self.refitted = fits
        elif self.grow_to is not None and fits > planned and done <= planned * self.GROW_SHARE:
            grown = min(fits, self.grow_to)
            trainer.fit_loop.max_epochs = grown
            schedule.resize(grown * trainer.num_training_batches)
            self.refitted = grown

    def _epochs_that_fit(self, clock: str, minutes: float, done: int) -> int:
        """The epochs done, plus the time left of the cap over the latest epochs' pace."""
        ends = [end[clock] for end in self._epoch_ends]
        durations = np.diff([self._start[clock], *ends])[-self.PACE_EPOCHS :]
        pace = max(float(np.median(durations)), 1e-9)
        left = minutes * 60 * self.PACE_SHARE - (ends[-1] - self._start[clock])
        return done + int(max(0.0, left) / pace)

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.should_stop or all(v is None for v in self.limits.values()):
            return
        now = self._now()
        for k, limit in self.limits.items():
            self._batch[k] = max(self._batch[k], now[k] - self._last[k])
            if limit is None:
                continue
            # Room for one more batch and then a validation round, or stop now.
            needed = self._batch[k] + self.MARGIN * self.val_seconds[k]
            if now[k] - self._start[k] + needed > limit * 60:
                trainer.should_stop = True
                self.reason = self.reason or k
        self._last = now
