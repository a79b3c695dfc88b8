"""The import flow (`merflow import-features`): features someone else's pipeline made -> the sample catalog and
the feature store, as they are.

One source at a time, like an ingest: storage fingerprints it (its content's checksum), the catalog's sources
table says whether it is unchanged (then nothing is read), tasks/imports.py reads it (named, labelled, grouped,
checked: what cannot be used is quarantined with the reason), storage merges its rows into the catalog, and the
store writes its array (``flow`` or ``apex``) into the feature group of its configuration (configs/features.py
``ImportedConfig``: the source, its checksum, the channel order and scaling), shard by shard with the same
completion marks as computed features (storage/features.py): a rerun writes only the shards without a mark.
The survey's image file pairs with its label file (C4.mat with label4.mat): both are SOURCEs.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from merflow.configs.base import choice
from merflow.configs.features import IMPORT_FORMATS, FeatureConfig, ImportedConfig
from merflow.storage import catalog, locations
from merflow.storage import sources as source_copies
from merflow.storage.features import FeatureStore, ShardPlan, group_name, store_summary
from merflow.tasks import imports

IMPORT_SIZE = 28        # STSTNet's and the survey's images are 28x28 (configs/features.py SIZES)
ImportFormat = choice(IMPORT_FORMATS)


@dataclass(frozen=True)
class ImportUnit:
    """One thing to import: a source (its local copy, kind and checksum) and, for the survey's images, its labels."""

    source: str                  # as recorded: a local path made absolute, or the URL
    local: Path
    kind: str                    # folder | mat | an archive's format
    sha: str
    format: str
    labels: tuple[str, Path, str] | None = None   # (as recorded, local copy, sha256) of the label file


def _fetched(source: str, catalog_dir: str) -> tuple[str, Path, str, str]:
    """(the source as recorded, its local copy, kind, content checksum): storage/sources.py."""
    recorded = locations.normalise(source)
    local = source_copies.fetch(recorded, catalog_dir)
    return (recorded, local, *source_copies.import_fingerprint(source, local))


@task(name="fingerprint")
def plan_units(sources: list[str], catalog_dir: str, fmt: str | None) -> list[ImportUnit]:
    """Each source fetched and fingerprinted, its format told (or ``fmt``), the survey's image files paired with
    their label files: both given as SOURCEs, one of each, or paired by the number ending their names (C4.mat
    with label4.mat). An image file without its labels, or labels without images, is an error naming them."""
    units, images, labels = [], [], []
    for source in sources:
        recorded, local, kind, sha = _fetched(source, catalog_dir)
        if kind not in ("folder", "mat"):  # an archive: unpacked once into the catalog's raw/<sha>/, as an ingest
            local = source_copies.unpack(local, kind, sha, catalog_dir).folder
        found = fmt or imports.detect_format(local)
        if found == "survey-mat":
            (images if imports.mat_role(local) == "images" else labels).append((recorded, local, sha))
        else:
            units.append(ImportUnit(recorded, local, kind, sha, found))
    for image, label in _pairs(images, labels):
        units.append(ImportUnit(image[0], image[1], "mat", image[2], "survey-mat", label))
    return units


def _number(path: Path) -> str | None:
    found = re.search(r"(\d+)$", path.stem)
    return found.group(1) if found else None


def _pairs(images: list, labels: list) -> list[tuple]:
    if len(images) == 1 and len(labels) == 1:
        return [(images[0], labels[0])]
    by_number = {}
    for label in labels:
        by_number.setdefault(_number(label[1]), []).append(label)
    pairs = []
    for image in images:
        matched = by_number.get(_number(image[1]), [])
        if len(matched) != 1:
            raise ValueError(f"{image[0]}: the survey's images need their label file, given as another SOURCE "
                             f"(one of each, or named with the same number: C4.mat with label4.mat); "
                             f"{'none' if not matched else len(matched)} found among "
                             f"{', '.join(str(lab[0]) for lab in labels) or 'the sources'}")
        pairs.append((image, matched[0]))
    unused = [label[0] for label in labels if not any(label is pair[1] for pair in pairs)]
    if unused:
        raise ValueError(f"{', '.join(unused)}: a label file without the survey's images it labels (give C4.mat or "
                         "C9.mat too)")
    return pairs


def import_config(unit: ImportUnit, sample_list: tuple[str, str] | None, size: int, shard_size: int) -> FeatureConfig:
    """The feature configuration of a unit: imported, with its source, checksums, channel order and scaling."""
    convention = imports.CONVENTIONS[unit.format]
    listed = sample_list if unit.format != "survey-mat" else None
    return FeatureConfig(size=size, shard_size=shard_size, imported=ImportedConfig(
        format=unit.format, source=unit.source, source_sha256=unit.sha,
        labels=unit.labels[0] if unit.labels else None, labels_sha256=unit.labels[2] if unit.labels else None,
        sample_list=listed[0] if listed else None, sample_list_sha256=listed[1] if listed else None,
        array=convention["array"], channels=convention["channels"], scaling=convention["scaling"],
        order=convention["order"], resized=imports.APEX_RESIZE if unit.format == "apex-images" else None))


def unchanged_reason(sources, source: str, sha: str, config: FeatureConfig, dataset: str | None) -> str | None:
    """Why a source needs no catalog work: the same content imported with the same settings (its configuration,
    which holds the label file's and the list's checksums too, and the dataset chosen); None when it needs work."""
    recorded = recorded_config(config, dataset)
    same = sources[(sources["source_sha256"] == sha) & (sources["config"] == recorded)]
    if (same["source"] == source).any():
        return "unchanged since its last import"
    return None


def fingerprint(sha: str, key: str) -> str:
    """A sample's input fingerprint in the store's marks: its source's checksum and its key (a changed source
    is another configuration, another group, altogether)."""
    return hashlib.sha256(f"{sha}/{key}".encode()).hexdigest()[:20]


@task(name="read-source")
def read_unit(unit: ImportUnit, sample_list: str | None, size: int, dataset: str | None) -> imports.ImportedSamples:
    """The unit read by tasks/imports.py: its rows, quarantine rows and arrays."""
    if unit.format == "survey-mat":
        result = imports.read_survey(unit.local, unit.labels[1], dataset)
        if result.size != size:
            raise ValueError(f"{unit.source}: its images are {result.size}x{result.size}; pass --size {result.size}")
        return result
    if sample_list is None:
        raise ValueError(f"{unit.source} ({unit.format}) names its samples by file only: give the list that names, "
                         "labels and groups them (--list combined_3class_gt.csv)")
    if unit.format == "flow-folds":
        return imports.read_folds(unit.local, Path(sample_list), size, dataset)
    return imports.read_folder(unit.local, Path(sample_list), unit.format, size, dataset)


def write_shards(store: FeatureStore, plans: list[ShardPlan], config: FeatureConfig, read: imports.ImportedSamples,
                 sha: str) -> int:
    """Each planned shard's rows (the imported arrays as they are) and its mark, through storage/features.py."""
    name = config.imported.array
    dtype, channels = config.arrays()[name]
    for plan in plans:
        values = np.zeros((plan.length, channels, config.size, config.size), dtype=dtype)
        marks = {}
        for row, record in plan.samples:
            key = record["sample_key"]
            values[row - plan.start] = read.arrays[key]
            marks[key] = {"status": "ok", "reason": None, "fingerprint": record["fingerprint"],
                          "apex_source": "imported", "origin": "imported", **read.marks.get(key, {})}
        store.write_shard(plan.group, plan.shard, plan.start, {name: values}, marks)
    return len(plans)


@flow(name="import-features", log_prints=True)
def import_flow(sources: list[str], catalog_dir: str, store: str, sample_list: str | None = None,
                dataset: str | None = None, fmt: ImportFormat | None = None, size: int = IMPORT_SIZE,
                shard_size: int = 16) -> dict:
    """Import features made elsewhere (the survey's .mat files, STSTNet-style flow images or fold trees, apex
    frames) into the catalog at ``catalog_dir`` and the feature store ``store``; a rerun skips what is unchanged."""
    logger = get_run_logger()
    locations.require(catalog_dir, store, *sources)
    catalog_dir = locations.normalise(catalog_dir)
    locations.makedirs(catalog_dir)
    listed = None
    if sample_list is not None:
        list_path = Path(locations.normalise(sample_list))
        if not list_path.is_file():
            raise FileNotFoundError(f"the list {sample_list} does not exist")
        listed = (str(list_path), source_copies.sha256_file(list_path))
        sample_list = str(list_path)
    feature_store = FeatureStore(store)
    outcomes, configs = [], []
    for unit in plan_units(sources, catalog_dir, fmt):
        config = import_config(unit, listed, size, shard_size)
        configs.append(config)
        reason = unchanged_reason(catalog.read_sources(catalog_dir), unit.source, unit.sha, config, dataset)
        read = None
        if reason:
            logger.info("%s: %s; catalog not rewritten", unit.source, reason)
        else:
            read = read_unit(unit, sample_list, size, dataset)
            row = catalog.merge_source(catalog_dir, source_row(unit, read, config, dataset), read.samples,
                                       read.problems)
            logger.info("%s (%s): %d samples, %d quarantined", unit.source, unit.format, row["n_samples"],
                        row["n_quarantined"])
        samples = catalog.read_samples(catalog_dir)
        records = [{"sample_key": k, "dataset": d, "fingerprint": fingerprint(unit.sha, k)}
                   for k, d in zip(*(samples.loc[samples["source"] == unit.source, c] for c in ("sample_key", "dataset")))]
        plans, done = feature_store.plan_shards(records, config)
        written = 0
        if plans:
            read = read or read_unit(unit, sample_list, size, dataset)
            written = write_shards(feature_store, plans, config, read, unit.sha)
        logger.info("%s: %d shards written, %d already done (feature configuration %s)", unit.source, written, done,
                    config.hash)
        quarantine = catalog.read_quarantine(catalog_dir)
        problems = quarantine[quarantine["source"] == unit.source][["sample_key", "reason", "detail"]]
        outcomes.append({
            "source": unit.source, "format": unit.format, "status": "skipped" if reason else "imported",
            "labels": unit.labels[0] if unit.labels else None, "samples": len(records),
            "quarantined": problems.to_dict("records"), "notes": read.notes if read else [],
            "config_hash": config.hash, "array": config.imported.array,
            "channels": list(config.imported.channels), "groups": sorted({group_name(r["dataset"], config) for r in records}),
            "shards_written": written, "shards_done": done,
            "detail": (reason + "; " if reason else "") + f"{len(records)} samples, {len(problems)} quarantined, "
                      f"{written} shards written, {done} already done"})
    groups = {}
    for config in configs:
        groups |= store_summary(feature_store, config)["groups"]
    result = catalog.summary(catalog_dir) | {"sources": outcomes, "catalog": catalog_dir, "store": feature_store.url,
                                             "groups": groups}
    create_markdown_artifact(summary_markdown(result), key="import-summary", description="what this import brought")
    return result


def source_row(unit: ImportUnit, read: imports.ImportedSamples, config: FeatureConfig, dataset: str | None) -> dict:
    """The source's row of the catalog's sources table: its checksum, format, datasets and configuration."""
    from datetime import datetime, timezone

    return {"source": unit.source, "source_sha256": unit.sha, "kind": unit.format, "root": str(unit.local),
            "datasets": read.datasets, "ingested_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": recorded_config(config, dataset)}


def recorded_config(config: FeatureConfig, dataset: str | None) -> str:
    """What the sources table records of an import's settings: the feature group's configuration (``to_dict``) and
    the dataset chosen (``--dataset``: which rows of the list), as JSON."""
    return json.dumps({"feature_config": config.to_dict(), "dataset": dataset}, sort_keys=True)


def summary_markdown(result: dict) -> str:
    """The import artifact: each source's outcome, its quarantined samples, and the feature groups, as Markdown."""
    lines = [f"# Import into `{result['catalog']}` and `{result['store']}`", "",
             "| source | format | status | detail | feature configuration |", "|---|---|---|---|---|"]
    lines += [f"| {o['source']} | {o['format']} | {o['status']} | {o['detail']} | {o['config_hash']} |"
              for o in result["sources"]]
    for outcome in result["sources"]:
        for note in outcome["notes"]:
            lines.append(f"- {note}")
        for problem in outcome["quarantined"]:
            lines.append(f"- quarantined {problem['sample_key']}: {problem['reason']} ({problem['detail']})")
    return "\n".join(lines)


def configs_of(result: dict) -> list[str]:
    """The feature configurations a result's sources went into (for `merflow train --feature-config`)."""
    return sorted({o["config_hash"] for o in result["sources"]})

