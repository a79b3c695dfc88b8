"""The merflow console script, run as a user runs it (a real subprocess for --help)."""

import argparse
import re
import subprocess
import sys
import zipfile

import pytest

from merflow.flows.cli import main
from merflow.flows.cli.parser import build_parser

COMMANDS = ["synth", "ingest", "import-features", "catalog", "features", "show", "train", "tune", "spot", "export",
            "recognise", "results",
            "demo"]


def test_the_parser_has_exactly_the_commands_in_order():
    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(subcommands.choices) == COMMANDS


@pytest.mark.integration  # the console script in a subprocess
def test_help_lists_every_command_with_its_line_in_the_command_section():
    result = subprocess.run([sys.executable, "-m", "merflow.flows.cli", "--help"], capture_output=True, text=True,
                            check=True)
    # Only the command section (between "positional arguments:" and "options:"): the description above it
    # names several commands (ingest, features, train, tune, ...) too. A command is a line "    NAME  help"
    # (a long NAME has its help on the next line, indented further).
    section = result.stdout.split("positional arguments:", 1)[1].split("\noptions:", 1)[0]
    assert re.findall(r"^    (\S+)(?:  |$)", section, flags=re.MULTILINE) == COMMANDS, result.stdout


def test_ingest_defaults_detect_the_dataset_and_allow_a_compression_ratio_of_100():
    ingest_args = build_parser().parse_args(["ingest", "x", "--out", "y"])
    assert ingest_args.dataset is None and ingest_args.max_ratio == 100.0


def test_synth_writes_the_archive_and_says_so(tmp_path, capsys):
    assert main(["synth", "--dataset", "casme2sq", "--out", str(tmp_path), "--subjects", "2",
                 "--samples-per-subject", "2", "--scale", "0.2", "--archive", "tar.gz"]) == 0
    assert (tmp_path / "CASME_sq.tar.gz").is_file()
    assert "wrote" in capsys.readouterr().out


def test_a_missing_or_empty_catalog_and_a_bad_scale_exit_2_naming_the_cause(tmp_path, capsys):
    assert main(["catalog", str(tmp_path / "missing")]) == 2  # a mistyped path is not an empty catalog
    assert "no catalog at" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["catalog", str(tmp_path / "empty")]) == 2
    assert "has no samples.parquet" in capsys.readouterr().out
    assert main(["synth", "--dataset", "ckplus", "--out", str(tmp_path), "--scale", "5"]) == 2
    assert "scale must be within" in capsys.readouterr().out


@pytest.mark.integration  # a Prefect flow
@pytest.mark.usefixtures("prefect_backend")
def test_ingest_refuses_a_hostile_archive_with_exit_2_naming_the_entry(tmp_path, capsys):
    evil = tmp_path / "evil.tar"
    with zipfile.ZipFile(evil, "w") as bundle:  # a zip named .tar: the kind comes from the content
        bundle.writestr("/etc/evil.conf", "x")
    assert main(["ingest", str(evil), "--out", str(tmp_path / "catalog")]) == 2
    assert "/etc/evil.conf" in capsys.readouterr().out


def test_catalog_check_megc2019_exits_0_when_equal_1_listing_each_difference_and_2_without_a_list(
        synth_folders, tmp_path, capsys, monkeypatch):
    from merflow.flows.ingest import prepare
    from merflow.storage import catalog
    from merflow.tasks import ingest

    catalog_dir = tmp_path / "catalog"
    for name in ("casme2", "samm"):
        prepared = prepare(str(synth_folders[name]), catalog_dir)
        datasets, samples, problems = ingest.read(prepared, ingest.IngestConfig())
        catalog.merge_source(catalog_dir, ingest.source_row(prepared, datasets, ingest.IngestConfig()), samples,
                             problems)
    rows = catalog.read_samples(catalog_dir).dropna(subset=["label_megc2019"])
    codes = {"negative": 0, "positive": 1, "surprise": 2}
    lines = [f"{r.dataset},{int(r.subject) if r.dataset == 'samm' else r.subject},{r.sample_id},{codes[r.label_megc2019]}"
             for r in rows.itertuples()]
    official = tmp_path / "combined_3class_gt.csv"
    official.write_text("\n".join(lines) + "\n")
    assert main(["catalog", str(catalog_dir), "--check", "megc2019", "--official", str(official)]) == 0
    assert "0 difference(s)" in capsys.readouterr().out
    first = rows.iloc[0]
    changed = lines[1:] + ["casme2,sub99,EP99_01,2", "smic,s01,s01_ne_01,0", lines[0].rsplit(",", 1)[0] + f",{(codes[first.label_megc2019] + 1) % 3}"]
    official.write_text("\n".join(changed) + "\n")
    monkeypatch.setenv("MERFLOW_REFERENCE", str(tmp_path / "nowhere"))
    assert main(["catalog", str(catalog_dir), "--check", "megc2019", "--official", str(official)]) == 1
    out = capsys.readouterr().out
    assert "missing  casme2/sub99/EP99_01: official surprise, catalog -" in out
    assert f"label  {first.sample_key}: official" in out and "2 difference(s)" in out
    assert "smic_hs: no samples in this catalog" in out
    assert main(["catalog", str(catalog_dir), "--check", "megc2019"]) == 2  # $MERFLOW_REFERENCE has no list
    assert "pass --official" in capsys.readouterr().out


@pytest.mark.integration  # tune is a flow command: without a configured API it starts a local Prefect server
def test_error_text_keeps_its_brackets_on_one_line(capsys):
    assert main(["tune", "--catalog", "x", "--store", "y", "--shots", "[s3],[client]"]) == 2
    out = capsys.readouterr().out
    assert "[s3],[client]" in out and out.count("\n") == 1, out  # rich markup would have eaten both


def _cli(*arguments: str, api_url: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "merflow.flows.cli", *arguments], capture_output=True, text=True,
                          timeout=300, env=os.environ | {"PREFECT_API_URL": api_url})


@pytest.mark.integration  # the console script in subprocesses, reporting to a Prefect API
@pytest.mark.usefixtures("prefect_backend")
def test_a_flow_error_is_one_line_and_its_traceback_is_in_the_run_log_or_under_verbose(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, LogFilter
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()  # the test's own Prefect API: the CLI processes report their runs to it
    arguments = ["features", "--catalog", str(tmp_path / "nothing"), "--store", str(tmp_path / "f.zarr")]
    quiet = _cli(*arguments, api_url=api)
    assert quiet.returncode == 2, quiet.stdout + quiet.stderr
    everything = quiet.stdout + quiet.stderr
    assert "Traceback" not in everything and "Finished in state Failed" not in everything, everything
    errors = [line for line in everything.splitlines() if "has no samples" in line]
    assert errors == [f"error: the catalog at {tmp_path / 'nothing'} has no samples: run `merflow ingest` first"], \
        everything
    with get_client(sync_client=True) as client:
        run = client.read_flow_runs(flow_run_filter=FlowRunFilter(), sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        logs = client.read_logs(LogFilter(flow_run_id={"any_": [run.id]}))
    assert run.state.is_failed() and any("Traceback" in log.message and "has no samples" in log.message
                                         for log in logs), [log.message[:80] for log in logs]
    verbose = _cli("--verbose", *arguments, api_url=api)
    assert verbose.returncode == 2 and "Traceback" in verbose.stdout + verbose.stderr
    assert build_parser().parse_args([*arguments, "--verbose"]).verbose  # after the command too
    assert not build_parser().parse_args(arguments).verbose


@pytest.mark.integration  # the ingest and features flows, then a training run
@pytest.mark.slow
@pytest.mark.usefixtures("prefect_backend")
def test_train_on_a_store_of_two_feature_configs_asks_for_one_and_a_hash_prefix_picks_it(tmp_path, capsys):
    """A store with the default features and `--size 28` ones: train names both with their settings, and
    --feature-config (a hash, or its start) picks one."""
    from merflow.configs.synth import SynthConfig
    from merflow.flows.features import features_flow
    from merflow.flows.ingest import ingest_flow
    from merflow.storage import results
    from merflow.storage.features import FeatureStore
    from merflow.tasks.synthetic import synthesize

    from conftest import SCALE

    sources = [synthesize(SynthConfig("casme2", subjects=3, samples=18, archive="none", seed=2, scale=SCALE), tmp_path),
               synthesize(SynthConfig("ckplus", subjects=2, samples=6, archive="none", seed=2, scale=SCALE), tmp_path)]
    ingest_flow(sources=[str(s) for s in sources], out=str(tmp_path / "catalog"))
    store = str(tmp_path / "features.zarr")
    for size in (80, 28):
        features_flow(catalog_dir=str(tmp_path / "catalog"), store=store, size=size, n_workers=1)
    hashes = {g["config"]["size"]: g["config_hash"] for g in FeatureStore(store).groups()}
    train = ["train", "--catalog", str(tmp_path / "catalog"), "--store", store, "--dataset", "casme2", "--shots", "1",
             "--macro-epochs", "1", "--pretrain-epochs", "1", "--meta-epochs", "1", "--batches-per-epoch", "1",
             "--out", str(tmp_path / "results")]
    assert main([*train, "--run", "either"]) == 2
    out = capsys.readouterr().out
    assert "--feature-config HASH" in out and out.count("\n") == 1, out
    for size, config_hash in hashes.items():
        assert f"{config_hash} (size {size}, flow farneback, detector yunet" in out, out
    assert main([*train, "--run", "nope", "--feature-config", "nope"]) == 2
    assert "no feature configuration 'nope'" in capsys.readouterr().out
    assert main([*train, "--run", "small", "--feature-config", hashes[28][:6]]) == 0, capsys.readouterr().out
    runs = results.read_table(tmp_path / "results", "runs", run="small")
    assert runs["feature_config_hash"].tolist() == [hashes[28]]


def test_train_and_tune_parse_a_sample_list_which_defaults_to_none():
    for command in ("train", "tune"):
        args = build_parser().parse_args([command, "--catalog", "c", "--store", "s", "--protocol", "fused4",
                                          "--sample-list", "survey", "--sample-lists", "lists"])
        assert (args.sample_list, args.sample_lists) == ("survey", "lists")
        assert build_parser().parse_args([command, "--catalog", "c", "--store", "s"]).sample_list is None


def test_train_max_folds_must_be_a_positive_count():
    import contextlib
    import io

    common = ["train", "--catalog", "c", "--store", "s"]
    # Not capsys: parsing `train` imports Prefect, whose log handler would keep capsys's stream, closed after.
    assert build_parser().parse_args(common).max_folds is None
    assert build_parser().parse_args([*common, "--max-folds", "3"]).max_folds == 3
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_, contextlib.redirect_stderr(err):
        build_parser().parse_args([*common, "--max-folds", "0"])
    assert exit_.value.code == 2 and "must be at least 1, got 0" in err.getvalue()


def test_train_max_folds_runs_the_first_folds_and_the_runs_row_says_so(training_set, tmp_path, capsys):
    """`merflow train --max-folds 2` (the floor model: nothing to train) runs 2 of the 26 LOSO folds, and the runs
    row's notes and the printed lines say that only those ran."""
    import json

    from merflow.storage import results

    out = tmp_path / "results"
    assert main(["train", "--model", "nearest-centroid", "--catalog", str(training_set["catalog"]),
                 "--store", training_set["store"], "--dataset", "casme2", "--out", str(out), "--run", "cut",
                 "--max-folds", "2"]) == 0
    printed = capsys.readouterr().out
    assert "2 folds" in printed and "only the first 2 of 26 folds ran (--max-folds)" in printed, printed
    predictions = results.read_table(out, "predictions", run="cut")
    assert sorted(predictions["fold"].unique()) == ["loso-casme2-sub01", "loso-casme2-sub02"]
    assert predictions["trial"].isna().all()
    notes = json.loads(results.read_table(out, "runs", run="cut")["config"].iat[0])["data"]
    assert notes["max_folds"] == {"first": 2, "of": 26}


def test_a_configuration_error_is_one_line_naming_the_setting_and_the_value(tmp_path, capsys):
    from merflow.flows.cli import main

    assert main(["synth", "--dataset", "casme2", "--out", str(tmp_path), "--samples", "0"]) == 2
    line = capsys.readouterr().out.strip()
    assert line == "error: invalid SynthConfig: samples: Input should be greater than or equal to 1 (got 0)"
    assert not list(tmp_path.iterdir())  # nothing written
    assert main(["synth", "--dataset", "casme2", "--out", str(tmp_path), "--scale", "3"]) == 2
    assert capsys.readouterr().out.strip() == "error: invalid SynthConfig: scale: scale must be within 0.05..1, not 3.0"
