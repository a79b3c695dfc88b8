"""The floor (training/models/nearest_centroid.py): the nearest centroid as a model, its scaling fitted on
training samples only, and the floor every run records on its model's folds, printed by the summary."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pandas as pd
import pytest

from merflow.configs.train import TrainConfig
from merflow.flows.protocol import load_protocol, train_protocol
from merflow.storage import results
from merflow.training.data import FlowScale
from merflow.training.models import nearest_centroid as nc

TINY = TrainConfig(macro_epochs=1, pretrain_epochs=1, meta_epochs=1, batches_per_epoch=1)  # the floor is the point


def test_it_separates_an_obviously_separable_problem_and_never_picks_a_class_it_never_saw():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 5.0]])
    train_y = np.repeat([0, 1, 2], 20)
    train_x = centres[train_y] + rng.normal(scale=0.5, size=(60, 3))
    test_y = np.repeat([0, 1, 2], 10)
    test_x = centres[test_y] + rng.normal(scale=0.5, size=(30, 3))
    scores = nc.centroid_scores(train_x, train_y, test_x, 4)   # class 3 has no training sample
    assert scores.shape == (30, 4)
    assert (scores.argmax(axis=1) == test_y).all()
    assert np.isneginf(scores[:, 3]).all() and np.isfinite(scores[:, :3]).all()
    # The scores are minus the distances to the class means.
    means = np.stack([train_x[train_y == c].mean(axis=0) for c in range(3)])
    np.testing.assert_allclose(-scores[0, :3], np.linalg.norm(means - test_x[0], axis=1))
    # Shuffled labels: no longer separable, so the check above could fail.
    shuffled = nc.centroid_scores(train_x, rng.permutation(train_y), test_x, 3)
    assert (shuffled.argmax(axis=1) == test_y).mean() < 0.9


@pytest.fixture(scope="module")
def loso(training_set):
    return load_protocol(training_set["catalog"], training_set["store"], "loso", "casme2")


def test_the_scaling_and_the_centroids_use_training_samples_only(loso):
    fold = loso.folds[0]
    train = nc.training_keys(fold)
    assert set(train) == set(fold.fit_keys) | set(fold.validation_keys) and not set(train) & set(fold.test_keys)
    means, counts, scale = nc.fold_centroids(fold, loso.source, loso.samples)
    # The fitted scale is FlowScale.fit on the training samples' flows (u, v), as training/stages.py scales Meta-MMFNet's.
    assert scale.divisors == FlowScale.fit(loso.source.flows(train)[:, :2]).divisors
    assert counts.sum() == len(train)
    scores = nc.fold_scores(fold, loso.source, loso.samples)

    # A test sample's flow made 1000 times larger: no divisor and no centroid changes, only its own scores.
    source = copy.copy(loso.source)
    source.arrays = loso.source.arrays | {"flow": dict(loso.source.flow)}
    test_key = fold.test_keys[0]
    source.flow[test_key] = loso.source.flow[test_key] * 1000
    means_after, _, scale_after = nc.fold_centroids(fold, source, loso.samples)
    assert scale_after == scale
    np.testing.assert_array_equal(means_after, means)
    changed = nc.fold_scores(fold, source, loso.samples)
    np.testing.assert_array_equal(changed[1:], scores[1:])
    assert not np.allclose(changed[0], scores[0])
    # The same done to a training sample moves the scale: the check above can fail.
    source.arrays = loso.source.arrays | {"flow": dict(loso.source.flow)}
    source.flow[train[0]] = loso.source.flow[train[0]] * 1000
    assert nc.fold_centroids(fold, source, loso.samples)[2] != scale

    # The many-fold path (totals minus each fold's non-training rows) equals the direct computation.
    column, classes = fold.label_column, fold.classes
    divisors = np.asarray(scale.divisors, np.float32)[None, :, None, None]
    train_x = loso.source.flows(train)[:, :2] / divisors
    test_x = loso.source.flows(fold.test_keys)[:, :2] / divisors
    train_y = np.array([classes.index(loso.samples.at[k, column]) for k in train])
    np.testing.assert_allclose(scores, nc.centroid_scores(train_x, train_y, test_x, len(classes)), rtol=1e-5)
    rows = pd.concat(nc.predictions(loso.folds[:3], loso.source, loso.samples), ignore_index=True)
    first = rows[rows["fold"] == fold.name]
    np.testing.assert_allclose(np.stack(first["scores"]), scores, rtol=1e-5)
    for features in ("difference", "both"):
        assert nc.fold_scores(fold, loso.source, loso.samples, features).shape == (len(fold.test_keys), len(classes))


def test_train_model_nearest_centroid_writes_the_tables(training_set, loso, tmp_path, capsys):
    from merflow.flows.cli import main

    out = tmp_path / "results"
    assert main(["train", "--model", "nearest-centroid", "--catalog", str(training_set["catalog"]),
                 "--store", training_set["store"], "--protocol", "loso", "--dataset", "casme2", "--out", str(out),
                 "--run", "nc"]) == 0
    printed = capsys.readouterr().out
    assert "nearest-centroid" in printed and "floor (nearest-centroid, flow u, v)" in printed  # the floor's row
    predictions = results.read_table(out, "predictions", run="nc")
    metrics = results.read_table(out, "metrics", run="nc")
    runs = results.read_table(out, "runs", run="nc")
    assert set(predictions["model"]) == {"nearest-centroid"} and set(predictions["method"]) == {"nearest-centroid"}
    assert set(runs["method"]) == {"nearest-centroid"} and predictions["fold"].nunique() == 26
    n = len(loso.samples)  # the 4-class samples of the set
    assert predictions["sample_key"].is_unique and len(predictions) == n  # every sample tested once
    pooled = metrics.query("scope == 'pooled' and split == 'test'").iloc[0]
    accuracy = (predictions["label"] == predictions["pred"]).mean()
    assert pooled["n"] == n and pooled["accuracy"] == pytest.approx(accuracy)
    print(f"nearest-centroid (flow u, v), LOSO casme2 conftest set: pooled accuracy {accuracy:.3f}, "
          f"UF1 {pooled['uf1']:.3f}, UAR {pooled['uar']:.3f}")
    # The run's floor is the same model on the same folds: the same predictions.
    floor = results.read_table(out, "floor_predictions", run="nc")
    assert set(floor["model"]) == {"floor"} and set(floor["method"]) == {"nearest-centroid"}
    merged = floor.merge(predictions, on=["fold", "sample_key"], suffixes=("_floor", ""))
    assert len(merged) == n and (merged["pred_floor"] == merged["pred"]).all()


@pytest.fixture(scope="module")
def meta_run(training_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("floor-run")
    summary = train_protocol(training_set["catalog"], training_set["store"], "loso", "casme2", TINY, out,
                             run="meta", max_folds=2)
    results.write_run(out, **summary.tables())
    return summary, out


def test_a_meta_mmfnet_run_carries_its_floor_on_the_same_folds(meta_run, loso):
    summary, out = meta_run
    model = results.read_table(out, "predictions", run="meta")
    floor = results.read_table(out, "floor_predictions", run="meta")
    model_test = model[(model["split"] == "test") & (model["model"] == "micro")]
    # Same folds (only the two that trained, not the protocol's 26) and the same test samples in each.
    assert set(floor["fold"]) == set(model_test["fold"]) == {f.name for f in loso.folds[:2]}
    for fold, rows in model_test.groupby("fold"):
        assert sorted(floor.loc[floor["fold"] == fold, "sample_key"]) == sorted(rows["sample_key"])
    assert set(floor["split"]) == {"test"} and set(floor["model"]) == {"floor"}
    # The model's own tables hold no floor rows (their queries are unchanged), the floor tables only the floor.
    assert set(model["model"]) == {"micro", "macro", "fused"} and set(model["method"]) == {"meta-mmfnet"}
    floor_metrics = results.read_table(out, "floor_metrics", run="meta")
    pooled = floor_metrics.query("scope == 'pooled'").iloc[0]
    assert pooled["n"] == len(floor) and pooled["accuracy"] == pytest.approx((floor["label"] == floor["pred"]).mean())
    assert summary.floor_metrics.query("scope == 'pooled'")["accuracy"].iat[0] == pytest.approx(pooled["accuracy"])
    from merflow.training.report import floor_table  # the row `merflow train` prints after the models'

    (row,) = floor_table(summary.floor_metrics)
    assert row["model"].startswith("floor") and row["accuracy"] == round(pooled["accuracy"], 4)
    assert "floor" in __import__("json").loads(results.read_table(out, "runs", run="meta")["timings"].iat[0])


def test_summary_prints_the_floor_beside_the_models_and_old_runs_still_summarise(meta_run, tmp_path, capsys):
    from merflow.flows.cli import main
    from merflow.storage import queries
    from merflow.training import report

    _, out = meta_run
    tables = report.summary_tables(queries.table(out, "metrics"), queries.table(out, "runs"),
                                   floor=queries.table(out, "floor_metrics"))
    (title, table), = tables
    assert table["model"].tolist() == ["micro", "macro", "fused", "floor"] and "floor: nearest-centroid" in title
    floor = results.read_table(out, "floor_metrics", run="meta").query("scope == 'pooled'").iloc[0]
    assert table.loc[3, "accuracy"] == pytest.approx(floor["accuracy"])
    assert main(["results", "summary", "--results", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "floor" in printed and "fused" in printed

    # A run written before the floor (no floor tables): the same table, without the floor row.
    old = tmp_path / "old"
    shutil.copytree(out, old, ignore=shutil.ignore_patterns("floor_*"))
    assert queries.table(old, "floor_metrics").empty
    assert main(["results", "summary", "--results", str(old)]) == 0
    printed = capsys.readouterr().out
    assert "fused" in printed and "floor" not in printed


def _protocol(arrays: dict, conventions: dict | None = None):
    """Three subjects of two classes, in memory: one sample each of class a and b per subject."""
    from merflow.configs.features import FeatureConfig
    from merflow.training.data import FeatureSource
    from merflow.training.folds import folds
    from merflow.training.run import ProtocolData

    rows = [{"sample_key": f"casme2/s{s}/{c}", "dataset": "casme2", "subject": f"s{s}", "subject_key": f"casme2/s{s}",
             "is_macro": False, "label_megc2019": c} for s in range(3) for c in ("negative", "positive")]
    catalog = pd.DataFrame(rows)
    for name, make in arrays.items():
        arrays[name] = {r["sample_key"]: make(r["label_megc2019"] == "positive") for r in rows}
    source = FeatureSource(FeatureConfig(size=28), arrays, conventions=conventions)
    fold_list = folds(catalog, "megc2019", validation_fraction=0.0)
    return ProtocolData(fold_list, catalog.set_index("sample_key", drop=False), source, source.config, [], [], ())


def test_flow_channels_are_found_by_name_whatever_their_stored_order():
    imported = {"flow": {"origin": "imported", "channels": ["strain", "v", "u"], "scaling": "0..255"}}

    def flow(positive: bool) -> np.ndarray:  # u (stored last) tells the classes apart; strain (first) is noise
        image = np.random.default_rng(int(positive)).integers(0, 255, (3, 4, 4)).astype(np.uint8)
        image[2] = 200 if positive else 20
        return image

    data = _protocol({"flow": flow}, imported)
    floor = nc.floor(data, data.folds)
    assert floor["input"]["text"] == "imported flow u, v" and floor["input"]["arrays"][0]["stored_channels"] == [
        "strain", "v", "u"]
    pooled = floor["metrics"].query("scope == 'pooled'").iloc[0]
    assert pooled["accuracy"] == 1.0
    features = nc.sample_features(data.source, "casme2/s0/positive", "flow-strain")
    assert np.array_equal(features, data.source.arrays["flow"]["casme2/s0/positive"][[2, 1, 0]])


def test_the_floor_reads_the_apex_pixels_where_the_inputs_are_images_only():
    data = _protocol({"apex": lambda positive: np.full((3, 4, 4), 250 if positive else 5, np.uint8)},
                     {"apex": {"origin": "imported", "channels": ["red", "green", "blue"], "scaling": "0..255"}})
    floor = nc.floor(data, data.folds)
    assert floor["input"]["features"] == "apex" and floor["metrics"].query("scope == 'pooled'").iloc[0]["accuracy"] == 1
    with pytest.raises(LookupError, match="nearest-centroid reads the 'flow' array.*they hold apex \\(imported\\)"):
        nc.plan(data, nc.default_config(), "megc2019", None)
    assert nc.plan(data, nc.default_config(features="apex"), "megc2019", None).notes["input"]["features"] == "apex"
