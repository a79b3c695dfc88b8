"""Survey baseline benchmark: time of a LOVO run of survey-cnn (training/models/survey_cnn.py) over the
survey's 448-sample balanced set, with main4.m's schedule (150 epochs, mini-batch 256, Shuffle 'once':
one iteration an epoch on 447 training samples).

    .venv/bin/python benchmarks/survey_cnn.py [--folds 32] [--epochs 10] [--folds-per-batch 4]
        [--threads 2] [--device cpu|cuda] --engine torch
    .venv/bin/python benchmarks/survey_cnn.py --engine kernel [--folds 448] [--threads 2]

``--engine kernel`` (training/shallow_cnn.py, the CPU default) trains ``--folds`` folds for all 150 epochs
and extrapolates linearly in the folds (each fold is trained alone, ``--threads`` at a time).

It trains ``--folds`` of the 448 LOVO folds for ``--epochs`` epochs on random 28x28x3 images (the time
does not depend on the pixels) and extrapolates to 448 folds x 150 epochs: the per-iteration cost is
constant (the same mini-batch size every epoch) and chunks of folds are independent, so the time is
linear in both; the fixed cost per chunk (mean images, patches, the population statistics, the test
pass) is measured separately with one epoch and added once per chunk.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from merflow.training.models.survey_cnn import FoldTask, SurveyConfig, train_folds

SAMPLES, CLASSES, EPOCHS = 448, 4, 150


def run(folds: int, epochs: int, per_batch: int, device: str, engine: str = "torch", threads: int = 2) -> float:
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (SAMPLES, 3, 28, 28)).astype(np.float32)
    labels = np.arange(SAMPLES) % CLASSES
    tasks = [FoldTask(f"lovo-{i}", np.delete(np.arange(SAMPLES), i), np.array([i])) for i in range(folds)]
    config = SurveyConfig(epochs=epochs, folds_per_batch=per_batch, device=device, engine=engine, threads=threads)
    started = time.perf_counter()
    train_folds(images, labels, tasks, CLASSES, config)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--folds-per-batch", type=int, default=4)  # SurveyConfig's CPU default
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--engine", choices=("kernel", "torch"), default="torch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.engine == "kernel":
        run(2, 1, 1, "cpu", "kernel", 1)  # warm-up: the kernel's build
        folds = args.folds if args.folds != 32 else SAMPLES
        started = time.process_time()
        seconds = run(folds, EPOCHS, 1, "cpu", "kernel", args.threads)
        cpu = time.process_time() - started
        print(f"kernel, {args.threads} threads: {folds} folds x {EPOCHS} epochs in {seconds:.1f} s wall, {cpu:.1f} s CPU; "
              f"LOVO run of {SAMPLES} folds: {seconds * SAMPLES / folds:.0f} s ({seconds / folds:.3f} s a fold)")
        return
    run(min(args.folds, 2), 1, args.folds_per_batch, args.device)  # warm-up: allocator, kernels
    chunks = -(-args.folds // args.folds_per_batch)
    fixed = run(args.folds, 1, args.folds_per_batch, args.device)
    timed = run(args.folds, 1 + args.epochs, args.folds_per_batch, args.device)
    per_epoch_chunk = (timed - fixed) / args.epochs / chunks           # one iteration of one chunk of folds
    fixed_chunk = fixed / chunks - per_epoch_chunk                      # everything but the iterations
    all_chunks = -(-SAMPLES // args.folds_per_batch)
    total = all_chunks * (fixed_chunk + EPOCHS * per_epoch_chunk)
    print(f"device {args.device}, {args.threads} threads, {args.folds_per_batch} folds a batch: "
          f"{per_epoch_chunk:.3f} s an iteration of a batch, {fixed_chunk:.2f} s fixed a batch; "
          f"measured {args.folds} folds x {args.epochs} epochs in {timed - fixed:.1f} s")
    print(f"extrapolated LOVO run, {SAMPLES} folds x {EPOCHS} epochs: {total:.0f} s = {total / 60:.1f} min "
          f"({total / SAMPLES:.2f} s a fold)")


if __name__ == "__main__":
    main()
