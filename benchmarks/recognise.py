"""`merflow recognise` benchmark: frames per second at 640x480 (CAS(ME)^2's frame size), by stage and over Dask workers.

1. A bundle, made as users make one, small: three people's synthetic CAS(ME)^2-layout videos (10 s at 160x120),
   ingested, the untrained baseline spotter under LOSO (`merflow spot`'s flow; it trains nothing, so this part
   is quick), exported (flows/export.py). The bundle's settings, not its quality, decide the speed.
2. One synthetic 640x480 video (``--seconds`` at 30 fps, a face blinking and nodding) written as MPEG-4 Part 2
   in .mp4 (OpenCV's wheel has no H.264 encoder).
3. In one process with one thread, each stage of recognise apart (flows/recognise_chunks.py's jobs): decoding
   every frame, the face checks (YuNet, once a second), the per-frame flow and the spotters' signals against
   frame i + k, decoding the intervals, and cutting and classifying the spotted intervals.
4. ``recognise_video`` as the CLI runs it on 1 and on 2 Dask workers (LocalCluster, one thread each; the
   cluster's start-up timed apart), chunks of ``--chunk-frames``.

    .venv/bin/python benchmarks/recognise.py [--seconds 20] [--chunk-frames 128]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

# One OpenMP thread, as Dask workers have (YuNet uses OpenMP); set before OpenCV is imported.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("PREFECT_HOME", str(Path(tempfile.gettempdir()) / "merflow-bench-prefect"))


def make_bundle(work: Path) -> str:
    """Ingest three small synthetic long videos, spot them with the baseline, export the run (step 1)."""
    from merflow.configs.spotting import SpotConfig, SpotFeatureConfig
    from merflow.configs.synth import LongVideoSynthConfig
    from merflow.flows.export import export_run
    from merflow.flows.ingest import ingest_flow
    from merflow.flows.spotting import spot_flow
    from merflow.tasks.synthetic.long_videos import synthesize_long_videos

    root = synthesize_long_videos(LongVideoSynthConfig(
        "casme_sq_lv", subjects=3, videos_per_subject=1, seconds=10, micro_per_video=4, macro_per_video=0,
        talking=False, archive="none", seed=5, scale=0.25), work / "train")
    catalog, results = str(work / "catalog"), str(work / "results")
    ingest_flow(sources=[str(root)], out=catalog)
    spot = spot_flow(catalog_dir=catalog, store=str(work / "spot.zarr"), dataset="casme_sq_lv", out=results,
                     config=SpotConfig(spotter="baseline", types=("micro",)),
                     features=SpotFeatureConfig(), n_workers=2)  # the default per-frame settings (128-pixel crop)
    export_run(results, spot["run"], str(work / "model"), n_workers=2)
    return str(work / "model")


def make_video(work: Path, seconds: float) -> Path:
    """One 640x480 synthetic long video as .mp4 (mp4v) (step 2)."""
    import cv2

    from merflow.configs.synth import LongVideoSynthConfig
    from merflow.tasks.datasets import casme_sq_lv
    from merflow.tasks.synthetic.long_videos import synthesize_long_videos

    root = synthesize_long_videos(LongVideoSynthConfig(
        "casme_sq_lv", subjects=1, videos_per_subject=1, seconds=seconds, micro_per_video=4, macro_per_video=1,
        archive="none", seed=11, scale=1.0), work / "test")
    video = casme_sq_lv.read(root).videos[0]
    first = cv2.imread(f"{video['video_dir']}/{video['frame_files'][0]}")
    path = work / "video.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), video["fps"], (first.shape[1], first.shape[0]))
    for name in video["frame_files"]:
        writer.write(cv2.imread(f"{video['video_dir']}/{name}"))
    writer.release()
    return path


def stages(path: Path, model, chunk: int) -> None:
    """Each stage apart, in this process (step 3)."""
    import numpy as np

    from merflow.flows.recognise_chunks import clip_job, detect_job, signal_job
    from merflow.storage.videos import VideoFrames, open_video
    from merflow.tasks.spotting_features import build_track, check_indices

    applied = model.model
    video = open_video(path)
    n = video.n_frames
    print(f"{video.name}: {n} frames of {video.width}x{video.height} at {video.fps:g} fps")
    started = time.perf_counter()
    frames = VideoFrames(video, "grey", window=4)
    for i in range(n):
        frames[i]
    frames.close()
    row("decode (every frame, grey)", n, time.perf_counter() - started)

    features = applied.spot_features
    checks = check_indices(n, video.fps, features)
    started = time.perf_counter()
    detections = detect_job(video, checks, features)
    row(f"face checks (YuNet on {len(checks)} frames)", n, time.perf_counter() - started)
    track = build_track(n, detections, features.drift_iou, video.location).to_dict()

    spotters = applied.spotters_at(video.fps)
    signals, started = {kind: [] for kind in spotters}, time.perf_counter()
    for k in sorted({s.k for s in spotters.values()}):
        of_k = {kind: s for kind, s in spotters.items() if s.k == k}
        for start in range(0, n, chunk):
            part = signal_job(video, start, min(start + chunk, n), k, track, features, of_k)
            for kind in of_k:
                signals[kind].append(part["signals"][kind])
    row(f"flow + spotters' signals ({features.motion.algorithm}, {features.crop} px crop)", n,
        time.perf_counter() - started)

    started = time.perf_counter()
    spans = []
    for kind, spotter in spotters.items():
        spans += [(int(i.start), int(i.end)) for i in spotter.decode(np.concatenate(signals[kind]), n)]
    row(f"spotting (decode the intervals: {len(spans)})", n, time.perf_counter() - started)

    recogniser = applied.recogniser
    started = time.perf_counter()
    clips = clip_job(video, spans, recogniser.features, recogniser.frames) if spans else []
    usable = [c["arrays"] | {"apex_source": c["info"]["apex_source"]} for c in clips if "arrays" in c]
    if usable:
        recogniser.scores(usable)
    elapsed = time.perf_counter() - started
    row(f"classification ({len(usable)} clips cut and classified, {recogniser.model})", n, elapsed)
    if spans:
        print(f"    = {1000 * elapsed / len(spans):.0f} ms per interval")


def row(part: str, frames: int, seconds: float) -> None:
    print(f"  one process, {part:>62}: {seconds:6.2f} s = {frames / max(seconds, 1e-9):8.1f} frames/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the 640x480 video (30 fps)")
    parser.add_argument("--chunk-frames", type=int, default=128)
    args = parser.parse_args()

    from merflow.configs.recognise import RecogniseConfig
    from merflow.flows.features import dask_client
    from merflow.flows.recognise import load_model, recognise_video
    from merflow.flows.spotting_chunks import check_workers

    work = Path(tempfile.mkdtemp(prefix="merflow-bench-recognise-"))
    started = time.perf_counter()
    bundle = make_bundle(work)
    print(f"bundle (ingest, baseline spot run, export) in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    path = make_video(work, args.seconds)
    print(f"640x480 video written in {time.perf_counter() - started:.0f} s: {path}")
    model = load_model(bundle)
    stages(path, model, args.chunk_frames)

    config = RecogniseConfig(strips=False, chunk_frames=args.chunk_frames)
    rates = {}
    for workers in (1, 2):
        started = time.perf_counter()
        with dask_client(None, workers) as client:
            check_workers(client)
            ready = time.perf_counter()
            result = recognise_video(str(path), model, str(work / f"out-{workers}"), config, client=client)
            done = time.perf_counter()
        n = result["video"]["n_frames"]
        rates[workers] = n / (done - ready)
        print(f"recognise_video, Dask {workers} worker{'s' if workers > 1 else ' '}: cluster start "
              f"{ready - started:4.1f} s, recognise {done - ready:5.1f} s = {rates[workers]:6.1f} frames/s "
              f"({result['intervals']} intervals; stages {result['timings']})")
    print(f"2 workers vs 1: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
