"""The attention recommender: a SASRec-family model, its training, evaluation and artifact.

Entry points for other parts of shopml:

- ``data.build_dataset(source, item_text=None)``: sequences from a SASRec-style file or a
  DuckDB connection to the warehouse (``events`` + ``catalog``); ``data.make_split`` splits
  them by protocol (leave-one-out or a global time split).
- ``settings``: ``TrainSettings``, the presets in ``PROFILES``, ``model_config``.
- ``training.train(data, profile, features, settings) -> TrainResult``: split, fit with
  Lightning, evaluate (model + baselines); ``result.artifact`` holds model and metrics.
- ``artifact.save_to_store`` / ``artifact.load_from_store``: the BentoML model store.
- ``baselines``: most-popular, co-occurrence and EASE, as scorers and as a servable module;
  ``evaluation.evaluate_with_baselines`` is the one place a model is compared with them,
  ``evaluation.metrics_plot_png(metrics)`` draws that comparison.
- ``promotion.promote_if_better(tag, data)``, ``promotion.promoted_tag()``: promotion on
  validation against the best baseline; when no trained model beats it, that baseline is
  promoted (``promotion.promoted_baseline()`` names it) and served.
- ``inference.Recommender``: string ids in, top-k with exclusions out (serving).
"""
