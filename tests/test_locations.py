"""storage/locations.py: one way to read and write local paths and fsspec URLs (memory:// here;
tests/test_s3.py runs the whole chain against a local S3 server)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import fsspec
import pandas as pd
import pytest

from merflow.storage import catalog, locations, queries
from merflow.storage import results as result_tables


@pytest.fixture
def memory() -> str:
    """A fresh folder on fsspec's in-process memory file system."""
    root = f"memory://merflow-test-{uuid.uuid4().hex[:8]}"
    yield root
    locations.delete(root, recursive=True)


def test_urls_are_never_paths():
    assert locations.is_remote("s3://bucket/results")
    assert locations.is_remote("memory://x")
    assert not locations.is_remote("results")
    assert not locations.is_remote("file:///tmp/x")
    # The bug this module exists for: Path() of a URL is a local folder named 's3:'.
    assert str(Path("s3://bucket/results")) == "s3:/bucket/results"
    assert locations.join("s3://bucket/results/", "runs", "run=a") == "s3://bucket/results/runs/run=a"
    assert locations.normalise("S3://bucket/results/") == "s3://bucket/results"
    assert locations.normalise("file:///tmp/x/../y") == "/tmp/y"
    assert locations.parent("s3://bucket/results/runs") == "s3://bucket/results"
    assert locations.name("s3://bucket/results/runs/") == "runs"
    with pytest.raises(ValueError, match="not a local path"):
        locations.local_path("s3://bucket/results")


def test_local_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert locations.normalise("results") == str(tmp_path / "results")
    assert locations.join("results", "a") == str(Path("results") / "a")


def test_read_write_list_delete_on_memory(memory):
    target = locations.join(memory, "a", "b.json")
    assert not locations.exists(target)
    assert locations.stamp(target) == ""
    locations.write_text(target, '{"x": 1}')
    assert locations.read_text(target) == '{"x": 1}'
    assert locations.isfile(target) and locations.isdir(locations.join(memory, "a"))
    assert locations.listdir(memory) == ["a"]
    assert locations.glob(memory, "a/*.json") == [target.replace("memory://", "memory:///")]
    with locations.atomic_write(locations.join(memory, "a", "c.bin")) as file:
        file.write(b"123")
    assert locations.read_bytes(locations.join(memory, "a", "c.bin")) == b"123"
    locations.delete(target)
    assert not locations.exists(target)
    locations.delete(target)  # deleting what is not there is not an error


def test_an_atomic_write_that_fails_publishes_nothing(tmp_path, memory):
    for root in (str(tmp_path), memory):
        target = locations.join(root, "part.parquet")
        with pytest.raises(RuntimeError, match="killed"):
            with locations.atomic_write(target) as file:
                file.write(b"half")
                raise RuntimeError("killed")
        assert not locations.exists(target)
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind either


def test_local_writes_go_through_a_hidden_temporary_name(tmp_path, monkeypatch):
    seen = []
    real_replace = locations.os.replace

    def replace(source, target):
        seen.append(Path(source).name)
        real_replace(source, target)

    monkeypatch.setattr(locations.os, "replace", replace)
    locations.write_bytes(tmp_path / "x" / "f.txt", b"data")
    assert (tmp_path / "x" / "f.txt").read_bytes() == b"data"
    assert len(seen) == 1 and seen[0].startswith(".f.txt.")


def test_stamp_changes_when_a_file_is_rewritten(memory):
    target = locations.join(memory, "samples.parquet")
    locations.write_bytes(target, b"one")
    first = locations.stamp(target)
    locations.write_bytes(target, b"second")
    assert locations.stamp(target) not in ("", first)


def test_a_missing_extra_is_one_line_naming_the_install(monkeypatch):
    def missing(protocol):
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr(fsspec, "get_filesystem_class", missing)
    with pytest.raises(locations.MissingExtra) as error:
        locations.require("results", "s3://bucket/results")
    assert str(error.value) == "s3:// locations need s3fs: pip install 'merflow[s3]'"
    with pytest.raises(locations.MissingExtra):
        locations.filesystem("s3://bucket/x")
    locations.require("results", "file:///tmp/x", None)  # local locations need nothing


def test_the_feature_store_reports_a_missing_extra_before_any_work(monkeypatch):
    from merflow.storage.features import FeatureStore

    monkeypatch.setattr(fsspec, "get_filesystem_class",
                        lambda protocol: (_ for _ in ()).throw(ImportError("Install s3fs to access S3")))
    with pytest.raises(locations.MissingExtra, match=r"pip install 'merflow\[s3\]'"):
        FeatureStore("s3://bucket/features.zarr")


def test_ray_client_addresses_need_the_client_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "grpc" else real(name, *a))
    with pytest.raises(locations.MissingExtra) as error:
        locations.require_ray_client("ray://head:10001")
    assert str(error.value) == "ray:// addresses need ray[client]: pip install 'merflow[ray-client]'"
    locations.require_ray_client("auto")
    locations.require_ray_client(None)


def test_unknown_schemes_are_a_clear_error():
    with pytest.raises(ValueError, match="unknown location scheme 'nosuch'"):
        locations.require("nosuch://bucket/x")


def test_cache_dir_is_the_location_itself_when_local(tmp_path, monkeypatch):
    assert locations.cache_dir(tmp_path, "raw") == tmp_path / "raw"
    monkeypatch.setenv("MERFLOW_CACHE", str(tmp_path / "cache"))
    cached = locations.cache_dir("s3://bucket/catalog", "raw", "abc")
    assert cached.is_relative_to(tmp_path / "cache" / "s3") and cached.parts[-2:] == ("raw", "abc")
    assert locations.cache_dir("s3://bucket/catalog/") == locations.cache_dir("s3://bucket/catalog")
    assert locations.cache_dir("s3://bucket/catalog") != locations.cache_dir("s3://bucket/catalog2")
    assert Path(locations.lock_file("s3://bucket/x.pt")).parent == tmp_path / "cache" / "locks"
    assert locations.lock_file(tmp_path / "x.pt") == str(tmp_path / ".x.pt.lock")


def test_the_catalog_round_trips_on_memory(memory):
    frame = pd.DataFrame([{"source": "s", "source_sha256": "0" * 64, "kind": "zip", "root": "/r", "datasets": ["casme2"],
                           "n_samples": 3, "n_quarantined": 0, "ingested_at": "now", "config": "{}"}])
    catalog.write_table(memory, catalog.SOURCES_FILE, frame)
    assert catalog.read_sources(memory)["n_samples"].tolist() == [3]
    assert catalog.read_samples(memory).empty  # a file not written yet is an empty table


def test_result_tables_and_queries_on_memory(memory):
    rows = [{"run": "r1", "protocol": "loso", "dataset": "casme2", "created_at": "2026-01-01", "config": "{}",
             "feature_config_hash": "abc", "git_commit": None, "versions": "{}", "timings": "{}", "classes": ["a"]}]
    written = result_tables.write_part(memory, "runs", "r1", "loso", "all", rows)
    assert written == f"{memory}/runs/run=r1/protocol=loso/part-all.parquet"
    assert result_tables.read_table(memory, "runs")["run"].tolist() == ["r1"]
    assert queries.query(memory, "SELECT run, protocol, dataset FROM runs").to_dict("records") == [
        {"run": "r1", "protocol": "loso", "dataset": "casme2"}]
    assert queries.query(memory, "SELECT count(*) AS n FROM metrics")["n"].tolist() == [0]
    # Still read-only, and no file can be read at all: the tables were read through fsspec, not DuckDB.
    with pytest.raises(ValueError, match="only reads"):
        queries.query(memory, "CREATE TABLE x AS SELECT 1")
    with pytest.raises(ValueError, match="the query failed"):
        queries.query(memory, "SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(ValueError, match="no results at"):
        queries.query(locations.join(memory, "nothing"), "SELECT 1")


def _without_s3fs(monkeypatch):
    real = fsspec.get_filesystem_class

    def get_filesystem_class(protocol):
        if protocol in ("s3", "s3a"):
            raise ImportError("Install s3fs to access S3")
        return real(protocol)

    monkeypatch.setattr(fsspec, "get_filesystem_class", get_filesystem_class)


def test_the_cli_prints_a_missing_extra_as_one_line_with_its_brackets(monkeypatch, capsys):
    from merflow.flows.cli import main

    _without_s3fs(monkeypatch)
    assert main(["results", "runs", "--results", "s3://bucket/results"]) == 2
    output = capsys.readouterr()
    lines = [line for line in (output.out + output.err).splitlines() if line.strip()]
    assert len(lines) == 1 and "s3:// locations need s3fs: pip install 'merflow[s3]'" in lines[0], lines


def test_a_search_stops_on_a_missing_extra_before_any_work(monkeypatch, tmp_path):
    import importlib.util

    from merflow.configs.search import SearchConfig
    from merflow.flows import search as engine

    search = SearchConfig(catalog_dir=str(tmp_path / "no-catalog"), store=str(tmp_path / "no-store"),
                          out="s3://bucket/results")
    _without_s3fs(monkeypatch)
    with pytest.raises(locations.MissingExtra, match="s3fs"):  # not "no samples": nothing was read
        engine.run_search(search)
    monkeypatch.undo()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "grpc" else real(name, *a))
    with pytest.raises(locations.MissingExtra, match=r"ray\[client\]"):
        engine.run_search(SearchConfig(catalog_dir=str(tmp_path / "no-catalog"), store=str(tmp_path),
                                       out=str(tmp_path / "out"), ray_address="ray://head:10001"))
    with pytest.raises(locations.MissingExtra, match=r"pip install 'merflow\[ray-client\]'"):
        engine.init_ray("ray://head:10001")
    assert not (tmp_path / "out").exists()


# Moved from tests/test_archives.py with materialize (a source's local copy is a location concern).
def test_materialize_downloads_url_into_cache_and_reuses_it(tmp_path: Path) -> None:
    url = f"memory://merflow-tests/{tmp_path.name}/CASME2.zip"
    memory = fsspec.filesystem("memory")
    memory.pipe(url, b"first download")
    cache = tmp_path / "cache"

    cached = locations.materialize(url, cache)
    assert cached == cache / "CASME2.zip" and cached.read_bytes() == b"first download"
    assert os.listdir(cache) == ["CASME2.zip"]

    memory.pipe(url, b"other download")  # same size: taken to be the same file
    assert locations.materialize(url, cache).read_bytes() == b"first download"
    memory.pipe(url, b"a re-issued, longer archive")
    assert locations.materialize(url, cache).read_bytes() == b"a re-issued, longer archive"
    assert os.listdir(cache) == ["CASME2.zip"]


def test_materialize_returns_local_paths_without_copying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "raw" / "SAMM.zip"
    archive.parent.mkdir()
    archive.write_bytes(b"zip")
    monkeypatch.chdir(tmp_path)

    assert locations.materialize("raw/SAMM.zip", tmp_path / "cache") == archive.resolve()
    assert locations.materialize(f"file://{archive}", tmp_path / "cache") == archive.resolve()
    assert not (tmp_path / "cache").exists()


def test_materialize_missing_sources_raise_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere/CASME2.zip"):
        locations.materialize(str(tmp_path / "nowhere" / "CASME2.zip"), tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="memory://"):
        locations.materialize(f"memory://merflow-tests/{tmp_path.name}/missing.zip", tmp_path / "cache")


# ------------------------------------------------------------------------------------- no call hangs
def test_s3_clients_get_timeouts_as_defaults_that_a_users_own_settings_override(monkeypatch):
    conf = {"s3": {"config_kwargs": {"read_timeout": 99}, "anon": True}}
    section = locations.object_store_defaults(conf)
    assert section["anon"] is True and section["config_kwargs"] == {
        "read_timeout": 99, "connect_timeout": locations.S3_TIMEOUT, "retries": {"total_max_attempts": 1}}
    # A stalled endpoint fails within s3fs's attempts x the timeout, plus its backoff (0.1 x 1.7^i, s3fs core.py):
    # under a minute with the defaults.
    backoff = sum(min(1.7 ** i * 0.1, 15) for i in range(locations.S3_ATTEMPTS))
    assert locations.S3_ATTEMPTS * locations.S3_TIMEOUT + backoff < 45
    assert fsspec.config.conf["s3"]["config_kwargs"]["connect_timeout"] == locations.s3_timeout()
    monkeypatch.setenv(locations.S3_TIMEOUT_ENV, "2.5")
    assert locations.object_store_defaults({})["config_kwargs"]["read_timeout"] == 2.5
    monkeypatch.setenv(locations.S3_TIMEOUT_ENV, "never")
    with pytest.raises(ValueError, match="MERFLOW_S3_TIMEOUT='never' is not a number of seconds"):
        locations.s3_timeout()


@pytest.mark.integration
def test_a_stalled_s3_endpoint_fails_in_one_line_naming_it_and_a_dead_one_too(tmp_path):
    """A real S3 server (moto, a subprocess on 127.0.0.1) that stops answering (SIGSTOP: connections are
    accepted, nothing is answered), then one that is gone: `merflow catalog` on it ends with one line naming
    the endpoint (it used to wait ~7 minutes on the stalled one)."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    from requires import _missing

    if _missing("moto.server", "s3fs"):
        pytest.skip("moto's S3 server needs moto[server] and s3fs")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", locations.S3_TIMEOUT_ENV: "0.5"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.put(f"{endpoint}/merflow", timeout=2).raise_for_status()  # the bucket
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and server.poll() is None, "moto's server did not start"
                time.sleep(0.2)
        command = [str(Path(sys.executable).parent / "merflow"), "catalog", "s3://merflow/catalog"]
        os.kill(server.pid, signal.SIGSTOP)
        stalled = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        lines = [line for line in stalled.stdout.splitlines() if line.strip()]
        assert stalled.returncode == 1 and len(lines) == 1, stalled.stdout + stalled.stderr
        assert lines[0].startswith("error: Read timeout on endpoint URL") and endpoint in lines[0], lines
        assert "no answer within 0.5 s, 5 attempts (MERFLOW_S3_TIMEOUT sets the wait)" in lines[0], lines
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.kill()
        server.wait()
    dead = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in dead.stdout.splitlines() if line.strip()]
    assert dead.returncode == 1 and len(lines) == 1 and endpoint in lines[0], dead.stdout + dead.stderr
