"""The survey baseline (training/models/survey_cnn.py): the network as net4.mat names it, MATLAB's
training rules, stacked folds equal to folds trained one by one, and a synthetic fused run over all five
datasets (LOVO and LOSO) through the real ingest and features flows."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from merflow.tasks.matlab import structs
from merflow.training.models import survey_cnn as sc

from requires import requires_c_compiler

# ------------------------------------------------------------------------------------------ net4.mat


def _plain(value):
    """A struct's values as the assertions below compare them: numbers as flat lists (column-major)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.ravel(order="F").tolist()
    return value


def layer_structs(path) -> list[dict]:
    """The layers' settings in net4.mat / net9.mat (MCOS objects: tasks/matlab.py reads them)."""
    return [_plain(s) for s in structs(path) if "Name" in s]


@pytest.mark.parametrize("name, classes", [("net4.mat", 4), ("net9.mat", 9)])
def test_network_matches_the_survey_layer_graph(reference, name, classes):
    layers = {s["Name"]: s for s in layer_structs(reference / "survey" / name)}
    assert list(layers) == ["imageinput", "conv_2_1", "relu_2_1", "batchnorm_2_1", "maxpool_7", "dropout_2_1",
                            "avgpool", "fc_2", "softmax", "classoutput"]
    assert layers["imageinput"]["InputSize"] == [sc.INPUT_SIZE, sc.INPUT_SIZE, sc.INPUT_CHANNELS]
    assert layers["imageinput"]["Normalization"]["Type"] == "zerocenter"
    conv = layers["conv_2_1"]
    assert (conv["FilterSize"], conv["NumFilters"], conv["Stride"], conv["PaddingMode"]) == (
        [sc.KERNEL, sc.KERNEL], [sc.FILTERS], [1.0, 1.0], "same")
    assert (conv["Weights"]["L2Factor"], conv["Bias"]["L2Factor"]) == ([1.0], [0.0])
    assert layers["batchnorm_2_1"]["Epsilon"] == [sc.BN_EPSILON]
    pool = layers["maxpool_7"]
    assert (pool["PoolSize"], pool["Stride"], pool["PaddingMode"]) == ([sc.POOL] * 2, [sc.POOL] * 2, "same")
    assert layers["dropout_2_1"]["Probability"] == [sc.SurveyConfig().dropout]
    average = layers["avgpool"]
    assert (average["PoolSize"], average["Stride"], average["PaddingSize"]) == ([sc.AVG_POOL] * 2, [sc.AVG_POOL] * 2,
                                                                              [0.0] * 4)
    assert layers["fc_2"]["OutputSize"] == [1.0, 1.0, float(classes)]
    assert (layers["fc_2"]["Weights"]["L2Factor"], layers["fc_2"]["Bias"]["L2Factor"]) == ([1.0], [0.0])


def test_main4_schedule_is_the_default(reference):
    script = (reference / "survey" / "main4.m").read_bytes().decode("gbk")
    assert "trainingOptions('adam', 'InitialLearnRate', 0.00005, 'MaxEpochs', 150, 'MiniBatchSize', 256')" in script
    config = sc.SurveyConfig()
    assert (config.learning_rate, config.epochs, config.batch_size, config.shuffle) == (5e-5, 150, 256, "once")
    assert config.recipe == "published" and sc.SurveyConfig(epochs=3).recipe == "custom"


@pytest.mark.parametrize("name", ["net4.mat", "net9.mat"])
def test_the_networks_were_saved_before_matlab_had_initializers(reference, name):
    # The evidence for init matlab-normal: R2019a added WeightsInitializer / BiasInitializer (default 'glorot')
    # to these layers; the survey's files have every other property of conv_2_1 and fc_2 and not those.
    layers = {s["Name"]: s for s in layer_structs(reference / "survey" / name)}
    for layer in ("conv_2_1", "fc_2"):
        assert {"Weights", "Bias", "Name"} <= set(layers[layer])
        assert not {"WeightsInitializer", "BiasInitializer"} & set(layers[layer])
    assert sc.SurveyConfig().init == "matlab-normal"


def test_matlab_normal_and_glorot_initialisations():
    model = sc.StackedSurveyCNN(folds=2, n_classes=4)
    model.initialise([torch.Generator().manual_seed(i) for i in range(2)])  # the default: the survey's
    weights = torch.cat([model.conv_weight.detach().ravel(), model.fc_weight.detach().ravel()])
    assert abs(weights.std().item() - 0.01) < 0.001 and abs(weights.mean().item()) < 0.001
    assert not model.conv_bias.any() and not model.fc_bias.any() and (model.bn_scale == 1).all()
    model.initialise([torch.Generator().manual_seed(i) for i in range(2)], "glorot")
    assert model.conv_weight.abs().max() > 0.1  # Glorot's bound is 0.29 for conv_2_1
    with pytest.raises(ValueError, match="unknown init"):
        model.initialise([torch.Generator()], "he")


PUBLISHED_OTHER = {"init": "glorot", "grey_channels": "replicate", "balance": "undersample-training",
                   "unannotated_apex": "spotted", "epochs": 3, "batch_size": 64, "learning_rate": 1e-3, "l2": 0.0,
                   "beta1": 0.8, "beta2": 0.99, "adam_epsilon": 1e-6, "shuffle": "every-epoch", "dropout": 0.25,
                   "dtype": "float64"}


@pytest.mark.parametrize("setting", sorted(sc.SurveyConfig.PUBLISHED))
def test_the_recipe_is_published_only_with_every_setting_the_survey_fixed(setting):
    assert set(PUBLISHED_OTHER) == set(sc.SurveyConfig.PUBLISHED)
    changed = sc.SurveyConfig(**{setting: PUBLISHED_OTHER[setting]})
    assert changed.recipe == "custom"
    assert changed.recipe_differences == [f"{setting} {PUBLISHED_OTHER[setting]} "
                                          f"(published: {sc.SurveyConfig.PUBLISHED[setting]})"]
    assert sc.SurveyConfig(seed=4, device="cpu", folds_per_batch=2, engine="torch", threads=1).recipe == "published"


def test_balancing_before_the_split_reads_the_held_out_labels_and_inside_the_folds_does_not():
    import pandas as pd

    from merflow.training.folds import folds, leak_reasons, undersample, undersample_training

    rng = np.random.default_rng(0)
    rows = pd.DataFrame([{"sample_key": f"casme2/s{s}/c{i}", "dataset": "casme2", "subject": f"s{s}",
                          "subject_key": f"casme2/s{s}", "is_macro": False,
                          "label_casme2_4": ["disgust", "happiness", "repression", "surprise"][rng.integers(0, 4)]}
                         for s in range(6) for i in range(8)])
    held_out = rows["subject_key"] == "casme2/s0"
    relabelled = rows.copy()
    relabelled.loc[held_out, "label_casme2_4"] = "surprise"  # only the held-out subject's labels differ

    def fit_keys(table, balance):
        if balance == "undersample":
            table = undersample(table, "label_casme2_4", 0)[0]
        fold = folds(table, "loso", "casme2", validation_fraction=0.0)[0]  # loso-casme2-s0
        assert fold.test_subjects == ("casme2/s0",)
        return undersample_training(fold, table, 0)[0].fit_keys if balance == "undersample-training" else fold.fit_keys

    assert fit_keys(rows, "undersample") != fit_keys(relabelled, "undersample")  # test labels chose the training set
    assert fit_keys(rows, "undersample-training") == fit_keys(relabelled, "undersample-training")
    balanced = undersample_training(folds(rows, "loso", "casme2", validation_fraction=0.0)[0], rows, 0)[0]
    counts = rows.set_index("sample_key").loc[list(balanced.fit_keys), "label_casme2_4"].value_counts()
    assert counts.nunique() == 1
    assert leak_reasons("loso", "undersample")[0].startswith("balanced before the split")
    assert leak_reasons("fused4", "undersample-training") == [] and leak_reasons("lovo", "none")[0].startswith("LOVO")


@requires_c_compiler
def test_the_kernel_engine_trains_folds_alone_or_together_alike():
    images, labels = _toy()
    tasks = _lovo_tasks(len(labels), 4)
    config = sc.SurveyConfig(epochs=3, batch_size=16, device="cpu", engine="kernel", threads=2)
    together = sc.train_folds(images, labels, tasks, 3, config)
    for task in tasks:  # the kernel trains each fold alone; the mean images and the final population statistics
        alone = sc.train_folds(images, labels, [task], 3, config.replace(threads=1))  # are float32 matrix products
        np.testing.assert_allclose(alone[task.name], together[task.name], rtol=0, atol=1e-6)  # of the stack
    assert not np.allclose(together[tasks[0].name], together[tasks[1].name])
    assert sc.engine_of(sc.SurveyConfig(dtype="float64", device="cpu")) == "torch"
    with pytest.raises(ValueError, match="every-epoch"):
        sc.engine_of(sc.SurveyConfig(shuffle="every-epoch", engine="kernel", device="cpu"))


# ------------------------------------------------------------------------------------------ the network


def test_shapes_follow_the_layer_graph():
    model = sc.StackedSurveyCNN(folds=3, n_classes=4)
    assert model.features == 5 * 5 * 5  # 28 -> 'same' max pool /3 -> 10 -> 2x2 avg pool -> 5
    model.initialise([torch.Generator().manual_seed(i) for i in range(3)], "glorot")  # the default is the survey's N(0, 0.01^2)
    bound = (6 / (27 + 45)) ** 0.5  # glorot: fan_in 3*3*3, fan_out 3*3*5
    assert model.conv_weight.abs().max() <= bound and model.conv_weight.abs().max() > 0.8 * bound
    images = torch.rand(10, 3, 28, 28) * 255
    patches = sc.image_patches(images)
    means = torch.nn.functional.unfold(images.mean(0, keepdim=True).expand(3, -1, -1, -1), 3, padding=1)
    model.eval()
    logits = model(patches, means, torch.tensor([[0, 1], [2, 3], [4, 5]]))
    assert logits.shape == (2, 3, 4)
    # The stacked convolution equals a plain convolution of the zero-centred images with each fold's filters.
    weights = model.conv_weight.view(3, 5, 3, 3, 3)
    centred = images - images.mean(0, keepdim=True)
    direct = torch.relu(torch.nn.functional.conv2d(centred[[2, 3]], weights[1], model.conv_bias.view(3, 5)[1],
                                                   padding=1))
    stacked = model.conv_relu(patches, means, torch.tensor([[0, 1], [2, 3], [4, 5]]))[:, 5:10]
    assert torch.allclose(direct, stacked, atol=1e-3)


def test_batches_follow_trainnetwork():
    config = sc.SurveyConfig(epochs=3)
    assert sc.batch_plan(447, config) == (256, 1)   # the survey's LOVO: 191 samples never seen with Shuffle once
    assert sc.batch_plan(143, config) == (143, 1)   # the 9-class set's 143: one mini-batch of all
    assert sc.batch_plan(600, config) == (256, 2)
    batches = sc._batches(np.random.default_rng(0), 447, config)
    assert len(batches) == 3 and all((b == batches[0]).all() for b in batches)  # 'once': the same 256 every epoch
    every = sc._batches(np.random.default_rng(0), 447, sc.SurveyConfig(epochs=3, shuffle="every-epoch"))
    assert not (every[0] == every[1]).all()


def _toy(n=24, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.uniform(0, 255, (n, 3, 28, 28)).astype(np.float32)
    images[:, 0, 4:12, 4:12] += 40 * labels[:, None, None]  # something to learn
    return images, labels


def _lovo_tasks(n, names=None):
    return [sc.FoldTask(f"lovo-{i}", np.delete(np.arange(n), i), np.array([i])) for i in range(n)][:names]


@pytest.mark.slow
def test_stacked_folds_equal_folds_trained_one_by_one():
    images, labels = _toy()
    tasks = _lovo_tasks(len(labels), 5) + [sc.FoldTask("loso-a", np.arange(8, 24), np.arange(0, 8)),
                                           sc.FoldTask("loso-b", np.arange(0, 16), np.arange(16, 24))]
    config = sc.SurveyConfig(epochs=4, batch_size=8, dtype="float64", device="cpu", folds_per_batch=7)
    stacked = sc.train_folds(images, labels, tasks, 3, config)
    alone = sc.train_folds(images, labels, tasks, 3, sc.SurveyConfig(**(config.to_dict() | {"folds_per_batch": 1})))
    assert set(stacked) == {t.name for t in tasks}
    for name in stacked:
        np.testing.assert_allclose(stacked[name], alone[name], rtol=0, atol=1e-9)
    # Different folds learnt different things (the comparison is not between constants).
    assert not np.allclose(stacked["loso-a"][:1], stacked["loso-b"][:1])


@pytest.mark.slow  # six networks trained: ~4 s
def test_zero_centring_uses_the_fold_mean_image():
    images, labels = _toy()
    tasks = _lovo_tasks(len(labels), 3)
    config = sc.SurveyConfig(epochs=3, batch_size=8, dtype="float64", device="cpu")
    shift = np.random.default_rng(1).uniform(-50, 50, (1, 3, 28, 28))
    plain = sc.train_folds(images, labels, tasks, 3, config)
    shifted = sc.train_folds(images + shift, labels, tasks, 3, config)  # a constant image added to all
    for name in plain:
        np.testing.assert_allclose(plain[name], shifted[name], atol=1e-8)


@pytest.mark.slow
def test_training_learns_and_is_seeded():
    images, labels = _toy(n=24)
    images[:, :, 14:24, 14:24] += 60 * labels[:, None, None, None]
    tasks = _lovo_tasks(24)
    config = sc.SurveyConfig(epochs=25, learning_rate=2e-2, device="cpu")
    scores = sc.train_folds(images, labels, tasks, 3, config)
    accuracy = np.mean([scores[t.name][0].argmax() == labels[t.test[0]] for t in tasks])
    assert accuracy > 0.6  # chance is 1/3
    again = sc.train_folds(images, labels, tasks[:2], 3, config)
    np.testing.assert_allclose(again[tasks[0].name], scores[tasks[0].name], atol=1e-6)
    other = sc.train_folds(images, labels, tasks[:2], 3, sc.SurveyConfig(**(config.to_dict() | {"seed": 1})))
    assert not np.allclose(other[tasks[0].name], scores[tasks[0].name])


def test_a_fold_without_two_training_samples_is_refused_by_name():
    images, labels = _toy(n=4)
    with pytest.raises(ValueError, match="fold tiny: 1 training sample"):
        sc.train_folds(images, labels, [sc.FoldTask("tiny", np.array([0]), np.array([1]))], 3, sc.SurveyConfig())


# ------------------------------------------------------------------------------------------ a synthetic fused run
SHORT = sc.SurveyConfig(epochs=3, device="cpu")  # the schedule stays main4.m's 150 epochs by default
FIVE = {"casme", "casme2", "casme_sq", "samm", "smic_hs"}


def _train(fused_set, protocol, out, config=SHORT, **options):
    """A survey-cnn run without Prefect (training/run.py), its tables written (storage/results.py)."""
    from merflow.flows.protocol import train_protocol
    from merflow.storage import results

    trained = train_protocol(fused_set["catalog"], fused_set["store"], protocol, None, config, out,
                             model="survey-cnn", **options)
    results.write_run(out, **trained.tables())
    return trained


@pytest.fixture(scope="module")
def lovo_run(fused_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("survey-lovo")
    result = _train(fused_set, "lovo", str(out), run="lovo4", class_set="fused4")
    return result, out


@pytest.mark.integration
@pytest.mark.slow
def test_lovo_over_fused4_spans_five_datasets_one_held_out_sample_per_fold(lovo_run):
    from merflow.storage import results

    result, out = lovo_run
    predictions = result.predictions
    balance = result.notes["balance"]
    assert set(predictions["dataset"]) == FIVE
    assert result.folds == len(balance["kept"]) == len(predictions) == predictions["fold"].nunique()
    assert set(predictions.groupby("fold").size()) == {1}
    assert sorted(predictions["sample_key"]) == balance["kept"]
    # Balanced before the split: every class at the smallest class's size.
    counts = Counter(predictions["label"])
    assert set(counts.values()) == {balance["per_class"]} and len(counts) == 4
    assert balance["before"]["negative"] > balance["per_class"]
    pooled = result.metrics.query("scope == 'pooled' and split == 'test'").iloc[0]
    assert pooled["n"] == len(predictions)
    assert pooled["accuracy"] == pytest.approx((predictions["label"] == predictions["pred"]).mean())
    assert result.leaky and result.notes["schedule"].startswith("fixed")
    for table in ("runs", "metrics", "predictions"):
        rows = results.read_table(out, table, run="lovo4")
        assert set(rows["method"]) == {"survey-cnn"} and set(rows["recipe"]) == {"custom"}
    config = __import__("json").loads(results.read_table(out, "runs", run="lovo4")["config"].iat[0])
    assert config["data"]["balance"]["kept"] == balance["kept"] and config["epochs"] == 3


@pytest.mark.integration
@pytest.mark.slow
def test_lovo_rerun_resumes_from_its_checkpoints(lovo_run, fused_set, monkeypatch):
    result, out = lovo_run

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run trained again")

    monkeypatch.setattr(sc, "train_folds", no_training)
    again = _train(fused_set, "lovo", str(out), run="lovo4", class_set="fused4")
    assert again.predictions["pred"].tolist() == result.predictions["pred"].tolist()


@pytest.mark.integration
@pytest.mark.slow
def test_the_same_model_on_loso_over_the_fused_set(fused_set, tmp_path):
    result = _train(fused_set, "fused4", str(tmp_path))
    predictions = result.predictions
    # Subject-disjoint, but balanced before the split (the survey's): the held-out samples were removed by
    # their labels, so the number reads test labels and is labelled leaky (issue 17; it was called honest).
    assert set(predictions["dataset"]) == FIVE and result.leaky
    assert result.notes["leaks"] == [reason for reason in result.notes["leaks"] if reason.startswith("balanced")]
    assert len(set(Counter(predictions["label"]).values())) == 1  # balanced as well
    # Subject-disjoint: every fold tests one person, none of whose clips it trained on.
    assert (predictions.groupby("fold")["subject_key"].nunique() == 1).all()
    assert result.folds == predictions["subject_key"].nunique()
    # The honest variant: each fold's training samples balanced after the split; every sample is tested.
    honest = _train(fused_set, "fused4", str(tmp_path / "honest"), config=SHORT.replace(balance="undersample-training"))
    assert not honest.leaky and honest.notes["leaks"] == [] and honest.notes["balance"]["method"] == "undersample-training"
    assert len(honest.predictions) > len(predictions)  # nothing was removed before the split


@pytest.mark.integration
@pytest.mark.slow
def test_smic_takes_the_middle_frame_and_others_the_apex(fused_set):
    from merflow.storage import catalog as catalog_store
    from merflow.storage.features import open_features, read_feature_arrays
    from merflow.training.data import FeatureSource

    samples = catalog_store.read_samples(fused_set["catalog"])
    samples = samples[samples["dataset"].isin(["smic_hs", "casme2"])].reset_index(drop=True)
    config = open_features(fused_set["store"], "casme2").config
    source = FeatureSource(**read_feature_arrays(fused_set["store"], ["smic_hs", "casme2"], config, ("apex", "middle")))
    images, frames = sc.load_images(source, samples, SHORT)
    assert images.shape == (len(samples), 3, 28, 28) and 0 <= images.min() and images.max() <= 255
    by_dataset = dict(zip(samples["dataset"], frames))
    assert by_dataset["smic_hs"] == "middle frame" and by_dataset["casme2"] == "annotated apex"
    spotted = sc.load_images(source, samples, sc.SurveyConfig(unannotated_apex="spotted"))[1]
    assert {f for d, f in zip(samples["dataset"], spotted) if d == "smic_hs"} == {"spotted apex"}
    reader = open_features(fused_set["store"], "smic_hs")
    table = reader.table().set_index("sample_key")
    for key, n_frames in zip(samples["sample_key"], samples["n_frames"]):
        if key in table.index and table.at[key, "status"] == "ok":
            assert table.at[key, "middle_index"] == (n_frames + 1) // 2 - 1  # floor((N+1)/2), 1-based


@pytest.mark.integration
@pytest.mark.slow
def test_a_store_without_middle_crops_asks_to_recompute(fused_set, tmp_path):
    import shutil

    import zarr

    from merflow.flows.protocol import load_protocol
    from merflow.storage.features import open_features
    from merflow.training.models.survey_cnn import SurveyConfig, load_images

    store = tmp_path / "old.zarr"
    shutil.copytree(fused_set["store"], store)
    group = open_features(str(store), "smic_hs").name
    del zarr.open_group(str(store), mode="r+")[group]["middle"]
    # The middle frame is optional (an annotated apex or an imported image needs none); SMIC has no apex.
    data = load_protocol(fused_set["catalog"], str(store), "loso", "smic_hs", model="survey-cnn")
    samples = data.samples.reset_index(drop=True)
    with pytest.raises(LookupError, match=r"middle crops.*recompute the features with `merflow features"):
        load_images(data.source, samples, SurveyConfig())
    assert len(load_images(data.source, samples, SurveyConfig(unannotated_apex="spotted"))[0]) == len(samples)
    # Meta-MMFNet reads no crops: the same store still trains it.
    assert load_protocol(fused_set["catalog"], str(store), "loso", "smic_hs").folds


@pytest.mark.integration
@pytest.mark.slow
def test_train_survey_cnn_through_the_cli(fused_set, tmp_path, capsys):
    from merflow.flows.cli import main

    out = tmp_path / "results"
    common = ["--catalog", str(fused_set["catalog"]), "--store", fused_set["store"], "--out", str(out)]
    assert main(["train", "--model", "survey-cnn", "--protocol", "lovo", "--class-set", "fused9", "--epochs", "2",
                 "--device", "cpu", "--run", "cli9", *common]) == 0
    printed = capsys.readouterr().out
    assert "survey-cnn" in printed and "LOVO is leaky" in printed and "balanced (undersample" in printed
    assert main(["results", "summary", "--results", str(out), "--run", "cli9"]) == 0
    summary = capsys.readouterr().out
    assert "survey-cnn" in summary and "leaky" in summary
    assert main(["tune", "--model", "survey-cnn", "--dataset", "casme2", *common]) == 2
    assert "tune supports --model meta-mmfnet only" in capsys.readouterr().out


def test_imported_arrays_are_read_as_stored_and_grey_ones_replicated_on_request():
    # The survey's own arrays, imported (no frames: no apex source, no middle crop): channel 1 holds a grey
    # image and channels 2, 3 zeros, as apex4.m stored SAMM and CASME.
    import pandas as pd

    from merflow.configs.features import FeatureConfig
    from merflow.training.data import FeatureSource

    rng = np.random.default_rng(0)
    colour = rng.integers(1, 256, (3, 28, 28), dtype=np.uint8)
    grey = np.zeros((3, 28, 28), np.uint8)
    grey[0] = rng.integers(1, 256, (28, 28))
    source = FeatureSource(FeatureConfig(size=28), {"apex": {"c4/0": colour, "c4/1": grey}})
    samples = pd.DataFrame({"sample_key": ["c4/0", "c4/1"], "dataset": ["survey_c4", "survey_c4"]})
    images, frames = sc.load_images(source, samples, sc.SurveyConfig())
    assert frames == ["imported image"] * 2
    np.testing.assert_array_equal(images, np.stack([colour, grey]).astype(np.float32))
    replicated, _ = sc.load_images(source, samples, sc.SurveyConfig(grey_channels="replicate"))
    np.testing.assert_array_equal(replicated[1], np.repeat(grey[:1], 3, axis=0).astype(np.float32))
    np.testing.assert_array_equal(replicated[0], colour.astype(np.float32))
