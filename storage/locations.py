"""Locations: where merflow reads and writes. A location is a local path or an fsspec URL
(``s3://bucket/results``, ``memory://x``, ``file:///abs/path``); every module that stores something
goes through here, so local folders and object stores behave alike.

Rules:

- **Nothing builds a ``Path`` from a URL.** ``Path("s3://b/x")`` is ``s3:/b/x``, a local folder named
  ``s3:``. Locations are strings; :func:`join` joins them, :func:`local_path` gives a ``Path`` only
  for a local one.
- **Writes are whole or absent.** Local files are written to a hidden temporary name in the same
  folder and renamed (``os.replace``, atomic on POSIX). On an object store one PUT is atomic per
  object (a reader sees the old object, the new one, or none; a multipart upload becomes visible
  only when it completes), so :func:`write_bytes` writes the final key directly: no temporary key,
  no copy. Listings of objects being written are never partial objects either.
- **A missing extra is one clear line** (:class:`MissingExtra`), raised by :func:`require` before any
  work starts: ``s3:// locations need s3fs: pip install 'merflow[s3]'``.
- **Libraries that need a local path** (unpacked frames that OpenCV reads, archives being unpacked,
  file locks) use :func:`cache_dir`: the location itself when local, else a folder under
  ``$MERFLOW_CACHE`` (default ``~/.cache/merflow``) named after the URL. On a cluster with a catalog on
  object storage, point ``MERFLOW_CACHE`` at a file system every worker sees.

Credentials and endpoints come from the usual places of each fsspec backend: for s3fs, the AWS
variables and files (``AWS_ENDPOINT_URL`` for a local S3 server such as MinIO or moto).

**No call hangs.** An S3 request waits at most ``MERFLOW_S3_TIMEOUT`` seconds (default 8) to connect
and between two reads, and is tried ``S3_ATTEMPTS`` times (s3fs's own retry loop, with its backoff;
botocore's retries are off so that the two loops do not multiply): a stalled endpoint fails within
about ``S3_ATTEMPTS x timeout`` (42 s by default) with botocore's one line naming the endpoint URL, a
dead one at once. They are defaults of fsspec's configuration (``object_store_defaults``), set when this
module is imported, so that every s3fs client of the process (zarr's, Ray's, DuckDB's tables) gets them;
your own ``config_kwargs`` (fsspec's configuration: ``FSSPEC_S3``, its config files) win.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import os
import posixpath
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import fsspec

LOCAL_PROTOCOLS = ("file", "local")
# protocol -> (package, the install line that provides it)
EXTRAS = {
    "s3": ("s3fs", "pip install 'merflow[s3]'"),
    "s3a": ("s3fs", "pip install 'merflow[s3]'"),
    "gs": ("gcsfs", "pip install gcsfs"),
    "gcs": ("gcsfs", "pip install gcsfs"),
    "az": ("adlfs", "pip install adlfs"),
    "abfs": ("adlfs", "pip install adlfs"),
    "abfss": ("adlfs", "pip install adlfs"),
}
RAY_CLIENT = ("ray[client]", "pip install 'merflow[ray-client]'")
S3_TIMEOUT_ENV = "MERFLOW_S3_TIMEOUT"

# What a process needs in its environment to reach the same locations as this one (an S3 endpoint and its
# credentials, merflow's and fsspec's settings): handed to Ray trials and Dask workers that were started
# elsewhere or earlier (flows/trial.py, flows/features.py dask_client).
STORAGE_ENVIRONMENT_PREFIXES = ("AWS_", "MERFLOW_", "FSSPEC_")


def storage_environment() -> dict[str, str]:
    """This process's variables that say where data lives and how to reach it."""
    return {name: value for name, value in os.environ.items() if name.startswith(STORAGE_ENVIRONMENT_PREFIXES)}
S3_TIMEOUT = 8.0   # seconds: connecting, and between two reads of a response (s3fs's defaults: 5 and 15)
S3_ATTEMPTS = 5    # s3fs's retry loop (S3FileSystem.retries, s3fs 2026.9.0 core.py _error_wrapper)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def s3_timeout() -> float:
    """Seconds an S3 request may wait to connect or between two reads (``MERFLOW_S3_TIMEOUT``)."""
    text = os.environ.get(S3_TIMEOUT_ENV, "")
    try:
        value = float(text) if text else S3_TIMEOUT
    except ValueError:
        raise ValueError(f"{S3_TIMEOUT_ENV}={text!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{S3_TIMEOUT_ENV} must be above 0 seconds, not {text}")
    return value


def object_store_defaults(conf: dict | None = None) -> dict:
    """Put merflow's timeouts into fsspec's configuration (``conf``: fsspec's global one) as defaults of every
    s3fs client: botocore's connect and read timeouts, and botocore's retries off (s3fs retries, see the
    module's docstring). Keys the user configured are kept. Returns the s3 section."""
    conf = fsspec.config.conf if conf is None else conf
    section = conf.setdefault("s3", {})
    config_kwargs = dict(section.get("config_kwargs") or {})
    timeout = s3_timeout()
    config_kwargs.setdefault("connect_timeout", timeout)
    config_kwargs.setdefault("read_timeout", timeout)
    config_kwargs.setdefault("retries", {"total_max_attempts": 1})
    section["config_kwargs"] = config_kwargs
    return section


object_store_defaults()


class MissingExtra(RuntimeError):
    """A location (or a Ray address) needs an optional package that is not installed; the message
    is one line naming the pip install to run."""


def protocol(location: str | os.PathLike) -> str | None:
    """The URL scheme of a location (``s3``, ``memory``), or None for a plain local path."""
    match = _SCHEME.match(os.fspath(location))
    return match.group(1).lower() if match else None


def is_remote(location: str | os.PathLike) -> bool:
    """True for a URL that is not the local file system (``file://`` is local)."""
    scheme = protocol(location)
    return scheme is not None and scheme not in LOCAL_PROTOCOLS


def normalise(location: str | os.PathLike) -> str:
    """A local location as an absolute path (``~`` expanded, ``file://`` stripped); a URL as given,
    without a trailing slash. Two spellings of one place normalise alike."""
    text = os.fspath(location)
    if protocol(text) in LOCAL_PROTOCOLS:
        text = text.split("://", 1)[1]
    if not is_remote(text):
        return str(Path(text).expanduser().resolve())
    scheme, rest = text.split("://", 1)
    return f"{scheme.lower()}://{rest.rstrip('/')}"


def join(location: str | os.PathLike, *parts: str) -> str:
    """``location/part/...``: '/'-joined for URLs, the OS's way for local paths."""
    text = os.fspath(location)
    if is_remote(text):
        return posixpath.join(text.rstrip("/"), *(p.strip("/") for p in parts))
    return os.path.join(text, *parts)


def name(location: str | os.PathLike) -> str:
    """The last part of a location (a file or folder name)."""
    return posixpath.basename(os.fspath(location).rstrip("/"))


def parent(location: str | os.PathLike) -> str:
    """The folder holding a location (a URL's parent stays a URL)."""
    text = os.fspath(location).rstrip("/")
    return text.rsplit("/", 1)[0] if is_remote(text) else os.path.dirname(text)


def local_path(location: str | os.PathLike) -> Path:
    """The ``Path`` of a local location; a ValueError for a URL (never build a Path from one)."""
    if is_remote(location):
        raise ValueError(f"{os.fspath(location)} is not a local path")
    return Path(normalise(location))


def require(*places: str | os.PathLike | None) -> None:
    """Raise :class:`MissingExtra` if a location's file system needs a package that is missing.
    Cheap (no I/O): call it first, before any work is done. None entries are ignored."""
    for location in places:
        if location is None:
            continue
        scheme = protocol(location)
        if scheme is None or scheme in LOCAL_PROTOCOLS:
            continue
        try:
            cls = fsspec.get_filesystem_class(scheme)
        except ImportError as error:
            package, install = EXTRAS.get(scheme, (None, None))
            if install is None:
                raise MissingExtra(f"{scheme}:// locations need a package that is missing ({error})") from None
            raise MissingExtra(f"{scheme}:// locations need {package}: {install}") from None
        except ValueError as error:  # fsspec knows no such protocol
            raise ValueError(f"{os.fspath(location)}: unknown location scheme {scheme!r} ({error})") from None
        if scheme in ("s3", "s3a"):
            _retry_refused_connections(cls)


def _retry_refused_connections(s3_class) -> None:
    """s3fs retries timeouts but not a refused connection (an endpoint restarting); with botocore's retries
    off (``object_store_defaults``) add it to s3fs's retried errors (its public ``add_retryable_error``),
    once per process."""
    import s3fs.core
    from botocore.exceptions import EndpointConnectionError

    if not issubclass(s3_class, s3fs.core.S3FileSystem) or EndpointConnectionError in s3fs.core.S3_RETRYABLE_ERRORS:
        return
    s3fs.core.add_retryable_error(EndpointConnectionError)


def require_ray_client(address: str | None) -> None:
    """``ray://`` addresses need Ray's client (grpcio, the ``ray[client]`` extra): say so up front."""
    if address and address.startswith("ray://"):
        import importlib.util

        if importlib.util.find_spec("grpc") is None:
            raise MissingExtra(f"ray:// addresses need {RAY_CLIENT[0]}: {RAY_CLIENT[1]}")


def filesystem(location: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """(fsspec file system, path within it) of a location."""
    require(location)
    text = normalise(location)
    fs, path = fsspec.core.url_to_fs(text)
    return fs, path


def url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The location of ``path`` on ``fs`` (the inverse of :func:`filesystem`)."""
    if isinstance(fs.protocol, str):
        scheme = fs.protocol
    else:
        scheme = fs.protocol[0]
    if scheme in LOCAL_PROTOCOLS:
        return path
    return f"{scheme}://{path.lstrip('/')}" if scheme != "memory" else f"memory://{path}"


# ---------------------------------------------------------------------------------------- queries
def exists(location: str | os.PathLike) -> bool:
    """True when a file or folder exists at the location."""
    fs, path = filesystem(location)
    return fs.exists(path)


def isdir(location: str | os.PathLike) -> bool:
    """True when the location is a folder (a prefix holding keys on an object store)."""
    fs, path = filesystem(location)
    return fs.isdir(path)


def isfile(location: str | os.PathLike) -> bool:
    """True when the location is a file (an object)."""
    fs, path = filesystem(location)
    return fs.isfile(path)


def listdir(location: str | os.PathLike) -> list[str]:
    """Names directly inside a folder (files and folders); empty if it does not exist."""
    fs, path = filesystem(location)
    try:
        entries = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    return sorted(posixpath.basename(e.rstrip("/")) for e in entries if e.rstrip("/") != path.rstrip("/"))


def glob(location: str | os.PathLike, pattern: str) -> list[str]:
    """Locations of the files under ``location`` matching ``pattern`` (fsspec glob, '/'-separated)."""
    fs, path = filesystem(location)
    found = fs.glob(posixpath.join(path.rstrip("/"), pattern))
    return sorted(url(fs, p) if is_remote(location) else p for p in found)


def stamp(location: str | os.PathLike) -> str:
    """Something that changes when the file at ``location`` is rewritten (mtime, ETag or size); "" if absent."""
    fs, path = filesystem(location)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return ""
    for key in ("mtime", "LastModified", "last_modified", "ETag", "etag", "created"):
        if info.get(key) is not None:
            return f"{key}={info[key]}:{info.get('size')}"
    return f"size={info.get('size')}"


# ---------------------------------------------------------------------------------------- reading
def open(location: str | os.PathLike, mode: str = "rb"):  # noqa: A001 (the module's own open)
    """A file object of a location. For writing prefer :func:`write_bytes` or :func:`atomic_write`."""
    fs, path = filesystem(location)
    if "w" in mode or "a" in mode:
        fs.makedirs(posixpath.dirname(path) if is_remote(location) else os.path.dirname(path), exist_ok=True)
    return fs.open(path, mode)


def read_bytes(location: str | os.PathLike) -> bytes:
    """A whole file's bytes."""
    fs, path = filesystem(location)
    return fs.cat_file(path)


def read_text(location: str | os.PathLike) -> str:
    """A whole file decoded as UTF-8."""
    return read_bytes(location).decode()


# ---------------------------------------------------------------------------------------- writing
def makedirs(location: str | os.PathLike) -> None:
    """Create a folder and its parents (object stores have no folders: nothing to do there)."""
    fs, path = filesystem(location)
    fs.makedirs(path, exist_ok=True)


def write_bytes(location: str | os.PathLike, data: bytes) -> str:
    """Write a whole file so that no reader sees half of it (see the module's docstring); returns it."""
    if is_remote(location):
        fs, path = filesystem(location)
        fs.pipe_file(path, data)  # one PUT: atomic per object
        return os.fspath(location)
    target = local_path(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
    try:
        with builtins.open(temp, "wb") as file:
            file.write(data)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return str(target)


def write_text(location: str | os.PathLike, text: str) -> str:
    """Write text as UTF-8, whole or absent (``write_bytes``); returns the location."""
    return write_bytes(location, text.encode())


@contextmanager
def atomic_write(location: str | os.PathLike) -> Iterator[io.IOBase]:
    """A binary file to write a whole file into: published under ``location`` only when the block
    ends without an error (local: hidden temporary file then rename; remote: buffered, one PUT)."""
    if is_remote(location):
        buffer = io.BytesIO()
        yield buffer
        write_bytes(location, buffer.getvalue())
        return
    target = local_path(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
    try:
        with builtins.open(temp, "wb") as file:
            yield file
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def delete(location: str | os.PathLike, recursive: bool = False) -> None:
    """Remove a file (or a folder with ``recursive``); nothing happens if it does not exist."""
    fs, path = filesystem(location)
    try:
        fs.rm(path, recursive=recursive)
    except FileNotFoundError:
        pass


def put_file(local: str | os.PathLike, location: str | os.PathLike) -> str:
    """Copy a local file to a location (whole or absent, as :func:`write_bytes`)."""
    if not is_remote(location):
        with builtins.open(local, "rb") as source, atomic_write(location) as target:
            while block := source.read(1 << 20):
                target.write(block)
        return normalise(location)
    fs, path = filesystem(location)
    fs.put_file(os.fspath(local), path)  # one PUT, or a multipart upload that appears when complete
    return os.fspath(location)


def publish_folder(location: str | os.PathLike, files: dict[str, bytes], last: str,
                   may_replace: Callable[[str], bool] | None = None) -> str:
    """Write a folder of files (relative '/'-separated names -> bytes) whole or absent; returns its location.

    Local: every file is written into a hidden sibling folder, which is then renamed into place, so a reader
    sees the whole folder or none of it. An existing folder at ``location`` is replaced only where
    ``may_replace(location)`` says so (swapped aside, then removed: a reader sees the old or the new one);
    otherwise a non-empty one is a FileExistsError. Object store: no rename exists, so each file is one PUT
    and ``last`` (a marker readers check, e.g. a manifest) is written after every other and deleted before
    them when the folder is replaced: a folder without its ``last`` reads as absent."""
    if last not in files:
        raise ValueError(f"the last file {last!r} is not among the files to write")
    target = normalise(location)
    existing = exists(target) and (not isdir(target) or bool(listdir(target)))
    if existing and not (may_replace and may_replace(target)):
        raise FileExistsError(f"{target} exists and is not a folder merflow may replace: choose another place")
    if is_remote(target):
        delete(join(target, last))
        for name_, data in files.items():
            if name_ != last:
                write_bytes(join(target, *name_.split("/")), data)
        write_bytes(join(target, last), files[last])
        return target
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.{secrets.token_hex(6)}.tmp"
    aside = final.parent / f".{final.name}.{secrets.token_hex(6)}.old"
    try:
        for name_, data in files.items():
            path = staging.joinpath(*name_.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if final.exists():
            os.replace(final, aside)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if aside.exists() and not final.exists():
            os.replace(aside, final)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------------------- local cache
def cache_root() -> Path:
    """The local cache folder: ``$MERFLOW_CACHE``, else ~/.cache/merflow."""
    return Path(os.environ.get("MERFLOW_CACHE") or "~/.cache/merflow").expanduser()


def cache_dir(location: str | os.PathLike, *parts: str) -> Path:
    """A local folder for what a library must have on local disk: ``location/parts`` itself when the
    location is local, else ``$MERFLOW_CACHE/<scheme>/<readable url>-<hash>/parts`` (not created)."""
    if not is_remote(location):
        return local_path(location).joinpath(*parts)
    text = normalise(location)
    scheme, rest = text.split("://", 1)
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", rest)[-60:]
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return cache_root().joinpath(scheme, f"{readable}-{digest}", *parts)


def materialize(source: str | os.PathLike[str], cache_dir: str | os.PathLike[str]) -> Path:
    """Return a local path for `source`, downloading fsspec URLs into `cache_dir/<basename>`.

    Local paths (and file:// URLs) are returned resolved and never copied. A URL is streamed
    into a temporary file that is renamed into place when complete, so a file in the cache is
    always a whole download; a cached file of the remote's size is reused instead of fetched again.
    """
    source = os.fspath(source)
    if not is_remote(source):
        local = local_path(source)
        if not local.exists():
            raise FileNotFoundError(f"dataset source {source} does not exist ({local})")
        return local

    fs, remote_path = filesystem(source)  # MissingExtra if its package is not installed
    if not fs.exists(remote_path):
        raise FileNotFoundError(f"dataset source {source} does not exist")
    name = PurePosixPath(urlsplit(remote_path).path).name
    if not name:
        raise ValueError(f"dataset source {source} does not name a file")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = cache_dir / name
    if cached.exists() and cached.stat().st_size == fs.size(remote_path):
        return cached

    partial = cache_dir / f".partial-{name}-{secrets.token_hex(8)}"
    try:
        with fs.open(remote_path, "rb") as remote, open(partial, "wb") as local_file:
            shutil.copyfileobj(remote, local_file, 1 << 20)
        os.replace(partial, cached)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return cached


def lock_file(location: str | os.PathLike) -> str:
    """A local file to lock for work on ``location``: beside it when local, else in the local cache,
    keyed by the URL (so it serialises the processes of one host; see storage/checkpoints.py)."""
    if not is_remote(location):
        target = local_path(location)
        return str(target.parent / f".{target.name}.lock")
    folder = cache_root() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / (hashlib.sha256(normalise(location).encode()).hexdigest()[:32] + ".lock"))


# ---------------------------------------------------------------------------------------- for pyarrow and Ray
def arrow_filesystem(location: str | os.PathLike):
    """(pyarrow file system, path) of a location: pyarrow's own local file system for local paths,
    the fsspec one wrapped for pyarrow otherwise (the same configuration as every other access)."""
    import pyarrow.fs as pafs

    if not is_remote(location):
        return pafs.LocalFileSystem(), normalise(location)
    fs, path = filesystem(location)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path

