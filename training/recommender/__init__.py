"""The attention recommender: a SASRec-family model, its training, evaluation and artifact.

Entry points for other parts of shopml:

- ``pipeline.build_dataset(source, item_text=None)``: sequences from a SASRec-style file
  or a DuckDB connection to the warehouse (``events`` + ``catalog``).
- ``pipeline.train(data, profile, features, settings) -> TrainResult``: split, fit with
  Lightning, evaluate (model + baselines); ``result.artifact`` holds model and metrics.
- ``artifact.save_to_store`` / ``artifact.load_from_store``: the BentoML model store.
- ``pipeline.promote_if_better(tag, data)``, ``pipeline.promoted_tag()``: promotion.
- ``pipeline.metrics_plot_png(metrics)``: the metrics and baselines as a PNG.
- ``inference.Recommender``: string ids in, top-k with exclusions out (serving).
"""
