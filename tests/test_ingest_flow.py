"""End to end through the real Prefect flow (ephemeral API): synthetic archives -> catalog."""

import multiprocessing
import os
import zipfile
from pathlib import Path

import fsspec
import pandas as pd
import pytest

from merflow.configs.synth import SynthConfig
from merflow.flows.ingest import ingest_flow
from merflow.storage import catalog
from merflow.storage.archives import UnsafeArchiveError
from merflow.tasks.datasets import adapter
from merflow.tasks.synthetic import DATASETS, synthesize

from conftest import SCALE, tiny_archive

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_backend")]  # the ingest flow
FORMATS = ("zip", "tar.gz", "none")


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, list[str]]:
    """Every dataset kind in every format: format -> sources."""
    out = tmp_path_factory.mktemp("archives")
    return {fmt: [str(synthesize(SynthConfig(name, subjects=3, samples_per_subject=3, archive=fmt, seed=11,
                                             scale=SCALE), out / fmt.replace(".", "_")))
                  for name in DATASETS]
            for fmt in FORMATS}


@pytest.fixture(scope="module")
def catalogs(archives, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("catalogs")
    for fmt, sources in archives.items():
        ingest_flow(sources=sources, out=str(root / fmt.replace(".", "_")))
    return {fmt: root / fmt.replace(".", "_") for fmt in FORMATS}


def _rows(catalog_dir: Path) -> pd.DataFrame:
    samples = catalog.read_samples(catalog_dir)
    return samples.drop(columns=["clip_dir", "source", "source_sha256"]).sort_values("sample_key").reset_index(drop=True)


def test_every_dataset_and_format_lands_in_the_catalog(catalogs, archives):
    zip_catalog = catalogs["zip"]
    samples, quarantine = catalog.read_samples(zip_catalog), catalog.read_quarantine(zip_catalog)
    assert set(samples["dataset"]) == {"casme", "casme2", "casme_sq", "smic_hs", "samm", "ckplus", "casme3"}
    # Nothing is dropped silently: every planned sample is a row or a quarantine entry
    # (SMIC's non_micro clip is not a sample, so it is in neither).
    assert len(samples) + len(quarantine) == 9 * len(DATASETS)
    assert set(quarantine["reason"]) >= {"missing_frames", "missing_offset", "no_label"}
    # An apex outside onset..offset is kept (apex spotted) and warned of, not quarantined.
    assert "apex_outside_clip" not in set(quarantine["reason"])
    warned = {w["sample_key"] for w in catalog.summary(zip_catalog)["warnings"]}
    assert warned == set(samples.loc[samples["apex_source"] == "outside_clip", "sample_key"]) and warned
    assert samples["sample_key"].is_unique
    sources = catalog.read_sources(zip_catalog)
    assert sorted(d for ds in sources["datasets"] for d in ds) == sorted(DATASETS)
    # The same content read from a zip, a tar.gz or a folder gives the same catalog.
    assert _rows(catalogs["tar.gz"]).equals(_rows(zip_catalog))
    assert _rows(catalogs["none"]).equals(_rows(zip_catalog))


def test_catalog_rows_match_the_adapters_and_round_trip(catalogs, tmp_path):
    samples = catalog.read_samples(catalogs["none"])
    for name in ("casme2", "samm"):
        root = next(Path(p) for p in catalog.read_sources(catalogs["none"])["root"] if adapter(name).detect(Path(p)))
        expected = {s["sample_key"] for s in adapter(name).read(root).samples}
        assert set(samples.loc[samples["dataset"] == name, "sample_key"]) == expected
    catalog.write_table(tmp_path, catalog.SAMPLES_FILE, samples)
    assert catalog.read_samples(tmp_path).equals(samples)


def test_rerun_skips_unchanged_sources_and_duplicates_nothing(catalogs, archives):
    catalog_dir = catalogs["zip"]
    before = catalog.read_samples(catalog_dir)
    raw_dirs = {p: p.stat().st_mtime_ns for p in (catalog_dir / "raw").iterdir()}
    result = ingest_flow(sources=archives["zip"], out=str(catalog_dir))
    assert {o["status"] for o in result["sources"]} == {"skipped"}
    assert catalog.read_samples(catalog_dir).equals(before)
    assert {p: p.stat().st_mtime_ns for p in (catalog_dir / "raw").iterdir()} == raw_dirs


def test_a_changed_archive_is_detected_by_its_checksum(tmp_path):
    config = SynthConfig("casme2", subjects=2, samples_per_subject=2, seed=1, scale=SCALE)
    source = synthesize(config, tmp_path / "in")
    ingest_flow(sources=[str(source)], out=str(tmp_path / "catalog"))
    first = catalog.read_sources(tmp_path / "catalog")["source_sha256"].tolist()
    source.unlink()
    synthesize(SynthConfig("casme2", subjects=2, samples_per_subject=3, seed=1, scale=SCALE), tmp_path / "in")
    result = ingest_flow(sources=[str(source)], out=str(tmp_path / "catalog"))
    assert result["sources"][0]["status"] == "ingested"
    sources = catalog.read_sources(tmp_path / "catalog")
    assert len(sources) == 1 and sources["source_sha256"].tolist() != first
    # The old content is unpacked no more: only the new archive's folder is left.
    assert [p.name for p in (tmp_path / "catalog" / "raw").iterdir()] == [sources["source_sha256"][0][:16]]
    samples, quarantine = catalog.read_samples(tmp_path / "catalog"), catalog.read_quarantine(tmp_path / "catalog")
    assert len(samples) + len(quarantine) == 6


def test_a_hostile_archive_fails_the_flow_and_changes_nothing(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as bundle:
        bundle.writestr("CASME2/ok.txt", "fine")
        bundle.writestr("../../escaped.txt", "gotcha")
    with pytest.raises(UnsafeArchiveError, match="escaped.txt"):
        ingest_flow(sources=[str(evil)], out=str(tmp_path / "catalog"))
    assert not (tmp_path.parent / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    raw = tmp_path / "catalog" / "raw"
    assert not raw.exists() or not any(raw.iterdir())
    assert catalog.read_samples(tmp_path / "catalog").empty


def test_an_unrecognised_folder_gets_a_clear_error(tmp_path):
    (tmp_path / "holiday").mkdir()
    (tmp_path / "holiday" / "beach.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="no known dataset layout"):
        ingest_flow(sources=[str(tmp_path / "holiday")], out=str(tmp_path / "catalog"))


def test_fsspec_url_source(archives, tmp_path):
    smic_zip = next(p for p in archives["zip"] if p.endswith("SMIC.zip"))
    with fsspec.open("memory://bucket/SMIC.zip", "wb") as remote:
        remote.write(Path(smic_zip).read_bytes())
    result = ingest_flow(sources=["memory://bucket/SMIC.zip"], out=str(tmp_path / "catalog"))
    assert result["datasets"]["smic_hs"]["samples"] == 9
    assert catalog.read_sources(tmp_path / "catalog")["source"].tolist() == ["memory://bucket/SMIC.zip"]


def test_the_summary_is_kept_as_an_artifact(catalogs):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["ingest-summary"])))
    assert artifacts and any("| casme2 |" in (a.data or "") for a in artifacts)


def _raw_folders(catalog_dir: Path) -> set[str]:
    raw = catalog_dir / "raw"
    return {p.name for p in raw.iterdir()} if raw.is_dir() else set()


def test_a_corrupt_sheet_is_named_and_the_failed_ingest_leaves_nothing_unpacked(tmp_path):
    from merflow.tasks.datasets.base import CorruptSheetError, corrupt_sheets

    folder = synthesize(SynthConfig("casme2", subjects=2, samples_per_subject=2, archive="none", seed=3, scale=SCALE),
                        tmp_path / "synth")
    sheet = next(folder.rglob("*.xlsx"))
    sheet.write_bytes(sheet.read_bytes()[:300])  # a download cut short
    archive = tmp_path / "CASME2.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(folder.parent))
    out = tmp_path / "catalog"
    for dataset in (None, "casme2"):  # detected, or named with --dataset: the same message
        with pytest.raises(CorruptSheetError, match=rf"corrupt annotation sheet \S*{sheet.name}: BadZipFile"):
            ingest_flow(sources=[str(archive)], out=str(out), dataset=dataset)
        assert _raw_folders(out) == set(), "the failed ingest left its unpacked archive behind"
    assert catalog.read_sources(out).empty
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "sheet.xls").write_bytes(b"\xd0\xcf\x11\xe0 not a workbook")
    ((path, reason),) = corrupt_sheets(tmp_path / "old")
    assert path.name == "sheet.xls" and len(reason) > 10, reason


def test_a_failed_ingest_keeps_what_an_earlier_ingest_unpacked(archives, tmp_path):
    casme2 = next(p for p in archives["zip"] if p.endswith("CASME2.zip"))
    out = tmp_path / "catalog"
    ingest_flow(sources=[casme2], out=str(out))
    unpacked = _raw_folders(out)
    assert len(unpacked) == 1
    with pytest.raises(FileNotFoundError, match="SAMM"):  # the wrong --dataset: its sheet is not there
        ingest_flow(sources=[casme2], out=str(out), dataset="samm")
    assert _raw_folders(out) == unpacked and len(catalog.read_samples(out)) > 0


# ----------------------------------------------------------------------------------- two users, one catalog
def _worker_start() -> None:
    """A spawned process, as another user's shell: the CLI imported once (the shared Prefect API is in its
    environment, inherited: Prefect reads it when first imported, before an initializer could set it)."""
    import merflow.flows.cli  # noqa: F401
    import merflow.flows.ingest  # noqa: F401


def _cli(cwd: str, *argv: str) -> int:
    """`cd cwd; merflow argv...` in a pool process; its exit status."""
    from merflow.flows.cli import main

    os.chdir(cwd)
    return main(list(argv))


@pytest.fixture(scope="module")
def users(prefect_backend):
    """Two processes (spawned, not forked), each a user running `merflow` against one shared Prefect API."""
    from prefect.settings import PREFECT_API_URL

    os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()  # for the children only: they copy it when spawned
    try:
        pool = multiprocessing.get_context("spawn").Pool(2, initializer=_worker_start)
    finally:
        del os.environ["PREFECT_API_URL"]
    with pool:
        yield pool


@pytest.mark.slow
def test_two_ingests_at_once_both_land_whatever_their_sizes_and_the_text_typed(users, tmp_path):
    """`cd x1; merflow ingest data.zip --out C` and, at the same time, `cd x2; merflow ingest data.zip --out C`
    (another dataset, 1,000 samples each), three times: both exit 0, both sources keep every row, every
    row's frames are on disk, and a rerun skips both."""
    x1 = tiny_archive("casme2", 1000, tmp_path / "x1" / "data.zip", seed=1).parent
    x2 = tiny_archive("samm", 1000, tmp_path / "x2" / "data.zip", seed=2).parent
    for attempt in range(3):
        out = str(tmp_path / f"C{attempt}")
        pending = [users.apply_async(_cli, (str(folder), "ingest", "data.zip", "--out", out)) for folder in (x1, x2)]
        assert [job.get(timeout=240) for job in pending] == [0, 0]
        sources = catalog.read_sources(out).set_index("source")
        assert sorted(sources.index) == [str(x1 / "data.zip"), str(x2 / "data.zip")]
        assert sources["n_samples"].to_dict() == {str(x1 / "data.zip"): 1000, str(x2 / "data.zip"): 1000}
        samples = catalog.read_samples(out)
        assert samples.groupby("source").size().to_dict() == sources["n_samples"].to_dict()
        assert catalog.read_quarantine(out).empty
        lost = [row.sample_key for row in samples.itertuples()
                if not all((Path(row.clip_dir) / name).is_file() for name in row.frame_files)]
        assert lost == []
        assert len(list((Path(out) / "raw").iterdir())) == 2
    again = ingest_flow(sources=[str(x1 / "data.zip"), str(x2 / "data.zip")], out=out)
    assert [o["status"] for o in again["sources"]] == ["skipped", "skipped"]
