"""Meta-MMFNet's stages for one fold, and the macro pretraining shared by all folds.

Stages (docs/method.md): the macro encoder pretrained as a classifier on CK+ (once per run); per fold
the micro encoder pretrained as a classifier on the fold's training subjects; both encoders
meta-trained as prototype classifiers on N-way K-shot episodes; at test time K support shots per
class from the training subjects, and the scores fused as d = d_micro + α·d_macro for a whole α
grid at once (no retraining). Every choice (α; each stage's epoch where ``epoch_choice`` asks for
one) is made on the fold's inner validation subjects; the held-out subject's labels are only ever
used to score. By default each stage keeps its last epoch: on the one to five validation subjects
of a real-sized set the best validation epoch was noise, often the first, and those undertrained
models fell below the nearest-centroid floor (benchmarks/selection.py). The
``published`` recipe (configs/train.py ``RECIPES``, docs/recipes.md) has no validation subjects: a fixed
schedule (the last epoch of each stage) and α = 1.0 as its headline, every α of its grid in the rows.
The loops themselves are training/loops.py.

Each stage is checkpointed in ``checkpoints`` (a ``CheckpointCache``: storage/checkpoints.py's
``Checkpoints``, which the flows hand in), keyed by its settings (``TrainConfig.stage_hash``) and by the data it is trained on (``data_key``); a
rerun loads what is there instead of training it again.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from merflow.configs import config_hash
from merflow.configs.train import TrainConfig
from merflow.training.data import FeatureSource, FlowScale
from merflow.training.encoders import build_encoder
from merflow.training.episodes import EpisodeSampler, episode_problem
from merflow.training.errors import DataError
from merflow.training.folds import Fold
from merflow.training.loops import (
    Split,
    accuracy_of,
    choose_alpha,
    meta_train,
    new_encoder,
    pick_device,
    prototype_scores,
    support_of,
    train_classifier,
)
from merflow.training.model import PrototypeClassifier, input_channels
from merflow.training.models import CheckpointCache


def data_key(source: FeatureSource, label_column: str, classes: tuple[str, ...], labels,
             keys_by_role: dict[str, list[str] | tuple[str, ...]]) -> str:
    """A digest of the data a stage's weights are made from: the label column and class set, each
    role's sample keys with their labels and features' input fingerprints (storage/features.py), and
    the feature configuration. Another class set, protocol, catalog (a changed label, a sample more
    or less) or feature store gives another key, so another checkpoint: weights are never loaded for
    data they were not trained on."""
    rows = {role: [[key, str(labels[key]), source.fingerprints.get(key, "")] for key in keys]
            for role, keys in sorted(keys_by_role.items())}
    return config_hash({"label_column": label_column, "classes": list(classes), "features": source.config.hash,
                        "rows": rows})


def _checkpoint(checkpoints: CheckpointCache, stage: str, config: TrainConfig, make, data: str = ""):
    """Load a stage's checkpoint if one exists for the settings it depends on, else run ``make`` and save it.

    The key is a hash of the stage's settings (``TrainConfig.stage_hash``) and of the data it is trained
    on (``data``, see ``data_key``), so the configurations of a search share what they have in common (a
    fold's pretrained encoder serves every number of shots) and nothing else. The file, its lock and
    its whole-or-absent write are storage/checkpoints.py's.
    """
    key = config_hash({"settings": config.stage_hash(stage), "data": data}) if data else config.stage_hash(stage)
    return checkpoints.load_or_make(stage, key, make)


def pretrain_macro(source: FeatureSource, keys: list[str], labels: list[str], classes: tuple[str, ...],
                   config: TrainConfig, checkpoints: CheckpointCache) -> dict:
    """The macro encoder, pretrained as a classifier on CK+ macro-expressions (once per run)."""
    if not keys:
        raise ValueError("macro pretraining needs CK+ samples with features: ingest CK+ and run `merflow features`")
    data = data_key(source, "label_ckplus7", tuple(classes), dict(zip(keys, labels)), {"fit": list(keys)})

    def make():
        device = pick_device(config.device)
        scale = FlowScale.fit(source.flows(keys))
        y = np.array([classes.index(label) for label in labels])
        split = Split(list(keys), source.inputs(keys, scale, config.layout), y)
        encoder = new_encoder(config, config.seed)
        initial = {k: v.clone() for k, v in encoder.state_dict().items()}
        encoder, stage = train_classifier(encoder, split, None, len(classes), config.macro_epochs, config, device,
                                          config.seed)
        state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
        change = float(sum((state[k].float() - initial[k].float()).norm() for k in state if state[k].is_floating_point()))
        return {"state": state, "classes": classes, "samples": len(keys), "weight_change": change,
                "epochs": stage.best_epoch, "data_key": data}

    return _checkpoint(checkpoints.folder("macro"), "macro_pretrain", config, make, data)


def run_fold(fold: Fold, source: FeatureSource, samples: pd.DataFrame, macro: dict, config: TrainConfig,
             checkpoints: CheckpointCache, on_epoch=None) -> dict:
    """Train and evaluate one fold; returns its predictions and chosen settings (checkpointed).

    ``samples`` is the protocol's catalog rows (sample_key index) with the fold's label column.
    ``on_epoch(epoch, validation_accuracy)`` hears each epoch of the micro model's meta-training.

    A fit split short of a class trains with what it has (episodes.py: fewer queries or shots for that
    class); the shortfalls are in the result's ``chosen["shortfalls"]``, by class name. Where nothing
    can be trained (``fold_problem``), ``FoldSkipped`` names the fold and the classes.
    """
    folder = checkpoints.folder(fold.name.replace("/", "_"))
    device = pick_device(config.device)
    n_classes = len(fold.classes)
    labels = samples[fold.label_column]
    missing = [k for k in fold.fit_keys + fold.validation_keys + fold.test_keys if k not in source]
    if missing:
        raise DataError(f"fold {fold.name}: {len(missing)} samples have no valid features, e.g. {missing[:3]}: "
                        "run `merflow features` for them, or ingest again")
    problem = fold_problem(fold, labels)
    if problem:
        raise FoldSkipped(fold.name, problem)
    fit_flow_scale = FlowScale.fit(source.flows(list(fold.fit_keys)))

    def split(keys) -> Split:
        keys = list(keys)
        return Split(keys, source.inputs(keys, fit_flow_scale, config.layout),
                     np.array([fold.classes.index(labels[k]) for k in keys], dtype=np.int64))

    # The published code lists every training sample twice (load_imgs_tsn, kuochong=True; the copy
    # was meant to be flipped, but `flag` in TripleImageDataset.__getitem__ is pylab's colormap
    # function, never 1, so it is the same image): an epoch sees each sample twice.
    fit_keys = list(fold.fit_keys) * (2 if config.duplicate_fit else 1)
    fit, validation = split(fit_keys), split(fold.validation_keys)
    seed = config.seed + _stable_int(fold.name)
    context = f"fold {fold.name}"
    shortfalls = EpisodeSampler(fit.y, n_classes, config.shots, config.queries, class_names=fold.classes,
                                context=context).shortfalls
    weights_data = data_key(source, fold.label_column, fold.classes, labels,
                            {"fit": fold.fit_keys, "validation": fold.validation_keys})
    evaluation_data = data_key(source, fold.label_column, fold.classes, labels,
                               {"fit": fold.fit_keys, "validation": fold.validation_keys, "test": fold.test_keys})

    def micro_pretrain_stage():
        encoder = new_encoder(config, seed)
        encoder, pretrain = train_classifier(encoder, fit, validation, n_classes, config.pretrain_epochs, config,
                                             device, seed)
        return {"state": {k: v.cpu() for k, v in encoder.state_dict().items()}, "epoch": pretrain.best_epoch}

    def micro_stage():
        encoder = new_encoder(config, seed)
        encoder.load_state_dict(pretrained["state"])
        model, meta = meta_train(encoder, fit, validation, n_classes, config, device, seed + 1, on_epoch=on_epoch,
                                 class_names=fold.classes, context=context)
        return {"state": {k: v.cpu() for k, v in model.state_dict().items()},
                "pretrain_epoch": pretrained["epoch"], "meta_epoch": meta.best_epoch,
                "validation_accuracy": meta.validation_accuracy}

    def macro_stage():
        encoder = new_encoder(config, seed)
        encoder.load_state_dict(macro["state"])
        model, meta = meta_train(encoder, fit, validation, n_classes, config, device, seed + 2,
                                 class_names=fold.classes, context=context)
        return {"state": {k: v.cpu() for k, v in model.state_dict().items()}, "meta_epoch": meta.best_epoch,
                "validation_accuracy": meta.validation_accuracy}

    def evaluation():
        test = Split(list(fold.test_keys), source.inputs(list(fold.test_keys), fit_flow_scale, config.layout),
                     np.zeros(len(fold.test_keys), np.int64))  # test labels are not looked at here
        support = support_of(fit, n_classes, config.shots, seed + 3)
        scores = {}
        for name, stage in (("micro", micro_trained), ("macro", macro_trained)):
            model = PrototypeClassifier(build_encoder(config.encoder, input_channels(config.layout))).to(device)
            model.load_state_dict(stage["state"])
            scores[name] = {"validation": prototype_scores(model, support, validation.x, n_classes, device),
                            "test": prototype_scores(model, support, test.x, n_classes, device)}
        alpha = choose_alpha(scores["micro"]["validation"], scores["macro"]["validation"], validation.y, config.alphas,
                             config.alpha_choice)
        fused = scores["micro"]["validation"] + alpha * scores["macro"]["validation"]
        return {"scores": scores, "alpha": alpha, "alpha_chosen_on_validation": bool(len(validation)),
                "validation_accuracy": accuracy_of(fused, validation.y)}

    # The macro encoder's own key (its CK+ data and settings) is part of the meta stages' data.
    macro_data = config_hash({"fold": weights_data, "macro": macro.get("data_key", "")})
    pretrained = _checkpoint(folder, "micro_pretrain", config, micro_pretrain_stage, weights_data)
    micro_trained = _checkpoint(folder, "micro", config, micro_stage, weights_data)
    macro_trained = _checkpoint(folder, "macro", config, macro_stage, macro_data)
    evaluated = _checkpoint(folder, "evaluation", config, evaluation, config_hash({"data": evaluation_data,
                                                                                   "macro": macro_data}))
    chosen = {"alpha": evaluated["alpha"], "alpha_chosen_on_validation": evaluated["alpha_chosen_on_validation"],
              "micro_pretrain_epoch": micro_trained["pretrain_epoch"], "micro_meta_epoch": micro_trained["meta_epoch"],
              "macro_meta_epoch": macro_trained["meta_epoch"],
              "validation_accuracy": evaluated.get("validation_accuracy"), "shortfalls": shortfalls}
    return {"fold": fold, "chosen": chosen, "scores": evaluated["scores"],
            "keys": {"validation": list(fold.validation_keys), "test": list(fold.test_keys)}}


class FoldSkipped(DataError):
    """A fold that nothing sensible can be trained on; the protocol goes on without it."""

    def __init__(self, fold: str, reason: str):
        super().__init__(f"fold {fold} skipped: {reason}")
        self.fold, self.reason = fold, reason


def fold_problem(fold: Fold, labels) -> str | None:
    """Why ``fold`` cannot be trained (its fit split gives no episode, see episodes.episode_problem),
    or None. Reads the fit samples' labels only."""
    counts = pd.Series([labels[k] for k in fold.fit_keys], dtype=object).value_counts()
    problem = episode_problem([int(counts.get(c, 0)) for c in fold.classes], fold.classes)
    if problem is None and len(fold.fit_keys) < 2:
        problem = f"{len(fold.fit_keys)} fit sample(s): classifier pretraining needs 2"
    return f"its fit split: {problem}" if problem else None


def recipe_feature_mismatch(config: TrainConfig, feature_config) -> list[str]:
    """How the features differ from what the config's recipe was published with (empty: they match)."""
    if config.recipe != "published":
        return []
    wanted = {"size": 80, "first_frame": "onset+1"}  # DebinMeng_train: Resize((80, 80)); img_lists[1]
    return [f"{name} {getattr(feature_config, name)} (published: {value})" for name, value in wanted.items()
            if getattr(feature_config, name) != value]


def _stable_int(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
