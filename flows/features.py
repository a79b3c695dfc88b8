"""The features flow: catalog -> face crops, difference and optical flow -> Zarr feature store,
computed on a Dask cluster (a LocalCluster sized to the machine, or a scheduler by address).

The driver plans shards (only those not done, whose inputs changed, or whose stored data no longer
matches its mark's checksums: those are named and recomputed), then hands one task per shard to
Dask: every shard has exactly one writer, which claims it first (storage/features.py). Two feature runs
on one store split the shards: a shard claimed by the other run is left to it, and this run waits at
the end until the other has written it (or died, and its claim is taken over). Progress is logged per
shard; the summary and a few pictures are kept as Prefect artifacts.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from contextlib import contextmanager

import dask
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from merflow.configs.catalog import IMPORTED
from merflow.configs.features import FaceConfig, FeatureConfig, MotionConfig
from merflow.flows.defaults import default
from merflow.flows.parameters import Detector, FeatureOptions, FirstFrame, FlowAlgorithm, NoFace
from merflow.storage import catalog, locations
from merflow.storage.features import FeatureStore, ShardPlan, first_samples, store_summary
from merflow.tasks.features import compute_shard, with_fingerprints
from merflow.tasks.visualise import STRIP_ARRAYS, features_markdown

CLAIM_POLL_SECONDS = 2.0  # how often a run waiting for another run's shards looks again

# ~135 INFO lines per cluster otherwise; the logger may already exist, so set its level too.
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
logging.getLogger("distributed").setLevel(logging.WARNING)


def worker_setup() -> str:
    """Import the feature code on a worker (part of the start-up, not of the first shard) and say
    which merflow it has: a cluster whose workers run another version would write other features."""
    import merflow.tasks.features  # noqa: F401
    from merflow import __version__

    return __version__


def check_workers(client) -> int:
    """Warm every worker up; raise if one lacks merflow or has another version. Returns the worker count."""
    from merflow import __version__

    try:
        versions = client.run(worker_setup)
    except ImportError as error:
        raise RuntimeError(f"a Dask worker cannot import merflow ({error}): install merflow on every worker") from None
    wrong = {worker: v for worker, v in versions.items() if v != __version__}
    if wrong:
        raise RuntimeError(f"Dask workers run another merflow than this one ({__version__}): {wrong}")
    return len(versions)


def shard_task(plan: ShardPlan, store: str, config: FeatureConfig) -> dict:
    """One Dask task: claim a shard, compute it (tasks/features.py) and write it, then its mark
    (storage/features.py), as its only writer. Returns its tally: ``status`` computed, ``claimed`` (another
    live run holds it: left to it; ``holder`` says who) or ``done`` (finished by another run meanwhile)."""
    feature_store = FeatureStore(store)
    tally = {"group": plan.group, "shard": plan.shard}
    with feature_store.claimed(plan.group, plan.shard) as claim:
        if claim is None:
            holder = feature_store.claim_holder(plan.group, plan.shard)
            return tally | {"status": "claimed", "holder": holder.describe() if holder else "another features run"}
        if feature_store.shard_done(plan):
            return tally | {"status": "done"}
        arrays, marks = compute_shard(plan.samples, plan.start, plan.length, config)
        feature_store.write_shard(plan.group, plan.shard, plan.start, arrays, marks)
    # ru_maxrss is in KiB on Linux: the worker process's peak so far, for the memory budget per worker.
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return tally | {"status": "computed", "samples": len(marks),
                    "quarantined": sum(m["status"] != "ok" for m in marks.values()), "peak_rss_mb": round(peak_mb, 1)}


def storage_plugin(environment: dict[str, str]):
    """A Dask worker plugin that sets ``environment`` (the command's storage settings) on every worker,
    joining ones too."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class StorageEnvironment(WorkerPlugin):
        name = "merflow-storage-environment"

        def setup(self, worker) -> None:
            os.environ.update(environment)

    return StorageEnvironment()


@contextmanager
def dask_client(address: str | None = None, n_workers: int | None = None):
    """A client of the scheduler at ``address``, or of a LocalCluster with one single-threaded worker
    process per core (OpenCV work holds the GIL often enough that processes beat threads)."""
    from distributed import Client, LocalCluster

    if address:
        with Client(address) as client:
            # The scheduler's workers were started elsewhere: give them (and any that join) this command's
            # storage settings, or they read another endpoint, or none (storage/locations.py).
            client.register_plugin(storage_plugin(locations.storage_environment()))
            yield client
        return
    workers = n_workers or os.cpu_count() or 1
    # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's adaptive mmap
    # threshold: every frame-sized array then costs fresh page faults, and the per-sample work ran
    # 1.5x slower than in a plain process (benchmarks/README.md). Our workers hold one shard at a
    # time, so the unmanaged-memory growth that setting guards against is not a concern here.
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


def catalog_records(catalog_dir: str, dataset: str | None) -> list[dict]:
    """The catalog rows to compute, as plain Python values (nulls as None)."""
    samples = catalog.read_samples(catalog_dir)
    if samples.empty:
        raise ValueError(f"the catalog at {catalog_dir} has no samples: run `merflow ingest` first")
    # Imported samples came with their features and have no frames (`merflow import-features`).
    imported = samples["origin"] == IMPORTED
    if imported.all():
        raise ValueError(f"every sample of the catalog at {catalog_dir} was imported with its features "
                         f"({', '.join(sorted(samples['dataset'].unique()))}): there are no frames to compute from")
    samples = samples[~imported]
    if dataset:
        chosen = samples[(samples["dataset"] == dataset) | samples["dataset"].str.startswith(f"{dataset}_")]
        if chosen.empty:
            raise ValueError(f"no {dataset} samples in {catalog_dir}; it holds {sorted(samples['dataset'].unique())}")
        samples = chosen
    records = samples.astype(object).where(samples.notna(), None).to_dict("records")
    for record in records:
        record["frame_files"] = list(record["frame_files"])
    return records


@flow(name="features", log_prints=True)
def features_flow(catalog_dir: str, store: str, dataset: str | None = None,
                  dask_address: str | None = default(FeatureOptions, "dask_address"),
                  flow_algorithm: FlowAlgorithm = default(FeatureOptions, "flow_algorithm"),
                  size: int = default(FeatureOptions, "size"), detector: Detector = default(FeatureOptions, "detector"),
                  no_face: NoFace = default(FeatureOptions, "no_face"),
                  shard_size: int = default(FeatureOptions, "shard_size"),
                  n_workers: int | None = default(FeatureOptions, "n_workers"), pictures: int = 3,
                  first_frame: FirstFrame = default(FeatureOptions, "first_frame"),
                  sequence_length: int = default(FeatureOptions, "sequence_length"),
                  max_missing_share: float = default(FeatureOptions, "max_missing_share")) -> dict:
    """Compute the features of every catalog sample (or one dataset's) into the store; resumable."""
    logger = get_run_logger()
    config = FeatureConfig(face=FaceConfig(detector=detector, no_face=no_face),
                           motion=MotionConfig(algorithm=flow_algorithm), size=size, shard_size=shard_size,
                           first_frame=first_frame, sequence_length=sequence_length,
                           max_missing_share=max_missing_share)
    locations.require(catalog_dir, store)  # a missing extra is one line, before any work
    feature_store = FeatureStore(store)
    jobs, done = feature_store.plan_shards(with_fingerprints(catalog_records(catalog_dir, dataset)), config)
    logger.info("%d shards to compute, %d already done (config %s)", len(jobs), done, config.hash)
    repaired = [job.damage for job in jobs if job.damage is not None]
    for damage in repaired:
        logger.warning("damaged, computed again: %s", damage.line())
    results, elsewhere, started = [], 0, time.perf_counter()
    ready = computed = started
    if jobs:
        from distributed import as_completed

        with dask_client(dask_address, n_workers) as client:
            workers = check_workers(client)
            ready = time.perf_counter()
            logger.info("Dask cluster %s with %d workers, up in %.1f s", client.scheduler.address, workers,
                        ready - started)
            pending, told = jobs, set()
            while pending:
                by_shard = {(job.group, job.shard): job for job in pending}
                pending = []
                # No list of the futures is kept, and each is released once its result is read: a finished
                # shard is on disk with its mark, and a future still held would make the scheduler compute
                # it again when the worker holding its (tiny) result dies.
                for future in as_completed(client.map(shard_task, list(by_shard.values()), store=feature_store.url,
                                                      config=config, pure=False)):
                    result = future.result()
                    future.release()
                    del future
                    where = (result["group"], result["shard"])
                    if result["status"] == "claimed":  # another run computes it: wait for it, then check again
                        pending.append(by_shard[where])
                        if where not in told:
                            told.add(where)
                            logger.info("shard %s #%d is computed by %s: waiting for it", *where, result["holder"])
                    elif result["status"] == "done":
                        elsewhere += 1
                        logger.info("shard %s #%d was computed by another run", *where)
                    else:
                        results.append(result)
                        logger.info("shard %d/%d done: %s #%d, %d samples, %d quarantined", len(results) + elsewhere,
                                    len(jobs), result["group"], result["shard"], result["samples"],
                                    result["quarantined"])
                if pending:
                    time.sleep(CLAIM_POLL_SECONDS)
            computed = time.perf_counter()
    summary = store_summary(feature_store, config) | {
        "store": feature_store.url, "config_hash": config.hash, "shards_computed": len(results),
        "shards_skipped": done, "shards_by_others": elsewhere,
        "repaired": [{"group": d.group, "shard": d.shard, "files": list(d.files), "samples": list(d.samples),
                      "problem": d.problem} for d in repaired], "cluster_start_seconds": round(ready - started, 2),
        "compute_seconds": round(computed - ready, 2),
        "peak_worker_rss_mb": max((r["peak_rss_mb"] for r in results), default=None)}
    # One picture from each of the first few groups.
    samples = first_samples(feature_store, list(summary["groups"])[:pictures], STRIP_ARRAYS)
    create_markdown_artifact(features_markdown(summary, samples), key="features-summary",
                             description="feature store after this run")
    return summary
