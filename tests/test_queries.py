"""storage/queries.py: DuckDB views over result tables written by storage.results, and the read-only guard.

The builders here write small but realistic tables (a hyperparameter search and a plain composite
run) through ``write_part`` and ``metric_rows``; tests/test_report.py reuses them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from merflow.storage import queries
from merflow.storage import results as result_tables
from merflow.training.run import metric_rows

CLASSES = ("negative", "positive", "surprise")
ALPHAS = (0.5, 1.0)
SEARCH_RUN, PLAIN_RUN = "search-1", "20240101"  # a digits-only run id must stay a string
SEARCH_FOLDS = {"sub01": "casme2", "sub02": "casme2", "sub03": "casme2"}
PLAIN_FOLDS = {"casme2/sub01": "casme2", "casme2/sub02": "casme2", "samm/006": "samm", "samm/007": "samm",
               "smic/s1": "smic", "smic/s2": "smic"}
SAMPLES_PER_SPLIT = 12
# Configuration id -> (searched settings, probability of a right answer on validation, on test). c1 wins on
# validation and loses on test, c3 the reverse: ranking on the wrong split is visible.
CONFIGURATIONS = {
    "c1a2b3c4": ({"shots": 1, "meta_lr": 0.05}, 0.95, 0.30),
    "c3d4e5f6": ({"shots": 3, "meta_lr": 0.05}, 0.40, 0.95),
    "c3ffff00": ({"shots": 3, "meta_lr": 0.1}, 0.60, 0.60),
}
SKILL = {"micro": 0.0, "macro": -0.2, 0.5: 0.05, 1.0: 0.0}  # per model / α: ties between rows are unlikely


def fold_predictions(rng: np.random.Generator, fold: str, dataset: str, right: dict[str, float]) -> pd.DataFrame:
    """Rows as run.fold_predictions makes them: every (split, model, α, sample) of one fold, with the α chosen
    on validation marked."""
    rows = []
    for split in ("validation", "test"):
        labels = rng.integers(0, len(CLASSES), SAMPLES_PER_SPLIT)
        for model, alpha in [("micro", None), ("macro", None), *(("fused", a) for a in ALPHAS)]:
            p = np.clip(right[split] + SKILL[alpha if model == "fused" else model], 0, 1)
            wrong = (labels + rng.integers(1, len(CLASSES), labels.size)) % len(CLASSES)
            preds = np.where(rng.random(labels.size) < p, labels, wrong)
            for index, (label, pred) in enumerate(zip(labels, preds)):
                rows.append({"fold": fold, "split": split, "model": model, "alpha": alpha,
                             "sample_key": f"{dataset}/{fold.split('/')[-1]}/{split}{index:02d}", "dataset": dataset,
                             "subject_key": fold, "label": CLASSES[label], "pred": CLASSES[pred],
                             "scores": np.eye(len(CLASSES))[pred].tolist()})
    frame = pd.DataFrame(rows)
    fused_validation = frame[(frame["model"] == "fused") & (frame["split"] == "validation")]
    accuracy = (fused_validation["label"] == fused_validation["pred"]).groupby(fused_validation["alpha"]).mean()
    frame["chosen"] = (frame["model"] == "fused") & (frame["alpha"] == accuracy.idxmax())
    return frame


def run_row(run: str, protocol: str, dataset: str | None, config: dict) -> dict:
    return {"run": run, "protocol": protocol, "dataset": dataset, "created_at": "2024-01-01T00:00:00+00:00",
            "config": json.dumps(config), "feature_config_hash": "f00d", "git_commit": None,
            "versions": json.dumps({"merflow": "0.1.0"}), "timings": json.dumps({"total": 1.0}),
            "classes": list(CLASSES)}


def write_search_run(results: Path, seed: int = 0) -> dict[str, pd.DataFrame]:
    """A search over CONFIGURATIONS with LOSO on three subjects: per-configuration metrics and predictions,
    the 'selected' result (per fold, the configuration and α best on validation), trials and runs."""
    rng = np.random.default_rng(seed)
    predictions, metrics, trials = [], [], []
    for trial, (searched, right_validation, right_test) in CONFIGURATIONS.items():
        shots = searched["shots"]
        frames = [fold_predictions(rng, fold, dataset, {"validation": right_validation, "test": right_test})
                  for fold, dataset in SEARCH_FOLDS.items()]
        trial_predictions = pd.concat(frames, ignore_index=True).assign(trial=trial, shots=shots)
        predictions.append(trial_predictions)
        metrics.append(metric_rows(trial_predictions, CLASSES).assign(trial=trial, shots=shots))
        for index, frame in enumerate(frames):
            chosen = frame[frame["chosen"] & (frame["split"] == "validation")]
            status = "error" if (trial, index) == ("c3ffff00", 2) else "completed"
            trials.append({"trial": trial, "fold": frame["fold"].iat[0], "tune_trial_id": f"t{index}", "status": status,
                           "failures": int(status == "error"), "error": "CUDA out of memory" if status == "error" else None,
                           "shots": shots, "searched": json.dumps(searched), "config": json.dumps(searched),
                           "validation_accuracy": float((chosen["label"] == chosen["pred"]).mean()),
                           "alpha": float(chosen["alpha"].iat[0]), "epochs": json.dumps({"meta": 3}), "seconds": 2.0})
    predictions = pd.concat(predictions, ignore_index=True)
    trials = pd.DataFrame(trials)
    best = trials.sort_values("validation_accuracy", ascending=False, kind="stable").drop_duplicates("fold")
    chosen_rows = []
    for row in best.itertuples():
        fold_rows = predictions[(predictions["trial"] == row.trial) & (predictions["fold"] == row.fold)]
        honest = fold_rows[(fold_rows["model"] != "fused") | fold_rows["chosen"]]
        chosen_rows.append(honest.assign(chosen_from=row.trial))
    selected = pd.concat(chosen_rows, ignore_index=True).assign(trial=result_tables.SELECTED, shots=None, chosen=True)
    selected_metrics = metric_rows(selected.assign(alpha=None), CLASSES)
    selected_metrics = selected_metrics[selected_metrics["chosen"]].assign(trial=result_tables.SELECTED, shots=None)
    predictions = pd.concat([predictions, selected], ignore_index=True)
    metrics = pd.concat([*metrics, selected_metrics], ignore_index=True)

    run = {"run": SEARCH_RUN, "protocol": "loso"}
    for trial, part in predictions.groupby("trial"):
        result_tables.write_part(results, "predictions", SEARCH_RUN, "loso", trial, part.drop(columns="chosen").assign(**run))
    for trial, part in metrics.groupby("trial"):
        result_tables.write_part(results, "metrics", SEARCH_RUN, "loso", trial, part.assign(**run))
    result_tables.write_part(results, "trials", SEARCH_RUN, "loso", "all", trials.assign(**run))
    runs = pd.DataFrame([run_row(SEARCH_RUN, "loso", "casme2", {"search": list(CONFIGURATIONS)})])
    result_tables.write_part(results, "runs", SEARCH_RUN, "loso", "all", runs)
    return {"predictions": predictions.assign(**run), "metrics": metrics.assign(**run),
            "trials": trials.assign(**run), "runs": runs}


def write_plain_run(results: Path, seed: int = 1) -> dict[str, pd.DataFrame]:
    """A plain training run (trial null) of the composite MEGC2019 protocol over three datasets."""
    rng = np.random.default_rng(seed)
    predictions = pd.concat([fold_predictions(rng, fold, dataset, {"validation": 0.7, "test": 0.6})
                             for fold, dataset in PLAIN_FOLDS.items()], ignore_index=True)
    metrics = metric_rows(predictions, CLASSES)
    common = {"run": PLAIN_RUN, "protocol": "megc2019", "trial": None, "shots": 5}
    result_tables.write_part(results, "metrics", PLAIN_RUN, "megc2019", "all", metrics.assign(**common))
    result_tables.write_part(results, "predictions", PLAIN_RUN, "megc2019", "all",
                             predictions.drop(columns="chosen").assign(**common))
    runs = pd.DataFrame([run_row(PLAIN_RUN, "megc2019", None, {"shots": 5})])
    result_tables.write_part(results, "runs", PLAIN_RUN, "megc2019", "all", runs)
    return {"predictions": predictions.assign(**common), "metrics": metrics.assign(**common), "runs": runs}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, dict, dict]:
    results = tmp_path_factory.mktemp("results")
    return results, write_search_run(results), write_plain_run(results)


def test_views_hold_exactly_the_rows_written(written):
    results, search, plain = written
    counts = queries.query(results, "SELECT run, count(*) AS n FROM predictions GROUP BY run ORDER BY run")
    assert counts.to_dict("list") == {"run": [PLAIN_RUN, SEARCH_RUN],
                                      "n": [len(plain["predictions"]), len(search["predictions"])]}
    metrics = queries.query(results, f"SELECT count(*) AS n FROM metrics WHERE run = '{SEARCH_RUN}' "
                                     "AND trial = 'selected' AND scope = 'pooled'")
    assert metrics["n"].iat[0] == 2 * 3  # two splits x micro, macro, fused
    assert len(queries.table(results, "trials")) == len(CONFIGURATIONS) * len(SEARCH_FOLDS)


def test_views_have_partition_columns_first_and_keep_types(written):
    results, _, _ = written
    runs = queries.table(results, "runs", run=PLAIN_RUN)
    assert list(runs.columns[:2]) == ["run", "protocol"]
    assert runs["run"].tolist() == [PLAIN_RUN]  # not cast to a number or a date
    assert list(runs["classes"].iat[0]) == list(CLASSES)
    selected = queries.query(results, "SELECT DISTINCT shots FROM metrics WHERE trial = 'selected'")
    assert selected["shots"].isna().all()


def test_hidden_parts_being_written_are_not_read(written, tmp_path):
    results, search, _ = written
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    partition = copy / "predictions" / f"run={SEARCH_RUN}" / "protocol=loso"
    shutil.copy(partition / "part-selected.parquet", partition / ".part-x1y2.parquet")  # whole, not yet renamed
    (partition / ".part-half.parquet").write_bytes(b"PAR1 half a file")  # a writer interrupted mid-file
    count = queries.query(copy, f"SELECT count(*) AS n FROM predictions WHERE run = '{SEARCH_RUN}'")
    assert count["n"].iat[0] == len(search["predictions"])


def test_a_table_without_parts_is_an_empty_view_with_its_columns(tmp_path):
    result_tables.write_part(tmp_path, "runs", "r1", "loso", "all", [run_row("r1", "loso", "casme2", {})])
    trials = queries.query(tmp_path, "SELECT * FROM trials")
    assert trials.empty and list(trials.columns) == result_tables.TRIALS_SCHEMA.names
    joined = queries.query(tmp_path, "SELECT r.run, count(t.trial) AS n FROM runs r LEFT JOIN trials t USING (run) "
                                     "GROUP BY r.run")
    assert joined.to_dict("list") == {"run": ["r1"], "n": [0]}


@pytest.mark.parametrize("sql, why", [
    ("COPY (SELECT * FROM runs) TO 'out.csv'", "not COPY"),
    ("INSERT INTO runs SELECT * FROM runs", "not INSERT"),
    ("CREATE TABLE x AS SELECT 1", "not CREATE"),
    ("ATTACH 'other.duckdb'", "not ATTACH"),
    ("SET enable_external_access = true", "not SET"),
    ("SELECT 1; SELECT 2", "exactly one statement, got 2"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO 'out.csv'", "not COPY"),
    ("-- sneaky\nEXPLAIN ANALYZE CREATE TABLE x AS SELECT 1", "EXPLAIN may explain a SELECT"),
    ("SELEC 1", "does not parse"),
])
def test_anything_but_one_read_is_refused_and_nothing_is_written(written, tmp_path, monkeypatch, sql, why):
    results, _, _ = written
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=why):
        queries.query(results, sql)
    assert list(tmp_path.iterdir()) == []


def test_reads_are_allowed_but_no_file_is_read_but_through_storage_results(written, tmp_path):
    """The tables are storage.results.read_arrow's (versions checked, old parts upgraded): DuckDB itself reads
    no file, outside the results folder or inside it."""
    results, _, _ = written
    plan = queries.query(results, "EXPLAIN ANALYZE SELECT count(*) FROM metrics")
    assert not plan.empty
    assert queries.query(results, "WITH m AS (SELECT * FROM metrics) FROM m SELECT count(*) AS n")["n"].iat[0] > 0
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    with pytest.raises(ValueError, match="disabled by configuration"):
        queries.query(results, f"SELECT * FROM read_csv('{outside}')")
    inside = next(Path(results).glob("metrics/run=*/protocol=*/part-*.parquet"))
    with pytest.raises(ValueError, match="disabled by configuration"):
        queries.query(results, f"SELECT * FROM read_parquet('{inside}')")


def test_a_query_reads_the_tables_it_names(written):
    """Only the tables a statement names are read (the others are there, empty); naming is by whole words."""
    results, search, plain = written
    assert queries.named_tables("SELECT * FROM floor_metrics JOIN Runs USING (run)") == ("runs", "floor_metrics")
    assert queries.named_tables('SELECT count(*) FROM "predictions" p, metrics') == ("metrics", "predictions")
    both = queries.query(results, "WITH m AS (SELECT run FROM metrics) SELECT (SELECT count(*) FROM m) AS m, "
                                  "(SELECT count(*) FROM trials) AS t")
    assert both.to_dict("list") == {"m": [len(search["metrics"]) + len(plain["metrics"])], "t": [len(search["trials"])]}
    with pytest.raises(ValueError, match="the query failed"):
        queries.query(results, "SELECT count(*) FROM metrics_copy")


def test_a_missing_results_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no results folder"):
        queries.query(tmp_path / "nowhere", "SELECT 1")
    with pytest.raises(ValueError, match="unknown result table"):
        queries.table(tmp_path, "samples")


def test_version_2_parts_read_as_meta_mmfnet_beside_version_4(tmp_path):
    """Schema 3 adds method and recipe; parts written before (version 2: neither column) are Meta-MMFNet's,
    and (before version 4) their plain run's trial "" is null."""
    from test_results import write_old_part

    row = {"run": "old", "protocol": "loso", "trial": "", "shots": 5, "model": "fused", "alpha": 0.5, "split": "test",
           "scope": "pooled", "key": "all", "chosen": True, "n": 3, "accuracy": 0.5, "uf1": 0.4, "uar": 0.4,
           "per_class_accuracy": "{}", "confusion": "[]"}
    write_old_part(tmp_path, "metrics", "old", "loso", [row], 2, lacking=("method", "recipe"))
    assert queries.query(tmp_path, "SELECT method, recipe, trial FROM metrics").to_dict("records") == [
        {"method": "meta-mmfnet", "recipe": None, "trial": None}]
    row = row | {"trial": None}
    result_tables.write_part(tmp_path, "metrics", "new", "lovo", "all",
                             [row | {"run": "new", "protocol": "lovo", "model": "survey-cnn", "alpha": None,
                                     "chosen": False, "method": "survey-cnn", "recipe": "published"}])
    both = queries.query(tmp_path, "SELECT run, method, coalesce(recipe, '-') AS recipe FROM metrics ORDER BY run")
    assert both.to_dict("records") == [{"run": "new", "method": "survey-cnn", "recipe": "published"},
                                       {"run": "old", "method": "meta-mmfnet", "recipe": "-"}]
    read = result_tables.read_table(tmp_path, "metrics").sort_values("run")
    assert read["method"].tolist() == ["survey-cnn", "meta-mmfnet"]
    # A writer that names no model (training/run.py, training/search/tables.py) writes Meta-MMFNet's rows.
    result_tables.write_part(tmp_path, "metrics", "plain", "loso", "all", [row | {"run": "plain"}])
    assert queries.query(tmp_path, "SELECT method FROM metrics WHERE run = 'plain'")["method"].tolist() == ["meta-mmfnet"]


def test_show_tables_lists_every_table_without_reading_one(written, monkeypatch):
    results, _, _ = written
    monkeypatch.setattr(result_tables, "read_arrow", lambda *a, **k: pytest.fail("SHOW TABLES read a table"))
    assert sorted(queries.query(results, "SHOW TABLES")["name"]) == sorted(result_tables.TABLES)


def cut_in_half(part: Path) -> Path:
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    return part


def test_an_unreadable_part_is_named_and_left_out_of_other_runs_queries(written, tmp_path):
    """A run's metrics part cut in half: whole-table reads leave it out and name it (when the caller takes the
    list), other runs' rows are whole; reading that run alone, or without a list, is one line naming it."""
    results = tmp_path / "results"
    shutil.copytree(written[0], results)
    broken = cut_in_half(next(results.glob(f"metrics/run={PLAIN_RUN}/protocol=*/part-all.parquet")))
    skipped = []
    runs = queries.query(results, "SELECT DISTINCT run FROM metrics ORDER BY run", skipped)
    assert runs["run"].tolist() == [SEARCH_RUN]
    assert len(skipped) == 1 and skipped[0].startswith(f"{broken} cannot be read (")
    assert len(queries.table(results, "metrics", SEARCH_RUN)) == len(written[1]["metrics"])
    assert len(queries.table(results, "runs", PLAIN_RUN)) == 1  # its other tables read as before
    with pytest.raises(result_tables.UnreadablePart, match=f"^{broken} cannot be read .*restore or delete that part"):
        queries.table(results, "metrics", PLAIN_RUN)
    with pytest.raises(result_tables.UnreadablePart, match=str(broken)):
        queries.query(results, "SELECT count(*) FROM metrics")
