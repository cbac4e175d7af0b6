"""Lightning training end to end on tiny rule data: learning, artifact, promotion, CLI, DDP."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from training.recommender import cli
from training.recommender.artifact import load_from_store, save_to_store
from training.recommender.evaluation import metrics_plot_png, vocabulary_scorer
from training.recommender.model import RecommenderConfig
from training.recommender.promotion import (
    previous_tag,
    promote_if_better,
    promoted_baseline,
    promoted_tag,
    tag_for,
)
from training.recommender.settings import TrainSettings, model_config
from training.recommender.training import build_model
from training.recommender.training import fit as fit_recommender
from training.recommender.training import train as train_recommender

TINY = {"max_len": 16, "hidden": 32, "num_blocks": 2, "num_heads": 2, "dropout": 0.1}


def tiny_settings(tmp_path, **kw) -> TrainSettings:
    values = dict(
        max_epochs=15,
        max_minutes=None,
        patience=20,
        batch_size=32,
        lr=5e-3,
        accelerator="cpu",
        devices=1,
        output_dir=tmp_path / "run",
        progress_bar=False,
        # Tiny ops: a second thread only waits for the first, badly so on a busy machine.
        num_threads=1,
    )
    values.update(kw)
    return replace(TrainSettings(), **values)


def _train(rule_data, tmp_path, **kw):
    return train_recommender(rule_data, "quick", settings=tiny_settings(tmp_path, **kw), model_overrides=TINY)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run shared by the tests that only read its result."""
    from training.recommender.data import read_sasrec_file

    folder = tmp_path_factory.mktemp("trained")
    path = folder / "rule.txt"
    with open(path, "w") as f:
        for u, seq in enumerate(_rule_sequences()):
            f.write("".join(f"u{u} {item}\n" for item in seq))
    data = read_sasrec_file(path)
    return data, path, _train(data, folder)


def _rule_sequences():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("rec_conftest", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.rule_sequences()


def test_training_learns_the_rule_and_beats_the_baselines(trained):
    _, _, result = trained
    m = result.artifact.metrics
    assert m["ndcg@10"] > 0.5, m
    assert m["ndcg@10"] > m["baselines"]["most_popular"]["ndcg@10"] + 0.2
    assert m["ndcg@10"] > m["baselines"]["cooccurrence"]["ndcg@10"], m
    assert set(m["sampled100"]) == {"hr@10", "ndcg@10"}
    assert 0 < m["coverage"] <= 1
    assert result.epochs >= 1 and result.checkpoint and result.best_epoch
    # CSV logs with the validation metric that early stopping watches.
    metrics_csv = Path(result.log_dir).rglob("metrics.csv")
    text = next(metrics_csv).read_text()
    assert "val/ndcg@10" in text and "train/loss" in text
    png = metrics_plot_png(m)
    assert png.startswith(b"\x89PNG") and len(png) > 1000


def test_promotion_only_when_better(trained, tmp_path):
    rule_data, _, good = trained
    home = tmp_path / "store"
    good_tag = save_to_store(good.artifact, home=home)
    first = promote_if_better(good_tag, rule_data, home=home)
    assert first["promoted"] and promoted_tag(home=home) == good_tag
    assert previous_tag(home=home) is None  # nothing was served before it
    with pytest.raises(ValueError, match="no previous recommender"):
        tag_for("previous", home=home)
    # An untrained model of the same shape loses to the baselines and to the promoted one.
    untrained = build_model(rule_data, good.split, good.artifact.model.config)
    bad = replace(good.artifact, model=untrained.eval(), tag=None)
    bad_tag = save_to_store(bad, home=home)
    second = promote_if_better(bad_tag, rule_data, home=home)
    assert not second["promoted"] and "does not beat" in second["reason"]
    assert second["scores"]["promoted"] == pytest.approx(first["scores"]["candidate"])
    # The promoted model still beats the baselines: it stays, no baseline is served.
    assert second["baseline"] is None and second["served"] == good_tag
    assert promoted_tag(home=home) == good_tag
    assert first["on"] == "validation" and {"most_popular", "cooccurrence", "ease"} <= set(first["scores"])
    assert first["scores"]["candidate"] > first["scores"][first["best_baseline"]]


def test_in_challenger_mode_a_passing_model_does_not_replace_a_trained_champion(trained, tmp_path):
    from training.model_store import write_promotion
    from training.recommender.promotion import promote_tag

    rule_data, _, good = trained
    home = tmp_path / "store"
    # A weak trained model is promoted (as if an earlier, worse run had been).
    untrained = build_model(rule_data, good.split, good.artifact.model.config)
    weak_tag = save_to_store(replace(good.artifact, model=untrained.eval(), tag=None), home=home)
    write_promotion("recommender", {"tag": weak_tag, "baseline": None, "history": []}, home)
    good_tag = save_to_store(good.artifact, home=home)
    decision = promote_if_better(good_tag, rule_data, home=home, challenger=True)
    assert decision["challenger"] and not decision["promoted"]
    assert decision["previous"] == decision["served"] == weak_tag == promoted_tag(home=home)
    assert "becomes the challenger" in decision["reason"]
    # The experiment's verdict promotes it; the one it replaces becomes "previous".
    promote_tag(good_tag, "experiment x: the guard passed", home=home)
    assert promoted_tag(home=home) == good_tag and previous_tag(home=home) == weak_tag
    # With nothing trained promoted there is no champion to try it against: promoted at once.
    fresh = tmp_path / "fresh"
    first_tag = save_to_store(good.artifact, home=fresh)
    first = promote_if_better(first_tag, rule_data, home=fresh, challenger=True)
    assert first["promoted"] and not first["challenger"] and promoted_tag(home=fresh) == first_tag


def test_the_best_baseline_is_served_when_no_trained_model_beats_it(trained, tmp_path):
    from training.recommender.baselines import BaselineModel, fit_baselines
    from training.recommender.data import leave_one_out
    from training.recommender.inference import Recommender

    rule_data, _, good = trained
    home = tmp_path / "store"
    untrained = build_model(rule_data, good.split, good.artifact.model.config)
    bad_tag = save_to_store(replace(good.artifact, model=untrained.eval(), tag=None), home=home)
    decision = promote_if_better(bad_tag, rule_data, home=home)
    best = decision["best_baseline"]
    assert not decision["promoted"] and decision["baseline"] == best
    assert decision["scores"][best] == max(
        decision["scores"][b] for b in ("most_popular", "cooccurrence", "ease")
    )
    served = promoted_tag(home=home)
    assert served == decision["served"] != bad_tag and promoted_baseline(home=home) == best
    # The stored baseline is the one evaluated: same scores as the scorer refitted here.
    loaded = load_from_store(served, home=home)
    assert isinstance(loaded.model, BaselineModel) and loaded.extra["baseline"] == best
    split = leave_one_out(rule_data)
    scorer = fit_baselines(split.train, rule_data.num_items, split.valid)[best]
    history = [rule_data.items[i - 1] for i in split.valid.histories[0]]
    top = Recommender(loaded.model, loaded.items).recommend([history], k=3)[0]
    expected = scorer([split.valid.histories[0]])[0]
    for item, score in top:
        assert score == pytest.approx(expected[rule_data.items.index(item) + 1].item(), abs=1e-5)
    # A trained model that beats it replaces the baseline.
    good_tag = save_to_store(good.artifact, home=home)
    again = promote_if_better(good_tag, rule_data, home=home)
    assert again["promoted"] and "promoted" not in again["scores"]
    assert promoted_tag(home=home) == good_tag and promoted_baseline(home=home) is None
    # The aliases a traffic split names: the one promoted now, the one served before it.
    assert tag_for("promoted", home=home) == good_tag and tag_for("previous", home=home) == served
    assert tag_for("recommender:given", home=home) == "recommender:given"


def test_vocabulary_scorer_maps_between_vocabularies(trained):
    from training.recommender.data import leave_one_out
    from training.recommender.evaluation import evaluate_scorer, model_scorer
    from training.recommender.inference import Recommender

    rule_data, _, result = trained
    model, items = result.artifact.model, result.artifact.items
    split = leave_one_out(rule_data)
    direct = evaluate_scorer(model_scorer(model), split.test, rule_data.num_items, sampled=0)
    # The same model behind a shuffled vocabulary gives the same figures.
    order = list(reversed(range(len(items))))
    shuffled = [items[i] for i in order]
    perm = torch.tensor([0] + [i + 1 for i in order])
    clone = build_model(rule_data, split, model.config)
    state = model.state_dict()
    for key in ("item_emb.weight", "item_has_id"):
        state[key] = state[key][perm]
    # The priors' tables: rows by the new order, the neighbours they name renumbered too.
    new_index = torch.argsort(perm)
    for key in ("prior_items", "ease_prior_items"):
        if key in state:
            state[key] = new_index[state[key][perm]]
    for key in ("prior_counts", "ease_prior_values"):
        if key in state:
            state[key] = state[key][perm]
    clone.load_state_dict(state)
    mapped = evaluate_scorer(
        vocabulary_scorer(Recommender(clone.eval(), shuffled), rule_data.items),
        split.test,
        rule_data.num_items,
        sampled=0,
    )
    assert mapped["ndcg@10"] == pytest.approx(direct["ndcg@10"], abs=1e-6)


def test_cli_train_then_evaluate(rule_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    monkeypatch.setenv("SHOPML_DATA_DIR", str(tmp_path / "data"))
    parser = argparse.ArgumentParser()
    cli.add_train_arguments(parser)
    args = parser.parse_args(["--data", str(rule_file), "--max-epochs", "2", "--promote", "--threads", "1"])
    assert cli.train(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["tag"].startswith("recommender:") and "baselines" in out
    parser = argparse.ArgumentParser()
    cli.add_evaluate_arguments(parser)
    evaluate_args = parser.parse_args(["--data", str(rule_file), "--model", out["tag"]])
    assert cli.evaluate(evaluate_args) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["tag"] == out["tag"]
    assert evaluated["ndcg@10"] == pytest.approx(out["ndcg@10"], abs=1e-6)
    loaded = load_from_store(out["tag"], home=tmp_path / "bentoml")
    assert loaded.model.config == RecommenderConfig.from_dict(loaded.model.config.to_dict())


@pytest.mark.slow
def test_ddp_two_cpu_processes_with_gloo(rule_data, tmp_path):
    settings = tiny_settings(tmp_path, max_epochs=3, strategy="ddp_spawn", devices=2, num_threads=1)
    result = train_recommender(rule_data, "quick", settings=settings, model_overrides=TINY)
    m = result.artifact.metrics
    # Both ranks trained on half the batches each; the weights came back to this process.
    assert m["ndcg@10"] > m["baselines"]["most_popular"]["ndcg@10"], m
    assert result.checkpoint


@pytest.mark.slow
def test_text_encoder_offline_puts_similar_titles_close():
    from training.recommender.text import encode_texts

    v = encode_texts(["red running shoes", "crimson sneakers for jogging", "chocolate layer cake"])
    assert v.shape == (3, 384)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_cpu_budget_stops_training(rule_data, tmp_path):
    from training.recommender.data import leave_one_out

    split = leave_one_out(rule_data)
    config = model_config(rule_data, "quick", **TINY)
    result = fit_recommender(
        rule_data, split, config, tiny_settings(tmp_path, max_epochs=50, max_cpu_minutes=1e-6)
    )
    assert result.epochs <= 1 and result.train_cpu_seconds > 0
    assert result.stop_reason == "max_cpu_minutes"


def test_the_wall_clock_cap_holds_for_training_plus_validation(rule_data, tmp_path):
    from training.recommender.data import leave_one_out

    split = leave_one_out(rule_data)
    config = model_config(rule_data, "quick", **TINY)
    cap_minutes = 0.15
    settings = tiny_settings(tmp_path, max_epochs=10_000, patience=10_000, max_minutes=cap_minutes)
    result = fit_recommender(rule_data, split, config, settings)
    assert result.stop_reason == "max_minutes" and result.epochs >= 1
    assert result.train_seconds < cap_minutes * 60
    # Every epoch that ended was validated; the best of them is the checkpoint kept.
    assert result.best_epoch is not None and result.checkpoint


def test_a_cosine_schedule_is_shortened_to_end_inside_the_cap(rule_data, tmp_path):
    from training.recommender.data import leave_one_out

    split = leave_one_out(rule_data)
    config = model_config(rule_data, "quick", **TINY)
    cap_minutes = 0.15
    settings = tiny_settings(
        tmp_path, max_epochs=10_000, patience=10_000, max_minutes=cap_minutes, lr_schedule="cosine"
    )
    result = fit_recommender(rule_data, split, config, settings)
    # Planned for 10,000 epochs, the schedule ended with the epochs the cap held at the pace
    # measured (or, if the pace slowed, the cap cut in first); the rate decayed on the way.
    assert result.stop_reason in ("max_epochs_fitted_to_cap", "max_minutes"), result.stop_reason
    assert 1 <= result.epochs < 10_000 and result.train_seconds < cap_minutes * 60
    lrs = _logged_lrs(result)
    assert lrs and lrs[-1] < max(lrs)
    if result.stop_reason == "max_epochs_fitted_to_cap":
        assert lrs[-1] < 0.1 * max(lrs), lrs[-5:]


def test_a_schedule_planned_from_the_cap_grows_to_the_pace_measured(rule_data, tmp_path):
    from training.recommender.data import leave_one_out

    split = leave_one_out(rule_data)
    config = model_config(rule_data, "quick", **TINY)
    cap_minutes = 0.15
    common = dict(max_epochs=2, patience=10_000, max_minutes=cap_minutes, lr_schedule="cosine")
    grown = fit_recommender(rule_data, split, config, tiny_settings(tmp_path, **common, epochs_from_cap=True))
    # Two epochs planned; the tiny model's epochs take a fraction of a second, so the first
    # epochs' pace fits many more into the cap, and the rate still decays to its end.
    assert grown.epochs > 2 and grown.train_seconds < cap_minutes * 60
    assert grown.stop_reason in ("max_epochs_fitted_to_cap", "max_minutes"), grown.stop_reason
    lrs = _logged_lrs(grown)
    if grown.stop_reason == "max_epochs_fitted_to_cap":
        assert lrs[-1] < 0.1 * max(lrs), lrs[-5:]
    # Given epochs (not planned from the cap) are kept.
    given = fit_recommender(rule_data, split, config, tiny_settings(tmp_path / "given", **common))
    assert given.epochs == 2 and given.stop_reason == "max_epochs"


def test_the_pace_is_that_of_the_latest_epochs_not_of_a_slow_start():
    from training.recommender.lightning import TimeBudget

    budget = TimeBudget(minutes=10.0)
    budget._start = {"max_minutes": 0.0, "max_cpu_minutes": 0.0}
    ends = [60.0, 120.0, 130.0, 140.0, 150.0]  # two slow epochs, then three of 10 s
    budget._epoch_ends = [{"max_minutes": t, "max_cpu_minutes": t} for t in ends]
    # 600 s x 0.97 - 150 s left, at 10 s an epoch: 43 more after the 5 done.
    assert budget._epochs_that_fit("max_minutes", 10.0, 5) == 5 + 43
    # Past the cap's share: only the epochs done.
    budget._epoch_ends.append({"max_minutes": 700.0, "max_cpu_minutes": 700.0})
    assert budget._epochs_that_fit("max_minutes", 10.0, 6) == 6


def _logged_lrs(result) -> list[float]:
    import csv
    from pathlib import Path

    rows = csv.DictReader(open(Path(result.log_dir) / "metrics.csv"))
    return [float(r["train/lr"]) for r in rows if r.get("train/lr")]


def test_early_stopping_says_so_and_keeps_the_best_checkpoint(rule_data, tmp_path):
    from training.recommender.data import leave_one_out

    split = leave_one_out(rule_data)
    config = model_config(rule_data, "quick", **TINY)
    # A zero rate never improves on the first validation: patience 1 stops at the second.
    result = fit_recommender(
        rule_data, split, config, tiny_settings(tmp_path, lr=0.0, patience=1, max_epochs=50)
    )
    assert result.stop_reason == "early_stopping" and result.epochs == 2 and result.best_epoch == 1
    full = fit_recommender(rule_data, split, config, tiny_settings(tmp_path / "b", max_epochs=2, patience=5))
    assert full.stop_reason == "max_epochs" and full.epochs == 2


# gBCE learns this rule slowly (its positive term weighs about 1/17 of a position's loss with
# 16 negatives): NDCG@10 0.29 after 15 epochs, 0.37 after 60, where the softmax reaches 0.7.
@pytest.mark.parametrize(
    "loss, sampling, epochs, margin",
    [("gbce", "uniform", 40, 0.05), ("sampled_softmax", "popularity", 15, 0.2)],
)
def test_the_sampled_losses_learn_the_rule(rule_data, tmp_path, loss, sampling, epochs, margin):
    result = _train(
        rule_data, tmp_path, loss=loss, negative_sampling=sampling, num_negatives=16, max_epochs=epochs
    )
    m = result.artifact.metrics
    assert m["ndcg@10"] > m["baselines"]["most_popular"]["ndcg@10"] + margin, m


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from training.recommender.lightning import CosineWithWarmup

    factor = CosineWithWarmup(total_steps=1000, warmup_fraction=0.02)
    assert factor(0) == pytest.approx(1 / 20) and factor(19) == pytest.approx(1.0)
    assert factor(20 + 490) == pytest.approx(0.5, abs=0.01)
    assert factor(999) < 1e-4 and factor(5000) == 0.0
    values = [factor(s) for s in range(20, 1000)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_training_with_the_cosine_schedule_ends_at_a_zero_rate(rule_data, tmp_path):
    import pytorch_lightning as pl

    from training.recommender.data import leave_one_out
    from training.recommender.lightning import SASRecModule, SequenceDataModule

    split = leave_one_out(rule_data)
    config = model_config(rule_data, "quick", **TINY)
    module = SASRecModule(build_model(rule_data, split, config), lr=5e-3, lr_schedule="cosine")
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(module, datamodule=SequenceDataModule(split, config.max_len, batch_size=32))
    assert trainer.global_step > 2
    assert trainer.optimizers[0].param_groups[0]["lr"] < 5e-3 * 0.01
    with pytest.raises(ValueError, match="unknown lr_schedule"):
        SASRecModule(build_model(rule_data, split, config), lr_schedule="step")


def test_bf16_mixed_precision_on_a_cpu_learns_the_rule_and_keeps_fp32_weights(rule_data, tmp_path):
    result = _train(rule_data, tmp_path, precision="bf16-mixed")
    m = result.artifact.metrics
    assert m["ndcg@10"] > 0.5, m
    assert m["ndcg@10"] > m["baselines"]["cooccurrence"]["ndcg@10"], m
    assert result.artifact.extra["train_settings"]["precision"] == "bf16-mixed"
    assert all(p.dtype == torch.float32 for p in result.artifact.model.parameters())
    with pytest.raises(ValueError, match="unknown precision"):
        _train(rule_data, tmp_path, precision="fp8")


def test_the_prior_weight_is_chosen_on_validation_and_reported(trained):
    from training.recommender.training import EASE_PRIOR_WEIGHTS, PRIOR_DIRECTIONS, PRIOR_WEIGHTS

    _, _, result = trained
    prior = result.artifact.metrics["prior"]
    assert prior["weight"] == result.artifact.model.config.prior_weight
    assert prior["weight"] in PRIOR_WEIGHTS and prior["neighbours"] == TrainSettings().prior_neighbours
    by_weight = prior["valid_ndcg@10_by_weight"]
    assert set(by_weight) == {str(w) for w in PRIOR_WEIGHTS}
    assert by_weight[str(prior["weight"])] == max(by_weight.values())
    # Both directions were tried; the kept one is the best on validation.
    tried = prior["valid_ndcg@10_best_by_direction"]
    assert set(tried) == set(PRIOR_DIRECTIONS)
    assert tried[prior["direction"]] == max(tried.values()) == max(by_weight.values())
    # EASE's weights, tried on top of the chosen co-occurrence prior: 0 is the prior alone.
    ease = prior["ease"]
    assert ease["weight"] == result.artifact.model.config.ease_prior_weight
    assert set(ease["valid_ndcg@10_by_weight"]) == {str(w) for w in EASE_PRIOR_WEIGHTS}
    assert ease["valid_ndcg@10_by_weight"]["0.0"] == max(by_weight.values())
    assert ease["valid_ndcg@10_by_weight"][str(ease["weight"])] == max(
        ease["valid_ndcg@10_by_weight"].values()
    )
    assert set(prior["test_without_prior"]) == {"hr@10", "ndcg@10", "mrr"}


def test_early_stopping_waits_out_the_first_half_of_a_cosine_schedule():
    from types import SimpleNamespace

    from training.recommender.lightning import ScheduleAwareEarlyStopping

    def run(schedule: str) -> int | None:
        """Validation NDCG falls from the first epoch on; returns the epoch training stopped at."""
        stopping = ScheduleAwareEarlyStopping(monitor="val/ndcg@10", mode="max", patience=2)
        trainer = SimpleNamespace(
            lightning_module=SimpleNamespace(lr_schedule=schedule),
            max_epochs=10,
            current_epoch=0,
            callback_metrics={},
            fast_dev_run=False,
            should_stop=False,
            strategy=SimpleNamespace(reduce_boolean_decision=lambda decision, all: decision),
        )
        for epoch in range(10):
            trainer.current_epoch = epoch
            trainer.callback_metrics = {"val/ndcg@10": torch.tensor(0.5 - 0.01 * epoch)}
            stopping._run_early_stopping_check(trainer)
            if trainer.should_stop:
                return epoch
        return None

    assert run("constant") == 2  # Lightning's rule: two rounds without a better figure
    # Cosine: the checks start at epoch 4 (the fifth of ten), then two more rounds.
    assert run("cosine") == 6
