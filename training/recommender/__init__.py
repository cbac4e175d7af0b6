"""The attention recommender: a SASRec-family model, its training, evaluation and artifact."""
