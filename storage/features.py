"""The feature store: one Zarr v3 group per (dataset, feature configuration), and its reader.

Layout of ``STORE/<dataset>-<config hash>/``:

- arrays ``onset``, ``apex``, ``middle`` (uint8 face crops; ``middle`` is the clip's middle frame
  floor((N+1)/2), the survey baseline's frame where a dataset has no apex), ``diff`` (float32 apex -
  onset, each in [-1, 1] first) and ``flow`` (float32 u, v, magnitude, strain), all ``(sample, channel, y, x)`` with dimension
  names; with a sequence (feature schema 3, ``sequence_length`` T): ``frames`` (uint8 grey, ``(sample, time, y, x)``,
  T frames onset to offset), ``flow_seq`` (float32 u, v between consecutive frames, ``(sample, time, channel, y,
  x)``, T - 1) and ``landmarks`` (float32 crop pixels, ``(sample, point, xy)``, 7 points); the conventions of each
  are configs/features.py's; a chunk is one sample, a shard holds ``shard_size`` samples, Zstd-compressed;
- attributes ``merflow``: the feature configuration, its hash, library versions, the dataset and
  the sample index (sample key -> row), which only the flow's driver writes;
- ``_done/<shard>.json``: the completion mark of a shard, written by the shard's only writer after
  its data, holding each sample's input fingerprint and outcome (features or quarantine reason,
  apex used, face box), and a CRC-32 of every row of every array as written (``checksums``). A
  shard without a mark, or whose mark's fingerprints differ from the catalog's, is computed again;
  its half-written data is never read.

Stored data is verified. A checksum per chunk (one sample's array), of the values as stored: it names
the samples a damage touches, it checks what training reads whatever the codec or store does to the
bytes, and it costs one CRC pass over arrays already in memory (benchmarks/README.md). Beside them the
mark keeps each shard file's size and CRC as written: a rerun checks a finished shard by its bytes
without decoding them, and decodes only a shard that differs, to name its samples. A rerun of the
features flow verifies every finished shard (``plan_shards``) and recomputes a damaged one, naming its
files and samples; every read for training (``FeatureReader.load``) checks the rows it returns and
refuses damaged ones (``StoreDamaged``, one line: which files, which samples, the command that repairs
them); ``verify_store`` decodes and checks a whole store (``merflow features --verify``). A deleted or
emptied shard file reads as zeros to Zarr, a truncated one fails Zarr's own index check: each is named.

Writers coordinate (storage/locks.py): the driver's planning (the sample index and array shapes in the
group attributes) holds the group's plan lock (``<group>/_claims/plan``), and a second driver waits for
it; a shard's writer holds the shard's claim (``<group>/_claims/<shard>``) from before it computes
until its mark is written, so two feature runs on one store split the shards: a shard claimed by a
live writer is left to it (``claim_shard`` gives None), a claim of a dead one is taken over.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import zarr
from zarr.codecs import ZstdCodec

# FIRST_FRAMES and SIZES: flows/cli/parser.py imports them from here.
from merflow.configs.features import (  # noqa: F401
    ARRAYS,
    FEATURE_SCHEMA_VERSION,
    FIRST_FRAMES,
    FLOW_CHANNELS,
    SEQUENCE_ARRAYS,
    SIZES,
    FeatureConfig,
)
from merflow.configs.names import check_name
from merflow.storage import locations, locks

DONE_DIR = "_done"
CLAIMS_DIR = "_claims"
DIMENSIONS = ("sample", "channel", "y", "x")  # the pair's arrays; the sequence arrays' (configs/features.py)
CHECKSUM = "crc32"  # of each row's values as stored (the array's dtype, C order)


class StoreDamaged(ValueError):
    """Stored features that do not match what their shard's mark recorded: one line naming the files,
    the samples and the command that recomputes them."""


@dataclass(frozen=True)
class Damage:
    """A shard whose stored data differs from what its mark recorded."""

    group: str
    shard: int
    files: tuple[str, ...]     # the damaged shard files (locations)
    samples: tuple[str, ...]   # the sample keys whose features are wrong or unreadable
    problem: str               # what is wrong, per file

    def line(self) -> str:
        shown = ", ".join(self.samples[:5]) + (f" and {len(self.samples) - 5} more" if len(self.samples) > 5 else "")
        return (f"{self.group} shard {self.shard}: {self.problem}; samples {shown or 'none of the catalog'}")


def row_checksums(values: np.ndarray) -> list[str]:
    """The CRC-32 of each row (one sample) of an array, as 8 hex digits."""
    values = np.ascontiguousarray(values)
    return [f"{zlib.crc32(row):08x}" for row in values]


@dataclass(frozen=True)
class ShardPlan:
    """One shard to compute: its group, its rows, and the catalog records (with fingerprints) of its samples."""

    group: str
    shard: int
    start: int                     # first row of the shard
    length: int                    # rows in the shard (the last one may be short)
    samples: tuple[tuple[int, dict], ...]   # (row, catalog record with its "fingerprint") to compute
    damage: Damage | None = field(default=None, compare=False)  # why a finished shard is computed again


def library_versions() -> dict[str, str]:
    """The installed versions of the libraries that shape the features, recorded with each group."""
    return {name: version(name) for name in ("merflow", "numpy", "opencv-contrib-python-headless", "zarr", "yuface")}


def normalise_url(store: str | Path) -> str:
    """Local paths as plain absolute paths (zarr's LocalStore); fsspec URLs as they are; file:// stripped
    (storage/locations.py)."""
    return locations.normalise(store)


def group_name(dataset: str, config: FeatureConfig) -> str:
    """The Zarr group of a dataset's features under one configuration: ``<dataset>-<config hash>``; the dataset
    a name (configs/names.py), so that the group is one folder of the store."""
    return f"{check_name(dataset, 'dataset name')}-{config.hash}"


class FeatureStore:
    """A feature store at a local path or an fsspec URL (memory://, s3://, ...)."""

    def __init__(self, url: str | Path):
        locations.require(url)  # s3:// without s3fs: one line naming the pip install (storage/locations.py)
        self.url = normalise_url(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)

    def open_root(self, mode: str = "a") -> zarr.Group:
        """The store's root Zarr group, opened in mode (``a`` creates it, ``r`` reads)."""
        return zarr.open_group(self.url, mode=mode)

    def groups(self) -> list[dict]:
        """(name, dataset, config hash, config) of every feature group in the store."""
        try:
            root = self.open_root("r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            return []
        found = []
        for name, group in root.groups():
            meta = group.attrs.get("merflow")
            if meta:
                found.append({"name": name, "dataset": meta["dataset"], "config_hash": meta["config_hash"],
                              "config": meta["config"], "samples": len(meta["sample_index"])})
        return found

    # ------------------------------------------------------------------ writing (driver side)
    def prepare_group(self, dataset: str, config: FeatureConfig, sample_keys: list[str]) -> dict[str, int]:
        """Create or grow the group so that every key has a row; returns the sample index.

        Rows are never reassigned, so shards already done stay done when samples are added. Holds the
        group's plan lock (two drivers planning at once take turns: the second sees the first's rows).
        """
        name = group_name(dataset, config)
        # Inside the group's folder: Zarr warns of any folder at the store's root that is not a group.
        with locks.hold(locations.join(self.url, name, CLAIMS_DIR, "plan"),
                        f"the sample index of {name} in {self.url}", wait=True):
            return self._prepare_group(dataset, config, sample_keys)

    def _prepare_group(self, dataset: str, config: FeatureConfig, sample_keys: list[str]) -> dict[str, int]:
        root = self.open_root("a")
        name = group_name(dataset, config)
        group = root.require_group(name)
        meta = group.attrs.get("merflow") or {
            "feature_schema": config.to_dict()["feature_schema"], "dataset": dataset, "config": config.to_dict(),
            "config_hash": config.hash, "versions": library_versions(), "shard_size": config.shard_size,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "sample_index": {},
        }
        index: dict[str, int] = dict(meta["sample_index"])
        for key in sample_keys:
            if key not in index:
                index[key] = len(index)
        n = max(len(index), 1)
        conventions = config.conventions()
        # An imported group holds the one array it imported; a computed one of feature schema 3 the sequence
        # arrays too (configs/features.py FeatureConfig.array_shapes). One sample a chunk, shard_size a shard.
        for array_name, (dtype, sample_shape) in config.array_shapes().items():
            shape = (n,) + sample_shape
            if array_name not in group:
                # Computed crops and difference: no attribute, as before the attribute existed.
                named = config.imported is not None or array_name not in ("onset", "apex", "middle", "diff")
                group.create_array(array_name, shape=shape, dtype=dtype, chunks=(1,) + shape[1:],
                                   shards=(config.shard_size,) + shape[1:], compressors=ZstdCodec(level=3),
                                   dimension_names=("sample",) + config.dimensions(array_name), fill_value=0,
                                   attributes={"channels": conventions[array_name]["channels"]} if named else None)
            elif group[array_name].shape[0] < n:
                group[array_name].resize(shape)
        # Attributes are rewritten only when rows were added: a rerun with nothing new writes nothing.
        if index != meta["sample_index"] or "merflow" not in group.attrs:
            meta["sample_index"] = index
            meta["versions"] = library_versions()
            group.attrs["merflow"] = meta
        return index

    def mark_path(self, group: str, shard: int) -> str:
        """Where a shard's completion mark lives: ``<group>/_done/<shard, 6 digits>.json``."""
        return f"{self.root.rstrip('/')}/{group}/{DONE_DIR}/{shard:06d}.json"

    def read_mark(self, group: str, shard: int) -> dict | None:
        """A shard's completion mark, or None when it has none (or a torn one from a killed writer)."""
        try:
            return json.loads(self.fs.cat_file(self.mark_path(group, shard)))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def claim_location(self, group: str, shard: int) -> str:
        """Where a shard's claim lives: ``<group>/_claims/<shard, 6 digits>`` (storage/locks.py adds the extension)."""
        return locations.join(self.url, group, CLAIMS_DIR, f"{shard:06d}")

    def claim_shard(self, group: str, shard: int) -> locks.Lock | None:
        """This process's claim on a shard (held until ``locks.release``), or None when another live writer
        holds it: leave the shard to it. A claim whose writer died is taken over."""
        try:  # per thread: two runs' tasks may run in one Dask worker process, in two threads
            return locks.acquire(self.claim_location(group, shard), f"shard {shard} of {group} in {self.url}",
                                 per_thread=True)
        except locks.LockHeld:
            return None

    def claim_holder(self, group: str, shard: int) -> locks.Holder | None:
        """Who holds (or last held) a shard's claim, for a progress line."""
        return locks.holder(self.claim_location(group, shard))

    def shard_file(self, group: str, array: str, shard: int) -> str:
        """The location of one array's file of a shard (Zarr's default chunk key: ``c/<shard>/0/0/0`` for the pair's
        arrays, one ``0`` per dimension after the sample's: ``c/<shard>/0/0/0/0`` for ``flow_seq``)."""
        zeros = len(SEQUENCE_ARRAYS[array][1]) if array in SEQUENCE_ARRAYS else len(DIMENSIONS) - 1
        return locations.join(self.url, group, array, "c", str(shard), *["0"] * zeros)

    def write_shard(self, group: str, shard: int, start: int, arrays: dict[str, np.ndarray], samples: dict) -> None:
        """Write one whole shard's rows, then its mark with each row's checksum, holding the shard's claim
        (taken here unless this process holds it: ``LockHeld`` if another writer does)."""
        with locks.hold(self.claim_location(group, shard), f"shard {shard} of {group} in {self.url}",
                        advice="another features run computes it", per_thread=True) as claim:
            self.clear_mark(group, shard)  # no old mark over half-written new data, if this writer dies midway
            opened = zarr.open_group(self.url, mode="r+")[group]
            checksums = {}
            for name, values in arrays.items():
                # The shard is written whole: its old file goes first, so that a damaged one (which Zarr would
                # read to update part of it, and fail on) is replaced, not merged into.
                locations.delete(self.shard_file(group, name, shard))
                stored = np.asarray(values, dtype=opened[name].dtype)  # the values as they read back
                opened[name][start:start + len(stored)] = stored
                checksums[name] = row_checksums(stored)
            # Each file's size and CRC as written, read back once: a rerun checks a shard by its bytes alone.
            files = {name: self._file_record(self.shard_file(group, name, shard)) for name in arrays}
            claim.check()  # a claim lost while this writer stalled: the new holder writes the mark
            path = self.mark_path(group, shard)
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            mark = {"shard": shard, "start": start, "samples": samples,
                    "checksums": {"algorithm": CHECKSUM, "arrays": checksums, "files": files}}
            self.fs.pipe_file(path, json.dumps(mark).encode())

    @contextmanager
    def claimed(self, group: str, shard: int) -> Iterator[locks.Lock | None]:
        """``claim_shard`` as a context manager: the claim (released at the end), or None (another writer's)."""
        claim = self.claim_shard(group, shard)
        try:
            yield claim
        finally:
            if claim is not None:
                locks.release(claim)

    def shard_done(self, plan: ShardPlan) -> bool:
        """Whether a shard is finished for this plan's inputs and intact (a writer holding its claim asks,
        so that a shard another run finished meanwhile is not computed twice)."""
        if not self.shard_current(plan):
            return False
        mark = self.read_mark(plan.group, plan.shard)
        return mark is not None and self.verify_shard(self.open_root("r")[plan.group], plan.group, plan.shard, mark,
                                                      quick=True) is None

    def shard_current(self, plan: ShardPlan) -> bool:
        """Whether a shard's mark already holds the inputs a plan wants (another run computed it meanwhile)."""
        mark = self.read_mark(plan.group, plan.shard)
        wanted = {record["sample_key"]: record["fingerprint"] for _, record in plan.samples}
        return bool(mark) and {k: v["fingerprint"] for k, v in mark["samples"].items()} == wanted

    def _file_record(self, location: str) -> dict | None:
        """{"size", "crc32"} of a shard file's bytes; None where it is absent (all fill values: Zarr wrote none)."""
        try:
            data = self.fs.cat_file(self.fs._strip_protocol(location))
        except FileNotFoundError:
            return None
        return {"size": len(data), "crc32": f"{zlib.crc32(data):08x}"}

    def files_intact(self, name: str, shard: int, mark: dict, arrays: tuple[str, ...] | None = None) -> bool:
        """Whether a shard's files hold exactly the bytes its writer recorded (a read of the bytes, no
        decoding: a rerun's check); False where the mark has no such record."""
        files = (mark.get("checksums") or {}).get("files")
        if not files:
            return False
        return all(self._file_record(self.shard_file(name, array, shard)) == files[array]
                   for array in arrays or tuple(files) if array in files)

    def verify_shard(self, group: zarr.Group, name: str, shard: int, mark: dict,
                     arrays: tuple[str, ...] | None = None, quick: bool = False) -> Damage | None:
        """Read a finished shard back and compare each row with its mark's checksums (of ``arrays``, or
        every array the mark covers); the damage found, or None. ``quick``: first compare the files' bytes
        with what the writer recorded, and decode only a shard whose bytes differ (a rerun's check). A
        mark written before checksums were recorded cannot be checked: None."""
        recorded = (mark.get("checksums") or {}).get("arrays")
        if not recorded or (quick and self.files_intact(name, shard, mark, arrays)):
            return None
        start = int(mark["start"])
        problems, files, bad_rows = [], [], set()
        for array in arrays or tuple(recorded):
            expected = recorded.get(array)
            if expected is None:
                continue
            file = self.shard_file(name, array, shard)
            try:
                actual = row_checksums(group[array][start:start + len(expected)])
            except Exception as error:  # noqa: BLE001 - any failure to read a shard is its damage, named
                problems.append(f"{file} cannot be read ({type(error).__name__}: {error})")
                files.append(file)
                bad_rows.update(range(len(expected)))
                continue
            wrong = [i for i, (a, e) in enumerate(zip(actual, expected)) if a != e]
            if wrong:
                try:
                    size = self.fs.size(self.fs._strip_protocol(file))
                except FileNotFoundError:
                    size = None
                what = ("is missing (reads as zeros)" if size is None else "is empty (reads as zeros)" if size == 0
                        else f"holds other values than were written in {len(wrong)} of {len(expected)} rows")
                problems.append(f"{file} {what}")
                files.append(file)
                bad_rows.update(wrong)
        if not problems:
            return None
        index = group.attrs["merflow"]["sample_index"]
        keys = tuple(sorted(k for k in mark["samples"] if index.get(k, -1) - start in bad_rows))
        return Damage(name, shard, tuple(files), keys, "; ".join(problems))

    def plan_shards(self, records: list[dict], config: FeatureConfig,
                    verify: bool = True) -> tuple[list[ShardPlan], int]:
        """The shards that need computing (no mark, inputs changed since, or, with ``verify``, stored
        data that differs from the mark's checksums: the plan's ``damage`` says what), and how many are done.

        ``records`` are catalog rows with their input ``fingerprint`` (tasks.features.with_fingerprints).
        Runs on the driver, the only writer of group attributes: it assigns rows to new samples (under
        the group's plan lock). Marks are dropped by the shard's writer, holding its claim, not here: a
        shard another run computes right now keeps its mark.
        """
        plans, done = [], 0
        by_dataset: dict[str, list[dict]] = {}
        for record in records:
            by_dataset.setdefault(record["dataset"], []).append(record)
        for dataset, members_of_dataset in sorted(by_dataset.items()):
            index = self.prepare_group(dataset, config, [r["sample_key"] for r in members_of_dataset])
            group = group_name(dataset, config)
            opened = self.open_root("r")[group] if verify else None
            by_row = {index[r["sample_key"]]: r for r in members_of_dataset}
            n_rows, shard_size = len(index), config.shard_size
            for shard, start in enumerate(range(0, n_rows, shard_size)):
                length = min(shard_size, n_rows - start)
                # Rows of samples no longer in the catalog stay unmarked: they are never read.
                members = tuple((row, by_row[row]) for row in range(start, start + length) if row in by_row)
                wanted = {record["sample_key"]: record["fingerprint"] for _, record in members}
                mark = self.read_mark(group, shard)
                damage = None
                if mark and {k: v["fingerprint"] for k, v in mark["samples"].items()} == wanted:
                    damage = self.verify_shard(opened, group, shard, mark, quick=True) if verify else None
                    if damage is None:
                        done += 1
                        continue
                plans.append(ShardPlan(group, shard, start, length, members, damage))
        return plans, done

    def clear_mark(self, group: str, shard: int) -> None:
        """Forget a shard before recomputing it, so a crash midway cannot leave an old mark over new data
        (its writer calls it, holding the shard's claim)."""
        path = self.mark_path(group, shard)
        if self.fs.exists(path):
            self.fs.rm_file(path)


class FeatureReader:
    """Features of one group, by sample key: what training reads."""

    def __init__(self, store: FeatureStore, name: str):
        self.store, self.name = store, name
        self.group = store.open_root("r")[name]
        meta = self.group.attrs["merflow"]
        self.dataset: str = meta["dataset"]
        self.config = FeatureConfig.from_dict(meta["config"])
        self.attributes = meta
        self._index: dict[str, int] = meta["sample_index"]
        self._table: pd.DataFrame | None = None
        self._marks: dict[int, dict] = {}  # shard -> its mark, as read by table()

    def table(self) -> pd.DataFrame:
        """One row per sample with a completed shard: status, reason, apex used, face box, fingerprint."""
        if self._table is None:
            rows = []
            shard_size = self.attributes["shard_size"]
            for shard in range((len(self._index) + shard_size - 1) // shard_size):
                mark = self.store.read_mark(self.name, shard)
                if mark:
                    self._marks[shard] = mark
                for key, info in (mark or {}).get("samples", {}).items():
                    rows.append({"sample_key": key, "row": self._index[key], **info})
            self._table = pd.DataFrame(rows)
        return self._table

    @property
    def sample_keys(self) -> list[str]:
        """Keys with valid features, in row order."""
        table = self.table()
        if table.empty:
            return []
        return table.loc[table["status"] == "ok"].sort_values("row")["sample_key"].tolist()

    def load(self, keys: list[str], arrays: tuple[str, ...] = ("diff", "flow")) -> dict[str, np.ndarray]:
        """Stacked arrays for these keys, in their order, each row checked against its shard's mark.
        Keys without valid features raise KeyError; rows that differ from what was written (or shards
        that cannot be read) raise ``StoreDamaged`` naming the files and samples."""
        valid = set(self.sample_keys)
        missing = [k for k in keys if k not in valid]
        if missing:
            raise KeyError(f"no valid features in {self.name} for {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        rows = np.array([self._index[k] for k in keys], dtype=np.int64)
        unique, inverse = np.unique(rows, return_inverse=True)
        try:
            loaded = {name: self.group[name].oindex[unique] for name in arrays}
        except Exception:  # noqa: BLE001 - a shard that cannot be read: find which, and name it
            loaded = None
        if loaded is None or not self._rows_match(unique, loaded):
            self._raise_damage(sorted({int(r) // self.attributes["shard_size"] for r in unique}), arrays)
        return {name: values[inverse] for name, values in loaded.items()}

    def _rows_match(self, rows: np.ndarray, loaded: dict[str, np.ndarray]) -> bool:
        shard_size = self.attributes["shard_size"]
        for name, values in loaded.items():
            for row, actual in zip(rows.tolist(), row_checksums(values)):
                mark = self._marks.get(row // shard_size)
                expected = ((mark or {}).get("checksums") or {}).get("arrays", {}).get(name)
                if expected is not None and expected[row - mark["start"]] != actual:
                    return False
        return True

    def _raise_damage(self, shards: list[int], arrays: tuple[str, ...]) -> None:
        found = [damage for shard in shards if shard in self._marks and
                 (damage := self.store.verify_shard(self.group, self.name, shard, self._marks[shard], arrays))]
        if not found:  # not reproducible shard by shard: a read error of the store itself
            raise StoreDamaged(f"the feature store {self.store.url} could not be read ({self.name}, shards "
                               f"{shards[:10]}); check the storage and run `merflow features --verify`")
        raise StoreDamaged(damaged_line(self.store.url, found))


def damaged_line(store: str, found: list[Damage]) -> str:
    """One line for damaged shards: each one's files and samples, and the command that recomputes them."""
    shown = "; ".join(d.line() for d in found[:3]) + (f"; and {len(found) - 3} more shards" if len(found) > 3 else "")
    samples = sum(len(d.samples) for d in found)
    return (f"the feature store {store} is damaged ({samples} samples): {shown}; run `merflow features --catalog "
            f"CATALOG --store {store}` with the same settings to recompute them (`merflow features --verify` "
            "checks the whole store)")


def open_features(store: str | Path, dataset: str, config: FeatureConfig | None = None) -> FeatureReader:
    """The reader of a dataset's features; with no config, the store must hold exactly one for that dataset."""
    feature_store = FeatureStore(store)
    if config is not None:
        return FeatureReader(feature_store, group_name(dataset, config))
    candidates = [g for g in feature_store.groups() if g["dataset"] == dataset]
    if len(candidates) != 1:
        raise LookupError(f"{len(candidates)} feature groups for {dataset} in {feature_store.url}: "
                          f"{[g['name'] for g in candidates]}; pass the FeatureConfig to choose")
    return FeatureReader(feature_store, candidates[0]["name"])


def store_summary(feature_store: FeatureStore, config: FeatureConfig) -> dict:
    """Per group of ``config`` in the store: its dataset, valid samples, quarantine reasons, spotted apexes
    and centre crops (no face found), as ``{"groups": {name: {...}}}``."""
    groups = {}
    for group in feature_store.groups():
        if group["config_hash"] != config.hash:
            continue
        table = open_features(feature_store.url, group["dataset"], config).table()
        ok = table[table["status"] == "ok"] if not table.empty else table
        groups[group["name"]] = {
            "dataset": group["dataset"], "samples": int(len(ok)),
            "quarantined": {k: int(v) for k, v in table.loc[table["status"] != "ok", "reason"].value_counts().items()}
            if not table.empty else {},
            "apex_spotted": int((ok["apex_source"] == "spotted").sum()) if len(ok) else 0,
            # Imported samples' marks have no face: nothing was detected.
            "no_face_centre_crop": int(sum(isinstance(f, dict) and f.get("detector") == "none" for f in ok["face"]))
            if len(ok) and "face" in ok else 0,
        }
    return {"groups": groups}


def first_samples(feature_store: FeatureStore, groups: list[str], arrays: tuple[str, ...]) -> list[tuple[str, dict]]:
    """(key, one sample's ``arrays``) of the first valid sample of each of ``groups`` that has one."""
    found = []
    for name in groups:
        reader = FeatureReader(feature_store, name)
        for key in reader.sample_keys[:1]:
            found.append((key, {k: v[0] for k, v in reader.load([key], arrays).items()}))
    return found


def find_sample(store: str, sample_key: str, arrays: tuple[str, ...]) -> tuple[pd.Series, dict]:
    """(mark row, ``arrays``) of a sample in whichever group of the store holds it; KeyError if none does."""
    feature_store = FeatureStore(store)
    for group in feature_store.groups():
        reader = FeatureReader(feature_store, group["name"])
        if sample_key in reader.sample_keys:
            absent = [name for name in arrays if name not in reader.group]
            if absent:
                raise LookupError(f"{sample_key} is in feature group {reader.name}, which holds no "
                                  f"{', '.join(absent)} (it holds {', '.join(sorted(reader.config.arrays()))}"
                                  f"{', imported' if reader.config.imported else ''}): there is nothing to draw")
            loaded = reader.load([sample_key], arrays)
            table = reader.table()
            return table[table["sample_key"] == sample_key].iloc[0], {k: v[0] for k, v in loaded.items()}
    raise KeyError(f"{sample_key} has no valid features in {feature_store.url}")


def _text(value) -> str:
    return value if isinstance(value, str) else ""  # a mark's missing field reads as NaN from the table


def read_feature_arrays(store: str, datasets: list[str], config: FeatureConfig,
                        arrays: tuple[str, ...] = ("diff", "flow")) -> dict:
    """Every valid sample's ``arrays`` of the given datasets' groups of ``config``, read whole into memory,
    as the keyword arguments of training.data.FeatureSource: ``arrays`` (name -> sample key -> array),
    ``fingerprints`` (each valid sample's input fingerprint, from the shards' completion marks),
    ``quarantined`` (sample key -> {"reason", "detail"}), ``apex_source`` (sample key -> annotated, spotted,
    imported ...), ``conventions`` (array name -> origin, channels in stored order, scaling: the group's
    configuration's, configs/features.py), ``groups`` (the groups read, for messages), ``store`` and ``config``.

    Of ``arrays``, those that every group holds are read; one that a group lacks is left out (an imported
    group holds only what it imported, a group written before feature schema 2 no crops), and the model
    that needs it says so (``FeatureSource.require``: one line naming the array and what to do). A dataset
    without features of ``config`` is a LookupError naming the groups there."""
    feature_store = FeatureStore(store)
    names = {g["name"] for g in feature_store.groups()}
    readers = []
    for dataset in sorted(set(datasets)):
        if group_name(dataset, config) not in names:
            raise LookupError(f"no {dataset} features with configuration {config.hash} in {feature_store.url}: "
                              f"run `merflow features` (or `merflow import-features`) first (groups there: "
                              f"{sorted(names)})")
        readers.append(FeatureReader(feature_store, group_name(dataset, config)))
    held = [name for name in arrays if all(name in reader.group for reader in readers)]
    loaded: dict[str, dict[str, np.ndarray]] = {name: {} for name in held}
    fingerprints: dict[str, str] = {}
    quarantined: dict[str, dict] = {}
    apex_source: dict[str, str] = {}
    for reader in readers:
        for row in reader.table().to_dict("records"):
            if row.get("status") == "ok":
                fingerprints[row["sample_key"]] = str(row.get("fingerprint"))
                apex_source[row["sample_key"]] = _text(row.get("apex_source"))
            else:
                quarantined[row["sample_key"]] = {"reason": _text(row.get("reason")) or "quarantined",
                                                  "detail": _text(row.get("detail"))}
        keys = reader.sample_keys
        stacked = reader.load(keys, tuple(held))
        for name in held:
            for index, key in enumerate(keys):
                loaded[name][key] = stacked[name][index]
    conventions = {name: convention for name, convention in config.conventions().items() if name in held}
    return {"config": config, "arrays": loaded, "fingerprints": fingerprints, "quarantined": quarantined,
            "apex_source": apex_source, "conventions": conventions,
            "groups": tuple(reader.name for reader in readers), "store": feature_store.url}


def verify_store(store: str, fingerprints: dict[str, str] | None = None, datasets: set[str] | None = None) -> dict:
    """Check every group of a store (of ``datasets``, if given) shard by shard against the marks'
    checksums: ``merflow features --verify``. With ``fingerprints`` (sample key -> the catalog's input
    fingerprint, tasks.features.with_fingerprints), also count the catalog's samples a group lacks or holds
    from other inputs. Returns ``{"store", "groups": {name: counts and "damaged": [Damage]}}``."""
    feature_store = FeatureStore(store)
    report = {"store": feature_store.url, "groups": {}}
    for info in feature_store.groups():
        if datasets and info["dataset"] not in datasets:
            continue
        reader = FeatureReader(feature_store, info["name"])
        table = reader.table()
        shard_size = reader.attributes["shard_size"]
        n_shards = (len(reader._index) + shard_size - 1) // shard_size
        counts = {"dataset": info["dataset"], "config_hash": info["config_hash"], "shards": n_shards, "verified": 0,
                  "unverifiable": 0, "not_computed": 0, "damaged": []}
        for shard in range(n_shards):
            mark = reader._marks.get(shard)
            if mark is None:
                counts["not_computed"] += 1
            elif not (mark.get("checksums") or {}).get("arrays"):
                counts["unverifiable"] += 1  # written before checksums were recorded
            elif (damage := feature_store.verify_shard(reader.group, info["name"], shard, mark)) is not None:
                counts["damaged"].append(damage)
            else:
                counts["verified"] += 1
        if fingerprints is not None:
            stored = dict(zip(table["sample_key"], table["fingerprint"])) if not table.empty else {}
            wanted = {k: v for k, v in fingerprints.items() if k.split("/", 1)[0] == info["dataset"]}
            counts["samples_missing"] = sum(k not in stored for k in wanted)
            counts["samples_changed"] = sum(k in stored and stored[k] != v for k, v in wanted.items())
        report["groups"][info["name"]] = counts
    return report


def describe_feature_groups(groups: list[dict]) -> str:
    """Each configuration of these feature groups (``FeatureStore.groups()``) with the settings that tell them apart."""
    by_hash: dict[str, list[dict]] = {}
    for group in groups:
        by_hash.setdefault(group["config_hash"], []).append(group)
    described = []
    for config_hash, members in sorted(by_hash.items()):
        config = members[0]["config"]
        imported = config.get("imported")
        if imported:
            settings = (f"imported {imported.get('format')} from {imported.get('source')} (sha256 "
                        f"{str(imported.get('source_sha256'))[:12]}), {imported.get('array')} "
                        f"{'/'.join(imported.get('channels', []))}, size {config.get('size')}")
        else:
            settings = (f"size {config.get('size')}, flow {config.get('motion', {}).get('algorithm')}, detector "
                        f"{config.get('face', {}).get('detector')}, no face {config.get('face', {}).get('no_face')}, "
                        f"first frame {config.get('first_frame', 'onset')}")
        datasets = ", ".join(sorted(g["dataset"] for g in members))
        described.append(f"{config_hash} ({settings}; {datasets})")
    return "; ".join(described)


def resolve_feature_config(store: str, datasets: list[str], chosen: str | None = None) -> FeatureConfig:
    """The one feature configuration of these datasets in the store, or the one whose hash starts with
    ``chosen`` (``--feature-config``); where there are several and none is chosen, the error lists them
    with their settings."""
    groups = [g for g in FeatureStore(store).groups() if g["dataset"] in set(datasets) | {"ckplus"}]
    if chosen:
        picked = [g for g in groups if g["config_hash"].startswith(chosen)]
        hashes = {g["config_hash"] for g in picked}
        if len(hashes) != 1:
            raise LookupError(f"{'no' if not hashes else 'more than one'} feature configuration {chosen!r} in "
                              f"{store}; it holds: {describe_feature_groups(groups) or 'no features'}")
        lacking = sorted(set(datasets) - {g["dataset"] for g in picked})
        if lacking:
            raise LookupError(f"feature configuration {hashes.pop()} has no features of {', '.join(lacking)} in "
                              f"{store}: run `merflow features` with its settings for them; the store holds: "
                              f"{describe_feature_groups(groups)}")
        return FeatureConfig.from_dict(picked[0]["config"])
    if len({g["config_hash"] for g in groups if g["dataset"] in datasets}) > 1:
        raise LookupError(f"{store} holds features of several configurations for {', '.join(datasets)}: pass "
                          f"--feature-config HASH to choose one of {describe_feature_groups(groups)}")
    configs = {open_features(store, d).config for d in datasets}
    if len(configs) != 1:
        raise LookupError(f"the datasets {datasets} have features of {len(configs)} configurations in {store}")
    return configs.pop()
