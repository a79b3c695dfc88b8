"""The ingest flow: raw dataset archives or folders -> the sample catalog (samples, quarantine, sources).

One source at a time: storage fetches and fingerprints it, the sources table says whether it is
unchanged (``tasks.ingest.unchanged_reason``), storage unpacks it safely (storage/sources.py), the
adapters read it (tasks/ingest.py), storage merges it into the catalog. Ingests running at once (two
users, two scheduled runs) unpack and read side by side; their merges and prunes take turns under
the catalog's lock, and no prune removes an archive an ingest still reads (storage/sources.py ``in_use``). The summary is printed by the CLI and kept as a Prefect artifact of the run. ``prepare``
does the fetch-to-prepared steps for one source without Prefect (notebooks, tests, benchmarks).
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from merflow.configs.ingest import ExtractionLimits
from merflow.flows.defaults import default
from merflow.flows.parameters import IngestOptions
from merflow.storage import catalog, locations, long_videos
from merflow.storage import sources as source_copies
from merflow.tasks import ingest


def fetched(source: str, catalog_dir: str | os.PathLike) -> tuple[Path, str, str]:
    """The source as a local file (a URL downloaded first into the catalog's downloads/), its kind and its sha256."""
    local = source_copies.fetch(source, catalog_dir)
    return local, *source_copies.fingerprint(source, local)


def unpacked(source: str, local: Path, kind: str, sha: str, catalog_dir: str | os.PathLike,
             limits: ExtractionLimits, progress=None) -> ingest.PreparedSource:
    """The source unpacked once into the catalog's ``raw/<sha>`` (a folder is used in place), ready for the adapters."""
    copy = source_copies.unpack(local, kind, sha, catalog_dir, limits, progress)
    return ingest.prepared_source(source, sha, kind, copy.folder, copy.created)


@task(name="fingerprint")
def fingerprint_source(source: str, catalog_dir: str) -> tuple[Path, str, str]:
    """The source as a local file (a URL downloaded first), its kind and its sha256 (``fetched``)."""
    return fetched(source, catalog_dir)


@task(name="unpack")
def unpack_source(source: str, local: Path, kind: str, sha: str, catalog_dir: str,
                  limits: ExtractionLimits) -> ingest.PreparedSource:
    """``unpacked``, its progress logged by quarters."""
    logger = get_run_logger()
    reported = set()

    def progress(done: int, total: int) -> None:
        quarter = int(4 * done / total) if total else 4
        if quarter not in reported:
            reported.add(quarter)
            logger.info("unpacking %s: %d%% of %.1f MB", Path(local).name, 25 * quarter, total / 2**20)

    return unpacked(source, local, kind, sha, catalog_dir, limits, progress)


def prepare(source: str, catalog_dir: str | os.PathLike,
            limits: ExtractionLimits = ExtractionLimits()) -> ingest.PreparedSource:
    """One source fetched, fingerprinted and unpacked into ``catalog_dir``'s raw/<sha>/ as the flow does,
    without Prefect (for notebooks, tests and benchmarks); then ``ingest.read`` and ``catalog.merge_source``."""
    return unpacked(source, *fetched(source, catalog_dir), catalog_dir, limits)


@task(name="read-adapters")
def read_source(prepared: ingest.PreparedSource, config: ingest.IngestConfig):
    """The datasets' adapters run on the unpacked source: its samples and quarantined rows."""
    return ingest.read(prepared, config)


@task(name="read-long-videos")
def read_long_video_sets(prepared: ingest.PreparedSource, config: ingest.IngestConfig):
    """The long-video adapters run on the unpacked source (spotting): videos, intervals, quarantined rows."""
    return ingest.read_long_videos(prepared, config)


@flow(name="ingest", log_prints=True)
def ingest_flow(sources: list[str], out: str, dataset: str | None = default(IngestOptions, "dataset"),
                max_total_gb: float = default(IngestOptions, "max_total_gb"),
                max_ratio: float = default(IngestOptions, "max_ratio")) -> dict:
    """Ingest dataset archives or folders (local paths or fsspec URLs) into the catalog at ``out``
    (a local folder or an fsspec URL; unpacked frames stay local, see storage/sources.py)."""
    logger = get_run_logger()
    locations.require(out, *sources)  # a missing extra is one line, before any work
    catalog_dir = locations.normalise(out)
    locations.makedirs(catalog_dir)
    config = ingest.IngestConfig(dataset=dataset,
                                 limits=ExtractionLimits(max_total_bytes=int(max_total_gb * 2**30), max_ratio=max_ratio))
    outcomes = []
    for typed in sources:
        source = locations.normalise(typed)  # a source is its location, never the text typed (storage/catalog.py)
        local, kind, sha = fingerprint_source(source, catalog_dir)
        reason = ingest.unchanged_reason(catalog.read_sources(catalog_dir), source, sha, config)
        if reason:
            logger.info("%s: %s; skipped", source, reason)
            outcomes.append({"source": source, "status": "skipped", "detail": reason})
            continue
        # From before it is unpacked until its rows are in, no prune (this ingest's or another's) removes
        # its raw/<sha>/; the catalog's lock is taken for the merge and prune only, so ingests run side by side.
        failed = None
        with source_copies.in_use(catalog_dir, sha, kind):
            prepared = unpack_source(source, local, kind, sha, catalog_dir, config.limits)
            try:
                datasets, samples, problems = read_source(prepared, config)
                long_sets = read_long_video_sets(prepared, config)
            except BaseException as error:
                failed = error
            else:
                with catalog.writing(catalog_dir, on_wait=logger.info):
                    # The long-video tables first: the sources row (catalog.merge_source) marks the source as in.
                    for name, found in long_sets.items():
                        counts = long_videos.merge_source(catalog_dir, prepared.source, sha, found.videos,
                                                          found.intervals, found.problems)
                        logger.info("%s: %s, %d long videos, %d intervals, %d quarantined", source, name,
                                    counts["videos"], counts["intervals"], counts["quarantined"])
                    row = catalog.merge_source(catalog_dir, ingest.source_row(prepared, datasets, config), samples,
                                               problems)
                    for path in source_copies.prune_unpacked(catalog_dir):
                        logger.info("removed %s: no source refers to it any more", path)
        if failed is not None:
            removed = source_copies.discard_unpacked(prepared.unpacked, catalog_dir)  # a failed ingest leaves no unpacked files behind
            if removed:
                logger.info("removed %s: unpacked for %s, which failed", removed, source)
            raise failed
        logger.info("%s: %s, %d samples, %d quarantined", source, "+".join(datasets), row["n_samples"],
                    row["n_quarantined"])
        detail = f"{'+'.join(datasets)}: {row['n_samples']} samples, {row['n_quarantined']} quarantined" if datasets else ""
        if long_sets:
            detail += ("; " if detail else "") + "+".join(long_sets) + ": " + ", ".join(
                f"{len(found.videos)} long videos, {len(found.intervals)} intervals" for found in long_sets.values())
        outcomes.append({"source": source, "status": "ingested", "detail": detail})
    result = catalog.summary(catalog_dir) | {"sources": outcomes, "catalog": catalog_dir,
                                             "long_videos": long_videos.summary(catalog_dir)}
    create_markdown_artifact(summary_markdown(result), key="ingest-summary", description="catalog after this ingest")
    return result


def summary_markdown(result: dict) -> str:
    """The ingest artifact: the catalog's counts per dataset, as Markdown."""
    lines = [f"# Catalog `{result['catalog']}`", "",
             f"{result['samples']} samples, {result['quarantined']} quarantined", "",
             "| dataset | samples | subjects | emotions | quarantined |", "|---|---|---|---|---|"]
    datasets = sorted(set(result["datasets"]) | set(result["quarantine_reasons"]))
    for name in datasets:
        info = result["datasets"].get(name, {"samples": 0, "subjects": 0, "emotions": {}})
        emotions = ", ".join(f"{k} {v}" for k, v in info["emotions"].items())
        reasons = ", ".join(f"{k} {v}" for k, v in result["quarantine_reasons"].get(name, {}).items())
        lines.append(f"| {name} | {info['samples']} | {info['subjects']} | {emotions} | {reasons or '-'} |")
    lines += ["", "| source | status | detail |", "|---|---|---|"]
    lines += [f"| {o['source']} | {o['status']} | {o['detail']} |" for o in result["sources"]]
    return "\n".join(lines)
