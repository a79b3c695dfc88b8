"""Result tables: runs, trials, metrics and per-sample predictions, as hive-partitioned Parquet datasets.

``RESULTS/<table>/run=<run id>/protocol=<protocol>/part-<part>.parquet`` for the tables
``runs`` (one row per run: its configuration, the feature store's configuration hash, the git
commit, package versions, timings), ``trials`` (one row per (configuration, fold) of a
hyperparameter search: status, failures, error, the settings chosen on validation), ``metrics``
(one row per trial, fold / dataset / pooled scope, model (micro / macro / fused), α and split) and
``predictions`` (one row per validation or test sample, model and α), and the floor's ``floor_metrics`` and
``floor_predictions`` (the same schemas; a nearest centroid on the run's folds). Each file is written to a
hidden temporary name and renamed, so a reader never sees half a file: Arrow's dataset discovery
(``read_arrow``, which storage/queries.py reads through too) skips names starting with '.'. ``results`` is a location (a local path or an fsspec URL, storage/locations.py):
on an object store a part is one PUT, whole or absent, with no temporary name.

The ``trial`` column: null for a plain training run, a configuration id (``c`` + a hash of the
searched settings) for a search, and "selected" for a search's honest result: in each fold, the
configuration and α that scored best on that fold's validation subjects.

Writers coordinate per run (storage/locks.py): ``writing_run`` is the lock of one run id in one results
folder, held by the command that trains or searches it for its whole length (its checkpoints, Tune's
experiment, its tables) and taken again by ``write_run``, ``write_search`` and ``write_floor``; a
second command on the same run id is refused with one line naming the first. Runs of other ids write
other partitions and never meet. A search's trials write their prediction parts under their driver's lock.

A part that cannot be read (a truncated or foreign file) is named and left out when a whole table is
read (``read_arrow`` reports it to ``skipped``): other runs' queries go on; reading that run's rows alone
refuses with the part named (``UnreadablePart``).

Every part records its schema version in its Parquet key-value metadata (``VERSION_KEY``); ``read_arrow``,
the one reader (``read_table`` and storage/queries.py's tables read through it), checks it per part:
a part of a newer version is refused with one line naming the file, and older parts are upgraded
(``upgraded``). A part without the key (none is known: every writer recorded it) is dated by its columns.
"""

from __future__ import annotations

import hashlib
import json
import os

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from merflow.configs.names import check_name
from merflow.configs.results import DEFAULT_METHOD, SELECTED
from merflow.storage import locations, locks

RESULTS_SCHEMA_VERSION = 4  # 2: the trials table; shots nullable; predictions.chosen_from. 3: method, recipe.
# 4: a plain run's trial is null (was ""): the trial column of metrics and predictions is nullable.
VERSION_KEY = b"merflow.results_schema_version"  # every part's Parquet key-value metadata, since version 1
# Which model made a row (training/models/: meta-mmfnet, survey-cnn) and its recipe (null where the model has
# none). Version-2 parts have neither column: they were all Meta-MMFNet's, and read so (read_table, queries).
METHOD_COLUMNS = ("method", "recipe")
# The floor (training/models/nearest_centroid.py): a nearest centroid on the same folds as every train and
# tune run, in tables of their own with the metrics' and predictions' schemas (model "floor", method
# nearest-centroid), so that no query of the model tables changes. Results written before it have none:
# reading them gives empty tables (schema version 3 then: no table's schema changed).
FLOOR_TABLES = ("floor_metrics", "floor_predictions")
TRAINING_TABLES = ("runs", "trials", "metrics", "predictions", *FLOOR_TABLES)
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
    pa.field("method", pa.string()),                          # the model (training/models/); v2: meta-mmfnet
    pa.field("recipe", pa.string()),                          # the model's recipe, null where it has none
])

METRICS_SCHEMA = pa.schema([
    pa.field("run", pa.string(), nullable=False),
    pa.field("protocol", pa.string(), nullable=False),
    pa.field("trial", pa.string()),                           # null (a plain run), a configuration id, "selected"
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
    pa.field("method", pa.string()),
    pa.field("recipe", pa.string()),
])

PREDICTIONS_SCHEMA = pa.schema([
    pa.field("run", pa.string(), nullable=False),
    pa.field("protocol", pa.string(), nullable=False),
    pa.field("trial", pa.string()),                           # as in metrics
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
    pa.field("method", pa.string()),
    pa.field("recipe", pa.string()),
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

# Spotting in long videos (flows/spotting.py, training/spotting/): tables of their own, versioned on their own
# (SPOTTING_SCHEMA_VERSION, in the same key of each part's metadata: TABLE_VERSIONS), so that adding them left
# every other table's version as it was. spot_runs: one row per spotting run; spot_intervals: every predicted
# interval (role "predicted": its score, the ground truth it matched, its IoU, the class the recognition
# model gave it) and every annotated one (role "truth": found or missed); spot_metrics: the MEGC metric per
# type and overall, and STRS as the official evaluator computes it and corrected, pooled and per fold.
SPOTTING_SCHEMA_VERSION = 1
SPOT_TABLES = ("spot_runs", "spot_intervals", "spot_metrics")

SPOT_RUNS_SCHEMA = pa.schema([
    pa.field("run", pa.string(), nullable=False),
    pa.field("protocol", pa.string(), nullable=False),           # loso-<dataset>
    pa.field("dataset", pa.string(), nullable=False),            # samm_lv | casme_sq_lv
    pa.field("created_at", pa.string(), nullable=False),
    pa.field("spotter", pa.string(), nullable=False),            # baseline | softnet
    pa.field("recipe", pa.string(), nullable=False),             # merflow | published
    pa.field("chosen_on", pa.string(), nullable=False),          # what chose k, p and the filters, in words
    pa.field("leaky", pa.bool_(), nullable=False),               # a setting saw the test subject (published)
    pa.field("config", pa.string(), nullable=False),             # the SpotConfig as JSON
    pa.field("feature_config", pa.string(), nullable=False),     # the SpotFeatureConfig as JSON
    pa.field("feature_config_hash", pa.string(), nullable=False),
    pa.field("recognition", pa.string()),                        # JSON: classifier, classes, clip features
    pa.field("git_commit", pa.string()),
    pa.field("versions", pa.string(), nullable=False),
    pa.field("timings", pa.string(), nullable=False),
    pa.field("inputs", pa.string()),                             # JSON: catalog and store (`merflow export` reads them)
])

SPOT_INTERVALS_SCHEMA = pa.schema([
    pa.field("run", pa.string(), nullable=False),
    pa.field("protocol", pa.string(), nullable=False),
    pa.field("fold", pa.string(), nullable=False),               # loso-<subject key>: the held-out person
    pa.field("video_key", pa.string(), nullable=False),
    pa.field("subject_key", pa.string(), nullable=False),
    pa.field("role", pa.string(), nullable=False),               # predicted | truth
    pa.field("type", pa.string(), nullable=False),               # micro | macro
    pa.field("start", pa.int32(), nullable=False),               # 0-based frame, inclusive
    pa.field("end", pa.int32(), nullable=False),
    pa.field("score", pa.float64()),                             # predicted: the spotter's score at the interval
    pa.field("interval_key", pa.string()),                       # truth: its key; predicted: the truth it matched
    pa.field("iou", pa.float64()),                               # with the best ground truth of its type
    pa.field("tp", pa.bool_(), nullable=False),                  # predicted: a MEGC true positive; truth: found
    pa.field("label", pa.string()),                              # truth: its class (MEAN's three, or others)
    pa.field("predicted", pa.string()),                          # predicted micro intervals: the class given
    pa.field("class_scores", pa.list_(pa.float32())),            # the recognition model's scores (spot_runs' classes)
])

SPOT_METRICS_SCHEMA = pa.schema([
    pa.field("run", pa.string(), nullable=False),
    pa.field("protocol", pa.string(), nullable=False),
    pa.field("evaluator", pa.string(), nullable=False),          # megc | strs-official | strs-corrected
    pa.field("scope", pa.string(), nullable=False),              # pooled | fold
    pa.field("key", pa.string(), nullable=False),                # all, or the fold
    pa.field("type", pa.string(), nullable=False),               # micro | macro | overall
    pa.field("n_truth", pa.int64()),
    pa.field("n_pred", pa.int64()),
    pa.field("tp", pa.int64()),
    pa.field("fp", pa.int64()),
    pa.field("fn", pa.int64()),
    pa.field("precision", pa.float64()),
    pa.field("recall", pa.float64()),
    pa.field("f1", pa.float64()),
    pa.field("analysis_n", pa.int64()),                          # STRS: the true positives classified
    pa.field("analysis_precision", pa.float64()),
    pa.field("analysis_recall", pa.float64()),
    pa.field("analysis_f1", pa.float64()),
    pa.field("analysis_uf1", pa.float64()),
    pa.field("analysis_uar", pa.float64()),                      # strs-official: the mean precision (its quirk)
    pa.field("strs", pa.float64()),
    pa.field("chosen_on", pa.string()),
    pa.field("settings", pa.string()),                           # fold rows: JSON of what the fold chose, per type
])

SCHEMAS = {"runs": RUNS_SCHEMA, "trials": TRIALS_SCHEMA, "metrics": METRICS_SCHEMA,
           "predictions": PREDICTIONS_SCHEMA, "floor_metrics": METRICS_SCHEMA, "floor_predictions": PREDICTIONS_SCHEMA,
           "spot_runs": SPOT_RUNS_SCHEMA, "spot_intervals": SPOT_INTERVALS_SCHEMA, "spot_metrics": SPOT_METRICS_SCHEMA}
TABLES = (*TRAINING_TABLES, *SPOT_TABLES)
# The schema version each table's parts are written with and read up to.
TABLE_VERSIONS = {table: SPOTTING_SCHEMA_VERSION if table in SPOT_TABLES else RESULTS_SCHEMA_VERSION
                  for table in SCHEMAS}


def _table(rows: pd.DataFrame | list[dict], schema: pa.Schema, version: int = RESULTS_SCHEMA_VERSION) -> pa.Table:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=schema.names)
    frame = frame.copy()
    for field in schema:  # optional columns a writer left out are null
        if field.nullable and field.name not in frame.columns:
            frame[field.name] = None
    for column in ("per_class_accuracy", "confusion"):
        if column in frame.columns:
            frame[column] = [v if v is None or isinstance(v, str) else json.dumps(v) for v in frame[column]]
    if "trial" in frame.columns and (frame["trial"] == "").any():  # version 3's sentinel, which None replaced
        raise ValueError('a plain run\'s trial is None since results schema version 4, not ""')
    if "method" in schema.names:  # a writer that names no model writes Meta-MMFNet's rows, as before version 3
        frame["method"] = frame["method"].where(frame["method"].notna(), DEFAULT_METHOD)
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    return table.replace_schema_metadata({VERSION_KEY: str(version).encode()})


def part_location(results: str | os.PathLike, table: str, run: str, protocol: str, part: str) -> str:
    """The Parquet file of one part: ``<results>/<table>/run=<run>/protocol=<protocol>/part-<part>.parquet``.
    Each of run, protocol and part must be a name (configs/names.py): one folder of its own, never a path."""
    if table not in SCHEMAS:
        raise ValueError(f"no result table {table!r}: the tables are {', '.join(TABLES)}")
    return locations.join(results, table, f"run={check_name(run, 'run id')}",
                          f"protocol={check_name(protocol, 'protocol')}", f"part-{check_name(part, 'part name')}.parquet")


def write_part(results: str | os.PathLike, table: str, run: str, protocol: str, part: str, rows) -> str:
    """Write one part of a table for (run, protocol) atomically; rewriting a part replaces it."""
    target = part_location(results, table, run, protocol, part)
    # The partition columns live in the path; the file holds the rest.
    arrow = _table(rows, SCHEMAS[table], TABLE_VERSIONS[table]).drop_columns(list(PARTITIONS))
    with locations.atomic_write(target) as file:
        pq.write_table(arrow, file)
    return target


def writing_run(results: str | os.PathLike, run: str):
    """The lock of one run id in a results folder (a context manager), for a command's whole run: another
    command on the same run id is refused with one line naming this one. Re-entrant in this process."""
    check_name(run, "run id")  # before anything is made for it
    where = locations.normalise(results)
    digest = hashlib.sha256(run.encode()).hexdigest()[:16]  # a plain file name, whatever the run id
    return locks.hold(locks.lock_location(where, f"run-{digest}"), f"run {run!r} in {where}",
                      advice="wait for it to finish, or give this one another --run")


class UnreadablePart(ValueError):
    """A result part that cannot be read (truncated, not Parquet): one line naming the file."""


class ResultsSchemaError(ValueError):
    """A result part this merflow cannot read (a newer schema version): one line naming the file."""


def part_version(schema: pa.Schema, where: str, newest: int = RESULTS_SCHEMA_VERSION) -> int:
    """A part's schema version: its metadata's (``VERSION_KEY``), else dated by its columns (2 without
    ``method``, else 3); a ``ResultsSchemaError`` for a version this merflow does not know (above ``newest``,
    the table's ``TABLE_VERSIONS``)."""
    recorded = (schema.metadata or {}).get(VERSION_KEY)
    if recorded is None:
        return 2 if "method" not in schema.names else 3
    text = recorded.decode(errors="replace")
    if not text.isdigit() or not 1 <= int(text) <= newest:
        raise ResultsSchemaError(f"{where} has results schema version {text}; this merflow reads versions 1 to "
                                 f"{newest}: upgrade merflow to read it")
    return int(text)


def upgraded(arrow: pa.Table, version: int) -> pa.Table:
    """Rows of a part of schema ``version`` as the current version stores them: before 3 (no ``method``)
    they are Meta-MMFNet's; before 4 a plain run's trial "" is null."""
    if version < 3 and "method" in arrow.schema.names:
        index = arrow.schema.get_field_index("method")
        arrow = arrow.set_column(index, arrow.schema.field("method"), pc.fill_null(arrow["method"], DEFAULT_METHOD))
    if version < 4 and "trial" in arrow.schema.names:
        index = arrow.schema.get_field_index("trial")
        plain = pc.equal(arrow["trial"], "")
        arrow = arrow.set_column(index, arrow.schema.field("trial"),
                                 pc.if_else(plain, pa.scalar(None, pa.string()), arrow["trial"]))
    return arrow


def read_arrow(results: str | os.PathLike, table: str, run: str | None = None,
               skipped: list[str] | None = None) -> pa.Table | None:
    """A whole table (or one run's rows) as Arrow in the current schema, partition columns included, each
    part's version checked and older parts upgraded; None if it has no parts.

    A part that cannot be read is left out and one line naming it is appended to ``skipped`` (when reading
    a whole table: other runs' rows stay readable); reading one ``run``'s rows, or with ``skipped`` None, it
    raises ``UnreadablePart``. A part of a newer schema is always refused (``ResultsSchemaError``)."""
    root = locations.join(results, table)
    if not locations.isdir(root):
        return None
    schema = SCHEMAS[table]
    filesystem, path = locations.arrow_filesystem(root)
    partitioning = ds.partitioning(pa.schema([schema.field(p) for p in PARTITIONS]), flavor="hive")
    dataset = ds.dataset(path, filesystem=filesystem, format="parquet", partitioning=partitioning, schema=schema)
    by_version: dict[int, list] = {}

    def unreadable(where: str, error: BaseException) -> None:
        first = str(error).splitlines()[0] if str(error) else ""
        line = f"{where} cannot be read ({type(error).__name__}: {first})"
        if run is not None or skipped is None:
            raise UnreadablePart(f"{line}: restore or delete that part (rerun its run to write it again)") from None
        skipped.append(line)

    def location(fragment) -> str:
        return locations.join(root, fragment.path[len(path):].lstrip("/"))  # the location, URL or path

    def scan(fragments: list) -> pa.Table:
        return ds.FileSystemDataset(fragments, schema, dataset.format, filesystem=dataset.filesystem).to_table()

    def upgrade(arrow: pa.Table, version: int) -> pa.Table:  # the upgrades are of the training tables' older versions
        return arrow if table in SPOT_TABLES else upgraded(arrow, version)

    for fragment in dataset.get_fragments(filter=ds.field("run") == run if run else None):
        try:
            version = part_version(fragment.physical_schema, location(fragment), TABLE_VERSIONS[table])  # footer only
        except ResultsSchemaError:
            raise
        except (pa.ArrowException, OSError, ValueError) as error:  # not Parquet, or cut short
            unreadable(location(fragment), error)
            continue
        by_version.setdefault(version, []).append(fragment)
    parts = []
    for version, fragments in sorted(by_version.items()):
        try:
            parts.append(upgrade(scan(fragments), version))
        except (pa.ArrowException, OSError, ValueError):  # a part whose footer reads but whose data does not
            for fragment in fragments:
                try:
                    parts.append(upgrade(scan([fragment]), version))
                except (pa.ArrowException, OSError, ValueError) as error:
                    unreadable(location(fragment), error)
    return pa.concat_tables(parts) if parts else schema.empty_table()


def read_table(results: str | os.PathLike, table: str, run: str | None = None,
               skipped: list[str] | None = None) -> pd.DataFrame:
    """A whole table (or one run's rows) with its partition columns; empty with the right columns if none
    (``skipped``: as ``read_arrow``)."""
    arrow = read_arrow(results, table, run, skipped)
    return (SCHEMAS[table].empty_table() if arrow is None else arrow).to_pandas()


def as_stored(table: str, rows) -> pd.DataFrame:
    """``rows`` of ``table`` as ``read_table`` reads them once written: the schema's columns and types."""
    return _table(rows, SCHEMAS[table], TABLE_VERSIONS[table]).to_pandas()


def write_search(results: str | os.PathLike, run: str, protocol: str, trials: pd.DataFrame,
                 metrics: dict[str, pd.DataFrame], selected: pd.DataFrame, runs_row: dict) -> dict[str, pd.DataFrame]:
    """A search's tables after its trials (the trials wrote their own predictions): the ``trials`` part,
    each ``metrics`` part (a configuration id, or ``selected``), the ``selected`` predictions where there
    are any, and the ``runs`` row last, holding the run's lock (``writing_run``). Returns the ``trials``,
    ``metrics`` and ``runs`` rows as stored, so that the caller need not read back what it wrote."""
    with writing_run(results, run):
        write_part(results, "trials", run, protocol, "all", trials)
        for part, rows in metrics.items():
            if part == SELECTED:
                write_part(results, "predictions", run, protocol, SELECTED, selected)
            write_part(results, "metrics", run, protocol, part, rows)
        write_part(results, "runs", run, protocol, "all", [runs_row])
    stored_metrics = [as_stored("metrics", rows) for rows in metrics.values()]
    return {"trials": as_stored("trials", trials),
            "metrics": (pd.concat(stored_metrics, ignore_index=True) if stored_metrics
                        else as_stored("metrics", METRICS_SCHEMA.empty_table().to_pandas())),
            "runs": as_stored("runs", [runs_row])}


def write_floor(results: str | os.PathLike, run: str, protocol: str, metrics: pd.DataFrame,
                predictions: pd.DataFrame) -> None:
    """The floor's tables of a run (training/models/nearest_centroid.py ``floor``: method nearest-centroid,
    trial null, no shots, no recipe); nothing is written where it has no rows (every fold skipped)."""
    if predictions.empty:
        return
    common = {"run": run, "protocol": protocol, "trial": None, "shots": None, "method": "nearest-centroid",
              "recipe": None}
    with writing_run(results, run):
        write_part(results, "floor_metrics", run, protocol, "all", metrics.assign(**common))
        write_part(results, "floor_predictions", run, protocol, "all",
                   predictions.drop(columns=["chosen"]).assign(**common))


def write_run(results: str | os.PathLike, run: str, protocol: str, columns: dict, metrics: pd.DataFrame,
              predictions: pd.DataFrame, runs_row: dict, floor_metrics: pd.DataFrame | None = None,
              floor_predictions: pd.DataFrame | None = None) -> None:
    """A training run's tables (training/run.py ``TrainedRun.tables()``): the floor's, the ``metrics`` and
    ``predictions`` parts (``columns``: the model's shots, method and recipe on every row; trial null) and
    the ``runs`` row last, so that a run with a ``runs`` row is complete; holding the run's lock."""
    with writing_run(results, run):
        if floor_predictions is not None:
            write_floor(results, run, protocol, floor_metrics, floor_predictions)
        common = {"run": run, "protocol": protocol, "trial": None} | columns
        write_part(results, "metrics", run, protocol, "all", metrics.assign(**common))
        write_part(results, "predictions", run, protocol, "all", predictions.drop(columns=["chosen"]).assign(**common))
        write_part(results, "runs", run, protocol, "all", [runs_row])


def write_spotting(results: str | os.PathLike, run: str, protocol: str, intervals: pd.DataFrame,
                   metrics: pd.DataFrame, runs_row: dict) -> None:
    """A spotting run's tables (flows/spotting.py): its intervals, its metrics, then its ``spot_runs`` row, so
    that a run with a ``spot_runs`` row is complete; holding the run's lock. Rewriting a run replaces its parts."""
    common = {"run": run, "protocol": protocol}
    with writing_run(results, run):
        write_part(results, "spot_intervals", run, protocol, "all", intervals.assign(**common))
        write_part(results, "spot_metrics", run, protocol, "all", metrics.assign(**common))
        write_part(results, "spot_runs", run, protocol, "all", [runs_row | common])
