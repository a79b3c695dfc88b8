"""The spot flow (flows/spotting.py) as users run it: synthetic long videos ingested, per-frame features on a
real Dask cluster into a Zarr store, the baseline under leave-one-subject-out, the tables, a rerun, the CLI."""

import json

import pandas as pd
import pytest

from merflow.flows.cli import main
from merflow.storage import results as result_tables


def test_the_flow_writes_its_tables_and_scores_every_interval(spotting_set):
    summary, results = spotting_set["summary"], spotting_set["results"]
    from merflow.storage import long_videos

    intervals = long_videos.read_intervals(spotting_set["catalog"])
    runs = result_tables.read_table(results, "spot_runs")
    assert len(runs) == 1 and runs.loc[0, "spotter"] == "baseline" and not runs.loc[0, "leaky"]
    assert runs.loc[0, "chosen_on"] == "training subjects" and runs.loc[0, "dataset"] == "casme_sq_lv"
    assert json.loads(runs.loc[0, "recognition"])["classifier"] == "nearest-centroid"
    metrics = result_tables.read_table(results, "spot_metrics")
    pooled = metrics[(metrics["scope"] == "pooled") & (metrics["evaluator"] == "megc")].set_index("type")
    micro = intervals[intervals["type"] == "micro"]
    assert set(pooled.index) == {"micro", "overall"} and pooled.loc["micro", "n_truth"] == len(micro)
    assert pooled.loc["overall", "tp"] == pooled.loc["micro", "tp"] > 0
    assert {"strs-official", "strs-corrected"} <= set(metrics["evaluator"])
    folds = metrics[metrics["scope"] == "fold"]
    assert folds["key"].nunique() == 5
    chosen = json.loads(folds["settings"].iloc[0])
    assert set(chosen) == {"micro"} and {"k", "p", "low", "high"} <= set(chosen["micro"])
    table = result_tables.read_table(results, "spot_intervals")
    truths = table[table["role"] == "truth"]
    assert len(truths) == len(micro) and truths["tp"].sum() == pooled.loc["overall", "tp"]
    predicted = table[table["role"] == "predicted"]
    assert (predicted["fold"] == "loso-" + predicted["subject_key"]).all()
    assert predicted.loc[predicted["tp"], "interval_key"].isin(set(intervals["interval_key"])).all()
    assert summary["per_frame"]["chunks_computed"] > 0
    assert summary["per_frame"]["no_face"] == ["casme_sq_lv/s15/15_0102"]      # the empty chair, left out, said so
    assert summary["videos"] == 5


def test_a_rerun_computes_no_per_frame_feature_again(spotting_set):
    from merflow.configs.spotting import SpotConfig
    from merflow.flows.spotting import spot_flow

    again = spot_flow(catalog_dir=spotting_set["catalog"], store=spotting_set["store"], dataset="casme_sq",
                      out=spotting_set["results"], config=SpotConfig(spotter="baseline", types=("micro",)),
                      features=spotting_set["features"], n_workers=2)
    assert again["per_frame"]["chunks_computed"] == 0 and again["per_frame"]["detections_computed"] == 0
    assert again["per_frame"]["chunks_skipped"] == spotting_set["summary"]["per_frame"]["chunks_computed"]
    assert again["pooled"] == spotting_set["summary"]["pooled"]   # the same settings, the same intervals


def test_results_summary_shows_the_spotting_run(spotting_set, monkeypatch, capsys):
    from rich.console import Console

    from merflow.flows.cli import render

    monkeypatch.setattr(render, "console", Console(width=250))
    assert main(["results", "summary", "--results", spotting_set["results"]]) == 0
    text = capsys.readouterr().out
    assert "spotting" in text and "casme_sq_lv" in text and "baseline" in text and "training subjects" in text


def test_spot_help_names_what_chooses_the_settings(capsys):
    with pytest.raises(SystemExit):
        main(["spot", "--help"])
    text = capsys.readouterr().out
    for words in ("--spotter", "{baseline,softnet}", "--recipe", "training subjects", "--crop", "--dask-address",
                  "STRS"):
        assert words in text


def test_a_catalog_without_long_videos_is_one_line(tmp_path):
    from merflow.flows.spotting import read_long_videos, resolve_dataset

    with pytest.raises(LookupError, match="no samm_lv long videos in the catalog"):
        read_long_videos(str(tmp_path), "samm_lv")
    with pytest.raises(ValueError, match="unknown long-video set 'casme2'"):
        resolve_dataset("casme2")
    assert isinstance(pd.DataFrame(), pd.DataFrame)


def test_spot_options_make_the_two_configurations():
    from merflow.configs.spotting import SpotConfig, SpotFeatureConfig
    from merflow.flows.cli.options import spot_configs
    from merflow.flows.cli.parser import build_parser

    args = build_parser().parse_args(["spot", "--catalog", "c", "--store", "s", "--dataset", "samm_lv", "--spotter",
                                      "softnet", "--recipe", "published", "--types", "micro", "--p-grid", "0.5,0.6",
                                      "--crop", "96", "--flow", "dis", "--epochs", "3"])
    config, features = spot_configs(args)
    assert (config.spotter, config.recipe, config.types, config.p_grid, config.epochs) == \
        ("softnet", "published", ("micro",), (0.5, 0.6), 3)
    assert (features.crop, features.motion.algorithm, features.chunk_frames) == (96, "dis", 512)
    defaults = spot_configs(build_parser().parse_args(["spot", "--catalog", "c", "--store", "s", "--dataset", "samm_lv"]))
    assert config.leaky and defaults == (SpotConfig(), SpotFeatureConfig())


def test_a_chunk_job_carries_only_its_frames_and_segments():
    from merflow.configs.spotting import SpotFeatureConfig
    from merflow.flows.spotting import chunk_jobs_of

    config = SpotFeatureConfig(chunk_frames=100)
    segments = [{"start": 0, "stop": 150, "found_at": 0, "box": {}}, {"start": 150, "stop": 1000, "found_at": 150,
                                                                      "box": {}}]
    record = {"video_key": "v", "video_dir": "/d", "n_frames": 1000, "frame_files": [f"img{i}.jpg" for i in range(1000)],
              "track": {"n_frames": 1000, "segments": segments, "checked": list(range(0, 1000, 30)), "lost": []}}
    first, last = chunk_jobs_of(record, 6, [0, 9], config, {"fingerprint": "f", "track": "t"})
    assert first["frame_files"] == [f"img{i}.jpg" for i in range(106)] and len(first["track"]["segments"]) == 1
    assert last["frame_files"] == [f"img{i}.jpg" for i in range(900, 1000)] and last["stop"] == 1000
    assert [s["start"] for s in last["track"]["segments"]] == [150] and last["stamp"] == {"fingerprint": "f", "track": "t"}
