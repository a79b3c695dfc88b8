"""storage/results.py: the result tables' writers and their one reader (schema versions, upgrades of older parts).

``write_old_part`` and ``as_version_3`` write parts as an older merflow wrote them (its version in the part's
metadata, its columns, a plain run's trial ""); tests/test_queries.py and tests/test_report.py reuse them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_queries import CLASSES, fold_predictions, run_row

from merflow.configs.results import TRIAL_COLUMNS
from merflow.storage import queries
from merflow.storage import results as result_tables
from merflow.training.run import metric_rows

METRIC_ROW = {"trial": "", "shots": 5, "model": "fused", "alpha": 0.5, "split": "test", "scope": "pooled",
              "key": "all", "chosen": True, "n": 3, "accuracy": 0.5, "uf1": 0.4, "uar": 0.4,
              "per_class_accuracy": "{}", "confusion": "[]"}


def write_old_part(results: Path, table: str, run: str, protocol: str, rows: list[dict], version: int | None,
                   lacking: tuple[str, ...] = ()) -> Path:
    """One part as schema ``version`` wrote it: that version in its metadata (none if None), without the
    columns it ``lack``-ed, the values as given (a plain run's trial "" before version 4)."""
    schema = result_tables.SCHEMAS[table]
    frame = pd.DataFrame(rows).reindex(columns=schema.names).assign(run=run, protocol=protocol)
    for column in ("per_class_accuracy", "confusion"):  # JSON, as every version stored them
        if column in frame.columns:
            frame[column] = [v if v is None or isinstance(v, str) else json.dumps(v) for v in frame[column]]
    arrow = pa.Table.from_pandas(frame, schema=schema, preserve_index=False) if rows else schema.empty_table()
    arrow = arrow.drop_columns([*result_tables.PARTITIONS, *lacking])
    arrow = arrow.replace_schema_metadata(None if version is None else
                                          {result_tables.VERSION_KEY: str(version).encode()})
    target = Path(result_tables.part_location(results, table, run, protocol, "all"))
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(arrow, target)
    return target


def as_version_3(results: Path) -> None:
    """Every part under ``results`` rewritten as schema version 3 wrote it: a plain run's trial "", version 3."""
    for path in Path(results).glob("*/run=*/protocol=*/part-*.parquet"):
        arrow = pq.read_table(path, partitioning=None)
        if "trial" in arrow.schema.names:
            index = arrow.schema.get_field_index("trial")
            arrow = arrow.set_column(index, pa.field("trial", pa.string(), nullable=False),
                                     arrow["trial"].fill_null(""))
        pq.write_table(arrow.replace_schema_metadata({result_tables.VERSION_KEY: b"3"}), path)


def plain_tables(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A plain run's predictions (with ``chosen``) and metrics on two LOSO folds, as training/run.py makes them."""
    rng = np.random.default_rng(seed)
    predictions = pd.concat([fold_predictions(rng, fold, "casme2", {"validation": 0.7, "test": 0.6})
                             for fold in ("sub01", "sub02")], ignore_index=True)
    return predictions, metric_rows(predictions, CLASSES)


def test_the_trials_columns_are_the_stored_schema_in_order():
    """training/search/tables.py builds its rows with configs.results.TRIAL_COLUMNS (it imports no storage/)."""
    assert result_tables.TRIALS_SCHEMA.names == list(TRIAL_COLUMNS)


def test_a_plain_run_stores_trial_null_and_every_part_its_schema_version(tmp_path):
    predictions, metrics = plain_tables()
    columns = {"shots": 5, "method": "meta-mmfnet", "recipe": "merflow"}
    result_tables.write_run(tmp_path, "plain", "loso", columns, metrics, predictions,
                            run_row("plain", "loso", "casme2", {}))
    parts = sorted(tmp_path.glob("*/run=plain/protocol=loso/part-*.parquet"))
    assert [p.parts[-4] for p in parts] == ["metrics", "predictions", "runs"]
    for path in parts:
        assert pq.read_schema(path).metadata[result_tables.VERSION_KEY] == str(result_tables.RESULTS_SCHEMA_VERSION).encode()
        assert result_tables.RESULTS_SCHEMA_VERSION == 4
    for table, rows in (("metrics", metrics), ("predictions", predictions)):
        read = result_tables.read_table(tmp_path, table)
        assert len(read) == len(rows) and read["trial"].isna().all()
        assert queries.query(tmp_path, f"SELECT count(*) AS n FROM {table} WHERE trial IS NULL")["n"].iat[0] == len(rows)
    # Version 3's sentinel is refused on write, not stored.
    with pytest.raises(ValueError, match="trial is None since results schema version 4"):
        result_tables.write_part(tmp_path, "metrics", "stale", "loso", "all", [METRIC_ROW | {"run": "stale",
                                                                                             "protocol": "loso"}])
    assert not (tmp_path / "metrics" / "run=stale").exists()


def test_version_3_parts_read_trial_null_through_both_readers(tmp_path):
    """A plain run written by schema 3 (trial "") beside a search's selected rows written now: the plain run's
    trial is null through read_table / read_arrow and DuckDB alike, nothing else changes."""
    predictions, metrics = plain_tables()
    common = {"run": "old", "protocol": "loso", "trial": "", "shots": 5, "method": "meta-mmfnet", "recipe": "merflow"}
    write_old_part(tmp_path, "metrics", "old", "loso", metrics.assign(**common).to_dict("records"), 3)
    write_old_part(tmp_path, "predictions", "old", "loso",
                   predictions.drop(columns="chosen").assign(**common).to_dict("records"), 3)
    selected = metrics.assign(run="new", protocol="loso", trial="selected", shots=None)
    result_tables.write_part(tmp_path, "metrics", "new", "loso", "selected", selected)

    read = result_tables.read_table(tmp_path, "metrics")
    assert read.groupby("run")["trial"].agg(lambda t: set(t.where(t.notna(), "NULL"))).to_dict() == {
        "old": {"NULL"}, "new": {"selected"}}
    arrow = result_tables.read_arrow(tmp_path, "predictions", run="old")
    assert arrow.num_rows == len(predictions) and arrow["trial"].null_count == arrow.num_rows
    assert arrow.schema.field("trial").type == pa.string()
    counts = queries.query(tmp_path, "SELECT run, count(*) FILTER (WHERE trial IS NULL) AS plain, "
                                     "count(*) FILTER (WHERE trial = '') AS sentinel, count(*) AS n "
                                     "FROM metrics GROUP BY run ORDER BY run")
    assert counts.to_dict("list") == {"run": ["new", "old"], "plain": [0, len(metrics)], "sentinel": [0, 0],
                                      "n": [len(metrics), len(metrics)]}
    assert queries.query(tmp_path, "SELECT count(*) AS n FROM predictions WHERE trial IS NULL")["n"].iat[0] == len(predictions)
    # The rest of the old rows is as written.
    old = read[read["run"] == "old"].reset_index(drop=True)
    pd.testing.assert_series_equal(old["uf1"], metrics["uf1"].reset_index(drop=True), check_names=False)


def test_a_part_of_a_newer_version_is_refused_with_one_line_naming_it(tmp_path):
    write_old_part(tmp_path, "metrics", "old", "loso", [METRIC_ROW | {"trial": None}], 3)
    newer = write_old_part(tmp_path, "metrics", "future", "loso", [METRIC_ROW | {"trial": None}], 5)
    for read in (lambda: result_tables.read_table(tmp_path, "metrics"),
                 lambda: queries.query(tmp_path, "SELECT count(*) FROM metrics"),
                 lambda: queries.table(tmp_path, "metrics")):
        with pytest.raises(result_tables.ResultsSchemaError) as refused:
            read()
        message = str(refused.value)
        assert str(newer) in message and "version 5" in message and "versions 1 to 4" in message
        assert "\n" not in message
    # Another run's rows, or a table that does not name it, still read.
    assert len(result_tables.read_table(tmp_path, "metrics", run="old")) == 1
    assert queries.query(tmp_path, "SELECT count(*) AS n FROM runs")["n"].iat[0] == 0
    garbled = write_old_part(tmp_path, "predictions", "odd", "loso", [], None)
    pq.write_table(pq.read_table(garbled).replace_schema_metadata({result_tables.VERSION_KEY: b"x"}), garbled)
    with pytest.raises(result_tables.ResultsSchemaError, match="version x"):
        result_tables.read_table(tmp_path, "predictions")


def test_parts_without_a_recorded_version_are_dated_by_their_columns(tmp_path):
    """No method column: version 2 (Meta-MMFNet's rows); with one: version 3. Either way trial "" is null."""
    write_old_part(tmp_path, "metrics", "two", "loso", [METRIC_ROW], None, lacking=("method", "recipe"))
    write_old_part(tmp_path, "metrics", "three", "loso", [METRIC_ROW | {"method": "survey-cnn"}], None)
    for read in (result_tables.read_table(tmp_path, "metrics"),
                 queries.query(tmp_path, "SELECT * FROM metrics")):
        rows = read.sort_values("run")[["run", "trial", "method", "recipe"]]
        rows = rows.astype(object).where(rows.notna(), None).to_dict("records")  # DuckDB's nulls may be NaN
        assert rows == [{"run": "three", "trial": None, "method": "survey-cnn", "recipe": None},
                        {"run": "two", "trial": None, "method": "meta-mmfnet", "recipe": None}]


def test_a_search_keeps_its_trial_ids_and_selected_rows(tmp_path):
    """Only a plain run's "" became null: configuration ids and "selected" of older parts stay."""
    row = {"run": "s", "protocol": "loso", "trial": "c1a2b3c4", "fold": "sub01", "tune_trial_id": "t0",
           "status": "completed", "failures": 0, "error": None, "shots": 1, "searched": json.dumps({"shots": 1}),
           "config": "{}", "validation_accuracy": 0.5, "alpha": 0.5, "epochs": "{}", "seconds": 1.0}
    write_old_part(tmp_path, "trials", "s", "loso", [row], 3)
    write_old_part(tmp_path, "metrics", "s", "loso", [METRIC_ROW | {"trial": t} for t in ("c1a2b3c4", "selected")], 3)
    assert result_tables.read_table(tmp_path, "trials")["trial"].tolist() == ["c1a2b3c4"]
    assert sorted(queries.query(tmp_path, "SELECT trial FROM metrics")["trial"]) == ["c1a2b3c4", "selected"]


def test_a_newer_part_on_an_object_store_is_named_by_its_url():
    """On an fsspec location (memory:// here; tests/test_s3.py reads from a real S3 server) the refusal names
    the part's URL, as the user wrote the location."""
    import io
    import uuid

    from merflow.storage import locations

    root = f"memory://merflow-results-{uuid.uuid4().hex[:8]}"
    try:
        result_tables.write_part(root, "metrics", "r1", "loso", "all", [METRIC_ROW | {"trial": None, "run": "r1",
                                                                                      "protocol": "loso"}])
        target = result_tables.part_location(root, "metrics", "r2", "loso", "all")
        arrow = pq.read_table(io.BytesIO(locations.read_bytes(result_tables.part_location(root, "metrics", "r1",
                                                                                           "loso", "all"))))
        buffer = io.BytesIO()
        pq.write_table(arrow.replace_schema_metadata({result_tables.VERSION_KEY: b"9"}), buffer)
        with locations.atomic_write(target) as file:
            file.write(buffer.getvalue())
        assert len(result_tables.read_table(root, "metrics", run="r1")) == 1
        with pytest.raises(result_tables.ResultsSchemaError, match=f"^{target} has results schema version 9;"):
            queries.query(root, "SELECT * FROM metrics")
    finally:
        locations.delete(root, recursive=True)


WRITER = """
import sys, time
from merflow.storage import results
with results.writing_run(sys.argv[1], sys.argv[2]):
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_run_another_command_writes_is_refused_with_one_line_and_other_runs_go_on(tmp_path):
    """Another process writes run r1 (`merflow train --run r1`, say): this one's tables, checkpoints' identity
    and whole training run for r1 are refused with one line naming it; r2 is written beside it."""
    from merflow.flows.protocol import train_protocol
    from merflow.storage.checkpoints import check_run_identity
    from merflow.storage.locks import LockHeld

    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "r1"], stdout=subprocess.PIPE, text=True,
                              env=os.environ | {"MERFLOW_COMMAND": "merflow train --run r1"})
    try:
        assert writer.stdout.readline().strip() == "writing"
        predictions, metrics = plain_tables()
        columns = {"shots": 5, "method": "meta-mmfnet", "recipe": "merflow"}
        expected = (f"run 'r1' in {tmp_path} is in use by `merflow train --run r1` \\(pid {writer.pid} on .*\\): "
                    "wait for it to finish, or give this one another --run$")
        with pytest.raises(LockHeld, match=expected):
            result_tables.write_run(tmp_path, "r1", "loso", columns, metrics, predictions, run_row("r1", "loso", None, {}))
        with pytest.raises(LockHeld, match=expected):
            train_protocol(tmp_path / "no-catalog", str(tmp_path / "no-store"), "loso", "casme2", None, tmp_path, run="r1")
        with pytest.raises(LockHeld, match=expected):
            check_run_identity(tmp_path, "r1", {"protocol": "loso"})
        result_tables.write_run(tmp_path, "r2", "loso", columns, metrics, predictions, run_row("r2", "loso", None, {}))
    finally:
        writer.kill()
        writer.wait()
    assert not list(tmp_path.glob("*/run=r1")) and not (tmp_path / "checkpoints" / "r1").exists()
    assert result_tables.read_table(tmp_path, "runs")["run"].tolist() == ["r2"]


def test_spotting_tables_are_versioned_on_their_own(tmp_path):
    """The spot tables (flows/spotting.py) carry spotting schema version 1; a newer part is refused by name, and
    DuckDB reads them beside the training tables."""
    metric = {"evaluator": "megc", "scope": "pooled", "key": "all", "type": "micro", "n_truth": 4, "n_pred": 3,
              "tp": 2, "fp": 1, "fn": 2, "precision": 2 / 3, "recall": 0.5, "f1": 4 / 7, "chosen_on": "training subjects"}
    interval = {"fold": "loso-samm/006", "video_key": "samm_lv/006/006_1", "subject_key": "samm/006",
                "role": "predicted", "type": "micro", "start": 10, "end": 20, "score": 0.7, "tp": True,
                "class_scores": [0.1, 0.2, 0.7]}
    run_row = {"dataset": "samm_lv", "created_at": "2026-12-07T00:00:00+00:00", "spotter": "baseline",
               "recipe": "merflow", "chosen_on": "training subjects", "leaky": False, "config": "{}",
               "feature_config": "{}", "feature_config_hash": "abc", "versions": "{}", "timings": "{}"}
    result_tables.write_spotting(tmp_path, "s1", "loso-samm_lv", pd.DataFrame([interval]), pd.DataFrame([metric]),
                                 run_row)
    part = pq.read_table(result_tables.part_location(tmp_path, "spot_metrics", "s1", "loso-samm_lv", "all"))
    assert part.schema.metadata[result_tables.VERSION_KEY] == str(result_tables.SPOTTING_SCHEMA_VERSION).encode()
    joined = queries.query(tmp_path, "SELECT r.spotter, m.f1 FROM spot_runs r JOIN spot_metrics m USING (run)")
    assert joined.to_dict("records") == [{"spotter": "baseline", "f1": pytest.approx(4 / 7)}]
    assert result_tables.read_table(tmp_path, "spot_intervals")["class_scores"].iat[0] == pytest.approx([0.1, 0.2, 0.7])
    newer = result_tables.part_location(tmp_path, "spot_runs", "s2", "loso-samm_lv", "all")
    Path(newer).parent.mkdir(parents=True)
    pq.write_table(pq.read_table(result_tables.part_location(tmp_path, "spot_runs", "s1", "loso-samm_lv", "all"))
                   .replace_schema_metadata({result_tables.VERSION_KEY: b"2"}), newer)
    with pytest.raises(result_tables.ResultsSchemaError, match="version 2; this merflow reads versions 1 to 1"):
        result_tables.read_table(tmp_path, "spot_runs")
    assert len(result_tables.read_table(tmp_path, "metrics")) == 0   # the training tables are not touched
