"""Meta-MMFNet's stages (training/stages.py) on real (synthetic) features: leakage, checkpoints, macro
pretraining, folds short of a class."""

import dataclasses

import numpy as np
import pytest

from merflow.configs.train import TrainConfig
from merflow.storage import catalog as catalog_store
from merflow.storage.checkpoints import Checkpoints
from merflow.storage.features import open_features, read_feature_arrays
from merflow.training import loops
from merflow.training.data import FeatureSource
from merflow.training.folds import folds, macro_samples, protocol_samples
from merflow.training.stages import FoldSkipped, pretrain_macro, run_fold

TINY = TrainConfig(macro_epochs=3, pretrain_epochs=4, meta_epochs=2, batches_per_epoch=3)


@pytest.fixture(scope="module")
def parts(training_set):
    catalog = catalog_store.read_samples(training_set["catalog"])
    config = open_features(training_set["store"], "casme2").config
    source = FeatureSource(**read_feature_arrays(training_set["store"], ["casme2", "ckplus"], config))
    macro = macro_samples(catalog)
    return catalog, source, macro


def _macro(parts, tmp_path, config=TINY):
    _, source, macro = parts
    return pretrain_macro(source, macro["sample_key"].tolist(), macro["label_ckplus7"].tolist(),
                          tuple(sorted(macro["label_ckplus7"].unique())), config, Checkpoints(tmp_path))


@pytest.mark.integration
@pytest.mark.slow
def test_macro_pretraining_changes_the_encoder(parts, tmp_path):
    trained = _macro(parts, tmp_path)
    assert trained["samples"] == len(parts[2]) > 20
    assert trained["weight_change"] > 1.0
    again = _macro(parts, tmp_path)  # from its checkpoint: the same weights, no training
    assert all(np.array_equal(trained["state"][k], again["state"][k]) for k in trained["state"])


def _shuffle_test_labels(catalog, fold, column):
    shuffled = catalog.copy()
    rows = shuffled["sample_key"].isin(fold.test_keys)
    labels = shuffled.loc[rows, column].tolist()
    # Every test label changes: rotate, and where that keeps a label, take another class.
    rotated = labels[1:] + labels[:1]
    changed = [new if new != old else next(c for c in fold.classes if c != old) for old, new in zip(labels, rotated)]
    shuffled.loc[rows, column] = changed
    assert shuffled.loc[rows, column].tolist() != labels
    return shuffled


@pytest.mark.integration
@pytest.mark.slow
def test_shuffling_the_test_subjects_labels_changes_no_chosen_setting(parts, tmp_path):
    catalog, source, _ = parts
    macro = _macro(parts, tmp_path / "macro")
    # The epochs chosen on validation (the default keeps the last): by accuracy in one fold, by loss in the other.
    choices = [TINY.replace(epoch_choice=choice) for choice in ("validation", "loss")]
    for fold, config in zip(folds(catalog, "loso", "casme2")[:2], choices):
        shuffled = _shuffle_test_labels(catalog, fold, fold.label_column)
        twin = next(f for f in folds(shuffled, "loso", "casme2") if f.name == fold.name)
        assert (twin.fit_keys, twin.validation_keys, twin.test_keys) == (fold.fit_keys, fold.validation_keys,
                                                                        fold.test_keys)
        results = [run_fold(f, source, protocol_samples(c, "loso", "casme2").set_index("sample_key", drop=False),
                            macro, config, Checkpoints(tmp_path / name))
                   for f, c, name in ((fold, catalog, "clean"), (twin, shuffled, "shuffled"))]
        assert results[0]["chosen"] == results[1]["chosen"]
        for model in ("micro", "macro"):
            for split in ("validation", "test"):
                np.testing.assert_array_equal(results[0]["scores"][model][split], results[1]["scores"][model][split])


def _one_fold(parts, tmp_path, index):
    """The fold's run_fold with everything but the configuration bound, and the fold."""
    catalog, source, _ = parts
    macro = _macro(parts, tmp_path / "macro")
    fold = folds(catalog, "loso", "casme2")[index]
    samples = protocol_samples(catalog, "loso", "casme2").set_index("sample_key", drop=False)
    return (lambda config: run_fold(fold, source, samples, macro, config, Checkpoints(tmp_path / "run"))), fold


@pytest.mark.integration
@pytest.mark.slow
def test_a_fold_resumes_from_its_checkpoints(parts, tmp_path):
    train, fold = _one_fold(parts, tmp_path, 3)
    first = train(TINY)
    folder = tmp_path / "run" / fold.name
    stamps = {p.name.split("-")[0]: (p.name, p.stat().st_mtime_ns) for p in folder.glob("*.pt")}
    assert set(stamps) == {"micro_pretrain", "micro", "macro", "evaluation"}
    folder.joinpath(stamps["evaluation"][0]).unlink()  # interrupted after training, before evaluation
    second = train(TINY)
    for stage in ("micro_pretrain", "micro", "macro"):
        assert folder.joinpath(stamps[stage][0]).stat().st_mtime_ns == stamps[stage][1]
    assert first["chosen"] == second["chosen"]
    np.testing.assert_allclose(first["scores"]["micro"]["test"], second["scores"]["micro"]["test"], rtol=1e-5)
    # Another number of shots reuses the pretrained encoder but meta-trains anew, beside the first.
    third = train(TrainConfig(**{**TINY.to_dict(), "shots": 3}))
    names = {p.name for p in folder.glob("*.pt")}
    assert len(names) == 7 and stamps["micro_pretrain"][0] in names and stamps["micro"][0] in names
    assert folder.joinpath(stamps["micro_pretrain"][0]).stat().st_mtime_ns == stamps["micro_pretrain"][1]
    assert third["chosen"]["alpha"] in TINY.alphas
    assert third["chosen"]["micro_pretrain_epoch"] == first["chosen"]["micro_pretrain_epoch"]


@pytest.mark.integration
@pytest.mark.slow
def test_an_unreadable_checkpoint_is_retrained(parts, tmp_path):
    train, fold = _one_fold(parts, tmp_path, 4)
    first = train(TINY)
    evaluation = next((tmp_path / "run" / fold.name).glob("evaluation-*.pt"))
    evaluation.write_bytes(evaluation.read_bytes()[:100])  # a torn file
    second = train(TINY)
    assert first["chosen"] == second["chosen"]
    assert evaluation.stat().st_size > 100


def _fold_with_fit(fold, fit_keys):
    return dataclasses.replace(fold, fit_keys=tuple(sorted(fit_keys)))


@pytest.mark.integration
@pytest.mark.slow
def test_a_fold_whose_fit_split_is_short_of_a_class_trains_and_records_the_class_by_name(parts, tmp_path):
    catalog, source, _ = parts
    macro = _macro(parts, tmp_path / "macro")
    fold = folds(catalog, "loso", "casme2")[5]
    samples = protocol_samples(catalog, "loso", "casme2").set_index("sample_key", drop=False)
    labels = samples[fold.label_column]
    # Like SAMM's contempt in a small fold: one fit sample of the class is left.
    rare = [k for k in fold.fit_keys if labels[k] == "repression"]
    short = _fold_with_fit(fold, [k for k in fold.fit_keys if labels[k] != "repression"] + rare[:1])
    result = run_fold(short, source, samples, macro, TINY, Checkpoints(tmp_path / "run"))
    assert result["chosen"]["shortfalls"] == {"repression": {"samples": 1, "queries": 0, "distinct_shots": 1}}
    assert result["scores"]["micro"]["test"].shape == (len(fold.test_keys), 4)
    # The same fold in full has no shortfall, and its checkpoints are other files (other fit samples).
    full = run_fold(fold, source, samples, macro, TINY, Checkpoints(tmp_path / "run"))
    assert full["chosen"]["shortfalls"] == {}
    assert len(list((tmp_path / "run" / fold.name).glob("micro_pretrain-*.pt"))) == 2


@pytest.mark.integration
@pytest.mark.slow
def test_a_fold_with_nothing_to_train_on_is_skipped_naming_the_fold_and_the_classes(parts, tmp_path):
    catalog, source, _ = parts
    fold = folds(catalog, "loso", "casme2")[6]
    samples = protocol_samples(catalog, "loso", "casme2").set_index("sample_key", drop=False)
    labels = samples[fold.label_column]
    only_disgust = _fold_with_fit(fold, [k for k in fold.fit_keys if labels[k] == "disgust"])
    with pytest.raises(FoldSkipped) as skipped:
        run_fold(only_disgust, source, samples, {"state": {}}, TINY, Checkpoints(tmp_path))
    message = str(skipped.value)
    assert message.startswith(f"fold {fold.name} skipped: its fit split: fewer than 2 classes")
    assert all(name in message for name in fold.classes) and "happiness 0" in message
    assert not list(tmp_path.rglob("*.pt"))  # nothing was trained


def test_no_stage_keeps_an_epoch_before_its_minimum(parts, tmp_path):
    train, _ = _one_fold(parts, tmp_path, 2)
    config = TINY.replace(epoch_choice="loss", min_epoch_fraction=1.0)
    assert loops.first_eligible_epoch(config.pretrain_epochs, config) == config.pretrain_epochs
    chosen = train(config)["chosen"]
    assert chosen["micro_pretrain_epoch"] == config.pretrain_epochs
    assert chosen["micro_meta_epoch"] == chosen["macro_meta_epoch"] == config.meta_epochs
