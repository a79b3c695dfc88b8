"""Features benchmark on a CASME II-size synthetic set (26 subjects, 255 samples).

Prints: samples per second of the per-sample work with each flow algorithm (one process);
the flow with 1 and with 2 Dask workers (cluster start-up and compute apart); the same work as a
plain Python loop; and the peak memory of a worker.

    .venv/bin/python benchmarks/features.py [--scale 0.5] [--samples 255] [--algorithms farneback,dis,tvl1]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

# Dask starts its workers with one OpenMP thread each (YuNet uses OpenMP); the plain loop must do
# the same work the same way, so it gets one too. Set before OpenCV and yuface are imported.
os.environ["OMP_NUM_THREADS"] = "1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.5, help="frame size relative to CASME II's 640x480")
    parser.add_argument("--samples", type=int, default=255)
    parser.add_argument("--algorithms", default="farneback,dis,tvl1")
    args = parser.parse_args()

    from merflow.configs.features import FaceConfig, FeatureConfig, MotionConfig
    from merflow.configs.synth import SynthConfig
    from merflow.flows.features import catalog_records, features_flow
    from merflow.flows.ingest import ingest_flow
    from merflow.storage.features import FeatureStore
    from merflow.tasks.features import compute_shard, with_fingerprints
    from merflow.tasks.synthetic import synthesize

    work = Path(tempfile.mkdtemp(prefix="merflow-bench-features-"))
    source = synthesize(SynthConfig("casme2", subjects=26, samples=args.samples, archive="none", seed=0,
                                    scale=args.scale), work)
    ingest_flow(sources=[str(source)], out=str(work / "catalog"))
    records = catalog_records(work / "catalog", None)
    print(f"{len(records)} samples, frames {int(480 * args.scale)}x{int(640 * args.scale)}, crops 80x80, in {work}")

    for algorithm in args.algorithms.split(","):
        config = FeatureConfig(face=FaceConfig(), motion=MotionConfig(algorithm=algorithm))
        store = FeatureStore(work / f"loop-{algorithm}.zarr")
        jobs, _ = store.plan_shards(with_fingerprints(records), config)
        started = time.perf_counter()
        for job in jobs:
            store.write_shard(job.group, job.shard, job.start, *compute_shard(job.samples, job.start, job.length, config))
        elapsed = time.perf_counter() - started
        print(f"plain loop, {algorithm:>9}: {len(records) / elapsed:6.1f} samples/s ({elapsed:.1f} s, one process)")
        if algorithm == "farneback":
            plain_farneback = elapsed
    print(f"plain loop peak memory (driver process): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")

    timings = {}
    for workers in (1, 2):
        started = time.perf_counter()
        result = features_flow(catalog_dir=str(work / "catalog"), store=str(work / f"flow-{workers}.zarr"),
                               n_workers=workers)
        total = time.perf_counter() - started
        timings[workers] = result["compute_seconds"]
        print(f"flow, {workers} worker(s): total {total:.1f} s = cluster start {result['cluster_start_seconds']:.1f} s"
              f" + compute {result['compute_seconds']:.1f} s ({len(records) / result['compute_seconds']:.1f} samples/s)"
              f" + Prefect and planning; peak worker memory {result['peak_worker_rss_mb']:.0f} MB")
    if "plain_farneback" in locals():
        print(f"2 workers vs 1: {timings[1] / timings[2]:.2f}x; flow compute (1 worker) vs plain loop: "
              f"{timings[1] / plain_farneback:.2f}x")


if __name__ == "__main__":
    main()
