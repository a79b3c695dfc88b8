"""`merflow export` (flows/export.py): a run's recipe fitted on every subject, from where its row says its data is;
a training run's model beside a spot run's spotters (`merflow train --export`); what cannot be exported, refused in
one line before any work."""

import json

import numpy as np
import pytest

from merflow.flows.cli import main
from merflow.storage import results as result_tables

pytestmark = pytest.mark.slow


def test_merflow_train_export_fits_the_model_on_every_sample_beside_the_spot_runs_spotters(
        training_set, recognition_set, tmp_path, capsys):
    """nearest-centroid on CASME II (LOSO) trained, then exported with the spot run's spotters: its class means are the
    nearest centroid's over every sample of the protocol (training/models/nearest_centroid.py), and it applies."""
    from merflow.flows.protocol import load_protocol
    from merflow.flows.recognise import load_model
    from merflow.training.models.nearest_centroid import FeatureMatrix

    model = tmp_path / "model"
    assert main(["train", "--model", "nearest-centroid", "--catalog", str(training_set["catalog"]), "--store",
                 training_set["store"], "--dataset", "casme2", "--out", recognition_set["results"], "--run", "nc-casme2",
                 "--export", str(model), "--spotter-run", recognition_set["spot_run"]]) == 0
    assert "fitted on" in capsys.readouterr().out
    runs = result_tables.read_table(recognition_set["results"], "runs", run="nc-casme2")
    inputs = json.loads(runs.loc[0, "config"])["data"]["inputs"]  # where the run read its data, for export
    assert inputs["catalog"] == str(training_set["catalog"]) and inputs["dataset"] == "casme2"
    card = json.loads((model / "bundle.json").read_text())
    recogniser = card["recogniser"]
    assert recogniser["model"] == "nearest-centroid" and recogniser["classes"] == list(runs.loc[0, "classes"])
    assert recogniser["frames"] == "colour" and recogniser["features"]["size"] == 28
    assert card["source"]["recogniser"]["run"] == "nc-casme2" and card["source"]["spotters"]["run"] == \
        recognition_set["spot_run"]
    data = load_protocol(training_set["catalog"], training_set["store"], "loso", "casme2")
    assert recogniser["trained_on"]["samples"] == len(data.samples)
    matrix = FeatureMatrix(data.source, data.samples, list(data.samples.index), data.folds[0].label_column,
                           data.classes, "flow")
    means, counts, _ = matrix.centroids(np.arange(len(data.samples)))
    loaded = load_model(str(model))
    assert np.allclose(loaded.model.recogniser.arrays["means"], means, equal_nan=True)
    assert list(loaded.model.recogniser.arrays["counts"]) == list(counts) and loaded.drift == []


def test_a_survey_cnn_run_is_fitted_once_on_every_balanced_sample(training_set, recognition_set):
    """survey-cnn's bundle part: one network on every sample, balanced as the run was (undersampled), main4.m's
    schedule, its softmax scores applied to the clips' apex crops."""
    from merflow.configs.features import FeatureConfig
    from merflow.flows.export import find_run, train_run_recogniser
    from merflow.flows.train import train_flow
    from merflow.training.models.survey_cnn import SurveyConfig

    train_flow(catalog_dir=str(training_set["catalog"]), store=training_set["store"], protocol="loso",
               dataset="casme2", out=recognition_set["results"], run="survey-casme2", model="survey-cnn",
               config=SurveyConfig(epochs=2), max_folds=2)  # the export fits on every sample anyway
    kind, row = find_run(recognition_set["results"], "survey-casme2")
    recogniser, where = train_run_recogniser(row, None, None)
    assert kind == "train" and where["catalog"] == str(training_set["catalog"])
    assert recogniser.model == "survey-cnn" and recogniser.config["epochs"] == 2
    trained = recogniser.trained_on
    assert trained["balance"]["per_class"] * len(recogniser.classes) == trained["samples"]
    assert {"conv_weight", "fc_weight", "bn_mean", "bn_var", "mean_image"} <= set(recogniser.arrays)
    rng = np.random.default_rng(0)
    clips = [{"apex": rng.integers(0, 255, (3, 28, 28), dtype=np.uint8),
              "middle": rng.integers(0, 255, (3, 28, 28), dtype=np.uint8), "apex_source": "spotted"} for _ in range(3)]
    scores = recogniser.scores(clips)
    assert scores.shape == (3, len(recogniser.classes)) and np.allclose(scores.sum(axis=1), 1.0)
    assert np.allclose(recogniser.confidence(scores), scores) and isinstance(recogniser.features, FeatureConfig)


def test_what_cannot_be_exported_is_one_line_before_any_work(recognition_set, tmp_path, capsys):
    results = recognition_set["results"]
    meta = {"run": "meta", "protocol": "loso", "dataset": "casme2", "created_at": "2026-12-07T00:00:00+00:00",
            "config": json.dumps({"encoder": "small"}), "feature_config_hash": "x", "versions": "{}", "timings": "{}",
            "classes": ["a", "b"], "method": "meta-mmfnet", "recipe": "merflow"}
    search = meta | {"run": "searched", "config": json.dumps({"search": {}})}
    for row in (meta, search):
        result_tables.write_part(results, "runs", row["run"], "loso", "all", [row])
    cases = [(["--run", "meta", "--spotter-run", recognition_set["spot_run"]], "Meta-MMFNet has no bundle yet"),
             (["--run", "searched", "--spotter-run", recognition_set["spot_run"]], "searched is a search"),
             (["--run", "meta"], "meta is a training run, which spots nothing"),
             (["--run", "nothing"], "no run 'nothing'"),
             (["--run", "../up"], "run id '../up' is not allowed"),
             (["--run", "meta", "--spotter-run", "a b"], "--spotter-run 'a b' is not allowed"),
             (["--run", recognition_set["spot_run"], "--catalog", str(tmp_path / "gone")], "which is gone")]
    for options, words in cases:
        assert main(["export", "--results", results, "--out", str(tmp_path / "m"), *options]) == 2
        line = capsys.readouterr().out.strip()
        assert line.startswith("error:") and words in line and "\n" not in line, line
    assert not (tmp_path / "m").exists()
    from merflow.storage import bundles

    with bundles.writing(tmp_path / "m"):  # another export writes this folder now: refused before any work
        assert main(["export", "--results", results, "--out", str(tmp_path / "m"), "--run",
                     recognition_set["spot_run"]]) == 1
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "the bundle folder" in line and "is in use by" in line, line
    assert not (tmp_path / "m").exists()
    assert main(["train", "--catalog", "c", "--store", "s", "--dataset", "casme2", "--export", str(tmp_path / "m")]) == 2
    assert "Meta-MMFNet has no bundle yet" in capsys.readouterr().out
    assert main(["train", "--model", "nearest-centroid", "--catalog", "c", "--store", "s", "--dataset", "casme2",
                 "--export", str(tmp_path / "m")]) == 2
    assert "--export needs --spotter-run" in capsys.readouterr().out


def test_an_existing_folder_is_replaced_only_when_it_is_a_bundle(recognition_bundle, tmp_path):
    from merflow.storage import bundles

    card, arrays, manifest = bundles.read_bundle(recognition_bundle)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a folder merflow may replace"):
        bundles.write_bundle(other, card, arrays)
    assert (other / "mine.txt").read_text() == "keep me" and not (other / "manifest.json").exists()
    copy = tmp_path / "copy"
    assert bundles.write_bundle(copy, card, arrays)["hash"] == manifest["hash"]  # the same content, the same hash
    card["created_at"] = "later"
    assert bundles.write_bundle(copy, card, arrays)["hash"] != manifest["hash"]
    assert json.loads((copy / "bundle.json").read_text())["created_at"] == "later"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "notes"]  # no staging folder left behind
