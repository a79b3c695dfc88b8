"""Result tables: runs, trials, metrics and per-sample predictions, as hive-partitioned Parquet datasets.

``RESULTS/<table>/run=<run id>/protocol=<protocol>/part-<part>.parquet`` for the tables
``runs`` (one row per run: its configuration, the feature store's configuration hash, the git
commit, package versions, timings), ``trials`` (one row per (configuration, fold) of a
hyperparameter search: status, failures, error, the settings chosen on validation), ``metrics``
(one row per trial, fold / dataset / pooled scope, model (micro / macro / fused), α and split) and
``predictions`` (one row per validation or test sample, model and α). Each file is written to a
hidden temporary name and renamed, so a reader never sees half a file: Arrow's dataset discovery
skips names starting with '.', and storage/queries.py reads only ``part-*.parquet`` (DuckDB's glob
would not skip them).

The ``trial`` column: "" for a plain training run, a configuration id (``c`` + a hash of the
searched settings) for a search, and "selected" for a search's honest result: in each fold, the
configuration and α that scored best on that fold's validation subjects.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

RESULTS_SCHEMA_VERSION = 2  # 2: the trials table; shots nullable; predictions.chosen_from
TABLES = ("runs", "trials", "metrics", "predictions")
SELECTED = "selected"  # the trial name of a search's per-fold, validation-chosen result
PARTITIONS = ("run", "protocol")

RUNS_SCHEMA = pa.schema([
    pa.field("run", pa.string(), nullable=False),
    pa.field("protocol", pa.string(), nullable=False),
    pa.field("dataset", pa.string()),
    pa.field("created_at", pa.string(), nullable=False),
    pa.field("config", pa.string(), nullable=False),          # the TrainConfig as JSON
    pa.field("feature_config_hash", pa.string(), nullable=False),
    pa.field("git_commit", pa.string()),
    pa.field("versions", pa.string(), nullable=False),        # JSON: package -> version
    pa.field("timings", pa.string(), nullable=False),         # JSON: stage -> seconds
    pa.field("classes", pa.list_(pa.string()), nullable=False),
])

METRICS_SCHEMA = pa.schema([
    pa.field("run", pa.string(), nullable=False),
    pa.field("protocol", pa.string(), nullable=False),
    pa.field("trial", pa.string(), nullable=False),           # "", a configuration id, or "selected"
    pa.field("shots", pa.int32()),                            # null for "selected" (chosen per fold)
    pa.field("model", pa.string(), nullable=False),           # micro | macro | fused
    pa.field("alpha", pa.float32()),                          # fused rows only
    pa.field("split", pa.string(), nullable=False),           # validation | test
    pa.field("scope", pa.string(), nullable=False),           # fold | pooled | dataset
    pa.field("key", pa.string(), nullable=False),             # fold name, "all", or dataset
    pa.field("chosen", pa.bool_(), nullable=False),           # α chosen on this fold's validation split
    pa.field("n", pa.int64(), nullable=False),
    pa.field("accuracy", pa.float64()),
    pa.field("uf1", pa.float64()),
    pa.field("uar", pa.float64()),
    pa.field("per_class_accuracy", pa.string()),              # JSON: class -> accuracy
    pa.field("confusion", pa.string()),                       # JSON: rows true, columns predicted
])

PREDICTIONS_SCHEMA = pa.schema([
    pa.field("run", pa.string(), nullable=False),
    pa.field("protocol", pa.string(), nullable=False),
    pa.field("trial", pa.string(), nullable=False),
    pa.field("shots", pa.int32()),
    pa.field("fold", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("alpha", pa.float32()),
    pa.field("sample_key", pa.string(), nullable=False),
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("subject_key", pa.string(), nullable=False),
    pa.field("label", pa.string(), nullable=False),
    pa.field("pred", pa.string(), nullable=False),
    pa.field("scores", pa.list_(pa.float32()), nullable=False),
    pa.field("chosen_from", pa.string()),                     # "selected" rows: the configuration chosen
])

TRIALS_SCHEMA = pa.schema([
    pa.field("run", pa.string(), nullable=False),
    pa.field("protocol", pa.string(), nullable=False),
    pa.field("trial", pa.string(), nullable=False),           # configuration id
    pa.field("fold", pa.string(), nullable=False),
    pa.field("tune_trial_id", pa.string()),                   # Ray Tune's id, to find its logs
    pa.field("status", pa.string(), nullable=False),          # completed | stopped (early, by ASHA) | error
    pa.field("failures", pa.int32(), nullable=False),         # failed attempts (each was retried)
    pa.field("error", pa.string()),                           # the last error, where the trial failed
    pa.field("shots", pa.int32(), nullable=False),
    pa.field("searched", pa.string(), nullable=False),        # JSON: the settings this configuration searched
    pa.field("config", pa.string(), nullable=False),          # JSON: the whole TrainConfig
    pa.field("validation_accuracy", pa.float64()),            # fused at the chosen α, the fold's validation split
    pa.field("alpha", pa.float32()),                          # α chosen on the fold's validation split
    pa.field("epochs", pa.string()),                          # JSON: the epoch chosen for each stage
    pa.field("seconds", pa.float64()),
])

SCHEMAS = {"runs": RUNS_SCHEMA, "trials": TRIALS_SCHEMA, "metrics": METRICS_SCHEMA,
           "predictions": PREDICTIONS_SCHEMA}


def _table(rows: pd.DataFrame | list[dict], schema: pa.Schema) -> pa.Table:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=schema.names)
    frame = frame.copy()
    for field in schema:  # optional columns a writer left out are null
        if field.nullable and field.name not in frame.columns:
            frame[field.name] = None
    for column in ("per_class_accuracy", "confusion"):
        if column in frame.columns:
            frame[column] = [v if v is None or isinstance(v, str) else json.dumps(v) for v in frame[column]]
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    return table.replace_schema_metadata({b"merflow.results_schema_version": str(RESULTS_SCHEMA_VERSION).encode()})


def write_part(results: Path, table: str, run: str, protocol: str, part: str, rows) -> Path:
    """Write one part of a table for (run, protocol) atomically; rewriting a part replaces it."""
    directory = Path(results) / table / f"run={run}" / f"protocol={protocol}"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"part-{part}.parquet"
    handle, temp = tempfile.mkstemp(prefix=".part-", suffix=".parquet", dir=directory)
    os.close(handle)
    try:
        # The partition columns live in the path; the file holds the rest.
        pq.write_table(_table(rows, SCHEMAS[table]).drop_columns(list(PARTITIONS)), temp)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def read_table(results: Path, table: str, run: str | None = None) -> pd.DataFrame:
    """A whole table (or one run's rows) with its partition columns; empty with the right columns if none."""
    root = Path(results) / table
    schema = SCHEMAS[table]
    if not root.is_dir():
        return schema.empty_table().to_pandas()
    partitioning = ds.partitioning(pa.schema([schema.field(p) for p in PARTITIONS]), flavor="hive")
    dataset = ds.dataset(root, format="parquet", partitioning=partitioning, schema=schema)
    expression = ds.field("run") == run if run else None
    return dataset.to_table(filter=expression).to_pandas()
