"""Training benchmark: time for one LOSO fold and for all folds with each encoder, and episodes per
second of meta-training, on a CASME II-size synthetic set (26 subjects, 255 samples) and CK+.

    .venv/bin/python benchmarks/training.py [--size 28] [--encoders small,resnet18] [--all-folds small]
        [--device auto] [--work DIR]
    .venv/bin/python benchmarks/training.py --recipe published [--threads 1] [--work DIR]

The published schedule (100 macro epochs, 50 pretraining epochs, 7 meta epochs of 30 x 4 episodes)
is the default; --quick uses the test suite's small schedule.

``--recipe published`` times the published recipe (configs/train.py RECIPES: ResNet-18, batch 128, the
duplicated fit list) on its own inputs (80x80, onset + 1: 3x160x80 images) for one LOSO fold: a
reduced number of epochs and episode batches of each stage, measured, then extrapolated to the full
schedule (50 pretraining epochs, 2 x 7 meta epochs of 30 batches, and the 100 CK+ epochs once a run).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def build(work: Path, size: int, first_frame: str = "onset") -> str:
    from merflow.configs.synth import SynthConfig
    from merflow.flows.features import features_flow
    from merflow.flows.ingest import ingest_flow
    from merflow.tasks.synthetic import synthesize

    store = work / (f"features-{size}.zarr" if first_frame == "onset" else f"features-{size}-{first_frame}.zarr")
    if store.exists():
        return str(store)
    if not (work / "catalog").exists():
        sources = [synthesize(SynthConfig("casme2", subjects=26, samples=255, archive="none", seed=1, scale=0.35),
                              work),
                   synthesize(SynthConfig("ckplus", subjects=8, samples=40, archive="none", seed=1, scale=0.35), work)]
        ingest_flow(sources=[str(s) for s in sources], out=str(work / "catalog"))
    features_flow(catalog_dir=str(work / "catalog"), store=str(store), size=size, first_frame=first_frame)
    return str(store)


def published_fold(work: Path, device_name: str, pretrain_epochs: int = 2, meta_batches: int = 4) -> None:
    """The published recipe's time for one LOSO fold: each stage run for a few epochs / batches, timed,
    and extrapolated to the full schedule (see the module's docstring)."""

    import numpy as np
    import torch

    from merflow.configs.train import TrainConfig
    from merflow.storage import catalog as catalog_store
    from merflow.storage.features import open_features, read_feature_arrays
    from merflow.training.data import FeatureSource, FlowScale
    from merflow.training.folds import folds, macro_samples, protocol_samples
    from merflow.training.loops import (
        Split,
        meta_train,
        new_encoder,
        pick_device,
        prototype_scores,
        support_of,
        train_classifier,
    )

    store = build(work, 80, "onset+1")
    config = TrainConfig.from_recipe("published", device=device_name)
    device = pick_device(device_name)
    catalog = catalog_store.read_samples(work / "catalog")
    source = FeatureSource(**read_feature_arrays(store, ["casme2", "ckplus"], open_features(store, "casme2").config))
    fold = folds(catalog, "loso", "casme2", validation_fraction=config.validation_fraction)[0]
    samples = protocol_samples(catalog, "loso", "casme2").set_index("sample_key", drop=False)
    scale = FlowScale.fit(source.flows(list(fold.fit_keys)))
    keys = list(fold.fit_keys) * 2  # the published duplicated list (duplicate_fit)
    fit = Split(keys, source.inputs(keys, scale, config.layout),
                np.array([fold.classes.index(samples.at[k, fold.label_column]) for k in keys]))
    n_classes = len(fold.classes)
    print(f"published recipe, one LOSO fold: {len(fold.fit_keys)} fit samples (x2 listed), {len(fold.test_keys)} "
          f"test, inputs {tuple(fit.x.shape[1:])}, {config.encoder}, batch {config.batch_size}, device {device} "
          f"({torch.get_num_threads()} CPU threads)")

    def timed(function):
        started = time.perf_counter()
        result = function()
        return result, time.perf_counter() - started

    encoder, pretrain_s = timed(lambda: train_classifier(new_encoder(config, 0), fit, None, n_classes,
                                                         pretrain_epochs, config, device, 0)[0])
    per_pretrain_epoch = pretrain_s / pretrain_epochs
    short = config.replace(meta_epochs=1, batches_per_epoch=meta_batches)
    model, meta_s = timed(lambda: meta_train(encoder, fit, None, n_classes, short, device, 1)[0])
    per_meta_batch = meta_s / meta_batches
    test_x = source.inputs(list(fold.test_keys), scale, config.layout)
    support = support_of(fit, n_classes, config.shots, 3)
    _, evaluation_s = timed(lambda: [prototype_scores(model, support, test_x, n_classes, device) for _ in range(2)])
    macro = macro_samples(catalog)
    macro = macro[macro["sample_key"].isin(list(source.diff))]
    ck_keys = macro["sample_key"].tolist()
    ck_classes = tuple(sorted(macro["label_ckplus7"].unique()))
    ck = Split(ck_keys, source.inputs(ck_keys, FlowScale.fit(source.flows(ck_keys)), config.layout),
               np.array([ck_classes.index(v) for v in macro["label_ckplus7"]]))
    _, ck_s = timed(lambda: train_classifier(new_encoder(config, 0), ck, None, len(ck_classes), 1, config, device, 0))
    pretrain_full = per_pretrain_epoch * config.pretrain_epochs
    meta_full = per_meta_batch * config.batches_per_epoch * config.meta_epochs * 2  # micro and macro encoders
    fold_full = pretrain_full + meta_full + evaluation_s
    batches = -(-len(keys) // config.batch_size)
    print(f"  measured: micro pretraining {per_pretrain_epoch:.1f} s an epoch ({batches} batches of <= "
          f"{config.batch_size}); meta-training {per_meta_batch:.2f} s a batch of {config.episodes_per_batch} "
          f"episodes ({n_classes}-way {config.shots}-shot {config.queries}-query); evaluation {evaluation_s:.1f} s; "
          f"CK+ pretraining {ck_s:.1f} s an epoch ({len(ck_keys)} samples)")
    print(f"  extrapolated to the published schedule: one fold {fold_full / 60:.1f} min (pretraining "
          f"{config.pretrain_epochs} epochs {pretrain_full / 60:.1f} min + meta-training 2 x {config.meta_epochs} x "
          f"{config.batches_per_epoch} batches {meta_full / 60:.1f} min); CK+ pretraining, once a run, "
          f"{config.macro_epochs} epochs {ck_s * config.macro_epochs / 60:.1f} min; CASME II LOSO (26 folds) "
          f"{(26 * fold_full + ck_s * config.macro_epochs) / 3600:.1f} h")


def episodes_per_second(source, samples, fold, config) -> float:
    """Meta-training speed alone: one epoch of episodes on the fold's training samples."""
    import numpy as np

    from merflow.training.data import FlowScale
    from merflow.training.loops import Split, meta_train, new_encoder, pick_device

    scale = FlowScale.fit(source.flows(list(fold.fit_keys)))
    keys = list(fold.fit_keys)
    labels = np.array([fold.classes.index(samples.at[k, fold.label_column]) for k in keys])
    split = Split(keys, source.inputs(keys, scale, config.layout), labels)
    one_epoch = type(config)(**{**config.to_dict(), "meta_epochs": 1})
    started = time.perf_counter()
    meta_train(new_encoder(one_epoch, 0), split, None, len(fold.classes), one_epoch, pick_device(config.device), 0)
    return one_epoch.batches_per_epoch * one_epoch.episodes_per_batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--encoders", default="small,resnet18")
    parser.add_argument("--all-folds", default="small", help="encoders to run on all 26 folds")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--recipe", choices=["merflow", "published"], default="merflow",
                        help="published: time one fold of the published recipe and extrapolate (see above)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.recipe == "published":
        work = args.work or Path(tempfile.mkdtemp(prefix="merflow-bench-training-"))
        work.mkdir(parents=True, exist_ok=True)
        published_fold(work, args.device)
        return

    import pandas as pd
    import torch

    from merflow.configs.train import TrainConfig
    from merflow.storage import catalog as catalog_store
    from merflow.storage.checkpoints import Checkpoints
    from merflow.storage.features import open_features, read_feature_arrays
    from merflow.training.data import FeatureSource
    from merflow.training.folds import folds, macro_samples, protocol_samples
    from merflow.training.loops import pick_device
    from merflow.training.models.meta_mmfnet import fold_predictions
    from merflow.training.run import metric_rows
    from merflow.training.stages import pretrain_macro, run_fold

    work = args.work or Path(tempfile.mkdtemp(prefix="merflow-bench-training-"))
    work.mkdir(parents=True, exist_ok=True)
    build(work, args.size)
    store = str(work / f"features-{args.size}.zarr")
    catalog = catalog_store.read_samples(work / "catalog")
    source = FeatureSource(**read_feature_arrays(store, ["casme2", "ckplus"], open_features(store, "casme2").config))
    macro = macro_samples(catalog)
    samples = protocol_samples(catalog, "loso", "casme2").set_index("sample_key", drop=False)
    all_folds = folds(catalog, "loso", "casme2")
    device = pick_device(args.device)
    print(f"{len(samples)} samples in {len(all_folds)} LOSO folds, inputs 3x{2 * args.size}x{args.size}, "
          f"device {device} ({torch.get_num_threads()} CPU threads)")
    for encoder in args.encoders.split(","):
        schedule = dict(macro_epochs=10, pretrain_epochs=15, meta_epochs=2, batches_per_epoch=8) if args.quick else {}
        config = TrainConfig(encoder=encoder, device=args.device, **schedule)
        checkpoints = Checkpoints(work / f"checkpoints-{encoder}-{time.time_ns()}")
        started = time.perf_counter()
        macro_model = pretrain_macro(source, macro["sample_key"].tolist(), macro["label_ckplus7"].tolist(),
                                     tuple(sorted(macro["label_ckplus7"].unique())), config, checkpoints)
        macro_s = time.perf_counter() - started
        chosen = all_folds if encoder in args.all_folds.split(",") else all_folds[:1]
        started = time.perf_counter()
        predictions = [fold_predictions(run_fold(fold, source, samples, macro_model, config, checkpoints), samples,
                                        config.alphas) for fold in chosen]
        folds_s = time.perf_counter() - started
        metrics = metric_rows(pd.concat(predictions, ignore_index=True), chosen[0].classes)
        pooled = metrics[(metrics["scope"] == "pooled") & (metrics["split"] == "test")]
        accuracy = {("fused@chosen" if row.chosen else row.model): row.accuracy for row in pooled.itertuples()
                    if row.model != "fused" or row.chosen}
        episodes = 2 * config.meta_epochs * config.batches_per_epoch * config.episodes_per_batch * len(chosen)
        print(f"{encoder:>9}: macro pretraining {macro_s:6.1f} s | {len(chosen)} fold(s) {folds_s:7.1f} s "
              f"({folds_s / len(chosen):.1f} s a fold) | {episodes} meta-training episodes in them | pooled test "
              f"accuracy " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))
        print(f"{encoder:>9}: meta-training {episodes_per_second(source, samples, all_folds[0], config):.1f} "
              f"episodes/s ({len(all_folds[0].classes)}-way {config.shots}-shot {config.queries}-query)")
        shutil.rmtree(checkpoints, ignore_errors=True)


if __name__ == "__main__":
    main()
