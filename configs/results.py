"""Values the result tables store that computing code names too (storage/results.py owns the tables)."""

from __future__ import annotations

SELECTED = "selected"  # the trial name of a search's per-fold, validation-chosen result
