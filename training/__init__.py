"""Model, episodes, folds, metrics and the Ray Tune trainable (issue 4 and 5)."""
