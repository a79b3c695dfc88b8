"""Emotion vocabularies and the class sets of every protocol, for the code that computes (adapters, sample
lists, folds). They live in configs/labels.py, the leaf that storage/catalog.py reads too: the catalog's
``label_<class set>`` columns are derived from each row's dataset and emotion when it is read, so a class set
is its mapping there, not a stored column. This module keeps the names it always had.
"""

from __future__ import annotations

from merflow.configs.catalog import LABEL_COLUMNS
from merflow.configs.labels import (
    BUILT_IN_CLASS_SETS,
    CLASS_SETS,
    EMOTION_ALIASES,
    KNOWN_EMOTIONS,
    MEGC2019_COLUMN,
    MEGC2019_EXCLUDED,
    NEGATIVE_EMOTIONS,
    SMIC_DATASETS,
    ClassSet,
    label_columns,
    megc2019_label,
    normalise_emotion,
    protocol_labels,
    register_class_set,
)

__all__ = ["BUILT_IN_CLASS_SETS", "CLASS_SETS", "EMOTION_ALIASES", "KNOWN_EMOTIONS", "LABEL_COLUMNS", "MEGC2019_COLUMN",
           "MEGC2019_EXCLUDED", "NEGATIVE_EMOTIONS", "SMIC_DATASETS", "ClassSet", "label_columns", "megc2019_label",
           "normalise_emotion", "protocol_labels", "register_class_set"]
