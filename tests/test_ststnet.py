"""training/models/ststnet.py: STSTNet as christy1206/STSTNet @ 1afb56e main.py builds and trains it, its input
convention, its recipe label, and the folds trained together equal to the folds trained one by one."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from merflow.training import shallow_cnn
from merflow.training.models import ststnet

from requires import requires_c_compiler


def test_the_network_has_main_py_layers_and_1683_parameters():
    model = ststnet.STSTNet()
    assert sum(p.numel() for p in model.parameters()) == ststnet.PARAMETERS == 1683
    assert [conv.out_channels for conv in model.convs] == [3, 5, 8]
    assert all(conv.kernel_size == (3, 3) and conv.padding == (2, 2) for conv in model.convs)
    assert model.fc.in_features == 400 and model.fc.out_features == 3
    x = torch.rand(2, 3, 28, 28) * 255
    assert model.convs[0](x).shape[-1] == 30 and model.maxpool(model.convs[0](x)).shape[-1] == 10
    assert model.eval()(x).shape == (2, 3)
    # The flat layout (the kernel's) round-trips, the three streams' filters in order.
    again = ststnet.STSTNet().load_flat(model.flat())
    torch.testing.assert_close(again.eval()(x), model(x))
    # PyTorch's own initialisation, drawn from the fold's seed: the same seed, the same weights.
    assert np.array_equal(ststnet.initial_network(7, 3).flat(), ststnet.initial_network(7, 3).flat())
    assert not np.array_equal(ststnet.initial_network(7, 3).flat(), ststnet.initial_network(8, 3).flat())


def test_input_conventions():
    rng = np.random.default_rng(0)
    png = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)  # as cv2.imread gives STSTNet's PNG: strain, v, u
    imported = ststnet.ststnet_input(png, ["strain", "v", "u"], "0..255 min-max per image and channel")
    np.testing.assert_array_equal(imported, png.astype(np.float32))
    assert ststnet.ststnet_input(png, ["strain", "v", "u"], "", order="u-v-strain")[0].tolist() == png[2].tolist()
    np.testing.assert_allclose(ststnet.ststnet_input(png, ["strain", "v", "u"], "", value_range="0..1"), png / 255.0,
                               rtol=1e-6)
    # merflow's computed flow (u, v, magnitude, strain in pixels): strain, v, u each min-max scaled to
    # 0..255 per image and rounded, as STSTNet's preprocessing wrote its PNGs; resized to 28x28 first.
    flow = rng.normal(size=(4, 80, 80)).astype(np.float32) * [[[2.0]], [[0.5]], [[1.0]], [[0.01]]]
    computed = ststnet.ststnet_input(flow, ["u", "v", "magnitude", "strain"], "pixels")
    assert computed.shape == (3, 28, 28) and computed.dtype == np.float32
    assert [(c.min(), c.max()) for c in computed] == [(0.0, 255.0)] * 3
    assert np.array_equal(computed, np.rint(computed))
    ranks = np.corrcoef(computed[2].ravel(), ststnet.ststnet_input(flow[[0, 1, 3]], ["u", "v", "strain"], "pixels")[2].ravel())
    assert ranks[0, 1] > 0.999  # channel 3 of the input is u, however the store ordered it
    with pytest.raises(ValueError, match="reads optical strain, v and u.*no strain"):
        ststnet.ststnet_input(flow[:3], ["u", "v", "magnitude"], "pixels")


@pytest.mark.parametrize("setting", sorted(ststnet.StstnetConfig.PUBLISHED))
def test_the_recipe_is_published_only_with_every_setting_of_main_py(setting):
    assert ststnet.StstnetConfig().recipe == "published" and ststnet.StstnetConfig().recipe_differences == []
    value = ststnet.StstnetConfig.PUBLISHED[setting]
    other = {"input_order": "u-v-strain", "input_range": "0..1"}.get(setting, value * 2 if value != 0.5 else 0.25)
    if setting == "bn_momentum":
        other = 0.2
    config = ststnet.StstnetConfig(**{setting: other})
    assert config.recipe == "custom" and config.recipe_differences == [f"{setting} {other} (published: {value})"]
    # Where and how it runs is no setting of the recipe.
    assert ststnet.StstnetConfig(seed=3, engine="torch", threads=1, device="cpu").recipe == "published"


def _toy(n=30, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 200, (n, 3, 28, 28)).astype(np.float32)
    images[:, 0, 8:16, 8:16] += 25 * labels[:, None, None]
    return images, labels


@requires_c_compiler
def test_folds_trained_together_equal_folds_trained_one_by_one():
    images, labels = _toy()
    folds = [(f"megc2019-s{s}", np.flatnonzero(np.arange(30) // 5 != s), np.flatnonzero(np.arange(30) // 5 == s))
             for s in range(4)]
    config = ststnet.StstnetConfig(epochs=3, batch_size=8, threads=2, device="cpu", engine="kernel")
    together = ststnet.train_folds(images, labels, folds, 3, config)
    for fold in folds:
        alone = ststnet.train_folds(images, labels, [fold], 3, config.replace(threads=1))
        np.testing.assert_array_equal(alone[fold[0]], together[fold[0]])
    assert not np.allclose(together[folds[0][0]][:1], together[folds[1][0]][:1])
    assert all(np.allclose(s.sum(1), 1) for s in together.values())


def test_the_training_order_is_main_py_class_folder_order():
    labels = np.array([2, 0, 1, 0, 2, 1, 0])
    names = ["sub01_EP02_01f", "s01_s01_ne_01", "006_006_1_2", "sub01_EP19_05f", "006_006_1_3", "s01_s01_po_01",
             "006_006_5_10"]
    order = ststnet.training_order(labels, names)
    # Class folder 0, 1, 2; inside one, the sorted listing the official log shows: SAMM (006), SMIC (s01), CASME II.
    assert [names[i] for i in order] == ["006_006_5_10", "s01_s01_ne_01", "sub01_EP19_05f", "006_006_1_2",
                                         "s01_s01_po_01", "006_006_1_3", "sub01_EP02_01f"]
    assert ststnet.image_name("sub01", "EP02_01f") == "sub01_EP02_01f"
    assert [len(b) for b in ststnet.batches_of(np.arange(431), 256)] == [256, 175]  # DataLoader, no drop_last


def test_the_torch_engine_trains_a_tiny_fold():
    images, labels = _toy(12)
    folds = [("f", np.arange(2, 12), np.arange(0, 2))]
    scores = ststnet.train_folds(images, labels, folds, 3, ststnet.StstnetConfig(epochs=2, engine="torch",
                                                                                  device="cpu"))
    assert scores["f"].shape == (2, 3) and np.allclose(scores["f"].sum(1), 1)


def test_the_real_composite_is_what_the_official_code_reads(reference):
    listing = reference / "megc2019" / "combined_3_class2_for_optical_flow.csv"
    with open(listing, newline="") as handle:
        rows = list(csv.DictReader(handle))
    import cv2

    folder = reference / "megc2019_features" / "STSNet_whole_norm_u_v_os"
    first = cv2.imread(str(folder / f"{rows[0]['sub']}_{rows[0]['filename_o']} .png"))
    assert len(rows) == 442 and len({r["sub"] for r in rows}) == 68
    assert np.bincount([int(r["label"]) for r in rows]).tolist() == [250, 109, 83]
    assert first.shape == (28, 28, 3) and first.dtype == np.uint8
    image = ststnet.ststnet_input(first.transpose(2, 0, 1), ["strain", "v", "u"], "0..255")
    assert image.shape == (3, 28, 28) and image.max() <= 255 and shallow_cnn.INPUT == 28


@pytest.mark.integration
@pytest.mark.slow
def test_train_ststnet_through_the_cli_on_computed_flow(fused_set, tmp_path, capsys):
    import json

    from merflow.flows.cli import main
    from merflow.storage import results

    out = tmp_path / "results"
    common = ["--catalog", str(fused_set["catalog"]), "--store", fused_set["store"], "--out", str(out)]
    assert main(["train", "--model", "ststnet", "--protocol", "megc2019", "--epochs", "2", "--device", "cpu",
                 "--run", "st", *common]) == 0
    printed = capsys.readouterr().out
    assert "ststnet" in printed and "recipe custom: epochs 2 (published: 800)" in printed
    runs = results.read_table(out, "runs", run="st")
    config = json.loads(runs["config"].iat[0])
    assert runs["recipe"].iat[0] == "custom" and config["input_order"] == "strain-v-u"
    assert "computed flow" in config["data"]["input"] and "min-max scaled to 0..255" in config["data"]["input"]
    assert config["data"]["leaks"] == [] and config["data"]["engine"] in ("kernel", "torch")
    predictions = results.read_table(out, "predictions", run="st")
    assert set(predictions["method"]) == {"ststnet"} and set(predictions["dataset"]) <= {"casme2", "samm", "smic_hs"}
    assert main(["results", "summary", "--results", str(out), "--run", "st"]) == 0
    summary = capsys.readouterr().out
    assert "ststnet, a fixed schedule (2 epochs" in summary and "nothing chosen" in summary
