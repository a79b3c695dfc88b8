"""configs/: the stages' typed configurations and the one hashing helper.

The pinned values below were computed by the code before configs/ existed (FeatureConfig a dataclass in
storage/features.py, IngestConfig one in tasks/ingest.py, three hashing functions in training/): feature
group names, the catalog's recorded ingest settings and checkpoint names must stay byte-identical.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import cv2
import pytest

from merflow.configs import (
    DIS_PRESET_NAMES,
    LABEL_COLUMNS,
    OPTFLOW_FARNEBACK_GAUSSIAN,
    ExtractionLimits,
    FaceConfig,
    FeatureConfig,
    IngestConfig,
    MotionConfig,
    config_hash,
)

DEFAULT_JSON = ('{"face": {"align": true, "detector": "yunet", "fallback": "haar", "margin": 0.15, "min_confidence": '
                '0.5, "no_face": "centre"}, "feature_schema": 2, "motion": {"algorithm": "farneback", "dis_preset": '
                '"medium", "farneback": [0.5, 3, 15, 3, 5, 1.2, 0], "spot_algorithm": "dis", "spot_border": 0.2, '
                '"tvl1_lambda": 0.15, "tvl1_scales": 5, "tvl1_tau": 0.25, "tvl1_theta": 0.3, "tvl1_warps": 5}, '
                '"shard_size": 16, "size": 80}')
# The stores written before feature schema 3 hold no sequence: their configurations are these with
# sequence_length 0, which records and hashes exactly as schema 2 did (configs/features.py to_dict).
PINNED = [
    (FeatureConfig(sequence_length=0), "8460fa7870db"),
    (FeatureConfig(face=FaceConfig(detector="haar", no_face="quarantine"), motion=MotionConfig(algorithm="dis"),
                   size=28, shard_size=4, first_frame="onset+1", sequence_length=0), "c827400b4470"),
    (FeatureConfig(motion=MotionConfig(algorithm="tvl1"), size=112, sequence_length=0), "e93d2c614840"),
    (FeatureConfig(face=FaceConfig(fallback=None, margin=0.2, align=False, min_confidence=0.7),
                   motion=MotionConfig(farneback=[0.5, 3, 15, 3, 7, 1.5, 256], spot_border=0.1), size=64, shard_size=8,
                   sequence_length=0),
     "829c43b6372b"),
]
# Feature schema 3 (the sequence arrays and the landmarks): the default holds a sequence of 10 (new names, new
# groups: a default features run computes every store again, sequences included).
PINNED_SCHEMA_3 = [
    (FeatureConfig(), "743a82073874"),
    (FeatureConfig(sequence_length=24), "08f82e0be52c"),
    (FeatureConfig(sequence_length=18, max_missing_share=0.1, size=64), "773044db9df2"),
]
SCHEMA_3_DEFAULT_JSON = (DEFAULT_JSON.replace('"feature_schema": 2', '"feature_schema": 3, "max_missing_share": 0.2')
                         .replace('"shard_size": 16', '"sequence_length": 10, "shard_size": 16'))


@pytest.mark.parametrize(("config", "expected"), PINNED + PINNED_SCHEMA_3)
def test_feature_group_hashes_are_those_of_the_stores_already_written(config, expected):
    assert config.hash == expected
    assert config_hash(config) == expected
    assert FeatureConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_the_default_configuration_is_recorded_as_before():
    assert json.dumps(FeatureConfig(sequence_length=0).to_dict(), sort_keys=True) == DEFAULT_JSON
    assert json.dumps(FeatureConfig().to_dict(), sort_keys=True) == SCHEMA_3_DEFAULT_JSON


def test_a_sequence_is_two_frames_or_more_and_adds_its_arrays():
    with pytest.raises(ValueError, match="0 \\(no sequence\\) or at least 2"):
        FeatureConfig(sequence_length=1)
    shapes = FeatureConfig(sequence_length=24, size=28).array_shapes()
    assert shapes["frames"] == ("uint8", (24, 28, 28)) and shapes["flow_seq"] == ("float32", (23, 2, 28, 28))
    assert shapes["landmarks"] == ("float32", (7, 2))
    assert set(FeatureConfig(sequence_length=0).array_shapes()) == {"onset", "apex", "middle", "diff", "flow"}


def test_a_stored_configuration_without_first_frame_still_reads():
    stored = json.loads(DEFAULT_JSON)  # as groups written before first_frame existed hold it
    assert "first_frame" not in stored
    config = FeatureConfig.from_dict(stored)
    assert config.first_frame == "onset" and config.hash == "8460fa7870db"
    assert isinstance(config.motion.farneback, tuple) and config.motion.farneback == (0.5, 3, 15, 3, 5, 1.2, 0)


def test_ingest_settings_are_recorded_as_before():
    # sources.parquet keeps this JSON and an unchanged source is recognised by it (flows/ingest.py).
    assert IngestConfig().to_json() == ('{"dataset": null, "limits": {"max_entries": 5000000, "max_ratio": 100.0, '
                                        '"max_total_bytes": 549755813888, "ratio_floor_bytes": 33554432}}')
    chosen = IngestConfig(dataset="casme2", limits=ExtractionLimits(max_total_bytes=2**29, max_ratio=20.0))
    assert chosen.to_json() == ('{"dataset": "casme2", "limits": {"max_entries": 5000000, "max_ratio": 20.0, '
                                '"max_total_bytes": 536870912, "ratio_floor_bytes": 33554432}}')


def test_one_hash_for_every_configuration_keeps_the_training_names():
    settings = {"stage": "pretrain", "lr": 0.001, "epochs": 10, "encoder": "small", "classes": ["a", "b"], "alpha": None}
    # training/fit.py's _hash and training/models/survey_cnn.py's config_hash gave this before.
    assert config_hash(settings) == "30513081cf3a"
    # training/search/space.py's config_id: "c" and 8 digits.
    assert config_hash({"shots": 3}, length=8) == "238f705b"
    from merflow.training.search.space import config_id

    assert config_id({"shots": 3}) == "c238f705b"


def test_configs_are_validated_frozen_and_picklable():
    with pytest.raises(ValueError, match="size"):
        FeatureConfig(size=81)
    with pytest.raises(ValueError, match="shard_size"):
        FeatureConfig(shard_size=0)
    with pytest.raises(ValueError, match="'onset', 'onset\\+1'"):
        FeatureConfig(first_frame="apex")
    with pytest.raises(ValueError, match="misspelt"):
        FaceConfig(misspelt=1)
    config = PINNED[1][0]
    with pytest.raises(ValueError):
        config.size = 64  # frozen: a configuration never changes under its hash
    assert pickle.loads(pickle.dumps(config)) == config and hash(config) == hash(pickle.loads(pickle.dumps(config)))
    assert config.motion.replace(algorithm="tvl1").algorithm == "tvl1"
    with pytest.raises(ValueError, match="'farneback', 'tvl1', 'dis'"):
        config.motion.replace(algorithm="sift")  # replace validates again
    with pytest.raises(ValueError, match="poly_n.*pyr_scale|pyr_scale.*poly_n"):
        MotionConfig(farneback=(1.5, 3, 15, 3, 6, 1.2, 0))


def test_the_leaf_package_agrees_with_the_modules_that_use_it():
    from merflow.tasks.labels import CLASS_SETS
    from merflow.tasks.motion import DIS_PRESETS

    assert LABEL_COLUMNS == tuple(f"label_{name}" for name in CLASS_SETS) + ("label_megc2019",)
    assert OPTFLOW_FARNEBACK_GAUSSIAN == cv2.OPTFLOW_FARNEBACK_GAUSSIAN
    assert tuple(DIS_PRESETS) == DIS_PRESET_NAMES


def test_configs_import_nothing_of_the_project():
    code = ("import sys, merflow.configs, merflow.configs.train, merflow.configs.search, merflow.configs.results, "
            "merflow.configs.synth; "
            "print(sorted(m for m in sys.modules if m.startswith('merflow.') and not m.startswith('merflow.configs')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


# TrainConfig (configs/train.py, a frozen dataclass in training/fit.py before): the hashes that name
# result rows (`hash`) and checkpoints (`stage_hash`), computed by training/fit.py's dataclass.
STAGES = ("macro_pretrain", "micro_pretrain", "micro", "macro", "evaluation")
TRAIN_PINNED = [
    ({}, "67d0f695b73f", ("3e86d4835c0f", "bf45bbd489a3", "d33d1dee4a62", "1718542eeb73", "c6877b10a4d9")),
    ("published", "de6d8b2c930a", ("5e4698534abf", "57768b1b0685", "013d2f7e0564", "91fb7ae52d5b", "5396b2fc6d38")),
    ({"min_epoch_fraction": 0.2, "alpha_choice": "loss", "epoch_choice": "loss", "shots": 3}, "837794c4f0a0",
     ("0734e636b5c8", "e2912ded871c", "c4d7cbf61067", "52d865d85530", "072727f89376")),
]
TRAIN_DEFAULT_JSON = (
    '{"alpha_choice": "accuracy", "alphas": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], "batch_size": 32, '
    '"batches_per_epoch": 30, "device": "auto", "duplicate_fit": false, "encoder": "small", "episodes_per_batch": 4, '
    '"epoch_choice": "last", "layout": "stack_height", "macro_epochs": 100, "meta_epochs": 7, "meta_lr": 0.05, '
    '"meta_lr_step": 3, "min_epoch_fraction": 0.0, "momentum": 0.9, "pretrain_epochs": 50, "pretrain_lr": 0.01, '
    '"pretrain_lr_step": 0, "queries": 1, "recipe": "merflow", "seed": 0, "shots": 5, "validation_fraction": 0.2, '
    '"weight_decay": 0.0005}')


@pytest.mark.parametrize(("settings", "expected", "stages"), TRAIN_PINNED)
def test_train_config_hashes_are_those_of_the_checkpoints_already_written(settings, expected, stages):
    from merflow.configs.train import TrainConfig

    config = TrainConfig.from_recipe(settings) if isinstance(settings, str) else TrainConfig(**settings)
    assert config.hash == expected
    assert tuple(config.stage_hash(stage) for stage in STAGES) == stages
    # A stored run's configuration (runs.config JSON, the α grid a list) is the same configuration.
    stored = TrainConfig(**json.loads(json.dumps(config.to_dict())))
    assert stored == config and isinstance(stored.alphas, tuple) and stored.hash == expected
    assert isinstance(config.to_dict()["alphas"], tuple)  # as dataclasses.asdict gave it
    assert pickle.loads(pickle.dumps(config)) == config  # as Ray sends it to a trial


def test_the_default_train_config_is_recorded_as_before():
    from merflow.configs.train import TrainConfig

    assert json.dumps(TrainConfig().to_dict(), sort_keys=True) == TRAIN_DEFAULT_JSON
    assert list(TrainConfig().to_dict()) == list(TrainConfig.model_fields)  # the fields' order, as before


def test_selection_settings_are_validated_and_enter_the_hashes_of_the_stages_they_change():
    from merflow.configs.train import TrainConfig

    for bad in ({"epoch_choice": "best"}, {"min_epoch_fraction": 1.5}, {"alpha_choice": "uf1"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**bad)
    base = TrainConfig()
    later = TrainConfig(min_epoch_fraction=0.5)
    assert all(base.stage_hash(s) != later.stage_hash(s) for s in ("micro_pretrain", "micro", "evaluation"))
    by_loss = TrainConfig(alpha_choice="loss")
    # α's choice changes no weight: the trained stages are shared, the evaluation is not.
    assert all(base.stage_hash(s) == by_loss.stage_hash(s) for s in ("macro_pretrain", "micro_pretrain", "micro"))
    assert base.stage_hash("evaluation") != by_loss.stage_hash("evaluation") and base.hash != by_loss.hash
    # Settings at the value that behaves as before them leave a configuration's hashes as they were.
    old = {k: v for k, v in base.to_dict().items() if k not in ("min_epoch_fraction", "alpha_choice")}
    assert base.hash == config_hash(old)


@pytest.mark.parametrize(("settings", "message"), [
    ({"encoder": "resnet50"}, "'small', 'resnet18'; got 'resnet50'"),
    ({"layout": "side_by_side"}, "'stack_height', 'channels'"),
    ({"recipe": "paper"}, "'merflow', 'published'"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"pretrain_lr_step": -1}, "pretrain_lr_step"),
    ({"shot": 3}, "shot"),  # a misspelt field
])
def test_a_wrong_training_setting_fails_on_construction(settings, message):
    from merflow.configs.train import TrainConfig

    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)
    with pytest.raises(ValueError, match="unknown recipe 'paper'"):
        TrainConfig.from_recipe("paper")
    with pytest.raises(ValueError, match=message):
        TrainConfig().replace(**settings)  # replace validates again


def test_the_train_config_names_are_the_registries():
    from merflow.configs.train import ENCODER_NAMES, LAYOUT_NAMES
    from merflow.training.encoders import ENCODERS
    from merflow.training.model import INPUT_LAYOUTS

    assert tuple(ENCODERS) == ENCODER_NAMES and INPUT_LAYOUTS == LAYOUT_NAMES


# The models' configurations (dataclasses in training/models/ before): survey-cnn's checkpoint keys hash
# weights_dict() (`_chunk_key`), and both to_dict()s are the runs row's config; pinned from the dataclasses.
SURVEY_OTHER = {"epochs": 3, "shuffle": "every-epoch", "dropout": 0.25, "balance": "none", "folds_per_batch": 7,
                "grey_channels": "first"}
# Issue 17 made the survey's own initialisation (N(0, 0.01^2): init matlab-normal) and grey channels (first)
# the defaults and added init, engine and threads: the runs row's config gains those keys, and the default's
# checkpoint key changed (3f2120dcf623, was 28547693c8b7) because its numbers changed. Settings as they were
# before (init glorot, grey_channels replicate) keep their old keys, so their checkpoints still load.
SURVEY_DEFAULT = {"epochs": 150, "batch_size": 256, "learning_rate": 5e-05, "l2": 0.0001, "beta1": 0.9, "beta2": 0.999,
                  "adam_epsilon": 1e-08, "shuffle": "once", "dropout": 0.5, "balance": "undersample",
                  "unannotated_apex": "middle", "grey_channels": "first", "seed": 0, "device": "auto",
                  "dtype": "float32", "folds_per_batch": None, "init": "matlab-normal", "engine": "auto",
                  "threads": None}
BEFORE_ISSUE_17 = {"init": "glorot", "grey_channels": "replicate"}


def test_model_configurations_are_recorded_and_hashed_as_before():
    from merflow.training.models.nearest_centroid import CentroidConfig
    from merflow.training.models.survey_cnn import SurveyConfig

    assert SurveyConfig().to_dict() == SURVEY_DEFAULT and list(SurveyConfig().to_dict()) == list(SURVEY_DEFAULT)
    assert SurveyConfig(**SURVEY_OTHER).to_dict() == SURVEY_DEFAULT | SURVEY_OTHER
    assert config_hash(SurveyConfig(**BEFORE_ISSUE_17).weights_dict()) == "28547693c8b7"
    assert config_hash(SurveyConfig(**SURVEY_OTHER | {"init": "glorot"}).weights_dict()) == "bad141d062ee"
    assert config_hash(SurveyConfig().weights_dict()) == "3f2120dcf623"
    assert config_hash(SurveyConfig(**SURVEY_OTHER).weights_dict()) == "fe6e9ee4e116"
    # Where it runs, how many folds at once and the engine asked for are not in the key (the engine that ran is).
    assert SurveyConfig(device="cpu", folds_per_batch=2, engine="torch", threads=1).weights_dict() == \
        SurveyConfig().weights_dict()
    assert SurveyConfig().recipe == "published" and SurveyConfig(**SURVEY_OTHER).recipe == "custom"
    assert CentroidConfig().to_dict() == {"features": "flow", "seed": 0, "recipe": None}
    assert CentroidConfig(features="both", seed=3).to_dict() == {"features": "both", "seed": 3, "recipe": None}
    assert config_hash(CentroidConfig().to_dict()) == "2ea85abc4c79"
    for bad in ({"shuffle": "never"}, {"dropout": 1.0}, {"epochs": 0}, {"folds_per_batch": 0}, {"dtype": "half"}):
        with pytest.raises(ValueError, match=next(iter(bad)).replace("_", ".")):
            SurveyConfig(**bad)
    for bad in ({"features": "strain"}, {"recipe": "published"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            CentroidConfig(**bad)
    balanced = SurveyConfig(**SURVEY_OTHER).replace(balance="undersample")  # training/run.py with_balance
    assert balanced.to_dict() == SURVEY_DEFAULT | SURVEY_OTHER | {"balance": "undersample"}
    with pytest.raises(ValueError, match="balance"):
        SurveyConfig().replace(balance="oversample")  # replace validates again


def test_synthetic_configuration_is_recorded_as_before_and_validated(tmp_path):
    # The manifest of a synthetic set is its to_dict() (the dataclass's asdict before): same JSON, same archive bytes.
    from merflow.configs.synth import SynthConfig

    config = SynthConfig("CK+", subjects=2, samples=6, emotions=("anger", "fear"))
    assert json.dumps(config.to_dict(), sort_keys=True) == (
        '{"archive": "zip", "dataset": "ckplus", "emotions": ["anger", "fear"], "face_image": null, "quirks": true, '
        '"samples": 6, "samples_per_subject": 3, "scale": 0.5, "seed": 0, "subjects": 2}')
    assert config == SynthConfig(dataset="ckplus", subjects=2, samples=6, emotions=["anger", "fear"])
    assert config.total == 6 and SynthConfig("casme2").total == 12 and SynthConfig("smic_hs").dataset == "smic"
    for settings, message in (({"dataset": "casme4"}, "unknown dataset 'casme4'"), ({"archive": "rar"}, "archive"),
                              ({"scale": 2.0}, "scale"), ({"subjects": 0}, "subjects"),
                              ({"samples_per_subject": 0}, "at least one subject and one sample"),
                              ({"dataset": "samm", "emotions": ("anger",)}, "unknown samm emotions"),
                              ({"face_image": str(tmp_path / "none.png")}, "is not a file")):
        with pytest.raises(ValueError, match=message):
            SynthConfig(**({"dataset": "casme2"} | settings))
    with pytest.raises(TypeError, match="twice"):
        SynthConfig("casme2", dataset="samm")
