"""The spot flow: a catalog's long videos -> the face tracked and per-frame features on Dask (a Zarr group per
video, chunk by chunk, resumable) -> a spotter under leave-one-subject-out -> each spotted micro-expression
classified by a model trained on the other subjects' clips -> the MEGC metric and STRS -> result tables.

It only wires: the catalog's long-video tables and the per-frame store are read and written through
storage/ (long_videos.py, spotting_features.py, results.py), the per-frame work is tasks/spotting_features.py's
(one Dask task per chunk of frames: a video's face checks, then its features for each window k), the
spotters, metrics and tables are training/spotting/'s. Every setting is chosen inside a fold on the
training subjects (training/spotting/loso.py); the published recipe's leak is named in every table row.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from merflow.configs.features import FeatureConfig
from merflow.configs.names import RunId, check_name
from merflow.configs.spotting import LONG_VIDEO_DATASETS, SpotConfig, SpotFeatureConfig
from merflow.flows.features import dask_client
from merflow.flows.parameters import RESULTS
from merflow.flows.spotting_chunks import check_workers, chunk_task, detect_task, run_on_dask
from merflow.storage import locations, long_videos
from merflow.storage.results import write_spotting
from merflow.storage.spotting_features import SpotFeatureStore, track_key, video_fingerprint
from merflow.tasks.datasets.long_videos import ANALYSIS_CLASSES
from merflow.tasks.faces import NoFaceError
from merflow.tasks.spotting_features import (
    FrameError,
    FrameFiles,
    VideoFaceError,
    build_track,
    check_indices,
    interval_features,
)
from merflow.training.spotting import loso
from merflow.training.spotting.metrics import iou
from merflow.training.spotting.recognise import classify
from merflow.training.spotting.report import spot_run_row, spotting_tables

# Names users type for the long-video sets: a CAS(ME)^2 catalog's long videos are casme_sq_lv.
DATASET_ALIASES = {"samm": "samm_lv", "sammlv": "samm_lv", "samm-lv": "samm_lv", "casme_sq": "casme_sq_lv",
                   "casme2sq": "casme_sq_lv", "cas(me)^2": "casme_sq_lv"}
# The clips' features for spot-then-recognise: the features flow's defaults (flow from onset to apex, 80 px).
RECOGNITION_FEATURES = FeatureConfig()
# Task inputs hold frame lists, per-frame arrays and tables: no cache key is made of them (as flows/train.py).
UNIT = {"cache_policy": NO_CACHE}
# The CLI's progress bar: a callable (stage, done, total) the flow calls as chunks and folds finish.
PROGRESS: ContextVar[Callable[[str, int, int], None] | None] = ContextVar("spot_progress", default=None)


@contextmanager
def reporting(progress: Callable[[str, int, int], None]):
    """Hear the flow's progress (``progress(stage, done, total)``) while the block runs (the CLI's bar)."""
    token = PROGRESS.set(progress)
    try:
        yield
    finally:
        PROGRESS.reset(token)


def _report(stage: str, done: int, total: int) -> None:
    hook = PROGRESS.get()
    if hook is not None:
        hook(stage, done, total)


def resolve_dataset(dataset: str) -> str:
    """The long-video set a name means (``casme_sq`` -> ``casme_sq_lv``); a ValueError naming the known ones."""
    name = DATASET_ALIASES.get(dataset.lower(), dataset.lower())
    if name not in LONG_VIDEO_DATASETS:
        raise ValueError(f"unknown long-video set {dataset!r}; spotting runs on {', '.join(LONG_VIDEO_DATASETS)}")
    return name


def read_long_videos(catalog_dir: str, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The videos and intervals of one long-video set in the catalog; a LookupError saying how to get them."""
    videos, intervals = long_videos.read_videos(catalog_dir), long_videos.read_intervals(catalog_dir)
    videos, intervals = videos[videos["dataset"] == dataset], intervals[intervals["dataset"] == dataset]
    if videos.empty:
        held = sorted(long_videos.read_videos(catalog_dir)["dataset"].unique())
        raise LookupError(f"no {dataset} long videos in the catalog at {catalog_dir} (it holds "
                          f"{', '.join(held) or 'none'}): ingest SAMM Long Videos or CAS(ME)^2 with `merflow ingest` first")
    return videos.reset_index(drop=True), intervals.reset_index(drop=True)


def spot_videos(videos: pd.DataFrame, intervals: pd.DataFrame) -> list[loso.SpotVideo]:
    """The catalog's rows as the spotters' values."""
    by_video: dict[str, list[loso.TruthInterval]] = {}
    for row in intervals.itertuples():
        label = row.label if isinstance(row.label, str) else None
        by_video.setdefault(row.video_key, []).append(
            loso.TruthInterval(row.interval_key, row.type, int(row.onset), int(row.offset), label))
    return [loso.SpotVideo(row.video_key, row.subject_key, int(row.n_frames), float(row.fps),
                           tuple(by_video.get(row.video_key, ()))) for row in videos.itertuples()]


def chunk_jobs_of(record: dict, k: int, chunks: list[int], config: SpotFeatureConfig, stamp: dict) -> list[dict]:
    """The Dask jobs of some chunks of a video for window k: each with only its frames' names (the chunk and
    the k frames after it) and the segments that cover them, so a job's size does not grow with the video."""
    jobs = []
    segments = record["track"]["segments"]
    for chunk in chunks:
        start = chunk * config.chunk_frames
        stop = min(start + config.chunk_frames, record["n_frames"])
        last = min(stop + k, record["n_frames"])
        covering = [s for s in segments if s["start"] < stop and s["stop"] > start]
        track = {"n_frames": record["n_frames"], "segments": covering, "checked": [], "lost": []}
        jobs.append({"video_key": record["video_key"], "video_dir": record["video_dir"], "n_frames": record["n_frames"],
                     "frame_files": record["frame_files"][start:last], "track": track, "stamp": stamp, "k": k,
                     "chunk": chunk, "start": start, "stop": stop})
    return jobs


@task(name="per-frame-features", **UNIT)
def compute_per_frame(videos: pd.DataFrame, windows: set[int], store: str, config: SpotFeatureConfig,
                      dask_address: str | None, n_workers: int | None) -> dict:
    """The face tracked through every video and the per-frame features for every window k, on Dask;
    what is done already (marks of this input and track) is skipped. Returns the counts."""
    return per_frame_features(videos, windows, store, config, dask_address, n_workers, get_run_logger())


def per_frame_features(videos: pd.DataFrame, windows: set[int], store: str, config: SpotFeatureConfig,
                       dask_address: str | None, n_workers: int | None, logger, report=None) -> dict:
    """``compute_per_frame`` without Prefect (flows/export.py computes a bundle's windows with it): ``logger`` a
    logging.Logger, ``report(stage, done, total)`` the progress (default: the CLI's bar, ``reporting``)."""
    report = report or _report
    spot_store = SpotFeatureStore(store)
    counts = {"detections_computed": 0, "chunks_computed": 0, "chunks_skipped": 0, "frames_computed": 0,
              "compute_seconds": 0.0, "no_face": []}
    with spot_store.computing(config), ExitStack() as stack:
        clients: list = []

        def client():
            if not clients:  # a cluster only where there is work
                clients.append(stack.enter_context(dask_client(dask_address, n_workers)))
                logger.info("Dask cluster %s with %d workers", clients[0].scheduler.address, check_workers(clients[0]))
            return clients[0]

        records = []
        for row in videos.itertuples():
            frame_files = list(row.frame_files)
            fingerprint = video_fingerprint(row.video_dir, frame_files)
            meta = spot_store.prepare_video(config, row.video_key, int(row.n_frames), float(row.fps), fingerprint)
            records.append({"video_key": row.video_key, "video_dir": row.video_dir, "frame_files": frame_files,
                            "n_frames": int(row.n_frames), "fps": float(row.fps), "fingerprint": fingerprint,
                            "track": meta.get("track")})
        started = time.perf_counter()
        detect_jobs = []
        for record in records:
            if record["track"]:
                continue
            n_chunks = -(-record["n_frames"] // config.chunk_frames)
            checks = check_indices(record["n_frames"], record["fps"], config)
            for chunk in spot_store.detections_to_compute(config, record["video_key"], n_chunks, record["fingerprint"]):
                start, stop = chunk * config.chunk_frames, (chunk + 1) * config.chunk_frames
                detect_jobs.append({**{k: record[k] for k in ("video_key", "video_dir", "fingerprint", "n_frames")},
                                    "chunk": chunk, "first": start, "frame_files": record["frame_files"][start:stop],
                                    "indices": [i for i in checks if start <= i < stop]})
        if detect_jobs:
            run_on_dask(client(), detect_task, detect_jobs, spot_store.url, config, "faces", logger, report)
            counts["detections_computed"] = len(detect_jobs)
        chunk_jobs: list[dict] = []
        for record in records:
            if not record["track"]:
                n_chunks = -(-record["n_frames"] // config.chunk_frames)
                try:
                    track = build_track(record["n_frames"], spot_store.read_detections(config, record["video_key"],
                                                                                       n_chunks),
                                        config.drift_iou, record["video_key"])
                except VideoFaceError as error:  # left out of the run, said so; the others go on
                    logger.warning("%s", error)
                    counts["no_face"].append(record["video_key"])
                    continue
                record["track"] = track.to_dict()
                spot_store.write_track(config, record["video_key"], record["track"])
                if len(track.segments) > 1 or track.lost:
                    logger.info("%s: %d face segments, no face at %d of %d checked frames", record["video_key"],
                                len(track.segments), len(track.lost), len(track.checked))
            stamp = {"fingerprint": record["fingerprint"], "track": track_key(record["track"])}
            for k in sorted(windows):
                spot_store.prepare_arrays(config, record["video_key"], k, record["n_frames"])
                todo, done = spot_store.chunks_to_compute(config, record["video_key"], k, record["n_frames"], stamp)
                counts["chunks_skipped"] += done
                chunk_jobs += chunk_jobs_of(record, k, todo, config, stamp)
        logger.info("%d chunks of per-frame features to compute, %d done already (windows k %s, config %s)",
                    len(chunk_jobs), counts["chunks_skipped"], sorted(windows), config.hash)
        if chunk_jobs:
            results = run_on_dask(client(), chunk_task, chunk_jobs, spot_store.url, config, "per-frame features",
                                  logger, report)
            counts["chunks_computed"] = len(results)
            counts["frames_computed"] = sum(r["frames"] for r in results)
        counts["compute_seconds"] = round(time.perf_counter() - started, 2)
    return counts


# ------------------------------------------------------------------------------------------ the folds
class ArrayCache:
    """The per-frame arrays a run reads, each read once (``loso.Loader``)."""

    def __init__(self, store: SpotFeatureStore, config: SpotFeatureConfig):
        self.store, self.config = store, config
        self.arrays: dict[tuple[str, int, str], np.ndarray] = {}

    def __call__(self, video_key: str, k: int, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        missing = tuple(n for n in names if (video_key, k, n) not in self.arrays)
        if missing:
            for name, values in self.store.load(self.config, video_key, k, missing).items():
                self.arrays[(video_key, k, name)] = values
        return {name: self.arrays[(video_key, k, name)] for name in names}


@task(name="spot-fold", **UNIT)
def spot_fold_task(subject: str, videos: list[loso.SpotVideo], load: ArrayCache, config: SpotConfig, index: int):
    """One leave-one-subject-out fold (training/spotting/loso.py ``spot_fold``)."""
    return loso.spot_fold(subject, videos, load, config, index)


# ------------------------------------------------------------------------------------------ recognition
def _clip_features(video: pd.Series, onset: int, apex: int | None, offset: int) -> np.ndarray:
    """The flow (4, H, W) from onset to apex of frames onset..offset of a video (tasks/spotting_features.py
    ``interval_features``: the features flow's recipe)."""
    frames = FrameFiles(video["video_dir"], list(video["frame_files"])[onset:offset + 1], onset, int(video["n_frames"]))
    return interval_features(frames, onset, offset, apex, RECOGNITION_FEATURES)["flow"]


@task(name="recognise", **UNIT)
def recognise_task(predictions: pd.DataFrame, videos: pd.DataFrame, intervals: pd.DataFrame, config: SpotConfig
                   ) -> tuple[pd.DataFrame, dict]:
    """Each spotted micro interval that overlaps a ground-truth micro interval at the MEGC IoU classified by a
    model trained on the micro clips of the other subjects (only those can be true positives, under either
    evaluator). Returns the predictions with ``predicted`` and ``class_scores``, and what the model was."""
    logger = get_run_logger()
    by_key = videos.set_index("video_key")
    clips = intervals[(intervals["type"] == "micro") & intervals["label"].isin(ANALYSIS_CLASSES)]
    features, skipped = {}, {}
    for row in clips.itertuples():
        apex = None if pd.isna(row.apex) else int(row.apex)
        try:
            features[row.interval_key] = _clip_features(by_key.loc[row.video_key], int(row.onset), apex, int(row.offset))
        except (NoFaceError, FrameError) as error:
            skipped[row.interval_key] = f"{type(error).__name__}: {error}"
    predictions = predictions.copy()
    predictions["predicted"], predictions["class_scores"] = None, None
    truths = intervals[intervals["type"] == "micro"]
    candidates = [i for i, row in predictions.iterrows() if row["type"] == "micro" and any(
        iou((row["start"], row["end"]), (t.onset, t.offset)) >= 0.5
        for t in truths[truths["video_key"] == row["video_key"]].itertuples())]
    for fold, rows in predictions.loc[candidates].groupby("fold"):
        subject = rows["subject_key"].iloc[0]
        train = clips[(clips["subject_key"] != subject) & clips["interval_key"].isin(features.keys())]
        test_x = []
        for row in rows.itertuples():
            try:
                test_x.append(_clip_features(by_key.loc[row.video_key], int(row.start), None, int(row.end)))
            except (NoFaceError, FrameError) as error:
                test_x.append(None)
                logger.info("%s: spotted interval %d..%d of %s has no features: %s", fold, row.start, row.end,
                            row.video_key, error)
        usable = [i for i, x in enumerate(test_x) if x is not None]
        labels, scores = classify(config.classifier, np.stack([features[k] for k in train["interval_key"]])
                                  if len(train) else np.zeros((0,)), train["label"].tolist(),
                                  np.stack([test_x[i] for i in usable]) if usable else np.zeros((0,)),
                                  ANALYSIS_CLASSES)
        for position, label, row_scores in zip(usable, labels, scores):
            index = rows.index[position]
            predictions.at[index, "predicted"] = label
            predictions.at[index, "class_scores"] = [float(s) for s in row_scores]
    recognition = {"classifier": config.classifier, "classes": list(ANALYSIS_CLASSES),
                   "clip_features": RECOGNITION_FEATURES.to_dict(), "clips": len(features),
                   "clips_without_features": skipped, "classified": int(predictions["predicted"].notna().sum()),
                   "trained_on": "the annotated micro intervals (MEAN's three classes) of the other subjects"}
    return predictions, recognition


# ------------------------------------------------------------------------------------------ the flow
@flow(name="spot", log_prints=True)
def spot_flow(catalog_dir: str, store: str, dataset: str, out: str = RESULTS, run: RunId | None = None,
              config: SpotConfig | None = None, features: SpotFeatureConfig | None = None,
              dask_address: str | None = None, n_workers: int | None = None) -> dict:
    """Spot the micro- and macro-expressions of a catalog's long videos (``dataset``: samm_lv or casme_sq_lv)
    under leave-one-subject-out, classify the spotted micro-expressions, score them as MEGC does (and STRS),
    and write the tables ``spot_runs``, ``spot_intervals``, ``spot_metrics`` under ``out``. The per-frame
    features go to the Zarr store ``store``; a rerun computes only what is missing."""
    logger = get_run_logger()
    config = config or SpotConfig()
    features = features or SpotFeatureConfig()
    dataset = resolve_dataset(dataset)
    locations.require(catalog_dir, store, out)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    videos, intervals = read_long_videos(catalog_dir, dataset)
    intervals = intervals[intervals["type"].isin(config.types)]
    spotted = spot_videos(videos, intervals)
    windows = loso.windows_needed(spotted, config)
    logger.info("%s: %d videos of %d people, %s intervals; windows k %s (%s)", dataset, len(videos),
                videos["subject_key"].nunique(), intervals["type"].value_counts().to_dict(),
                {kind: sorted(ks) for kind, ks in windows.items()}, config.chosen_on)
    counts = compute_per_frame(videos, set().union(*windows.values()), store, features, dask_address, n_workers)
    timings["per_frame_features"] = time.perf_counter() - started
    if counts["no_face"]:  # videos without a face at any check: left out of the folds and the scores, said so
        logger.warning("left out, no face found: %s", ", ".join(counts["no_face"]))
        videos = videos[~videos["video_key"].isin(counts["no_face"])].reset_index(drop=True)
        intervals = intervals[~intervals["video_key"].isin(counts["no_face"])]
        spotted = [v for v in spotted if v.key not in counts["no_face"]]

    load = ArrayCache(SpotFeatureStore(store), features)
    subjects = sorted({v.subject for v in spotted})
    if len(subjects) < 2:
        raise ValueError(f"leave-one-subject-out needs videos of two people at least; {dataset} in {catalog_dir} "
                         f"has {len(subjects)}")
    stage = time.perf_counter()
    found, chosen = [], []
    for index, subject in enumerate(subjects):
        predictions, settings = spot_fold_task(subject, spotted, load, config, index)
        found += predictions
        chosen += settings
        _report("folds", index + 1, len(subjects))
        logger.info("fold %d/%d (%s): %d intervals spotted", index + 1, len(subjects), loso.fold_name(subject),
                    len(predictions))
    predictions = pd.DataFrame(found, columns=list(loso.PREDICTION_COLUMNS))
    settings = pd.DataFrame(chosen, columns=list(loso.SETTING_COLUMNS))
    timings["spotting"] = time.perf_counter() - stage

    recognition = None
    if "micro" in config.types and (intervals["type"] == "micro").any():
        stage = time.perf_counter()
        predictions, recognition = recognise_task(predictions, videos, intervals, config)
        timings["recognition"] = time.perf_counter() - stage
    truths = intervals[["video_key", "subject_key", "type", "onset", "offset", "interval_key", "label"]].copy()
    table_intervals, metrics = spotting_tables(predictions, truths, settings, config, ANALYSIS_CLASSES)
    run = check_name(run, "run id") if run is not None else f"spot-{dataset}-{config.spotter}-{config.recipe}-{config.hash[:6]}-{features.hash[:6]}"
    protocol = f"loso-{dataset}"
    timings["total"] = time.perf_counter() - started
    # Where the run read its data: `merflow export` reads them back to fit the run's spotter on every subject.
    inputs = {"catalog": locations.normalise(catalog_dir), "store": SpotFeatureStore(store).url}
    row = spot_run_row(run, protocol, dataset, config, features, recognition, timings, inputs)
    write_spotting(locations.normalise(out), run, protocol, table_intervals, metrics, row)
    pooled = metrics[metrics["scope"] == "pooled"]
    summary = {"run": run, "protocol": protocol, "dataset": dataset, "results": locations.normalise(out),
               "store": SpotFeatureStore(store).url, "spotter": config.spotter, "recipe": config.recipe,
               "chosen_on": config.chosen_on, "leaky": config.leaky, "videos": int(len(videos)),
               "subjects": len(subjects), "per_frame": counts, "settings": settings.to_dict("records"),
               "pooled": pooled.replace({np.nan: None}).to_dict("records"), "recognition": recognition,
               "timings": {k: round(v, 2) for k, v in timings.items()}}
    create_markdown_artifact(summary_markdown(summary), key="spot-summary", description="spotting run")
    return summary


def summary_markdown(summary: dict) -> str:
    """The run's pooled metrics as Markdown (the flow's artifact)."""
    lines = [f"# Spotting {summary['dataset']}: {summary['spotter']} ({summary['recipe']})", "",
             f"settings chosen on: {summary['chosen_on']}", "",
             "| evaluator | type | truth | predicted | TP | precision | recall | F1 | STRS |", "|---|---|---|---|---|---|---|---|---|"]
    for row in summary["pooled"]:
        def number(value):
            return "-" if value is None else f"{value:.4f}"
        lines.append(f"| {row['evaluator']} | {row['type']} | {row.get('n_truth')} | {row.get('n_pred')} | {row.get('tp')} | "
                     f"{number(row.get('precision'))} | {number(row.get('recall'))} | {number(row.get('f1'))} | "
                     f"{number(row.get('strs'))} |")
    lines += ["", "```", json.dumps(summary["per_frame"], indent=1), "```"]
    return "\n".join(lines)
