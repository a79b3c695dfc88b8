"""Search benchmark: Ray Tune's overhead per trial against the same training run directly, trials per
hour on this machine's CPUs, and the cost of the α grid relative to one training.

    .venv/bin/python benchmarks/tune.py [--folds 4] [--shots 1,3,5,10] [--work DIR]

Workload: the CASME II-size synthetic set of benchmarks/training.py (26 subjects, 28x28 features),
the test suite's short schedule (10 / 15 / 2 epochs, 8x4 episodes), the small encoder, α 0.0..1.0.
Every measurement starts from empty checkpoints, so nothing is reused between them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--shots", default="1,3,5,10")
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()

    import torch

    from merflow.configs.search import SearchConfig, SearchSpace
    from merflow.configs.train import TrainConfig
    from merflow.flows.protocol import load_protocol
    from merflow.flows.search import ray, run_search
    from merflow.storage.checkpoints import Checkpoints
    from merflow.training.models import meta_mmfnet
    from merflow.training.models.meta_mmfnet import fold_predictions
    from merflow.training.run import metric_rows
    from merflow.training.search.space import config_id, parse_grid, trial_train_config
    from merflow.training.stages import run_fold

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from training import build  # benchmarks/training.py: the same synthetic set

    work = args.work or Path(tempfile.mkdtemp(prefix="merflow-bench-tune-"))
    work.mkdir(parents=True, exist_ok=True)
    build(work, 28)
    base = TrainConfig(macro_epochs=10, pretrain_epochs=15, meta_epochs=2, batches_per_epoch=8)
    shots = parse_grid(args.shots, int)
    search = SearchConfig(catalog_dir=str(work / "catalog"), store=str(work / "features-28.zarr"), dataset="casme2",
                          base=base, space=SearchSpace(shots=shots, alphas=base.alphas), scheduler="fifo",
                          max_folds=args.folds)
    data = load_protocol(work / "catalog", search.store, "loso", "casme2")
    folds = data.folds[: args.folds]
    trials = len(shots) * len(folds)
    print(f"{trials} trials: shots {shots} x {len(folds)} LOSO folds, {len(base.alphas)} α each; "
          f"{len(data.samples)} samples, small encoder, short schedule")

    # 1. The same units of work directly, one thread, one after another (configuration-major, as Tune runs them).
    torch.set_num_threads(1)
    direct_dir = work / "direct"
    shutil.rmtree(direct_dir, ignore_errors=True)
    direct_checkpoints = Checkpoints(direct_dir)
    started = time.perf_counter()
    macro = meta_mmfnet.prepare(data, base, direct_checkpoints)
    alpha_seconds, train_seconds = 0.0, 0.0
    for searched in search.space.configurations():
        config = trial_train_config(search, searched)
        for fold in folds:
            stage = time.perf_counter()
            result = run_fold(fold, data.source, data.samples, macro, config, direct_checkpoints)
            train_seconds += time.perf_counter() - stage
            stage = time.perf_counter()
            predictions = fold_predictions(result, data.samples, config.alphas)
            metric_rows(predictions, data.classes)
            alpha_seconds += time.perf_counter() - stage
    direct = time.perf_counter() - started
    print(f"direct, 1 thread: {direct:.1f} s ({direct / trials:.2f} s a trial)")

    # α costs no training: fusing and scoring the grid from the trial's stored scores, against the training.
    one = trial_train_config(search, {"shots": shots[0]}).replace(alphas=(1.0,))
    result = run_fold(folds[0], data.source, data.samples, macro, one, direct_checkpoints)
    stage = time.perf_counter()
    metric_rows(fold_predictions(result, data.samples, one.alphas), data.classes)
    single_alpha = time.perf_counter() - stage
    print(f"α grid of {len(base.alphas)}: {alpha_seconds / trials * 1000:.0f} ms a trial to fuse and score "
          f"(one α: {single_alpha * 1000:.0f} ms) against {train_seconds / trials:.2f} s of training: "
          f"{alpha_seconds / train_seconds:.1%} of it")

    # 2. Through Ray Tune: one CPU (trials one after another, as above), then both CPUs.
    for cpus in (1, 2):
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        out = work / f"tune-{cpus}cpu"
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        summary = run_search(search.replace(out=str(out), run=f"bench-{cpus}"))
        wall = time.perf_counter() - started
        ray.shutdown()
        assert summary["status"] == {"completed": trials}, summary["status"]
        line = f"Ray Tune, {cpus} CPU{'s' if cpus > 1 else ''}, 1 per trial: {wall:.1f} s, {3600 * trials / wall:.0f} trials/h"
        if cpus == 1:
            line += f"; overhead {(wall - direct) / trials:+.2f} s a trial against direct ({wall / direct:.2f}x)"
        print(line)
    print(f"configuration ids: {[config_id(c) for c in search.space.configurations()]}; work folder {work}")


if __name__ == "__main__":
    main()
