"""Values the result tables store that computing code names too (storage/results.py owns the tables)."""

from __future__ import annotations

# Where the train and tune flows (and `merflow train/tune --out`, `merflow results --results`) put results by
# default; here, a leaf, so that `merflow results` reads it without importing the flows' parameters.
RESULTS = "results"
SELECTED = "selected"  # the trial name of a search's per-fold, validation-chosen result
# The trials table's columns in the order stored (storage/results.py TRIALS_SCHEMA, which tests/test_results.py
# checks against this): training/search/tables.py builds its rows with them, an empty table included.
TRIAL_COLUMNS = ("run", "protocol", "trial", "fold", "tune_trial_id", "status", "failures", "error", "shots",
                 "searched", "config", "validation_accuracy", "alpha", "epochs", "seconds")

# The ``method`` of result rows written before the tables had the column (Meta-MMFNet was the only model):
# storage/results.py fills it in, and the summaries read such a run as one that chose on validation subjects.
DEFAULT_METHOD = "meta-mmfnet"
