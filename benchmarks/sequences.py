"""The store's cost with sequences (feature schema 3): seconds and MB per sample at T = 0 (no sequence: today's
pair features), 10 (the default) and 24, on a CASME II-like synthetic set.

CASME II's clips are long (onset..offset 24-141 frames, mean 67, on the real sheet CASME2-coding-20190701.xlsx),
and the synthetic archive's are 12-18 frames: a sequence reads up to 2T frames of a clip, so the clip lengths
matter. This script renders its own clips, each as long as a real CASME II sample (the real sheet's onset..offset
lengths, in its order, when ../shared/reference is present; else drawn from 41..96, the sheet's 10th-90th
percentiles), at 320x240 (scale 0.5, as benchmarks/features.py), 26 subjects. Each T runs ``compute_shard`` and
``write_shard`` over the same shards in one process with one OpenMP thread (as a Dask worker does).

    .venv/bin/python benchmarks/sequences.py [--samples 255] [--lengths 0,10,24] [--scale 0.5]

With fewer samples than 255 the per-sample figures are the same measure on fewer samples; the whole set's
time and size are extrapolated (x 255 / samples) and printed as such.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"  # as a Dask worker has it (YuNet uses OpenMP); before OpenCV is imported

CASME2_SAMPLES = 255
SHEET = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "casme2" / "CASME2-coding-20190701.xlsx"


def clip_lengths(n: int, rng) -> tuple[list[int], str]:
    """``n`` onset..offset lengths: the real CASME II sheet's, else drawn from its 10th-90th percentiles."""
    if SHEET.is_file():
        from merflow.tasks.datasets import casme2
        lengths = [r.offset - r.onset + 1 for r in casme2.read_sheet(SHEET)
                   if r.offset is not None and r.onset is not None and r.offset >= r.onset]
        return [lengths[i % len(lengths)] for i in range(n)], f"the real CASME II sheet's ({SHEET.name})"
    return [int(v) for v in rng.integers(41, 97, n)], "drawn from 41..96 (no ../shared/reference)"


def render_set(work: Path, n: int, scale: float) -> tuple[list[dict], str]:
    """n clips written as jpgs, and their catalog records (with fingerprints)."""
    import numpy as np

    from merflow.tasks.features import with_fingerprints
    from merflow.tasks.synthetic.expressions import render_clip
    from merflow.tasks.synthetic.faces import subject_identity
    from merflow.tasks.synthetic.layouts import write_frames

    rng = np.random.default_rng(0)
    lengths, where = clip_lengths(n, rng)
    emotions = ("disgust", "happiness", "surprise", "sadness", "fear")
    size = (int(480 * scale), int(640 * scale))
    records = []
    for index, length in enumerate(lengths):
        subject = index % 26 + 1
        apex = int(rng.integers(length // 4, 3 * length // 4 + 1))
        frames = render_clip(subject_identity(subject, 0), emotions[index % len(emotions)], length, 0, apex,
                             length - 1, size, True, rng)
        folder = work / "clips" / f"sub{subject:02d}" / f"clip{index:03d}"
        names = [f"img{101 + i}.jpg" for i in range(length)]
        write_frames(folder, frames, names)
        records.append({"dataset": "casme2", "sample_key": f"casme2/sub{subject:02d}/clip{index:03d}",
                        "clip_dir": str(folder), "frame_files": names, "onset": 101, "apex": 101 + apex,
                        "offset": 100 + length})
    return with_fingerprints(records), where


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=CASME2_SAMPLES)
    parser.add_argument("--lengths", default="0,10,24", help="sequence lengths T to measure (0: no sequence)")
    parser.add_argument("--scale", type=float, default=0.5, help="frame size relative to CASME II's 640x480")
    args = parser.parse_args()

    from merflow.configs.features import FeatureConfig
    from merflow.storage.features import FeatureStore, group_name
    from merflow.tasks.features import compute_shard

    work = Path(tempfile.mkdtemp(prefix="merflow-bench-sequences-"))
    started = time.perf_counter()
    records, where = render_set(work, args.samples, args.scale)
    frames = sum(len(r["frame_files"]) for r in records)
    print(f"{len(records)} clips, {frames} frames (mean {frames / len(records):.1f}; lengths {where}), "
          f"{int(480 * args.scale)}x{int(640 * args.scale)}, rendered in {time.perf_counter() - started:.1f} s, "
          f"in {work}")
    scale_up = CASME2_SAMPLES / len(records)
    baseline = None
    print("| T | s per sample | MB per sample (store) | of which frames + flow_seq + landmarks | "
          f"{'whole set' if scale_up == 1 else f'CASME II set (x{scale_up:.2f}, extrapolated)'} | vs T = 0 |")
    print("|---|---|---|---|---|---|")
    for length in (int(v) for v in args.lengths.split(",")):
        config = FeatureConfig(sequence_length=length)
        store = FeatureStore(work / f"T{length}.zarr")
        jobs, _ = store.plan_shards(records, config)
        started = time.perf_counter()
        quarantined = 0
        for job in jobs:
            arrays, marks = compute_shard(job.samples, job.start, job.length, config)
            quarantined += sum(m["status"] != "ok" for m in marks.values())
            store.write_shard(job.group, job.shard, job.start, arrays, marks)
        elapsed = time.perf_counter() - started
        group = work / f"T{length}.zarr" / group_name("casme2", config)
        total = folder_mb(group)
        sequence = sum(folder_mb(group / name) for name in ("frames", "flow_seq", "landmarks") if (group / name).is_dir())
        per_sample = elapsed / len(records)
        if length == 0:
            baseline = per_sample
        ratio = f"{per_sample / baseline:.2f}x" if baseline else "-"
        print(f"| {length} | {per_sample:.3f} | {total / len(records):.3f} | {sequence / len(records):.3f} | "
              f"{elapsed * scale_up:.0f} s, {total * scale_up:.0f} MB | {ratio} |"
              + (f" ({quarantined} quarantined)" if quarantined else ""))


if __name__ == "__main__":
    main()
