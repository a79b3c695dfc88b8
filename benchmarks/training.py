"""Training benchmark: time for one LOSO fold and for all folds with each encoder, and episodes per
second of meta-training, on a CASME II-size synthetic set (26 subjects, 255 samples) and CK+.

    .venv/bin/python benchmarks/training.py [--size 28] [--encoders small,resnet18] [--all-folds small]
        [--device auto] [--work DIR]

The published schedule (100 macro epochs, 50 pretraining epochs, 7 meta epochs of 30 x 4 episodes)
is the default; --quick uses the test suite's small schedule.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def build(work: Path, size: int) -> None:
    from merflow.flows.features import features_flow
    from merflow.flows.ingest import ingest_flow
    from merflow.tasks.synthetic import SynthConfig, synthesize

    if (work / f"features-{size}.zarr").exists():
        return
    sources = [synthesize(SynthConfig("casme2", subjects=26, samples=255, archive="none", seed=1, scale=0.35), work),
               synthesize(SynthConfig("ckplus", subjects=8, samples=40, archive="none", seed=1, scale=0.35), work)]
    ingest_flow(sources=[str(s) for s in sources], out=str(work / "catalog"))
    features_flow(catalog_dir=str(work / "catalog"), store=str(work / f"features-{size}.zarr"), size=size)


def episodes_per_second(source, samples, fold, config) -> float:
    """Meta-training speed alone: one epoch of episodes on the fold's training samples."""
    import numpy as np

    from merflow.training.data import FlowScale
    from merflow.training.fit import Split, meta_train, new_encoder, pick_device

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
    args = parser.parse_args()

    import pandas as pd
    import torch

    from merflow.storage import catalog as catalog_store
    from merflow.storage.features import open_features
    from merflow.training.data import FeatureSource
    from merflow.training.fit import TrainConfig, pick_device, pretrain_macro, run_fold
    from merflow.training.folds import folds, macro_samples, protocol_samples
    from merflow.training.run import fold_predictions, metric_rows

    work = args.work or Path(tempfile.mkdtemp(prefix="merflow-bench-training-"))
    work.mkdir(parents=True, exist_ok=True)
    build(work, args.size)
    store = str(work / f"features-{args.size}.zarr")
    catalog = catalog_store.read_samples(work / "catalog")
    source = FeatureSource(store, ["casme2", "ckplus"], open_features(store, "casme2").config)
    macro = macro_samples(catalog)
    samples = protocol_samples(catalog, "loso", "casme2").set_index("sample_key", drop=False)
    all_folds = folds(catalog, "loso", "casme2")
    device = pick_device(args.device)
    print(f"{len(samples)} samples in {len(all_folds)} LOSO folds, inputs 3x{2 * args.size}x{args.size}, "
          f"device {device} ({torch.get_num_threads()} CPU threads)")
    for encoder in args.encoders.split(","):
        schedule = dict(macro_epochs=10, pretrain_epochs=15, meta_epochs=2, batches_per_epoch=8) if args.quick else {}
        config = TrainConfig(encoder=encoder, device=args.device, **schedule)
        checkpoints = work / f"checkpoints-{encoder}-{time.time_ns()}"
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
