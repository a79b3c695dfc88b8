"""Hyperparameter searches with Ray Tune: one trial per (configuration, fold), early stopping per fold.

**A trial is one configuration on one fold.** Choosing a configuration is a setting like an epoch
or α, so it must be chosen per fold on that fold's validation subjects (training/selection.py): a
trial that averaged over folds would report a score in which every subject's labels take part,
and comparing those would let a test subject choose its own settings. One (configuration, fold)
per trial also gives the cluster many small independent units to spread over CPUs and fractions
of GPUs, and a failed trial costs one fold, not a whole protocol.

- ``space``: grids read from text, configuration ids, each trial's TrainConfig (the grid, ``SearchSpace``,
  and the whole search, ``SearchConfig``, are configs/search.py's); no Ray.
- ``reports``: what a trial reports to Tune (its metric, its time attribute, completion, a data error);
  the trainable itself (``fold_trial``) is flows/trial.py's: it reads, trains and writes.
- ``scheduler``: ASHA with one set of rungs per fold (``foldwise_asha``).
- ``tables``: the search's result rows (trials, metrics, the per-fold selection, the runs row) as
  DataFrames, computed from what the trials returned and wrote; storage/results.py writes them.

The engine (Ray's start and stop, the Tuner, resuming) is flows/search.py's. Importing this package
sets Ray's offline defaults, which Ray reads when it starts (``ray.init``).
"""

import os

# Ray's defaults that break or clutter an offline machine (its authentication mode, usage statistics), read
# when Ray starts; a user's own settings win.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
