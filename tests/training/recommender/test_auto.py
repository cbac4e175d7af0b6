"""The auto profile: the rule picks length, shape, loss and epochs from the data and the cap."""

from __future__ import annotations

import numpy as np

from tests.training.recommender.conftest import rule_sequences
from training.recommender import auto
from training.recommender.data import SequenceData, build_dataset, leave_one_out
from training.recommender.settings import settings_for
from training.recommender.training import train as train_recommender


def data_with_lengths(lengths: list[int], num_items: int = 40) -> SequenceData:
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, num_items + 1, n).astype(np.int64) for n in lengths]
    return SequenceData(
        items=[f"i{i}" for i in range(num_items)],
        users=[f"u{u}" for u in range(len(lengths))],
        sequences=sequences,
    )


def test_short_histories_get_the_sparse_setting_and_long_ones_the_long_setting():
    short = auto.choose_shape(leave_one_out(data_with_lengths([6, 8, 9, 12, 30] * 20)))
    assert short.model == {"max_len": 50, **auto.SPARSE["model"]}
    assert short.model["dropout"] == 0.5 and short.train["batch_size"] == 128
    assert "sparse" in short.why["shape"] and short.why["median_history"] == 7.0
    # A 90th percentile of 148 training items needs max_len 200; the median is long.
    long = auto.choose_shape(leave_one_out(data_with_lengths([60, 90, 120, 150] * 10)))
    assert long.model == {"max_len": 200, **auto.DENSE["model"]}
    assert long.train["window_stride"] == 100
    middle = auto.choose_shape(leave_one_out(data_with_lengths([40, 60, 70, 80] * 10)))
    assert middle.model["max_len"] == 100


def test_the_full_softmax_when_enough_epochs_fit_else_the_sampled_one():
    data = data_with_lengths([18] * 600, num_items=20_000)
    split = leave_one_out(data)
    roomy = auto.choose(data, split, minutes=None, threads=1)
    assert roomy.train["loss"] == "ce" and roomy.train["max_epochs"] == auto.MAX_EPOCHS
    assert list(roomy.why["seconds_per_epoch"]) == ["ce"]  # the sampled loss not even timed
    # A budget far below MIN_EPOCHS full-softmax epochs over a large catalogue: the sampled
    # softmax (1,024 negatives instead of 20,000 items), as many epochs as fit.
    tight = auto.choose(data, split, minutes=1e-4, threads=1)
    assert tight.train["loss"] == "sampled_softmax" and tight.train["max_epochs"] == 1
    seconds = tight.why["seconds_per_epoch"]
    assert seconds["sampled_softmax"] * auto.SAMPLED_SAVING <= seconds["ce"]
    assert "would fit" in tight.why["loss"]


def test_a_small_catalogue_keeps_the_full_softmax_even_when_short_of_time():
    data = data_with_lengths([10] * 300, num_items=40)
    choice = auto.choose(data, leave_one_out(data), minutes=1e-4, threads=1)
    assert choice.train["loss"] == "ce" and "would not" in choice.why["loss"]


def test_the_schedule_is_as_long_as_the_cap_holds():
    data = data_with_lengths([10] * 300, num_items=40)
    choice = auto.choose(data, leave_one_out(data), minutes=0.05, threads=1)
    per_epoch = choice.why["seconds_per_epoch"]["ce"] + choice.why["seconds_per_validation"]
    expected = min(auto.MAX_EPOCHS, 3 * auto.BUDGET_SHARE / per_epoch)  # 3 s of budget
    assert abs(choice.train["max_epochs"] - expected) <= 0.1 * expected + 1  # the figures are rounded
    assert (
        choice.train["lr_schedule"] == "cosine"
        and "fit 92% of the 0.05-minute cap" in choice.why["max_epochs"]
    )


def test_given_values_are_kept_and_said_so():
    data = data_with_lengths([10] * 100)
    choice = auto.choose(
        data,
        leave_one_out(data),
        minutes=1e-4,
        threads=1,
        given_model={"hidden": 32},
        given_train={"loss": "ce", "max_epochs": 7},
    )
    assert choice.model["hidden"] == 32 and choice.train["loss"] == "ce" and choice.train["max_epochs"] == 7
    assert choice.why["loss"] == choice.why["max_epochs"] == "given"


def test_auto_profile_trains_within_its_cap_and_reports_its_choice(tmp_path):
    from tests.training.recommender.conftest import write_sasrec

    data = build_dataset(write_sasrec(tmp_path / "rule.txt", rule_sequences(num_users=150)))
    settings = settings_for(
        "auto", max_minutes=0.3, num_threads=1, output_dir=tmp_path / "out", progress_bar=False
    )
    result = train_recommender(data, "auto", settings=settings)
    chosen = result.artifact.metrics["auto"]
    assert chosen["median_history"] < auto.SHORT_MEDIAN and "fit" in chosen["max_epochs"]
    config = result.artifact.model.config
    assert (config.max_len, config.hidden, config.dropout) == (50, 64, 0.5)
    assert result.train_seconds < 0.3 * 60 + 5
    assert result.artifact.extra["train_settings"]["max_epochs"] >= 1


def test_the_probe_times_the_model_training_will_run_side_features_included():
    from training.recommender.settings import Features

    data = data_with_lengths([6, 8, 9, 12] * 10)
    data.side.category = np.zeros((data.num_items + 1, 3), dtype=np.int64)
    data.side.category[1:, 0] = 1 + np.arange(data.num_items) % 4
    data.side.category_names = ["a", "b", "c", "d"]
    split = leave_one_out(data)
    shape = auto.choose_shape(split).model
    plain = auto.probe_model(data, split, shape)
    probed = auto.probe_model(data, split, shape, Features(category=True))
    assert not hasattr(plain, "cat_emb")
    assert probed.config.category_slots == 3 and probed.item_category[1, 0] == 1
