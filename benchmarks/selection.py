"""Meta-MMFNet's model selection on small sets (issue 12): pooled LOSO test accuracy and UF1 of each
selection variant of configs/train.py's TrainConfig, with the nearest-centroid floor beside it.

    .venv/bin/python benchmarks/selection.py --work DIR [--sets demo,casme2-80,planted]
        [--variants default,last,...] [--face-image PATH_TO_A_FACE.jpg]

Sets (built once under --work, through merflow's own synthesis, ingest and features flows):
- demo: synthetic CASME II as `merflow demo` makes it (26 subjects, 255 samples, 146 in the four
  classes; scale 0.25, seed 0) and its CK+ (6 subjects, 30 samples), 28x28.
- casme2-80: synthetic CASME II, 12 subjects, 119 samples (68 four-class), scale 0.35, 80x80.
- planted: SAMM layout on one real face (--face-image, read at run time and never copied), 6
  subjects x 9 samples of Anger, Happiness and Surprise (their AU motion, expressions.py), each
  subject its own pose, warp and tone; 28x28.
Every run uses the demo's short schedule (10 macro, 15 pretraining, 2 meta epochs of 8 x 4
episodes; the test suite's SMALL) unless a variant says otherwise. Figures: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from merflow.training.metrics import scores

SETS = ("demo", "casme2-80", "planted")
SMALL = {"macro_epochs": 10, "pretrain_epochs": 15, "meta_epochs": 2, "batches_per_epoch": 8}
# Variant name -> TrainConfig settings over SMALL and merflow's defaults. "default" is merflow's default
# now (epoch_choice last, since issue 12); "accuracy" was the default before it.
VARIANTS: dict[str, dict] = {
    "default": {},
    "accuracy": {"epoch_choice": "validation"},
    "last": {"epoch_choice": "last"},
    "loss": {"epoch_choice": "loss"},
    "accuracy-min-half": {"epoch_choice": "validation", "min_epoch_fraction": 0.5},
    "loss-min-half": {"epoch_choice": "loss", "min_epoch_fraction": 0.5},
    "validation-0.4": {"validation_fraction": 0.4},
    "last-alpha-loss": {"epoch_choice": "last", "alpha_choice": "loss"},
    "loss-alpha-loss": {"epoch_choice": "loss", "alpha_choice": "loss"},
    "last-fit-all": {"epoch_choice": "last", "validation_fraction": 0.0},
    "last-validation-0.4": {"epoch_choice": "last", "validation_fraction": 0.4},
    "last-lr-0.003": {"epoch_choice": "last", "pretrain_lr": 0.003},
    "last-lr-0.03": {"epoch_choice": "last", "pretrain_lr": 0.03},
    "last-lr-0.05": {"epoch_choice": "last", "pretrain_lr": 0.05},
    "last-batch-8": {"epoch_choice": "last", "batch_size": 8},
    "last-batch-8-long": {"epoch_choice": "last", "batch_size": 8, "pretrain_epochs": 45, "meta_epochs": 6,
                          "macro_epochs": 30},
    "full-batch-8": {"macro_epochs": 100, "pretrain_epochs": 50, "meta_epochs": 7, "batches_per_epoch": 30,
                     "batch_size": 8},
}


def build(work: Path, name: str, face_image: str | None) -> tuple[Path, str, str]:
    """The set's catalog, feature store and dataset name (built on first use)."""
    from merflow.configs.synth import SynthConfig
    from merflow.flows.features import features_flow
    from merflow.flows.ingest import ingest_flow
    from merflow.tasks.synthetic import synthesize

    folder = work / name
    catalog, store = folder / "catalog", folder / "features.zarr"
    if name == "demo":
        configs, size, dataset = [SynthConfig("casme2", subjects=26, samples=255, archive="none", seed=0, scale=0.25),
                                  SynthConfig("ckplus", subjects=6, samples=30, archive="none", seed=0, scale=0.25)], 28, "casme2"
    elif name == "casme2-80":
        configs, size, dataset = [SynthConfig("casme2", subjects=12, samples=119, archive="none", seed=2, scale=0.35),
                                  SynthConfig("ckplus", subjects=8, samples=40, archive="none", seed=2, scale=0.35)], 80, "casme2"
    else:
        if not face_image:
            raise SystemExit("the planted set needs --face-image (e.g. ../shared/reference/frames/SAMM_006_05562.jpg)")
        configs, size, dataset = planted_configs(face_image), 28, "samm"
    if not (folder / "built").exists():
        folder.mkdir(parents=True, exist_ok=True)
        sources = [str(p) if p.exists() else str(synthesize(c, folder))
                   for c in configs for p in [folder / _folder_name(c)]]
        ingest_flow(sources=sources, out=str(catalog))
        features_flow(catalog_dir=str(catalog), store=str(store), size=size, n_workers=2)
        (folder / "built").write_text("")
    return catalog, str(store), dataset


def planted_configs(face_image: str, subjects: int = 6, samples: int = 54, seed: int = 3, scale: float = 0.3):
    """The planted set's synthetic SAMM (one real face, three AU-planted classes) and its CK+."""
    from merflow.configs.synth import SynthConfig

    return [SynthConfig("samm", subjects=subjects, samples=samples, archive="none", seed=seed, scale=scale,
                        quirks=False, face_image=face_image, emotions=("Anger", "Happiness", "Surprise")),
            SynthConfig("ckplus", subjects=6, samples=30, archive="none", seed=seed, scale=scale)]


def _folder_name(config) -> str:
    from merflow.tasks.synthetic.layouts import SPECS

    return SPECS[config.dataset].folder


def floor(data, max_folds: int | None = None) -> dict:
    """The nearest-centroid floor on the same folds (flow u, v; scaled on training samples only)."""
    from merflow.training.models.nearest_centroid import floor_rows

    rows = floor_rows(data, data.folds[:max_folds])
    result = scores(rows["label"].map(data.classes.index), rows["pred"].map(data.classes.index), data.classes)
    return {"accuracy": result["accuracy"], "uf1": result["uf1"]}


def run_variant(data, settings: dict, checkpoints: Path, max_folds: int | None = None) -> dict:
    """Every fold of the protocol under these settings: pooled test accuracy/UF1 of micro, macro and
    fused at each fold's chosen α, and what was chosen."""
    from merflow.configs.train import TrainConfig
    from merflow.storage.checkpoints import Checkpoints
    from merflow.training.models import meta_mmfnet
    from merflow.training.stages import run_fold

    config = TrainConfig(**(SMALL | settings))
    checkpoints = Checkpoints(checkpoints)
    started = time.perf_counter()
    macro = meta_mmfnet.prepare(data, config, checkpoints)
    labels, preds, chosen = [], {"micro": [], "macro": [], "fused": []}, []
    for fold in data.folds[:max_folds]:
        result = run_fold(fold, data.source, data.samples, macro, config, checkpoints)
        truth = [fold.classes.index(data.samples.at[k, fold.label_column]) for k in fold.test_keys]
        micro, macro_scores = result["scores"]["micro"]["test"], result["scores"]["macro"]["test"]
        alpha = result["chosen"]["alpha"]
        labels += truth
        preds["micro"] += micro.argmax(1).tolist()
        preds["macro"] += macro_scores.argmax(1).tolist()
        preds["fused"] += (micro + alpha * macro_scores).argmax(1).tolist()
        chosen.append(result["chosen"])
    y = np.array(labels)
    out = {f"{m}_acc": float((np.array(p) == y).mean()) for m, p in preds.items()}
    out |= {f"{m}_uf1": scores(labels, p, data.classes)["uf1"] for m, p in preds.items()}
    out["chosen"] = {
        "pretrain_epoch": _spread(c["micro_pretrain_epoch"] for c in chosen),
        "micro_meta_epoch": _spread(c["micro_meta_epoch"] for c in chosen),
        "macro_meta_epoch": _spread(c["macro_meta_epoch"] for c in chosen),
        "alpha": _spread(c["alpha"] for c in chosen)}
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def _spread(values) -> str:
    values = list(values)
    counts = {v: values.count(v) for v in sorted(set(values))}
    return " ".join(f"{v}x{n}" for v, n in counts.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--variants", default="default")
    parser.add_argument("--face-image", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-folds", type=int, help="the first N folds only (floor and models alike): a partial look")
    args = parser.parse_args()
    import torch

    from merflow.configs.train import TrainConfig
    from merflow.flows.protocol import load_protocol

    torch.set_num_threads(args.threads)
    for name in args.sets.split(","):
        catalog, store, dataset = build(args.work, name, args.face_image)
        loaded = {}  # validation fraction -> the protocol's folds (the floor's folds are the models')
        for variant in args.variants.split(","):
            settings = VARIANTS[variant]
            fraction = settings.get("validation_fraction", TrainConfig().validation_fraction)
            if fraction not in loaded:
                loaded[fraction] = data = load_protocol(catalog, store, "loso", dataset, validation_fraction=fraction)
                print(json.dumps({"set": name, "validation_fraction": fraction, "folds": len(data.folds),
                                  "samples": len(data.samples), "classes": list(data.classes),
                                  "floor": floor(data, args.max_folds)}), flush=True)
            scores = run_variant(loaded[fraction], settings, args.work / name / "checkpoints", args.max_folds)
            print(json.dumps({"set": name, "variant": variant, "settings": settings} | scores), flush=True)


if __name__ == "__main__":
    main()
