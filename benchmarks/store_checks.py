"""What checking stored data and coordinating writers costs, on a CASME II-size feature store (255 samples,
26 subjects' worth, one group; default 80x80 crops, shards of 16) and catalog.

Prints, best of ``--repeat`` after one warm-up:
- the read for training (storage.features.read_feature_arrays: diff and flow of every sample) with each row
  checked against its shard's checksums, and the same read with the check switched off;
- a rerun's planning (``plan_shards``: every finished shard read back and checked) against planning that only
  reads the marks (``verify=False``, what a rerun did before checksums);
- ``verify_store`` (`merflow features --verify`) of the whole store;
- writing a shard: the CRC pass and the claim (storage/locks.py), against the plain Zarr write;
- a catalog merge of a 1,000-sample source with the catalog's lock against the same merge unlocked, and one
  lock taken and released (local folder).

The arrays are random values written through FeatureStore.write_shard (the storage path is what is measured;
computing real features would only take longer). Figures: benchmarks/README.md.

    .venv/bin/python benchmarks/store_checks.py [--samples 255] [--size 80] [--repeat 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np


def best_ms(call, repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1000 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=255)
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import pandas as pd

    from merflow.configs.features import ARRAYS, FeatureConfig
    from merflow.storage import catalog, locks
    from merflow.storage.features import FeatureReader, FeatureStore, read_feature_arrays, verify_store

    work = Path(tempfile.mkdtemp(prefix="merflow-bench-store-"))
    config = FeatureConfig(size=args.size)
    url = str(work / "features.zarr")
    store = FeatureStore(url)
    records = [{"dataset": "casme2", "sample_key": f"casme2/sub{i % 26 + 1:02d}/EP{i:03d}", "fingerprint": f"f{i}"}
               for i in range(args.samples)]
    rng = np.random.default_rng(0)
    jobs, _ = store.plan_shards(records, config)
    write_times = []
    for job in jobs:
        arrays = {name: (rng.random((job.length, channels, args.size, args.size)) * 255).astype(dtype)
                  for name, (dtype, channels) in ARRAYS.items()}
        marks = {record["sample_key"]: {"status": "ok", "fingerprint": record["fingerprint"], "apex_source": "annotated"}
                 for _, record in job.samples}
        started = time.perf_counter()
        store.write_shard(job.group, job.shard, job.start, arrays, marks)
        write_times.append(time.perf_counter() - started)
    megabytes = sum(args.samples * channels * args.size ** 2 * np.dtype(dtype).itemsize
                    for dtype, channels in ARRAYS.values()) / 2**20
    print(f"{args.samples} samples at {args.size}x{args.size}, {len(jobs)} shards of {config.shard_size}, "
          f"{megabytes:.0f} MB of arrays, in {work}")

    checked = best_ms(lambda: read_feature_arrays(url, ["casme2"], config), args.repeat)
    with mock.patch.object(FeatureReader, "_rows_match", lambda self, rows, loaded: True):
        unchecked = best_ms(lambda: read_feature_arrays(url, ["casme2"], config), args.repeat)
    # The check alone (a CRC of every row read, compared with the marks'): CPU only, steadier than the reads.
    reader = FeatureReader(store, jobs[0].group)
    rows = np.arange(args.samples)
    loaded = {name: reader.group[name][:] for name in ("diff", "flow")}
    reader.table()
    check = best_ms(lambda: reader._rows_match(rows, loaded), args.repeat)
    read_mb = sum(values.nbytes for values in loaded.values()) / 2**20
    print(f"read for training (diff, flow: {read_mb:.0f} MB): {checked:.0f} ms checked, {unchecked:.0f} ms unchecked; "
          f"the check alone {check:.0f} ms ({100 * check / unchecked:.1f}% of the read)")

    planned = best_ms(lambda: store.plan_shards(records, config), args.repeat)
    marks_only = best_ms(lambda: store.plan_shards(records, config, verify=False), args.repeat)
    print(f"rerun planning: {planned:.0f} ms verifying every shard, {marks_only:.0f} ms reading the marks only")
    print(f"verify_store (features --verify): {best_ms(lambda: verify_store(url), args.repeat):.0f} ms")

    # One shard written: with claim and CRCs (write_shard) against the plain Zarr writes of the same arrays.
    job = jobs[0]
    arrays = {name: (rng.random((job.length, channels, args.size, args.size)) * 255).astype(dtype)
              for name, (dtype, channels) in ARRAYS.items()}
    marks = {record["sample_key"]: {"status": "ok", "fingerprint": record["fingerprint"]} for _, record in job.samples}
    import zarr

    opened = zarr.open_group(url, mode="r+")[job.group]

    def plain_write():
        for name, values in arrays.items():
            opened[name][job.start:job.start + len(values)] = values

    full = best_ms(lambda: store.write_shard(job.group, job.shard, job.start, arrays, marks), args.repeat)
    print(f"writing one shard: {full:.0f} ms with its claim, checksums and mark; {best_ms(plain_write, args.repeat):.0f} "
          "ms the Zarr writes alone")

    # The catalog: a 1,000-sample source merged with and without the catalog's lock.
    samples = [{"sample_key": f"casme2/sub{i % 26 + 1:02d}/EP{i:04d}", "dataset": "casme2",
                "subject": f"{i % 26 + 1:02d}", "subject_key": f"casme2/{i % 26 + 1:02d}", "sample_id": f"EP{i:04d}",
                "clip_id": f"EP{i:04d}", "is_macro": False, "clip_dir": f"/data/EP{i:04d}",
                "frame_files": ["a.jpg", "b.jpg", "c.jpg"], "n_frames": 3, "fps": 200.0, "onset": 1, "apex": 2,
                "apex_annotated": 2, "apex_source": "annotated", "offset": 3, "action_units": "4", "emotion_raw": "others",
                "emotion": "others", "objective_class": None} for i in range(1000)]
    source = {"source": "/data/a.zip", "source_sha256": "a" * 64, "kind": "zip", "root": "/data", "datasets": ["casme2"],
              "ingested_at": "2026-01-01T00:00:00+00:00", "config": "{}"}
    folder = work / "catalog"
    with_lock = best_ms(lambda: catalog.merge_source(folder, source, samples, []), args.repeat)
    held = locks.acquire(locks.lock_location(folder, "unlocked-bench"), "bench")
    without = best_ms(lambda: catalog._merge(folder, source, samples, [], held), args.repeat)
    locks.release(held)
    one_lock = best_ms(lambda: locks.release(locks.acquire(locks.lock_location(folder, "x"), "x")), args.repeat * 20)
    print(f"catalog merge of 1,000 samples: {with_lock:.0f} ms with the catalog's lock, {without:.0f} ms without; "
          f"one lock taken and released: {one_lock:.2f} ms")
    del pd


if __name__ == "__main__":
    main()
