"""STSTNet on the real MEGC2019 composite: 68-subject LOSO x 800 epochs, timed, with pooled UF1 / UAR
(benchmarks/README.md, "STSTNet"). The official code (christy1206/STSTNet @ 1afb56e main.py) takes about 2.5
hours on one CPU thread and reports UF1 0.7209 / UAR 0.7250 (its README; reproduced with its released weights).

    .venv/bin/python benchmarks/ststnet.py --reference ../shared/reference --seeds 0 1 2
    .venv/bin/python benchmarks/ststnet.py --reference ../shared/reference --folds 4 --epochs 50 --threads 1

Reads the 442 flow PNGs as STSTNet does (``cv2.imread``: BGR = strain, v, u, 0..255), labels and subjects from
megc2019/combined_3_class2_for_optical_flow.csv; trains with training/models/ststnet.py ``train_folds`` (the
C kernel unless --engine torch). Prints one line per seed and, with --json, writes them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import time
from pathlib import Path

import cv2
import numpy as np

from merflow.training import shallow_cnn
from merflow.training.metrics import summarise  # noqa: F401  (the project's metric definitions)
from merflow.training.models import ststnet


def megc2019_flows(reference: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(442, 3, 28, 28) float32 images as cv2.imread gives them (strain, v, u), labels 0/1/2, subjects and
    the images' names (``<subject>_<clip>``, which order a class's images in STSTNet's batches)."""
    listing = reference / "megc2019" / "combined_3_class2_for_optical_flow.csv"
    folder = reference / "megc2019_features" / "STSNet_whole_norm_u_v_os"
    images, labels, subjects, names = [], [], [], []
    with open(listing, newline="") as handle:
        for row in csv.DictReader(handle):
            image = cv2.imread(str(folder / f"{row['sub']}_{row['filename_o']} .png"))
            if image is None:
                raise FileNotFoundError(f"no flow image for {row['sub']} {row['filename_o']} in {folder}")
            images.append(image.transpose(2, 0, 1).astype(np.float32))
            labels.append(int(row["label"]))
            subjects.append(row["sub"])
            names.append(ststnet.image_name(row["sub"], row["filename_o"]))
    return np.stack(images), np.array(labels), np.array(subjects), names


def uf1_uar(truth: np.ndarray, predicted: np.ndarray, classes: int = 3) -> tuple[float, float]:
    """MEGC2019's UF1 (mean of per-class 2TP / (2TP + FP + FN)) and UAR (mean per-class recall)."""
    f1, recall = [], []
    for c in range(classes):
        tp = int(np.sum((truth == c) & (predicted == c)))
        fp = int(np.sum((truth != c) & (predicted == c)))
        fn = int(np.sum((truth == c) & (predicted != c)))
        f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        recall.append(tp / (tp + fn) if tp + fn else 0.0)
    return float(np.mean(f1)), float(np.mean(recall))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=Path(os.environ.get("MERFLOW_REFERENCE", "../shared/reference")))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--folds", type=int, help="only the first N subjects' folds (a quick timing)")
    parser.add_argument("--epochs", type=int, default=800)
    parser.add_argument("--threads", type=int, help="folds trained at once (default: every CPU)")
    parser.add_argument("--engine", choices=("kernel", "torch"), default="kernel")
    parser.add_argument("--json", type=Path, help="write the per-seed lines here")
    args = parser.parse_args()

    images, labels, subjects, names = megc2019_flows(args.reference)
    held_out = sorted(set(subjects))[:args.folds]
    folds = [(f"megc2019-{s}", np.flatnonzero(subjects != s), np.flatnonzero(subjects == s)) for s in held_out]
    print(f"{len(images)} images, {len(set(subjects))} subjects, classes {np.bincount(labels).tolist()}; "
          f"{len(folds)} folds x {args.epochs} epochs, engine {args.engine}"
          + (f" ({shallow_cnn.available() or 'built'})" if args.engine == "kernel" else ""), flush=True)
    lines = []
    for seed in args.seeds:
        config = ststnet.StstnetConfig(seed=seed, epochs=args.epochs, threads=args.threads, engine=args.engine,
                                       device="cpu")
        started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        scores = ststnet.train_folds(images, labels, folds, 3, config, args.engine, names)
        wall = time.perf_counter() - started
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu_seconds = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
        truth = np.concatenate([labels[test] for _, _, test in folds])
        predicted = np.concatenate([scores[name].argmax(1) for name, _, _ in folds])
        uf1, uar = uf1_uar(truth, predicted)
        line = {"seed": seed, "folds": len(folds), "epochs": args.epochs, "uf1": round(uf1, 4), "uar": round(uar, 4),
                "accuracy": round(float(np.mean(truth == predicted)), 4), "wall_s": round(wall, 1),
                "cpu_s": round(cpu_seconds, 1), "threads": shallow_cnn.thread_count(config.threads),
                "load_before": os.getloadavg()[0]}
        lines.append(line)
        print(json.dumps(line), flush=True)
    if args.json:
        args.json.write_text(json.dumps(lines, indent=1) + "\n")


if __name__ == "__main__":
    main()
