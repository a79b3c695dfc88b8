"""A whole protocol under real-data faults (training/run.py): a sample the features flow quarantined,
a run id reused for other data, and the published recipe on one tiny fold."""

import json
import shutil

import numpy as np
import pytest

from merflow.configs.train import TrainConfig
from merflow.flows.cli.options import model_config, tune_model_config
from merflow.flows.cli.parser import build_parser
from merflow.flows.protocol import load_protocol, train_protocol
from merflow.storage import catalog as catalog_store
from merflow.storage import results
from merflow.storage.features import FeatureStore
from merflow.training.folds import folds
from merflow.training.stages import data_key

TINY = TrainConfig(macro_epochs=2, pretrain_epochs=2, meta_epochs=1, batches_per_epoch=2)


@pytest.fixture(scope="module")
def quarantined(training_set, tmp_path_factory) -> dict:
    """A copy of the session's feature store in which the features flow quarantined one sample of the
    first LOSO fold's subject: its shard's completion mark says so, as compute_shard writes it."""
    catalog = catalog_store.read_samples(training_set["catalog"])
    first = folds(catalog, "loso", "casme2")[0]
    key = first.test_keys[0]
    store = tmp_path_factory.mktemp("quarantined") / "features.zarr"
    shutil.copytree(training_set["store"], store)
    feature_store = FeatureStore(store)
    group = next(g["name"] for g in feature_store.groups() if g["dataset"] == "casme2")
    for mark in sorted((store / group / "_done").glob("*.json")):
        content = json.loads(mark.read_text())
        if key in content["samples"]:
            content["samples"][key] = {"status": "quarantined", "reason": "blank_frame",
                                       "detail": "frame 12 is blank (all pixels about 0)",
                                       "fingerprint": content["samples"][key]["fingerprint"]}
            mark.write_text(json.dumps(content))
            break
    else:
        raise AssertionError(f"{key} is in no mark")
    return {"store": str(store), "key": key, "first": first, "catalog": training_set["catalog"]}


@pytest.mark.integration
@pytest.mark.slow
def test_a_quarantined_sample_is_left_out_before_the_folds_and_every_fold_runs(quarantined, tmp_path):
    data = load_protocol(quarantined["catalog"], quarantined["store"], "loso", "casme2")
    key = quarantined["key"]
    assert data.excluded == {key: {"reason": "blank_frame", "detail": "frame 12 is blank (all pixels about 0)"}}
    assert len(data.folds) == 26 and key not in data.samples.index
    assert all(key not in f.fit_keys + f.validation_keys + f.test_keys for f in data.folds)
    heard = []
    # The first fold held the sample as test, the second as fit or validation: before, both raised.
    summary = train_protocol(quarantined["catalog"], quarantined["store"], "loso", "casme2", TINY, tmp_path,
                             run="quarantine", on_note=heard.append, max_folds=2)
    results.write_run(tmp_path, **summary.tables())
    assert summary.folds == 2 and set(summary.chosen) == {f.name for f in data.folds[:2]}
    assert any("1 samples left out" in line and "blank_frame 1" in line and key in line for line in heard)
    predictions = results.read_table(tmp_path, "predictions", run="quarantine")
    assert key not in set(predictions["sample_key"])
    test = predictions[(predictions["split"] == "test") & (predictions["model"] == "micro")]
    assert set(test["sample_key"]) == set(quarantined["first"].test_keys) - {key} | set(data.folds[1].test_keys)
    recorded = json.loads(results.read_table(tmp_path, "runs", run="quarantine").loc[0, "config"])["data"]
    assert recorded["excluded_samples"][key]["reason"] == "blank_frame" and recorded["skipped_folds"] == {}


@pytest.mark.integration
@pytest.mark.slow
def test_a_reused_run_id_with_another_class_set_is_refused_and_never_loads_its_weights(training_set, tmp_path):
    catalog, store = training_set["catalog"], training_set["store"]
    train_protocol(catalog, store, "loso", "casme2", TINY, tmp_path, run="X", max_folds=1)
    with pytest.raises(ValueError, match=r"run 'X' was made with other data \(.*classes.*label_column.*\)"):
        train_protocol(catalog, store, "loso", "casme2", TINY, tmp_path, run="X", class_set="casme2_5", max_folds=1)
    # The same run id, same data: resumes (every stage from its checkpoint).
    assert train_protocol(catalog, store, "loso", "casme2", TINY, tmp_path, run="X", max_folds=1).folds == 1
    # And the checkpoints themselves are keyed by the data: the same fold of another class set has
    # another key, so no stage could load the 4-class weights even under one run id.
    four, five = (load_protocol(catalog, store, "loso", "casme2", class_set) for class_set in ("casme2_4", "casme2_5"))
    fold4 = four.fold("loso-casme2-sub01")
    fold5 = five.fold("loso-casme2-sub01")
    keys = [data_key(d.source, f.label_column, f.classes, d.samples[f.label_column],
                     {"fit": f.fit_keys, "validation": f.validation_keys}) for d, f in ((four, fold4), (five, fold5))]
    assert keys[0] != keys[1]
    # One label changed in the catalog rows gives another key too.
    relabelled = four.samples[fold4.label_column].copy()
    changed = fold4.fit_keys[0]
    relabelled[changed] = next(c for c in fold4.classes if c != relabelled[changed])
    assert data_key(four.source, fold4.label_column, fold4.classes, relabelled,
                    {"fit": fold4.fit_keys, "validation": fold4.validation_keys}) != keys[0]


PUBLISHED_ARGS = ["train", "--catalog", "c", "--store", "s", "--dataset", "casme2", "--recipe", "published"]


def test_recipe_published_is_the_published_codes_training():
    config = model_config(build_parser().parse_args(PUBLISHED_ARGS))
    assert config == TrainConfig.from_recipe("published")
    expected = {"recipe": "published", "encoder": "resnet18", "layout": "stack_height", "weight_decay": 0.0,
                "batch_size": 128, "pretrain_lr": 0.01, "pretrain_lr_step": 3, "meta_lr": 0.05, "meta_lr_step": 3,
                "momentum": 0.9, "shots": 5, "queries": 1, "batches_per_epoch": 30, "episodes_per_batch": 4,
                "meta_epochs": 7, "pretrain_epochs": 50, "macro_epochs": 100, "epoch_choice": "last",
                "validation_fraction": 0.0, "duplicate_fit": True,
                "alphas": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)}
    assert {k: config.to_dict()[k] for k in expected} == expected
    # merflow's own defaults are unchanged, and given options override the recipe's values only.
    assert model_config(build_parser().parse_args(PUBLISHED_ARGS[:-2])) == TrainConfig()
    short = model_config(build_parser().parse_args(PUBLISHED_ARGS + ["--meta-epochs", "1"]))
    assert short.meta_epochs == 1 and short.batch_size == 128 and short.encoder == "resnet18"
    # A search needs validation subjects to choose on: tune keeps 20% of them, the rest is published.
    tune_args = build_parser().parse_args(["tune"] + PUBLISHED_ARGS[1:])
    assert tune_model_config(tune_args) == TrainConfig.from_recipe("published", validation_fraction=0.2)
    from merflow.configs.search import SearchConfig

    with pytest.raises(ValueError, match="validation_fraction must be above 0"):
        SearchConfig(catalog_dir="c", store="s", base=TrainConfig.from_recipe("published"))
    with pytest.raises(ValueError, match="unknown recipe"):
        TrainConfig.from_recipe("paper")


@pytest.mark.integration
@pytest.mark.slow
def test_recipe_published_trains_a_fold_on_every_training_subject_and_records_the_feature_mismatch(
        training_set, tmp_path):
    # Batch 128, no weight decay, StepLR pretraining, fixed schedule, no validation, the duplicated fit
    # list and the α grid as published; the schedule is cut and the encoder is the small one, so that it
    # takes seconds (ResNet-18 costs ~3 s a batch of 128 here; benchmarks/README.md has its figures).
    config = TrainConfig.from_recipe("published", macro_epochs=1, pretrain_epochs=2, meta_epochs=1,
                                     batches_per_epoch=2, encoder="small", device="cpu")
    heard = []
    summary = train_protocol(training_set["catalog"], training_set["store"], "loso", "casme2", config, tmp_path,
                             run="published", on_note=heard.append, max_folds=1)
    results.write_run(tmp_path, **summary.tables())
    data = load_protocol(training_set["catalog"], training_set["store"], "loso", "casme2", validation_fraction=0.0)
    fold = data.folds[0]
    assert fold.validation_keys == () and len(fold.fit_keys) + len(fold.test_keys) == len(data.samples)
    chosen = summary.chosen[fold.name]
    # A fixed schedule (the last epoch of each stage) and no α chosen on anything: the plain sum.
    assert chosen["micro_pretrain_epoch"] == 2 and chosen["micro_meta_epoch"] == chosen["macro_meta_epoch"] == 1
    assert chosen["alpha"] == 1.0 and chosen["alpha_chosen_on_validation"] is False
    assert summary.notes["feature_mismatch"] == ["size 28 (published: 80)", "first_frame onset (published: onset+1)"]
    assert any("merflow features --size 80 --first-frame onset+1" in line for line in heard)
    runs = results.read_table(tmp_path, "runs", run="published")
    recorded = json.loads(runs.loc[0, "config"])
    assert recorded["recipe"] == "published" and recorded["batch_size"] == 128 and recorded["weight_decay"] == 0
    assert recorded["data"]["feature_mismatch"] == summary.notes["feature_mismatch"]
    metrics = results.read_table(tmp_path, "metrics", run="published")
    fused = metrics[(metrics["model"] == "fused") & (metrics["scope"] == "pooled") & (metrics["split"] == "test")]
    assert sorted(np.round(fused.loc[~fused["chosen"], "alpha"].astype(float), 1)) == list(config.alphas)


@pytest.mark.integration
@pytest.mark.slow
def test_a_fold_that_cannot_train_is_skipped_with_its_reason_and_the_others_run(training_set, tmp_path):
    """LOVO on a catalog where one class has a single sample: its own fold has nothing to tell that class
    from (skipped, named), every other fold trains with one support-only sample of it (named)."""
    catalog = catalog_store.read_samples(training_set["catalog"])
    column = "label_casme2_4"
    rows = catalog[catalog[column].notna()]
    happy = rows[rows[column] == "happiness"].iloc[0]
    lone = happy["sample_key"]
    others = sorted(set(rows["subject_key"]) - {happy["subject_key"]})[:4]
    disgust = rows[(rows[column] == "disgust") & rows["subject_key"].isin(others)]["sample_key"].iloc[:6]
    edited = catalog.copy()
    edited.loc[~edited["sample_key"].isin(set(disgust) | {lone}), column] = None
    shutil.copytree(training_set["catalog"], tmp_path / "catalog")
    catalog_store.write_table(tmp_path / "catalog", catalog_store.SAMPLES_FILE, edited)
    heard = []
    summary = train_protocol(tmp_path / "catalog", training_set["store"], "lovo", "casme2", TINY, tmp_path / "out",
                             run="lovo-short", on_note=heard.append)
    results.write_run(tmp_path / "out", **summary.tables())
    skipped = summary.notes["skipped_folds"]
    assert list(skipped) == [f"lovo-{lone}"] and "fewer than 2 classes" in skipped[f"lovo-{lone}"]
    assert "happiness 0" in skipped[f"lovo-{lone}"] and any(f"fold lovo-{lone} skipped" in line for line in heard)
    assert summary.folds == 6 and set(summary.chosen) == {f"lovo-{k}" for k in disgust}
    shortfalls = summary.notes["fold_shortfalls"]
    assert all(short["happiness"] == {"samples": 1, "queries": 0, "distinct_shots": 1}
               for fold, short in shortfalls.items() if fold != f"lovo-{lone}")
    recorded = json.loads(results.read_table(tmp_path / "out", "runs", run="lovo-short").loc[0, "config"])["data"]
    assert recorded["skipped_folds"] == skipped
    predictions = results.read_table(tmp_path / "out", "predictions", run="lovo-short")
    assert lone not in set(predictions.loc[predictions["split"] == "test", "sample_key"])
