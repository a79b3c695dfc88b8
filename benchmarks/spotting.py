"""Spotting benchmark: the per-frame work on long videos at 640x480 (CAS(ME)^2's frame size).

Prints, for synthetic CAS(ME)^2-layout videos written as JPEG frames: the frames per second of each part of
the per-frame work in one process with one thread (decoding a frame, YuNet on a checked frame, cropping,
the optical flow i -> i + k, SOFTNet's regions), the whole per-frame work (``chunk_features``) with each
flow algorithm, then the same work as the spot flow runs it (face checks and chunks as Dask tasks writing
into the Zarr store, flows/spotting_chunks.py) on 1 and on 2 Dask workers (cluster start-up apart), and the
baseline's and SOFTNet's LOSO folds on the features.

    .venv/bin/python benchmarks/spotting.py [--seconds 20] [--videos 2] [--crop 128] [--algorithms farneback,dis]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

# One OpenMP thread, as Dask workers have (YuNet uses OpenMP); set before OpenCV and yuface are imported.
os.environ["OMP_NUM_THREADS"] = "1"


def per_part(frames, track, config, k: int, pairs: int) -> dict[str, float]:
    """Seconds per frame of each part of the per-frame work, on the first ``pairs`` frames."""
    import numpy as np

    from merflow.tasks.faces import crop_face, detect_face
    from merflow.tasks.motion import optical_flow, to_grey
    from merflow.tasks.spotting_features import roi_flow, roi_geometry

    timings = {}
    started = time.perf_counter()
    images = [frames[i] for i in range(pairs + k)]
    timings["decode (imread, grey)"] = (time.perf_counter() - started) / len(images)
    started = time.perf_counter()
    for i in range(3):
        detect_face(images[i], config.face)
    timings["face check (YuNet + levelling), per checked frame"] = (time.perf_counter() - started) / 3
    box = track.box_at(0)
    started = time.perf_counter()
    crops = [to_grey(crop_face(image, box, config.crop)) for image in images]
    timings["crop"] = (time.perf_counter() - started) / len(images)
    started = time.perf_counter()
    for i in range(pairs):
        optical_flow(crops[i], crops[i + k], config.motion)
    timings[f"flow ({config.motion.algorithm}, {config.crop} px)"] = (time.perf_counter() - started) / pairs
    geometry = roi_geometry(box, config.crop)
    started = time.perf_counter()
    for i in range(pairs):
        roi_flow(crops[i], crops[i + k], geometry, config)
    timings["flow + strain + regions"] = (time.perf_counter() - started) / pairs
    assert np.isfinite(list(timings.values())).all()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each video (30 fps)")
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--k", type=int, default=6, help="the window (CAS(ME)^2 micro: 6)")
    parser.add_argument("--algorithms", default="farneback,dis")
    parser.add_argument("--chunk-frames", type=int, default=128)
    args = parser.parse_args()

    from merflow.configs.features import MotionConfig
    from merflow.configs.spotting import SpotConfig, SpotFeatureConfig
    from merflow.configs.synth import LongVideoSynthConfig
    from merflow.flows.features import dask_client
    from merflow.flows.spotting import ArrayCache, chunk_jobs_of, spot_videos
    from merflow.flows.spotting_chunks import check_workers, chunk_task, detect_task
    from merflow.storage.spotting_features import SpotFeatureStore, track_key, video_fingerprint
    from merflow.tasks.datasets import casme_sq_lv
    from merflow.tasks.spotting_features import FrameFiles, build_track, check_indices, chunk_features, track_face
    from merflow.tasks.synthetic.long_videos import synthesize_long_videos
    from merflow.training.spotting.loso import spot_loso

    work = Path(tempfile.mkdtemp(prefix="merflow-bench-spotting-"))
    started = time.perf_counter()
    root = synthesize_long_videos(LongVideoSynthConfig("casme_sq_lv", subjects=args.videos, videos_per_subject=1,
                                                       seconds=args.seconds, scale=1.0, archive="none", seed=0), work)
    found = casme_sq_lv.read(root)
    videos = found.videos
    n_frames = sum(v["n_frames"] for v in videos)
    print(f"{len(videos)} videos, {n_frames} frames of 640x480 colour JPEG (30 fps), written in "
          f"{time.perf_counter() - started:.0f} s, in {work}")

    config = SpotFeatureConfig(crop=args.crop, chunk_frames=args.chunk_frames)
    first = videos[0]
    frames = FrameFiles(first["video_dir"], first["frame_files"])
    track = track_face(frames, first["fps"], config)
    for part, seconds in per_part(frames, track, config, args.k, 60).items():
        print(f"  one process, {part:>52}: {1000 * seconds:7.2f} ms  ({1 / seconds:7.1f} per second)")
    for algorithm in args.algorithms.split(","):
        chosen = config.replace(motion=MotionConfig(algorithm=algorithm))
        started = time.perf_counter()
        chunk_features(frames, 0, min(300, first["n_frames"]), args.k, track, chosen)
        elapsed = time.perf_counter() - started
        print(f"per-frame work (chunk_features), one process, {algorithm:>9}: "
              f"{min(300, first['n_frames']) / elapsed:6.1f} frames/s")

    for workers in (1, 2):
        store = SpotFeatureStore(work / f"spot-{workers}.zarr")
        started = time.perf_counter()
        with dask_client(None, workers) as client:   # the flow's cluster (flows/features.py: glibc's malloc as it is)
            check_workers(client)
            ready = time.perf_counter()
            detect_jobs, records = [], []
            for video in videos:
                fingerprint = video_fingerprint(video["video_dir"], video["frame_files"])
                store.prepare_video(config, video["video_key"], video["n_frames"], video["fps"], fingerprint)
                checks = check_indices(video["n_frames"], video["fps"], config)
                n_chunks = -(-video["n_frames"] // config.chunk_frames)
                for chunk in range(n_chunks):
                    start, stop = chunk * config.chunk_frames, (chunk + 1) * config.chunk_frames
                    detect_jobs.append({"video_key": video["video_key"], "video_dir": video["video_dir"],
                                        "frame_files": video["frame_files"][start:stop], "first": start,
                                        "n_frames": video["n_frames"], "fingerprint": fingerprint, "chunk": chunk,
                                        "indices": [i for i in checks if start <= i < stop]})
                records.append((video, fingerprint, n_chunks))
            client.gather(client.map(detect_task, detect_jobs, store=store.url, config=config, pure=False))
            detected = time.perf_counter()
            jobs = []
            for video, fingerprint, n_chunks in records:
                track_dict = build_track(video["n_frames"], store.read_detections(config, video["video_key"], n_chunks),
                                         config.drift_iou).to_dict()
                store.write_track(config, video["video_key"], track_dict)
                store.prepare_arrays(config, video["video_key"], args.k, video["n_frames"])
                record = dict(video, track=track_dict)
                jobs += chunk_jobs_of(record, args.k, list(range(n_chunks)), config,
                                      {"fingerprint": fingerprint, "track": track_key(track_dict)})
            client.gather(client.map(chunk_task, jobs, store=store.url, config=config, pure=False))
            done = time.perf_counter()
        print(f"Dask, {workers} worker{'s' if workers > 1 else ' '}: cluster start {ready - started:4.1f} s, face checks "
              f"{detected - ready:5.1f} s, per-frame features {done - detected:6.1f} s = "
              f"{n_frames / (done - detected):6.1f} frames/s ({len(jobs)} chunks)")
        if workers == 1:
            one = done - detected
    print(f"2 workers vs 1: {one / (done - detected):.2f}x")

    import pandas as pd

    intervals = pd.DataFrame(found.intervals)
    spotted = spot_videos(pd.DataFrame(videos), intervals[intervals["type"] == "micro"])
    load = ArrayCache(store, config)
    for name, spot_config in (("baseline", SpotConfig(spotter="baseline", types=("micro",))),
                              ("softnet (10 epochs, batch 12)", SpotConfig(spotter="softnet", types=("micro",)))):
        # Timing only: every fold reads the features of --k, whatever k its training subjects give.
        started = time.perf_counter()
        spot_loso(spotted, lambda key, k, arrays: load(key, args.k, arrays), spot_config)
        print(f"LOSO folds, {name}: {time.perf_counter() - started:.1f} s over {sum(v.n_frames for v in spotted)} "
              f"frames, {len(spotted)} folds")


if __name__ == "__main__":
    main()
