"""The survey baseline on the survey's own balanced inputs (reference/survey/C4.mat, C9.mat): LOVO accuracy of
survey-cnn over seeds, beside the survey's 47.32% (212/448) and 26.39% (38/144), the raw-pixel nearest-centroid
floor on the same folds and what the grey-in-channel-1 shortcut alone gives (docs/recipes.md, "The survey's
numbers"). LOVO: one fold per image, training on every other image (main4.m).

    .venv/bin/python benchmarks/survey_reproduction.py --reference ../shared/reference \\
        --labels4 LABEL4 --labels9 LABEL9 --seeds 0 1 2 3 4

The label files (label4.mat, label9.mat) are MATLAB ``categorical`` objects, which scipy cannot read:
``--labels4``/``--labels9`` take their class indices (a .npy array or a text file, one index a line, in the
images' order, 0-based in the order of the category names), as merflow's importer (`merflow import-features`)
reads them. The images are ``qutrain_C`` (H, W, C, N uint8) read with scipy.io.loadmat.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import scipy.io

from merflow.training.models import survey_cnn
from merflow.training.models.nearest_centroid import centroid_scores

SURVEY = {"C4": (212, 448), "C9": (38, 144)}   # the survey's reported LOVO counts


def read_labels(path: Path) -> np.ndarray:
    """Class indices from a .npy array or a text file of one index a line."""
    return np.load(path).astype(np.int64) if path.suffix == ".npy" else np.loadtxt(path, dtype=np.int64)


def survey_images(reference: Path, name: str) -> np.ndarray:
    """(N, 3, 28, 28) float32 images in 0..255 from ``qutrain_C`` (H, W, C, N)."""
    return scipy.io.loadmat(str(reference / "survey" / f"{name}.mat"))["qutrain_C"].transpose(3, 2, 0, 1).astype(np.float32)


def is_grey(images: np.ndarray) -> np.ndarray:
    """Images whose channels 2 and 3 are exact zeros: apex4.m's grey datasets (SAMM, CASME)."""
    return (images[:, 1:] == 0).all(axis=(1, 2, 3))


def lovo_floor(images: np.ndarray, labels: np.ndarray, classes: int) -> int:
    """Correct LOVO predictions of a nearest centroid on the raw pixels."""
    flat = images.reshape(len(images), -1)
    correct = 0
    for i in range(len(images)):
        train = np.delete(np.arange(len(images)), i)
        correct += int(centroid_scores(flat[train], labels[train], flat[i:i + 1], classes).argmax() == labels[i])
    return correct


def lovo_shortcut(grey: np.ndarray, labels: np.ndarray, classes: int) -> int:
    """Correct LOVO predictions of a rule that knows only grey vs colour: the held-out image gets the most
    frequent class among the training images of its kind (ties: the lowest class index)."""
    correct = 0
    for i in range(len(labels)):
        same = np.delete(np.arange(len(labels)), i)
        same = same[grey[same] == grey[i]]
        correct += int(np.bincount(labels[same], minlength=classes).argmax() == labels[i])
    return correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=Path(os.environ.get("MERFLOW_REFERENCE", "../shared/reference")))
    parser.add_argument("--labels4", type=Path, required=True)
    parser.add_argument("--labels9", type=Path, required=True)
    parser.add_argument("--sets", nargs="+", default=["C9", "C4"], choices=sorted(SURVEY))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--init", choices=survey_cnn.INITS, default="matlab-normal")
    parser.add_argument("--grey-channels", choices=survey_cnn.GREY_CHANNELS, default="first",
                        help="first: the arrays as the survey stored them; replicate: channel 1 copied into 2 and 3")
    parser.add_argument("--engine", choices=("kernel", "torch"), default="kernel")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    lines = []
    for name in args.sets:
        images = survey_images(args.reference, name)
        labels = read_labels(args.labels4 if name == "C4" else args.labels9)
        classes = int(labels.max()) + 1
        grey = is_grey(images)
        if args.grey_channels == "replicate":
            images[grey, 1:] = images[grey, :1]
        survey_correct, n = SURVEY[name]
        floor, shortcut = lovo_floor(images, labels, classes), lovo_shortcut(grey, labels, classes)
        print(f"{name}: {n} images, {classes} classes of {np.bincount(labels).tolist()}, {int(grey.sum())} grey; "
              f"survey {survey_correct}/{n} = {survey_correct / n:.2%}; floor (raw-pixel nearest centroid) "
              f"{floor}/{n} = {floor / n:.2%}; grey-vs-colour shortcut {shortcut}/{n} = {shortcut / n:.2%}", flush=True)
        tasks = [survey_cnn.FoldTask(f"lovo-{i}", np.delete(np.arange(n), i), np.array([i])) for i in range(n)]
        for seed in args.seeds:
            config = survey_cnn.SurveyConfig(seed=seed, init=args.init, engine=args.engine, threads=args.threads,
                                             device="cpu", grey_channels=args.grey_channels)
            started = time.perf_counter()
            scores = survey_cnn.train_folds(images, labels, tasks, classes, config)
            correct = sum(int(scores[t.name][0].argmax() == labels[t.test[0]]) for t in tasks)
            line = {"set": name, "seed": seed, "init": args.init, "grey_channels": args.grey_channels,
                    "engine": args.engine, "correct": correct, "n": n, "accuracy": round(correct / n, 4),
                    "survey": round(survey_correct / n, 4), "floor": round(floor / n, 4),
                    "shortcut": round(shortcut / n, 4), "seconds": round(time.perf_counter() - started, 1)}
            lines.append(line)
            print(json.dumps(line), flush=True)
    if args.json:
        args.json.write_text(json.dumps(lines, indent=1) + "\n")


if __name__ == "__main__":
    main()
