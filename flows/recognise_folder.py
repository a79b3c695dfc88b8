"""The recognise-folder flow: every new video in a folder or bucket recognised with one bundle, one result
folder per video, on a schedule (prefect.yaml, deployment ``recognise-inbox``).

Each scheduled run lists the videos (fsspec: a local folder or ``s3://bucket/prefix``, ``VideoFolderOptions``
patterns), and for each one whose result is missing or was made from other inputs runs
flows/recognise.py ``recognise_video`` as one Prefect task, into ``OUT/<the video's path under SOURCE>/``.

- **A rerun does nothing** for the videos done: a video's result records its source's stamp (modification
  time, or ETag, and size: storage/locations.py ``stamp``), the bundle's hash and the settings, so a run
  that finds them unchanged skips the video without reading it (a changed stamp: the video is fingerprinted
  again, and recognised only where its content changed).
- **Two runs at once** (an overrunning schedule, two workers) never process one video together: each takes
  the video's result-folder lock first (storage/recognitions.py ``claim``, storage/locks.py: a flock for a local
  or NFS-mounted OUT, a conditional-write record for an object store, across hosts in both cases) and
  leaves a video whose lock another holds to it.
- **Failures are results**: a video without a face, a damaged file or one the model's windows cannot use is
  recorded as failed, with its one-line reason, and skipped until it changes; the run goes on.

A video on an object store is copied into the local cache (``$MERFLOW_CACHE``) before it is decoded. The
Dask cluster starts only when there is a video to recognise, and serves every video of the run.
"""

from __future__ import annotations

from contextlib import ExitStack

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from merflow.configs.base import config_hash
from merflow.configs.names import folder_name_problem
from merflow.configs.recognise import RecogniseConfig
from merflow.flows.parameters import VideoFolderOptions
from merflow.flows.recognise import LoadedModel, load_model, recognise_video
from merflow.storage import locations, locks, recognitions


def list_videos(source: str, patterns: list[str], recursive: bool = False) -> list[tuple[str, str]]:
    """(location, path relative to ``source``) of every file matching a pattern, sorted; a FileNotFoundError where
    ``source`` is no folder."""
    source = locations.normalise(source)
    if not locations.isdir(source):
        raise FileNotFoundError(f"no folder at {source} to recognise the videos of")
    found = set()
    for pattern in patterns:
        for location in locations.glob(source, f"**/{pattern}" if recursive else pattern):
            found.add(location)
    base = source.rstrip("/") + "/"
    return [(location, location[len(base):] if location.startswith(base) else locations.name(location))
            for location in sorted(found) if locations.isfile(location)]


def quick_key(stamp: str, bundle_hash: str, config: RecogniseConfig) -> str:
    """What a video's result is made from, known without reading the video: its stamp, the bundle, the settings."""
    return config_hash({"stamp": stamp, "model": bundle_hash, "settings": config.key_settings()}, 20)


@task(name="recognise-video", task_run_name="recognise {relative}", cache_policy=NO_CACHE)
def recognise_task(location: str, relative: str, model: LoadedModel, out: str, config: RecogniseConfig, client,
                   stamp_key: str) -> dict:
    """One video (flows/recognise.py), its failure recorded as its result; a video another run holds is left to it."""
    logger = get_run_logger()
    try:
        result = recognise_video(location, model, out, config, client=client, record_failures=True,
                                 stamp_key=stamp_key)
    except locks.LockHeld as held:
        logger.info("%s: left to the other run (%s)", relative, held)
        return {"video": relative, "status": "busy"}
    if result.get("status") == "failed":
        logger.warning("%s: %s", relative, result["error"])
    else:
        logger.info("%s: %s intervals%s", relative, result.get("intervals"), " (done before)" if result["skipped"] else "")
    return {"video": relative, "status": "done before" if result["skipped"] else result["status"],
            "intervals": result.get("intervals"), "error": result.get("error")}


@flow(name="recognise-folder", log_prints=True)
def recognise_folder_flow(source: str, model: str, out: str, settings: RecogniseConfig | None = None,
                          videos: VideoFolderOptions | None = None) -> dict:
    """Recognise every video in ``source`` (a folder or an fsspec URL) with the bundle at ``model``, one result folder
    per video under ``out``; videos whose result is there and unchanged are skipped (module docstring)."""
    logger = get_run_logger()
    settings = settings or RecogniseConfig()
    videos = videos or VideoFolderOptions()
    locations.require(source, model, out)
    loaded = load_model(model)
    for line in loaded.drift:
        logger.warning(line)
    listed = list_videos(source, videos.patterns, videos.recursive)
    todo, skipped = [], []
    refused = []
    for location, relative in listed:
        parts = relative.split("/")
        bad = next((folder_name_problem(p) for p in parts if folder_name_problem(p)), None)
        if bad:  # an object key such as a/../b: its result folder would land outside OUT
            logger.warning("%s: left out, its name %s as a result folder (configs/names.py)", relative, bad)
            refused.append(relative)
            continue
        result_dir = locations.join(out, *parts)
        key = quick_key(locations.stamp(location), loaded.hash, settings)
        previous = recognitions.read_result(result_dir)
        if previous is not None and previous.get("stamp_key") == key:
            skipped.append(relative)
        else:
            todo.append((location, relative, result_dir, key))
    logger.info("%d videos in %s: %d to recognise, %d done before", len(listed), source, len(todo), len(skipped))
    outcomes = []
    with ExitStack() as stack:
        client = None
        if todo:
            from merflow.flows.features import dask_client
            from merflow.flows.spotting_chunks import check_workers

            client = stack.enter_context(dask_client(videos.dask_address, videos.n_workers))
            check_workers(client)
        for location, relative, result_dir, key in todo:
            outcomes.append(recognise_task(location, relative, loaded, result_dir, settings, client, key))
    summary = {"source": locations.normalise(source), "out": locations.normalise(out), "model": loaded.hash,
               "videos": len(listed), "skipped": skipped, "refused": refused, "outcomes": outcomes,
               "recognised": sum(o["status"] == "ok" for o in outcomes),
               "failed": sum(o["status"] == "failed" for o in outcomes),
               "busy": sum(o["status"] == "busy" for o in outcomes)}
    lines = [f"# Recognised {summary['source']}", "", f"model {loaded.hash[:12]}; {len(listed)} videos, "
             f"{len(skipped)} done before", "", "| video | outcome | intervals |", "|---|---|---|"]
    lines += [f"| {o['video']} | {o['status']}{': ' + o['error'] if o.get('error') else ''} | "
              f"{o.get('intervals') if o.get('intervals') is not None else '-'} |" for o in outcomes]
    create_markdown_artifact("\n".join(lines), key="recognise-folder", description="videos recognised")
    return summary
