"""Meta-MMFNet's stages on real (synthetic) features: leakage, checkpoints, macro pretraining."""

import numpy as np
import pytest

from merflow.storage import catalog as catalog_store
from merflow.storage.features import open_features
from merflow.training.data import FeatureSource
from merflow.training.fit import TrainConfig, choose_alpha, pretrain_macro, run_fold
from merflow.training.folds import folds, macro_samples, protocol_samples

TINY = TrainConfig(macro_epochs=3, pretrain_epochs=4, meta_epochs=2, batches_per_epoch=3)


@pytest.fixture(scope="module")
def parts(training_set):
    catalog = catalog_store.read_samples(training_set["catalog"])
    config = open_features(training_set["store"], "casme2").config
    source = FeatureSource(training_set["store"], ["casme2", "ckplus"], config)
    macro = macro_samples(catalog)
    return catalog, source, macro


def _macro(parts, tmp_path, config=TINY):
    _, source, macro = parts
    return pretrain_macro(source, macro["sample_key"].tolist(), macro["label_ckplus7"].tolist(),
                          tuple(sorted(macro["label_ckplus7"].unique())), config, tmp_path)


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


def test_shuffling_the_test_subjects_labels_changes_no_chosen_setting(parts, tmp_path):
    catalog, source, _ = parts
    macro = _macro(parts, tmp_path / "macro")
    for fold in folds(catalog, "loso", "casme2")[:2]:
        shuffled = _shuffle_test_labels(catalog, fold, fold.label_column)
        twin = next(f for f in folds(shuffled, "loso", "casme2") if f.name == fold.name)
        assert (twin.fit_keys, twin.validation_keys, twin.test_keys) == (fold.fit_keys, fold.validation_keys,
                                                                        fold.test_keys)
        results = [run_fold(f, source, protocol_samples(c, "loso", "casme2").set_index("sample_key", drop=False),
                            macro, TINY, tmp_path / name)
                   for f, c, name in ((fold, catalog, "clean"), (twin, shuffled, "shuffled"))]
        assert results[0]["chosen"] == results[1]["chosen"]
        for model in ("micro", "macro"):
            for split in ("validation", "test"):
                np.testing.assert_array_equal(results[0]["scores"][model][split], results[1]["scores"][model][split])


def test_a_fold_resumes_from_its_checkpoints(parts, tmp_path):
    catalog, source, _ = parts
    macro = _macro(parts, tmp_path / "macro")
    fold = folds(catalog, "loso", "casme2")[3]
    samples = protocol_samples(catalog, "loso", "casme2").set_index("sample_key", drop=False)
    first = run_fold(fold, source, samples, macro, TINY, tmp_path / "run")
    folder = tmp_path / "run" / fold.name
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.pt")}
    assert set(stamps) == {"micro.pt", "macro.pt", "evaluation.pt"}
    (folder / "evaluation.pt").unlink()  # interrupted after training, before evaluation
    second = run_fold(fold, source, samples, macro, TINY, tmp_path / "run")
    assert {p: folder.joinpath(p).stat().st_mtime_ns for p in ("micro.pt", "macro.pt")} == \
           {p: stamps[p] for p in ("micro.pt", "macro.pt")}
    assert first["chosen"] == second["chosen"]
    np.testing.assert_allclose(first["scores"]["micro"]["test"], second["scores"]["micro"]["test"], rtol=1e-5)
    # A changed configuration does not reuse another configuration's checkpoints.
    third = run_fold(fold, source, samples, macro, TrainConfig(**{**TINY.to_dict(), "shots": 3}), tmp_path / "run")
    assert folder.joinpath("micro.pt").stat().st_mtime_ns != stamps["micro.pt"]
    assert third["chosen"]["alpha"] in TINY.alphas


def test_alpha_is_chosen_on_validation_scores_only():
    micro = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    macro = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 3.0]])
    labels = np.array([0, 1, 1])
    # α = 0: predictions 0, 1, 0 (2/3); α >= 0.5: the third flips to class 1 (3/3), the first stays until α = 2.
    assert choose_alpha(micro, macro, labels, (0.0, 0.5, 1.0)) == 0.5
    assert choose_alpha(micro, macro, np.array([], int), (0.0, 0.5)) == 1.0
