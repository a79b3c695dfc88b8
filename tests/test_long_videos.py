"""The catalog's long-video tables (storage/long_videos.py): merged per source, versioned, one writer at a time."""

import pyarrow.parquet as pq
import pytest

from merflow.storage import long_videos
from merflow.tasks.datasets import casme_sq_lv


def test_a_source_replaces_what_it_gave_and_keeps_others(long_video_folders, tmp_path):
    result = casme_sq_lv.read(long_video_folders["casme_sq_lv"])
    catalog = str(tmp_path / "catalog")
    counts = long_videos.merge_source(catalog, "a.zip", "1" * 64, result.videos, result.intervals, result.problems)
    assert counts == {"videos": 4, "intervals": len(result.intervals), "quarantined": 0}
    # The same keys from another source: kept from the first, quarantined as duplicates.
    counts = long_videos.merge_source(catalog, "b.zip", "2" * 64, result.videos[:1], result.intervals[:2], [])
    assert counts == {"videos": 0, "intervals": 0, "quarantined": 3}
    # The first source again, with fewer intervals: its rows are replaced, the duplicates' rows stay.
    long_videos.merge_source(catalog, "a.zip", "1" * 64, result.videos, result.intervals[:3], [])
    intervals = long_videos.read_intervals(catalog)
    assert len(intervals) == 3 and set(intervals["source"]) == {"a.zip"}
    assert intervals["apex"].dtype.name == "Int32"          # null where the sheet gave none, ints elsewhere
    assert set(long_videos.read_quarantine(catalog)["reason"]) == {"duplicate_id"}
    videos = long_videos.read_videos(catalog)
    assert list(videos.loc[0, "frame_files"])[:2] == ["img1.jpg", "img2.jpg"]
    summary = long_videos.summary(catalog)
    assert summary["casme_sq_lv"]["videos"] == 4 and summary["casme_sq_lv"]["quarantined"] == {"duplicate_id": 3}


def test_a_table_of_another_schema_version_is_refused_in_one_line(long_video_folders, tmp_path):
    result = casme_sq_lv.read(long_video_folders["casme_sq_lv"])
    catalog = tmp_path / "catalog"
    long_videos.merge_source(str(catalog), "a.zip", "1" * 64, result.videos, result.intervals, [])
    path = catalog / long_videos.VIDEOS_FILE
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata({long_videos.VERSION_KEY: b"99"}), path)
    with pytest.raises(long_videos.LongVideoSchemaError, match="version 99"):
        long_videos.read_videos(str(catalog))
    assert long_videos.read_videos(str(tmp_path / "empty")).empty   # no catalog yet: empty, with its columns


def test_ingest_reads_long_videos_beside_clips_or_alone(long_video_folders, synth_folders):
    from merflow.configs.ingest import IngestConfig
    from merflow.tasks import ingest

    alone = ingest.prepared_source("samm_lv", "3" * 64, "folder", long_video_folders["samm_lv"])
    datasets, samples, _ = ingest.read(alone, IngestConfig(dataset="samm_lv"))
    assert datasets == [] and samples == []
    assert list(ingest.read_long_videos(alone, IngestConfig(dataset="samm_lv"))) == ["samm_lv"]
    both = ingest.prepared_source("casme_sq", "4" * 64, "folder", synth_folders["casme_sq"])
    datasets, samples, _ = ingest.read(both, IngestConfig())
    assert datasets == ["casme_sq"] and samples
    assert list(ingest.read_long_videos(both, IngestConfig())) == ["casme_sq_lv"]
    assert ingest.read_long_videos(both, IngestConfig(dataset="casme_sq")) == {}
