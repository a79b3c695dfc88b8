"""`merflow recognise VIDEO --model MODEL --out OUT`: a trained bundle applied to a user's video.

1. The bundle is read and checked (storage/bundles.py: every file against its manifest), built into the
   applied model (training/deploy.py) and its golden check run: each stage whose output moved since export
   (a library upgrade) is said in one line, and recorded with the result.
2. The video (storage/videos.py: mp4, avi, mov, ... or a folder of frames; ``--fps`` when the container
   lies) is fingerprinted; a result of the same video, bundle and settings already at OUT is left alone.
3. Checked against the bundle's settings (frame rate, length: one line where it cannot meet them), then,
   chunk by chunk on Dask (flows/recognise_chunks.py; in this process for a video of one chunk): the face
   checked every ``redetect_seconds`` and tracked (tasks/spotting_features.py), each frame's motion against
   frame i + k and each spotter's score; the intervals decoded over the whole video (each spotter at the
   video's fps: k and the filters kept in seconds); each interval cut as a clip (apex: the frame of most
   motion from its start) and classified.
4. Written whole or absent (storage/recognitions.py): the intervals table (Parquet and CSV), the timeline, a
   strip per interval, result.json last.

A video without a face, a damaged or truncated file, a frame rate the model cannot use: one line each
(VideoFaceError, VideoError, InputMismatch; exit status 2 from the CLI). ``recognise_video`` with
``record_failures`` (the folder deployment, flows/recognise_folder.py) writes such a video's result as
failed instead, so that a scheduled run does not try it again unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version

import numpy as np
import pandas as pd

from merflow.configs.recognise import RecogniseConfig
from merflow.flows.recognise_chunks import clip_job, detect_job, signal_job
from merflow.storage import bundles, locations, recognitions, videos
from merflow.tasks.spotting_features import VideoFaceError, build_track, check_indices
from merflow.tasks.visualise import interval_strip, png_bytes, timeline_png
from merflow.training import deploy
from merflow.training.spotting.intervals import threshold

log = logging.getLogger("merflow.recognise")
CLIPS_PER_JOB = 16
# What a video may fail with, each one line: recorded as a failed result by the folder deployment.
VIDEO_FAILURES = (videos.VideoError, VideoFaceError, deploy.InputMismatch)


@dataclass
class LoadedModel:
    """A bundle read, checked and built: the applied model, its manifest, its location, the golden check's drift."""

    model: deploy.AppliedModel
    manifest: dict
    location: str
    drift: list[str]

    @property
    def hash(self) -> str:
        """The bundle's identity (its manifest's hash)."""
        return self.manifest["hash"]


def load_model(location: str) -> LoadedModel:
    """Read a bundle (every file checked against its manifest), build it, and run its golden check."""
    card, arrays, manifest = bundles.read_bundle(location)
    model = deploy.model_from_card(card, arrays)
    drift = deploy.verify_golden(model, arrays)
    for line in drift:
        log.warning("%s (bundle %s, exported with %s)", line, locations.normalise(location),
                    ", ".join(f"{k} {v}" for k, v in card.get("versions", {}).items() if v))
    return LoadedModel(model, manifest, locations.normalise(location), drift)


# ------------------------------------------------------------------------------------------ running units of work
class Runner:
    """Runs a stage's jobs on a Dask client (futures released once read) or, without one, in this process;
    ``report(stage, done, total)`` hears each finished job."""

    def __init__(self, client=None, report: Callable[[str, int, int], None] | None = None):
        self.client, self.report = client, report

    def run(self, stage: str, function, jobs: list[dict], **constants) -> list:
        """``function(**job, **constants)`` for every job, results in the jobs' order."""
        if not jobs:
            return []
        if self.client is None:
            found = []
            for done, job in enumerate(jobs, start=1):
                found.append(function(**job, **constants))
                self.report and self.report(stage, done, len(jobs))
            return found
        from distributed import as_completed

        # hash=False: a fresh key each stage (a key scattered again while its last copy is being released is lost)
        shared = {name: self.client.scatter(value, broadcast=True, hash=False) for name, value in constants.items()}
        futures = [self.client.submit(function, **job, **shared, pure=False) for job in jobs]
        position = {future.key: index for index, future in enumerate(futures)}
        found: list = [None] * len(jobs)
        for done, future in enumerate(as_completed(futures), start=1):
            found[position[future.key]] = future.result()
            future.release()
            self.report and self.report(stage, done, len(jobs))
        return found


# ------------------------------------------------------------------------------------------ one video
def _track_for(track: dict, start: int, stop: int) -> dict:
    """The track's segments that cover frames start .. stop - 1 (a job carries only those)."""
    covering = [s for s in track["segments"] if s["start"] < stop and s["stop"] > start]
    return {"n_frames": track["n_frames"], "segments": covering, "checked": [], "lost": []}


def spot(video: videos.Video, model: deploy.AppliedModel, config: RecogniseConfig, runner: Runner) -> dict:
    """The face's track, each window's motion, each spotter's signal and intervals of one video (module
    docstring, step 3); VideoFaceError where no check finds a face."""
    n, chunk = video.n_frames, config.chunk_frames
    features = model.spot_features
    types = config.wanted(tuple(model.spotters))
    spotters = {kind: s for kind, s in model.spotters_at(video.fps).items() if kind in types}
    checks = check_indices(n, video.fps, features)
    starts = list(range(0, n, chunk))
    jobs = [{"video": video, "indices": [i for i in checks if s <= i < s + chunk]} for s in starts]
    detections: dict = {}
    for found in runner.run("faces", detect_job, [j for j in jobs if j["indices"]], config=features):
        detections.update(found)
    track = build_track(n, detections, features.drift_iou, video.location)
    record = track.to_dict()
    motion: dict[int, np.ndarray] = {}
    signals: dict[str, list] = {kind: [] for kind in spotters}
    for k in sorted({s.k for s in spotters.values()}):
        of_k = {kind: s for kind, s in spotters.items() if s.k == k}
        parts = runner.run(f"per-frame features (k {k})", signal_job,
                           [{"video": video, "start": s, "stop": min(s + chunk, n), "k": k,
                             "track": _track_for(record, s, min(s + chunk + k, n))} for s in starts],
                           config=features, spotters=of_k)
        motion[k] = np.concatenate([p["motion"] for p in parts])
        for kind in of_k:
            signals[kind] = np.concatenate([p["signals"][kind] for p in parts])
    intervals = []
    for kind, spotter in spotters.items():
        for interval in spotter.decode(signals[kind], n):
            intervals.append({"type": kind, "start": int(interval.start), "end": int(interval.end),
                              "spot_score": float(interval.score)})
    intervals.sort(key=lambda i: (i["start"], i["end"], i["type"]))
    return {"track": track, "spotters": spotters, "motion": motion, "signals": signals, "intervals": intervals}


def classify(video: videos.Video, recogniser: deploy.Recogniser, intervals: list[dict], runner: Runner) -> list[dict]:
    """Each interval's clip (its apex, face box, arrays) and class (the bundle's recognition model)."""
    spans = [(i["start"], i["end"]) for i in intervals]
    batches = [spans[s:s + CLIPS_PER_JOB] for s in range(0, len(spans), CLIPS_PER_JOB)]
    clips = [c for batch in runner.run("clips", clip_job, [{"video": video, "intervals": b} for b in batches],
                                       features=recogniser.features, mode=recogniser.frames) for c in batch]
    usable = [i for i, c in enumerate(clips) if "arrays" in c]
    scores = recogniser.scores([clips[i]["arrays"] | {"apex_source": clips[i]["info"]["apex_source"]} for i in usable])
    confidence = recogniser.confidence(scores) if len(usable) else np.zeros((0, len(recogniser.classes)))
    for row, index in enumerate(usable):
        clips[index] |= {"scores": scores[row], "confidence": confidence[row],
                         "class": recogniser.classes[int(np.argmax(scores[row]))]}
    return clips


def result_table(video: videos.Video, intervals: list[dict], clips: list[dict], classes: tuple[str, ...]
                 ) -> pd.DataFrame:
    """The intervals table (storage/recognitions.py ``INTERVAL_SCHEMA`` and a score column per class)."""
    rows = []
    for number, (interval, clip) in enumerate(zip(intervals, clips), start=1):
        row = {"interval": number, "type": interval["type"], "start_frame": interval["start"],
               "end_frame": interval["end"], "start_s": interval["start"] / video.fps,
               "end_s": interval["end"] / video.fps, "spot_score": interval["spot_score"],
               "apex_frame": None, "apex_s": None, "class": None, "confidence": None, "note": clip.get("error")}
        if "info" in clip:
            box = clip["info"]["face"]
            row |= {"apex_frame": int(clip["info"]["apex_frame"]), "apex_s": clip["info"]["apex_frame"] / video.fps,
                    "face_x": box["cx"] - box["side"] / 2, "face_y": box["cy"] - box["side"] / 2,
                    "face_size": box["side"], "face_angle": box["angle"]}
        if "class" in clip:
            position = classes.index(clip["class"])
            row |= {"class": clip["class"], "confidence": float(clip["confidence"][position])}
            row |= {f"score_{c}": float(s) for c, s in zip(classes, clip["scores"])}
        rows.append(row)
    return pd.DataFrame(rows)


def pictures(video: videos.Video, spotted: dict, clips: list[dict], table: pd.DataFrame, classes: tuple[str, ...],
             strips: bool) -> dict[str, bytes]:
    """timeline.png, and strips/<n>.png for each interval with a clip."""
    spotters = spotted["spotters"]
    smallest = min(spotted["motion"]) if spotted["motion"] else None
    motion = spotted["motion"][smallest] if smallest is not None else np.zeros(0)
    curves = {}
    for kind, spotter in spotters.items():
        curve = spotter.smoothed(spotted["signals"][kind])
        curves[kind] = (curve, threshold(curve, spotter.settings["p"]))
    marks = [{"start": int(r["start_frame"]), "end": int(r["end_frame"]), "type": r["type"],
              "class": r["class"] if isinstance(r["class"], str) else None} for r in table.to_dict("records")]
    title = (f"{video.name}: {video.n_frames} frames at {video.fps:g} fps, {len(marks)} intervals"
             + (f" (motion against frame i + {smallest})" if smallest else ""))
    found = {recognitions.TIMELINE: timeline_png(video.n_frames, video.fps, motion, curves, marks, classes, title)}
    if strips:
        for number, (mark, clip) in enumerate(zip(marks, clips), start=1):
            if "arrays" in clip:
                label = f"#{number} {mark['type']} {mark['start']}..{mark['end']}: {mark['class'] or 'no class'}"
                found[f"{recognitions.STRIPS}/{number:04d}.png"] = png_bytes(interval_strip(clip["arrays"], label))
    return found


def recognise_video(video: str, model: str | LoadedModel, out: str, config: RecogniseConfig = RecogniseConfig(),
                    dask_address: str | None = None, n_workers: int | None = None, client=None,
                    report: Callable[[str, int, int], None] | None = None, record_failures: bool = False,
                    stamp_key: str | None = None) -> dict:
    """Recognise one video into the result folder ``out`` (module docstring). Returns its result (``skipped``
    True where the same inputs' result was there already). ``client``: a Dask client to use (the folder
    deployment's); otherwise a video of more than one chunk starts a LocalCluster of ``n_workers`` (or joins
    ``dask_address``). ``record_failures``: write a video's failure (no face, damaged, a rate the model
    cannot use) as its result instead of raising it. ``stamp_key``: what the folder deployment knows of the video
    without reading it (flows/recognise_folder.py ``quick_key``), recorded in the result."""
    started = time.perf_counter()
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    out = locations.normalise(out)
    locations.require(video, out)
    path = videos.local_copy(video)
    fingerprint = videos.fingerprint(path)
    key = config.key(fingerprint, loaded.hash)
    previous = recognitions.done(out, key)
    if previous is not None and (stamp_key is None or previous.get("stamp_key") == stamp_key):
        return previous | {"skipped": True, "out": out}
    with recognitions.claim(out):  # another command writing OUT now: LockHeld, one line naming it
        previous = recognitions.done(out, key)  # done (or finished between the first look and the claim)
        if previous is not None:
            if stamp_key:  # touched, not changed: the next scheduled run need not read it again
                recognitions.restamp(out, stamp_key)
            return previous | {"skipped": True, "out": out}
        base = {"key": key, "stamp_key": stamp_key,
                "video": {"location": locations.normalise(video), "fingerprint": fingerprint},
                "model": {"location": loaded.location, "hash": loaded.hash, "drift": loaded.drift,
                          "source": loaded.model.card.get("source", {}).get("spotters", {}).get("run")},
                "settings": config.to_dict(), "merflow": version("merflow"),
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            result, table, drawn = _recognise(locations.normalise(video), path, fingerprint, loaded, config,
                                              dask_address, n_workers, client, report)
        except VIDEO_FAILURES as error:
            if not record_failures:
                raise
            failed = base | {"status": "failed", "error": str(error), "error_type": type(error).__name__,
                             "seconds": round(time.perf_counter() - started, 2)}
            recognitions.write_result(out, failed)
            return failed | {"skipped": False, "out": out}
        result = base | result | {"seconds": round(time.perf_counter() - started, 2)}
        recognitions.write_result(out, result, table, loaded.model.recogniser.classes, drawn)
    return result | {"skipped": False, "out": out}


def _recognise(location: str, path, fingerprint: str, loaded: LoadedModel, config: RecogniseConfig,
               dask_address: str | None, n_workers: int | None, client, report) -> tuple[dict, pd.DataFrame, dict]:
    timings = {}
    stage = time.perf_counter()
    video = videos.open_video(path, config.fps, known_fingerprint=fingerprint)
    video = videos.Video(**{**video.__dict__, "location": location})
    model = loaded.model
    model.check_input(video.n_frames, video.fps, video.location)
    timings["open"] = time.perf_counter() - stage
    with ExitStack() as stack:
        if client is None and (dask_address or video.n_frames > config.chunk_frames):
            from merflow.flows.features import dask_client
            from merflow.flows.spotting_chunks import check_workers

            client = stack.enter_context(dask_client(dask_address, n_workers))
            check_workers(client)
        runner = Runner(client, report)
        stage = time.perf_counter()
        spotted = spot(video, model, config, runner)
        timings["spot"] = time.perf_counter() - stage
        stage = time.perf_counter()
        clips = classify(video, model.recogniser, spotted["intervals"], runner)
        timings["classify"] = time.perf_counter() - stage
    classes = model.recogniser.classes
    table = result_table(video, spotted["intervals"], clips, classes)
    stage = time.perf_counter()
    drawn = pictures(video, spotted, clips, table, classes, config.strips)
    timings["pictures"] = time.perf_counter() - stage
    track = spotted["track"]
    counts = table.groupby(["type", table["class"].fillna("none")]).size() if len(table) else pd.Series(dtype=int)
    result = {"status": "ok", "video": video.describe(),
              "spotters": {kind: {"spotter": s.spotter, "k": s.k, "k_seconds": s.k / video.fps, "p": s.settings["p"],
                                  "model_k": model.spotters[kind].k, "model_fps": model.fps}
                           for kind, s in spotted["spotters"].items()},
              "track": {"segments": len(track.segments), "checked": len(track.checked), "lost": len(track.lost)},
              "intervals": int(len(table)), "counts": {f"{t}/{c}": int(n) for (t, c), n in counts.items()},
              "classes": list(classes), "timings": {k: round(v, 2) for k, v in timings.items()},
              "frames_per_second": round(video.n_frames / max(sum(timings.values()), 1e-9), 1)}
    return result, table, drawn
