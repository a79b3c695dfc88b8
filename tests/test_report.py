"""training/report.py and the `merflow results` handlers, over result tables written through storage.results."""

from __future__ import annotations

import json
import re

import matplotlib.image
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from test_queries import ALPHAS, CLASSES, CONFIGURATIONS, PLAIN_RUN, SEARCH_RUN, write_plain_run, write_search_run

from merflow.flows.cli import render
from merflow.flows.cli.parser import build_parser
from merflow.storage import queries
from merflow.training import report


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    search, plain = write_search_run(results), write_plain_run(results)
    tables = {name: queries.table(results, name) for name in ("metrics", "runs", "trials")}
    return results, search, plain, tables


def per_class_by_hand(predictions: pd.DataFrame) -> pd.Series:
    return (predictions["label"] == predictions["pred"]).groupby(predictions["label"]).mean().reindex(list(CLASSES))


def test_headline_keeps_one_honest_row_per_model_and_never_the_alpha_grid(written):
    _, _, _, tables = written
    rows = report.headline(tables["metrics"])
    assert not rows.duplicated(["run", "protocol", "trial", "scope", "key", "model"]).any()
    plain = rows[rows["run"] == PLAIN_RUN]
    assert len(plain) == 3 * (1 + 3)  # micro, macro, fused x (pooled + three datasets)
    search = rows[rows["run"] == SEARCH_RUN]
    assert set(search["trial"]) == {"selected"} and len(search) == 3 * 2  # pooled + its one dataset
    assert rows.loc[rows["scope"] == "pooled", "model"].tolist() == ["micro", "macro", "fused"] * 2
    # The plain run's fused row is the chosen one: its n is the test samples, once, not once per α.
    fused = plain[(plain["scope"] == "pooled") & (plain["model"] == "fused")]
    assert fused["n"].tolist() == [len(written[2]["predictions"].query("split == 'test' and model == 'micro'"))]


def test_summary_per_class_accuracy_is_what_the_predictions_say(written):
    _, search, plain, tables = written
    summaries = dict(report.summary_tables(tables["metrics"], tables["runs"]))
    assert len(summaries) == 2
    (composite_title, composite), = [(t, s) for t, s in summaries.items() if t.startswith(PLAIN_RUN)]
    assert "per dataset" in composite_title and "validation" in composite_title
    assert list(composite.columns) == ["data", "model", *CLASSES, "accuracy", "UF1", "UAR", "n"]
    assert composite["data"].unique().tolist() == ["all", "casme2", "samm", "smic"]
    test = plain["predictions"][plain["predictions"]["split"] == "test"]
    honest_fused = test[test["chosen"]]  # each fold's α chosen on its validation subjects
    for data, model, predictions in [("all", "fused", honest_fused), ("samm", "fused", honest_fused.query("dataset == 'samm'")),
                                     ("all", "micro", test[test["model"] == "micro"])]:
        row = composite[(composite["data"] == data) & (composite["model"] == model)]
        np.testing.assert_allclose(row[list(CLASSES)].to_numpy(float)[0], per_class_by_hand(predictions))
        assert row["n"].iat[0] == len(predictions)

    (_, single), = [(t, s) for t, s in summaries.items() if t.startswith(SEARCH_RUN)]
    assert "data" not in single.columns and single["model"].tolist() == ["micro", "macro", "fused"]
    selected = search["predictions"].query("trial == 'selected' and split == 'test' and model == 'fused'")
    np.testing.assert_allclose(single.loc[2, list(CLASSES)].to_numpy(float), per_class_by_hand(selected))


def test_best_ranks_on_validation_unless_told_and_shows_the_selected_row(written):
    _, _, _, tables = written
    metrics = tables["metrics"]
    ranking, selected = report.best_table(metrics, top=100)
    assert len(ranking) == len(CONFIGURATIONS) * (2 + len(ALPHAS))  # micro, macro and every α of each
    assert ranking["trial"].iat[0] == "c1a2b3c4"  # the validation winner (it loses on test)
    assert ranking["validation_uf1"].is_monotonic_decreasing and ranking["rank"].tolist() == list(range(1, 13))
    # Each row's test scores belong to the same configuration, model and α as its validation scores.
    for row in ranking.itertuples():
        same = metrics[(metrics["trial"] == row.trial) & (metrics["model"] == row.model) & (metrics["split"] == "test")
                       & (metrics["scope"] == "pooled") & ~metrics["chosen"]
                       & (metrics["alpha"].isna() if pd.isna(row.alpha) else metrics["alpha"] == row.alpha)]
        assert same["uf1"].tolist() == [row.test_uf1]

    oracle, _ = report.best_table(metrics, by="accuracy", split="test", top=2)
    assert oracle["trial"].tolist() == ["c3d4e5f6", "c3d4e5f6"] and oracle["test_accuracy"].is_monotonic_decreasing

    honest = metrics.query("trial == 'selected' and model == 'fused' and scope == 'pooled' and split == 'test'")
    assert selected[["trial", "test_uf1"]].values.tolist() == [["selected", honest["uf1"].iat[0]]]
    assert report.best_table(metrics, run=PLAIN_RUN)[0].empty
    with pytest.raises(ValueError, match="rank by one of"):
        report.best_table(metrics, by="f1")


def test_grids_put_each_configuration_at_its_shots_and_alpha(written):
    _, _, _, tables = written
    metrics = tables["metrics"]
    grids = report.alpha_shots_grids(metrics, trials=tables["trials"])
    assert [(run, json.loads(settings)) for run, _, settings, _ in grids] == [
        (SEARCH_RUN, {"meta_lr": 0.05}), (SEARCH_RUN, {"meta_lr": 0.1})]
    shared_lr = grids[0][3]
    assert shared_lr["validation"].index.tolist() == [1, 3] and shared_lr["test"].columns.tolist() == list(ALPHAS)

    def pooled(trial, split, alpha):
        return metrics.query("trial == @trial and split == @split and model == 'fused' and scope == 'pooled' "
                             "and not chosen and alpha == @alpha")["uf1"].iat[0]

    assert shared_lr["validation"].at[1, 0.5] == pooled("c1a2b3c4", "validation", 0.5)
    assert shared_lr["test"].at[3, 1.0] == pooled("c3d4e5f6", "test", 1.0)
    assert grids[1][3]["test"].at[3, 0.5] == pooled("c3ffff00", "test", 0.5)
    with pytest.raises(ValueError, match="share a shots value"):
        report.alpha_shots_grids(metrics)  # without trials, c3d4e5f6 and c3ffff00 collide at shots 3


def test_heatmaps_and_confusions_are_readable_pngs_with_safe_names(written, tmp_path):
    _, _, _, tables = written
    heatmaps = report.alpha_shots_heatmaps(tables["metrics"], tmp_path, trials=tables["trials"])
    confusions = report.confusion_plots(tables["metrics"], tables["runs"], tmp_path)
    assert len(heatmaps) == 2 and len(confusions) == 2
    for path in [*heatmaps, *confusions]:
        assert re.fullmatch(r"[A-Za-z0-9._-]+", path.name) and path.parent == tmp_path
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300 and image.std() > 0.05


def test_confusion_counts_are_the_honest_predictions(written):
    _, search, plain, tables = written
    confusions = {row["run"]: frame for row, frame in report.honest_confusions(tables["metrics"], tables["runs"])}
    for run, predictions in [(PLAIN_RUN, plain["predictions"].query("split == 'test' and chosen")),
                             (SEARCH_RUN, search["predictions"].query(
                                 "trial == 'selected' and split == 'test' and model == 'fused'"))]:
        by_hand = pd.crosstab(predictions["label"], predictions["pred"]).reindex(
            index=list(CLASSES), columns=list(CLASSES), fill_value=0)
        np.testing.assert_array_equal(confusions[run].to_numpy(), by_hand.to_numpy())
        assert list(confusions[run].columns) == list(CLASSES)


def run_cli(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(render, "console", Console(width=200))
    args = build_parser().parse_args(argv)
    status = args.handler(args)
    return status, capsys.readouterr().out


def test_cli_query_prints_the_rows_and_writes_every_row_to_csv(written, tmp_path, monkeypatch, capsys):
    results, search, _, _ = written
    csv = tmp_path / "rows.csv"
    status, out = run_cli(["results", "query", "SELECT * FROM predictions WHERE trial = 'selected'",
                           "--results", str(results), "--limit", "5", "--csv", str(csv)], monkeypatch, capsys)
    n = len(search["predictions"].query("trial == 'selected'"))
    assert status == 0 and f"{n} rows (the first 5 shown)" in out and "sample_key" in out
    assert len(pd.read_csv(csv)) == n
    with pytest.raises(ValueError, match="not DELETE"):
        run_cli(["results", "query", "DELETE FROM runs", "--results", str(results)], monkeypatch, capsys)


def test_cli_best_warns_when_ranking_on_test_and_always_shows_selected(written, monkeypatch, capsys):
    results = str(written[0])
    status, out = run_cli(["results", "best", "--results", results, "--top", "3"], monkeypatch, capsys)
    assert status == 0 and "oracle" not in out and "honest result" in out and "selected" in out
    assert out.count("c1a2b3c4") == 3  # the validation winner's top three rows
    status, out = run_cli(["results", "best", "--results", results, "--split", "test", "--by", "uar"],
                          monkeypatch, capsys)
    assert status == 0 and "oracle" in out and "honest result" in out
    with pytest.raises(LookupError, match="no hyperparameter search"):
        run_cli(["results", "best", "--results", results, "--run", PLAIN_RUN], monkeypatch, capsys)


def test_cli_summary_runs_and_plot(written, tmp_path, monkeypatch, capsys):
    results = str(written[0])
    status, out = run_cli(["results", "summary", "--results", results, "--run", PLAIN_RUN], monkeypatch, capsys)
    assert status == 0 and "megc2019" in out and "samm" in out and SEARCH_RUN not in out
    status, out = run_cli(["results", "runs", "--results", results], monkeypatch, capsys)
    search_line = next(line for line in out.splitlines() if SEARCH_RUN in line)
    assert status == 0 and PLAIN_RUN in out and re.search(r"\b3\b.*\b9\b.*\b8\b.*\b0\b.*\b1\b", search_line)
    status, out = run_cli(["results", "plot", "--results", results, "--out", str(tmp_path), "--run", SEARCH_RUN],
                          monkeypatch, capsys)
    assert status == 0 and sorted(p.name for p in tmp_path.iterdir()) == [
        "confusion_search-1_loso_selected.png", "heatmap_search-1_loso_uf1_meta_lr-0.05.png",
        "heatmap_search-1_loso_uf1_meta_lr-0.1.png"]
    assert out.count("wrote") == 3
    with pytest.raises(LookupError, match="no run 'nope'.*search-1"):
        run_cli(["results", "summary", "--results", results, "--run", "nope"], monkeypatch, capsys)
    with pytest.raises(ValueError, match="no results folder"):
        run_cli(["results", "runs", "--results", str(tmp_path / "missing")], monkeypatch, capsys)


def test_cli_gives_the_same_answers_on_results_written_by_schema_version_3(written, tmp_path, monkeypatch, capsys):
    """The same tables as schema version 3 wrote them (a plain run's trial "", version 3 in every part):
    summary, best, runs, plot and query print what they print for version 4's."""
    import shutil

    from test_results import as_version_3

    results, old = str(written[0]), tmp_path / "old"
    shutil.copytree(results, old)
    as_version_3(old)
    plain = next(old.glob(f"metrics/run={PLAIN_RUN}/protocol=*/part-*.parquet"))
    assert set(pq.read_table(plain)["trial"].to_pylist()) == {""}  # as version 3 stored it
    commands = [["summary"], ["summary", "--run", PLAIN_RUN], ["best", "--top", "4"], ["runs"],
                ["query", "SELECT run, trial, count(*) AS n FROM metrics GROUP BY ALL ORDER BY ALL"],
                ["query", "SELECT count(*) AS n FROM predictions WHERE trial IS NULL"]]
    for command in commands:
        outputs = []
        for folder in (results, str(old)):
            status, out = run_cli(["results", command[0], "--results", folder, *command[1:]], monkeypatch, capsys)
            outputs.append((status, " ".join(out.replace(folder, "RESULTS").split())))  # a title padded to its path
        assert outputs[0] == outputs[1], command
    plots = {}
    for name, folder in (("new", results), ("old", str(old))):
        status, _ = run_cli(["results", "plot", "--results", folder, "--out", str(tmp_path / f"plots-{name}")],
                            monkeypatch, capsys)
        plots[name] = sorted(p.name for p in (tmp_path / f"plots-{name}").iterdir())
        assert status == 0
    assert plots["old"] == plots["new"] and "confusion_20240101_megc2019.png" in plots["old"]


def test_cli_help_explains_each_subcommand(monkeypatch, capsys):
    for command, phrase in [("query", "read-only SQL"), ("summary", "per-class accuracy"), ("best", "oracle"),
                            ("plot", "confusion"), ("runs", "trials by status")]:
        with pytest.raises(SystemExit) as exit_:
            run_cli(["results", command, "--help"], monkeypatch, capsys)
        out = " ".join(capsys.readouterr().out.split())
        assert exit_.value.code == 0 and phrase in out and "--results RESULTS" in out


def test_cli_names_an_unreadable_part_and_answers_for_the_other_runs(written, tmp_path, monkeypatch, capsys):
    """`results runs` and `results summary --run OTHER` work beside a broken part and name it once; the broken
    run's own summary is refused with one line naming the file."""
    import shutil

    from test_queries import cut_in_half

    from merflow.storage.results import UnreadablePart

    results = tmp_path / "results"
    shutil.copytree(written[0], results)
    broken = cut_in_half(next(results.glob(f"metrics/run={PLAIN_RUN}/protocol=*/part-all.parquet")))
    status, out = run_cli(["results", "runs", "--results", str(results)], monkeypatch, capsys)
    assert status == 0 and SEARCH_RUN in out and PLAIN_RUN in out  # its runs row still names it
    assert out.count("warning: left out") == 1 and str(broken) in out.replace("\n", "")
    status, out = run_cli(["results", "summary", "--results", str(results), "--run", SEARCH_RUN], monkeypatch, capsys)
    assert status == 0 and "search-1 · loso (casme2): test" in out
    with pytest.raises(UnreadablePart, match=str(broken)):
        run_cli(["results", "summary", "--results", str(results), "--run", PLAIN_RUN], monkeypatch, capsys)


# ------------------------------------------------------------------------------------------ labels
def _labelled_runs(results):
    """Four runs as `merflow train` records them: Meta-MMFNet under --recipe published (no validation: α fixed
    at 1.0), survey-cnn with its published recipe over LOVO (leaky), survey-cnn with --epochs 3 (custom), and a
    run cut by --max-folds on features that differ from the recipe's."""
    from test_queries import fold_predictions
    from test_queries import run_row as stored_row

    from merflow.configs.train import TrainConfig
    from merflow.storage import results as result_tables
    from merflow.training.models.survey_cnn import SurveyConfig
    from merflow.training.run import metric_rows, run_choices

    rng = np.random.default_rng(5)
    runs = {
        "published": ("meta-mmfnet", "loso", TrainConfig.from_recipe("published"), {}),
        "survey": ("survey-cnn", "lovo", SurveyConfig(), {"leaks": ["LOVO: a held-out sample's person has other clips "
                                                                    "in training"]}),
        "custom": ("survey-cnn", "fused4", SurveyConfig(epochs=3, balance="undersample-training"), {}),
        "quick": ("meta-mmfnet", "loso", TrainConfig.from_recipe("published", meta_epochs=1),
                  {"max_folds": {"first": 2, "of": 26}, "feature_mismatch": ["size 28 (published: 80)"]}),
    }
    for run, (method, protocol, config, data) in runs.items():
        predictions = pd.concat([fold_predictions(rng, f"casme2/sub0{i}", "casme2", {"validation": 0.7, "test": 0.6})
                                 for i in (1, 2)], ignore_index=True)
        if method != "meta-mmfnet":
            predictions = predictions[predictions["model"] == "micro"].assign(model=method)
        predictions = predictions.assign(chosen=predictions["chosen"] & (config.validation_fraction > 0))
        metrics = metric_rows(predictions, CLASSES).assign(run=run, protocol=protocol, trial=None, shots=5,
                                                           method=method)
        result_tables.write_part(results, "metrics", run, protocol, "all", metrics)
        record = config.to_dict() | {"data": data | {"recipe_differences": config.recipe_differences,
                                                     "chosen": run_choices(method, config)}}
        row = stored_row(run, protocol, "casme2", record) | {"method": method, "recipe": config.recipe}
        result_tables.write_part(results, "runs", run, protocol, "all", pd.DataFrame([row]))
    return runs


def test_each_summary_says_what_chose_what_from_the_runs_own_record(tmp_path, capsys):
    from merflow.flows.cli.results import print_results_summary

    _labelled_runs(tmp_path)
    metrics, runs = queries.table(tmp_path, "metrics"), queries.table(tmp_path, "runs")
    blocks = {title.split(" ·")[0]: (title, table, warnings, honesty)
              for title, table, warnings, honesty in report.summary_blocks(metrics, runs)}
    title, table, _, honesty = blocks["published"]
    assert "α chosen per fold on validation" not in title and "α 1.0, fixed" in title and "recipe published" in title
    assert honesty == ["nothing chosen"] * len(table)  # epochs fixed, α fixed, nothing leaks
    title, _, _, honesty = blocks["survey"]
    assert "the published fixed schedule" in title and "uses test labels" in title
    assert set(honesty) == {"uses test labels (LOVO)"}
    title, _, _, honesty = blocks["custom"]
    assert "published fixed schedule" not in title and "recipe custom: " in title and "epochs 3 (published: 150)" in title
    assert "balance undersample-training (published: undersample)" in title and set(honesty) == {"nothing chosen"}
    title, _, warnings, _ = blocks["quick"]
    assert "recipe published with changes: meta_epochs 1 (published: 7)" in title
    assert any("only the first 2 of 26 folds ran (--max-folds)" in line for line in warnings)
    assert any("size 28 (published: 80)" in line for line in warnings)
    # The command prints the same, with the honesty column.
    print_results_summary(tmp_path)
    printed = capsys.readouterr().out
    assert "honesty" in printed and "uses test labels (LOVO)" in printed and "--max-folds" in printed


def test_runs_written_before_the_record_are_labelled_from_their_settings():
    record = {"balance": "undersample", "epochs": 3}  # an old survey-cnn run over fused4: no data.leaks
    assert report.run_leaks(record, "fused4")[0].startswith("balanced before the split")
    assert report.honesty(record, "fused4", "survey-cnn", "survey-cnn", None).startswith("uses test labels")
    assert report.honesty({"validation_fraction": 0.2}, "loso", "meta-mmfnet", "fused", None) == \
        "chosen on validation subjects"
    assert report.honesty({}, "loso", "meta-mmfnet", "fused", "selected") == "chosen on validation subjects"
    assert report.honesty({"validation_fraction": 0.0}, "loso", "meta-mmfnet", "fused", None) == "nothing chosen"


def test_the_floor_is_named_by_the_input_the_run_recorded():
    imported = {"data": {"floor": {"text": "imported apex red, green, blue"}}}
    assert report.floor_input(imported) == "imported apex red, green, blue"
    assert report.floor_input({}) == "flow u, v"  # runs recorded before the floor's input was noted
