"""The floor's cost (training/models/nearest_centroid.py): LOVO and LOSO over random features of the
given size, the time of every fold's nearest-centroid scores (the features stacked once, each fold's
class sums the totals minus its non-training rows). The time does not depend on the values.

    .venv/bin/python benchmarks/nearest_centroid.py [--samples 800] [--size 80] [--subjects 26]
"""

from __future__ import annotations

import argparse
import time
import types

import numpy as np
import pandas as pd

from merflow.training.folds import Fold
from merflow.training.models import nearest_centroid

CLASSES = ("a", "b", "c", "d")


def main() -> None:
    """Print the time of the floor on LOVO and LOSO folds of random features."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=800)
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--subjects", type=int, default=26)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    keys = [f"set/s{i % args.subjects:02d}/k{i}" for i in range(args.samples)]
    source = types.SimpleNamespace(
        flow={k: rng.normal(size=(4, args.size, args.size)).astype(np.float32) for k in keys},
        diff={k: rng.normal(size=(3, args.size, args.size)).astype(np.float32) for k in keys})
    samples = pd.DataFrame({"sample_key": keys, "dataset": "set", "subject_key": [k.rsplit("/", 1)[0] for k in keys],
                            "label": [CLASSES[i % 4] for i in range(args.samples)]}).set_index("sample_key", drop=False)
    lovo = [Fold(f"lovo-{k}", "lovo", "label", CLASSES, tuple(x for x in keys if x != k), (), (k,), ("",))
            for k in keys]
    subjects = sorted(set(samples["subject_key"]))
    loso = [Fold(f"loso-{s}", "loso", "label", CLASSES, tuple(k for k in keys if not k.startswith(s + "/")), (),
                 tuple(k for k in keys if k.startswith(s + "/")), (s,)) for s in subjects]
    for name, folds in (("LOVO", lovo), ("LOSO", loso)):
        for features in ("flow", "both"):
            started = time.perf_counter()
            nearest_centroid.predictions(folds, source, samples, features)
            print(f"{name}: {len(folds)} folds, {args.samples} samples at {args.size}x{args.size}, {features}: "
                  f"{time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
