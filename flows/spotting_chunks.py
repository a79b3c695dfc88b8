"""The spot flow's Dask tasks (flows/spotting.py): one chunk of one video each, computed and written by its only
writer. Kept apart from the flow's module, which imports Prefect: a Dask worker unpickling these imports only
merflow's storage/ and tasks/ (Prefect would add about 10 s to every worker's start, ../shared/STACK.md).
"""

from __future__ import annotations

import time

from merflow.configs.spotting import SpotFeatureConfig
from merflow.storage.spotting_features import SpotFeatureStore
from merflow.tasks.spotting_features import FrameFiles, Track, chunk_features, detect_at


def worker_setup() -> str:
    """Import the per-frame code on a worker (its start, not the first chunk's) and say which merflow it has."""
    import merflow.tasks.spotting_features  # noqa: F401
    from merflow import __version__

    return __version__


def check_workers(client) -> int:
    """Warm every worker up; raise if one lacks merflow or has another version (flows/features.py's check, without
    importing Prefect on the workers). Returns the worker count."""
    from merflow import __version__

    try:
        versions = client.run(worker_setup)
    except ImportError as error:
        raise RuntimeError(f"a Dask worker cannot import merflow ({error}): install merflow on every worker") from None
    wrong = {worker: v for worker, v in versions.items() if v != __version__}
    if wrong:
        raise RuntimeError(f"Dask workers run another merflow than this one ({__version__}): {wrong}")
    return len(versions)


def detect_task(job: dict, store: str, config: SpotFeatureConfig) -> dict:
    """One Dask task: the faces at one chunk's checked frames (``job["frame_files"]``: the chunk's frame names,
    from frame ``job["first"]``), written as the chunk's detections."""
    frames = FrameFiles(job["video_dir"], job["frame_files"], job["first"], job["n_frames"])
    found = detect_at(frames, job["indices"], config)
    SpotFeatureStore(store).write_detections(config, job["video_key"], job["chunk"], job["fingerprint"], found)
    return {"video_key": job["video_key"], "chunk": job["chunk"], "faces": sum(b is not None for b in found.values())}


def chunk_task(job: dict, store: str, config: SpotFeatureConfig) -> dict:
    """One Dask task: one chunk's per-frame features for one window k, written by its only writer, then its mark
    (``job["stamp"]``: the video's fingerprint and track key). The job holds the frame names of its chunk and
    the k after it, and the segments that cover them (flows/spotting.py ``chunk_jobs``)."""
    frames = FrameFiles(job["video_dir"], job["frame_files"], job["start"], job["n_frames"])
    track = Track.from_dict(job["track"])
    started = time.perf_counter()
    roi, motion = chunk_features(frames, job["start"], job["stop"], job["k"], track, config)
    SpotFeatureStore(store).write_chunk(config, job["video_key"], job["k"], job["chunk"], roi, motion, job["stamp"])
    return {"video_key": job["video_key"], "k": job["k"], "chunk": job["chunk"], "frames": job["stop"] - job["start"],
            "seconds": time.perf_counter() - started}


def run_on_dask(client, function, jobs: list[dict], store: str, config: SpotFeatureConfig, stage: str, logger,
                report=None) -> list[dict]:
    """``function`` over ``jobs`` on the cluster, results as they finish (``report(stage, done, total)`` after
    each); each future is released once read: a finished chunk is on disk with its mark, and a future still
    held would make the scheduler compute it again when the worker holding its result dies."""
    from distributed import as_completed

    done = []
    pending = as_completed(client.map(function, jobs, store=store, config=config, pure=False))
    for finished, future in enumerate(pending, start=1):
        result = future.result()
        future.release()
        del future
        done.append(result)
        if report is not None:
            report(stage, finished, len(jobs))
        if finished == len(jobs) or finished % max(len(jobs) // 10, 1) == 0:
            logger.info("%s: %d/%d done", stage, finished, len(jobs))
    return done
