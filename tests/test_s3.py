"""The whole chain with every location on a real S3 server (moto on 127.0.0.1, tests/conftest.py):
archives in the bucket, the catalog, the feature store, the results and Ray Tune's experiment in the
bucket, through the `merflow` command as a user runs it; a rerun then skips and recomputes nothing,
and `merflow results` reads the tables from the bucket."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from merflow.flows.cli import main
from merflow.storage import catalog, locations, results

from requires import requires_s3

# The module's chain (ingest, features, train, tune on s3://) runs in the first test's setup.
pytestmark = [pytest.mark.slow, pytest.mark.integration, requires_s3, pytest.mark.timeout(900)]

BUCKET = "s3://merflow"
CATALOG, STORE, OUT = f"{BUCKET}/catalog", f"{BUCKET}/features.zarr", f"{BUCKET}/results"
TINY = ["--macro-epochs", "2", "--pretrain-epochs", "2", "--meta-epochs", "1", "--batches-per-epoch", "2"]
TRAIN = ["train", "--catalog", CATALOG, "--store", STORE, "--dataset", "casme2", "--out", OUT, "--run", "plain",
         "--shots", "1", *TINY]
TUNE = ["tune", "--catalog", CATALOG, "--store", STORE, "--dataset", "casme2", "--out", OUT, "--run", "search",
        "--shots", "1,2", "--alpha", "0.5,1.0", "--scheduler", "fifo", "--max-folds", "2", *TINY]


def _objects(prefix: str) -> dict[str, tuple]:
    """Every object under a prefix with what changes when it is rewritten (ETag, last modified)."""
    fs, path = locations.filesystem(prefix)
    fs.invalidate_cache()
    return {name: (info.get("ETag"), str(info.get("LastModified")))
            for name, info in fs.find(path, detail=True).items()}


def _run(argv: list[str]) -> str:
    """`merflow ARGV` in this process (one Prefect backend, the S3 server's endpoint); its printed output."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):  # rich's console writes to whatever sys.stdout is now
        status = main(argv)
    assert status == 0, output.getvalue()
    return output.getvalue()


@pytest.fixture(scope="module")
def chain(s3_server, prefect_backend, tmp_path_factory):
    """Synthetic archives uploaded to the bucket, then ingest, features, train and tune, all on s3://."""
    from merflow.configs.synth import SynthConfig
    from merflow.tasks.synthetic import synthesize

    local = tmp_path_factory.mktemp("s3-chain")
    mp = pytest.MonkeyPatch()
    mp.setenv("MERFLOW_CACHE", str(local / "cache"))  # where an s3:// catalog's unpacked frames live
    sources = []
    for config in (SynthConfig("casme2", subjects=4, samples=32, archive="zip", seed=3, scale=0.2),
                   SynthConfig("ckplus", subjects=4, samples=16, archive="zip", seed=3, scale=0.2)):
        archive = synthesize(config, local / "archives")
        sources.append(locations.put_file(archive, f"{BUCKET}/archives/{archive.name}"))
    outputs = {"ingest": _run(["ingest", *sources, "--out", CATALOG]),
               "features": _run(["features", "--catalog", CATALOG, "--store", STORE, "--size", "28", "--workers", "2"]),
               "train": _run(TRAIN),
               "tune": _run(TUNE)}
    yield {"sources": sources, "outputs": outputs, "local": local}
    mp.undo()


def test_nothing_is_written_to_a_local_folder_named_s3(chain):
    assert not (chain["local"] / "s3:").exists()
    from pathlib import Path

    assert not Path("s3:").exists()


def test_every_stage_wrote_into_the_bucket(chain):
    samples = catalog.read_samples(CATALOG)
    assert set(samples["dataset"]) == {"casme2", "ckplus"}
    assert set(catalog.read_sources(CATALOG)["source"]) == set(chain["sources"])
    assert locations.exists(f"{CATALOG}/samples.parquet")
    # Frames OpenCV reads are local files, in the cache named after the catalog's URL.
    assert all(clip.startswith(str(chain["local"] / "cache")) for clip in samples["clip_dir"])
    assert any(name.endswith("zarr.json") for name in _objects(STORE))
    assert "shards computed" in chain["outputs"]["features"]
    assert "results in s3://merflow/results" in chain["outputs"]["train"]
    runs = results.read_table(OUT, "runs")
    assert sorted(runs["run"]) == ["plain", "search"]
    trials = results.read_table(OUT, "trials", run="search")
    assert len(trials) == 2 * 2 and (trials["status"] == "completed").all(), trials[["status", "error"]]
    assert set(results.read_table(OUT, "metrics", run="plain")["scope"]) >= {"fold", "pooled"}
    objects = _objects(OUT)
    assert any("/checkpoints/plain/" in name and name.endswith(".pt") for name in objects)
    assert any("/tune/search/" in name for name in objects)  # Ray Tune's experiment is in the bucket too
    assert any("/plots/search/" in name and name.endswith(".png") for name in objects)


def test_a_rerun_skips_and_recomputes_nothing(chain):
    catalog_before, store_before, out_before = _objects(CATALOG), _objects(STORE), _objects(OUT)
    ingest = _run(["ingest", *chain["sources"], "--out", CATALOG])
    assert ingest.count("skipped") == 2, ingest
    assert _objects(CATALOG) == catalog_before

    features = _run(["features", "--catalog", CATALOG, "--store", STORE, "--size", "28", "--workers", "2"])
    assert re.search(r"\b0 shards computed, [1-9]\d* already done", features), features
    assert _objects(STORE) == store_before

    _run(TRAIN)
    _run(TUNE)
    after = _objects(OUT)
    # Every checkpoint was loaded, none trained again: the same objects, not rewritten.
    checkpoints = {k: v for k, v in out_before.items() if "/checkpoints/" in k and k.endswith(".pt")}
    assert checkpoints and {k: after.get(k) for k in checkpoints} == checkpoints
    # The search was restored with every trial finished: no trial wrote its predictions again.
    parts = {k: v for k, v in out_before.items() if "/predictions/run=search/" in k and "part-selected" not in k}
    assert len(parts) == 4 and {k: after.get(k) for k in parts} == parts
    trials = results.read_table(OUT, "trials", run="search")
    assert (trials["status"] == "completed").all() and (trials["failures"] == 0).all()


def test_results_are_read_from_the_bucket(chain):
    summary = _run(["results", "summary", "--results", OUT, "--run", "search"])
    assert "search" in summary and "fused" in summary
    query = _run(["results", "query", "SELECT run, count(*) AS n FROM trials GROUP BY run", "--results", OUT])
    assert "search" in query and "1 row" in query
    runs = _run(["results", "runs", "--results", OUT])
    assert "plain" in runs and "search" in runs
