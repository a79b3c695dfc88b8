"""A trained model's bundle on disk (or an object store): a folder that `merflow export` writes and
`merflow recognise` reads, with nothing in it that executes.

Layout of ``MODEL/``:

- ``bundle.json``: everything but the weights, as JSON: the source run and the data it read (results,
  run, catalog, store, subjects), versions, the per-frame and clip feature configurations, each spotter's
  settings (frames and seconds, the fps they were set at), the recognition model's name, configuration
  and classes in order, the golden check's expected outputs (training/deploy.py);
- ``<name>.npz``: arrays only (``numpy.savez``, read with ``allow_pickle=False``): SOFTNet's state_dict
  per type (``spotter-micro.npz``), the recognition model's weights (``recogniser.npz``), the golden input
  frames (``golden.npz``). No pickled module or object: loading a bundle runs none of its bytes;
- ``manifest.json``: every other file with its size and SHA-256, and ``hash``, the SHA-256 of that list
  (canonical JSON): the bundle's identity (recognise's results name it) and its integrity check. Written
  last: a folder without it is no bundle.

``read_bundle`` checks the manifest's own hash, then every file's size and hash, before anything is used:
a file changed or missing after export is one line naming it (``BundleIntegrityError``). The hashes detect
damage and edits, not a forger who rewrites the manifest too: a bundle is as trustworthy as where it came
from. Written whole or absent (storage/locations.py ``publish_folder``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os

import numpy as np

from merflow.storage import locations, locks

MANIFEST = "manifest.json"
CARD = "bundle.json"
MANIFEST_FORMAT = "merflow-model-manifest"
MANIFEST_VERSION = 1


class BundleIntegrityError(ValueError):
    """A bundle whose files do not match its manifest (damaged, edited, incomplete): one line naming the file."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Arrays as the bytes of an .npz file (compressed; no object arrays: they would need pickle)."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array {name!r} holds Python objects: a bundle stores numbers only")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: np.asarray(value) for name, value in arrays.items()})
    return buffer.getvalue()


def read_npz(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of .npz bytes, never unpickling anything."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def manifest_hash(files: dict[str, dict]) -> str:
    """The SHA-256 of the file list (name -> {"bytes", "sha256"}) as canonical JSON: the bundle's identity."""
    return _sha256(json.dumps({"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "files": files},
                              sort_keys=True).encode())


def writing(location: str | os.PathLike):
    """The writer lock of the bundle folder ``location`` (a context manager; storage/locks.py), kept beside it
    in ``<parent>/.locks/``: a second export into the same folder while one works is refused with one line."""
    where = locations.normalise(location)
    digest = hashlib.sha256(where.encode()).hexdigest()[:16]
    return locks.hold(locks.lock_location(locations.parent(where), f"bundle-{digest}"), f"the bundle folder {where}",
                      reentrant=False, advice="another merflow export writes it: wait for it, or choose another --out")


def write_bundle(location: str | os.PathLike, card: dict, arrays: dict[str, dict[str, np.ndarray]]) -> dict:
    """Write a bundle: ``card`` as bundle.json, each entry of ``arrays`` as ``<name>.npz``, then the manifest;
    whole or absent. An existing bundle at ``location`` is replaced; any other non-empty folder is refused.
    Returns the manifest."""
    files = {CARD: json.dumps(card, indent=1, sort_keys=True, default=_json_default).encode()}
    for name, values in arrays.items():
        files[f"{name}.npz"] = npz_bytes(values)
    listed = {name: {"bytes": len(data), "sha256": _sha256(data)} for name, data in sorted(files.items())}
    manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "files": listed,
                "hash": manifest_hash(listed), "card": CARD}
    files[MANIFEST] = json.dumps(manifest, indent=1, sort_keys=True).encode()
    locations.publish_folder(location, files, MANIFEST, may_replace=is_bundle)
    return manifest


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def is_bundle(location: str | os.PathLike) -> bool:
    """Whether ``location`` holds a bundle's manifest (what ``write_bundle`` may replace)."""
    return locations.isfile(locations.join(location, MANIFEST))


def read_manifest(location: str | os.PathLike) -> dict:
    """The manifest, its own hash checked; a FileNotFoundError or BundleIntegrityError (one line) otherwise."""
    where = locations.normalise(location)
    if not locations.exists(where):
        raise FileNotFoundError(f"no model bundle at {where}: make one with `merflow export --results R --run RUN "
                                f"--out {where}`")
    try:
        manifest = json.loads(locations.read_bytes(locations.join(where, MANIFEST)))
    except FileNotFoundError:
        raise BundleIntegrityError(f"{where} is not a model bundle (no {MANIFEST}: not exported by merflow, or its "
                                   "export did not finish)") from None
    except (ValueError, UnicodeDecodeError):
        raise BundleIntegrityError(f"{where}/{MANIFEST} is not readable JSON: the bundle is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise BundleIntegrityError(f"{where}/{MANIFEST} is not a merflow model manifest")
    if int(manifest.get("version", 0)) > MANIFEST_VERSION:
        raise BundleIntegrityError(f"{where} is a bundle of format version {manifest.get('version')}; this merflow "
                                   f"reads version {MANIFEST_VERSION}: upgrade merflow")
    files = manifest.get("files")
    if not isinstance(files, dict) or manifest.get("hash") != manifest_hash(files):
        raise BundleIntegrityError(f"{where}/{MANIFEST} was changed after export: its hash does not match its file "
                                   "list (re-export the model, or restore the manifest)")
    return manifest


def read_bundle(location: str | os.PathLike) -> tuple[dict, dict[str, dict[str, np.ndarray]], dict]:
    """(the card, each .npz's arrays by name, the manifest) of a bundle, every file checked against the manifest
    first: a missing, resized or changed file is a BundleIntegrityError naming it."""
    where = locations.normalise(location)
    manifest = read_manifest(where)
    contents: dict[str, bytes] = {}
    for name, entry in sorted(manifest["files"].items()):
        try:
            data = locations.read_bytes(locations.join(where, *name.split("/")))
        except FileNotFoundError:
            raise BundleIntegrityError(f"bundle {where} lacks {name}, which its manifest lists: the bundle is "
                                       "incomplete") from None
        if len(data) != entry.get("bytes") or _sha256(data) != entry.get("sha256"):
            raise BundleIntegrityError(f"bundle {where}: {name} was changed after export (sha256 {_sha256(data)[:12]}…, "
                                       f"the manifest says {str(entry.get('sha256'))[:12]}…): re-export the model, "
                                       "or restore the file")
        contents[name] = data
    card = json.loads(contents[manifest.get("card", CARD)])
    arrays = {name[:-len(".npz")]: read_npz(data) for name, data in contents.items() if name.endswith(".npz")}
    return card, arrays, manifest
