import pandas as pd
import pyarrow.parquet as pq
import pytest

from merflow.storage import catalog
from merflow.tasks.labels import protocol_labels


def _sample(key_suffix: str, emotion="happiness") -> dict:
    return {"sample_key": f"casme2/sub01/{key_suffix}", "dataset": "casme2", "subject": "sub01",
            "subject_key": "casme2/sub01", "sample_id": key_suffix, "clip_id": key_suffix, "is_macro": False,
            "clip_dir": "/data/x", "frame_files": ["img1.jpg", "img2.jpg"], "n_frames": 2, "fps": 200.0, "onset": 1,
            "apex": None, "apex_annotated": None, "apex_source": "missing", "offset": 2, "action_units": "12", "emotion_raw": emotion, "emotion": emotion,
            "objective_class": None, **protocol_labels("casme2", "sub01", key_suffix, emotion, False)}


def _source(name: str, sha: str = "ab" * 32) -> dict:
    return {"source": name, "source_sha256": sha, "kind": "zip", "root": "/data", "datasets": ["casme2"],
            "ingested_at": "2026-11-24T00:00:00+00:00", "config": "{}"}


def test_round_trip_keeps_types_and_schema_version(tmp_path):
    catalog.merge_source(tmp_path, _source("a.zip"), [_sample("EP01"), _sample("EP02", "others")], [])
    samples = catalog.read_samples(tmp_path)
    assert list(samples["sample_key"]) == ["casme2/sub01/EP01", "casme2/sub01/EP02"]
    assert list(samples.loc[0, "frame_files"]) == ["img1.jpg", "img2.jpg"]
    assert pd.isna(samples.loc[0, "apex"])
    assert samples.loc[0, "label_casme2_4"] == "happiness" and pd.isna(samples.loc[1, "label_casme2_4"])
    assert str(samples["apex"].dtype) == "Int32" and samples.loc[0, "onset"] == 1
    metadata = pq.read_schema(tmp_path / catalog.SAMPLES_FILE).metadata
    assert metadata[b"merflow.schema_version"] == str(catalog.SCHEMA_VERSION).encode()


def test_reingesting_a_source_replaces_its_rows(tmp_path):
    catalog.merge_source(tmp_path, _source("a.zip"), [_sample("EP01"), _sample("EP02")], [])
    catalog.merge_source(tmp_path, _source("b.zip", "cd" * 32), [_sample("EP03")], [])
    catalog.merge_source(tmp_path, _source("a.zip", "ef" * 32), [_sample("EP01")], [])
    samples = catalog.read_samples(tmp_path)
    assert sorted(samples["sample_id"]) == ["EP01", "EP03"]
    assert set(catalog.read_sources(tmp_path)["source_sha256"]) == {"cd" * 32, "ef" * 32}


def test_a_key_from_two_sources_is_quarantined_not_overwritten(tmp_path):
    catalog.merge_source(tmp_path, _source("a.zip"), [_sample("EP01")], [])
    row = catalog.merge_source(tmp_path, _source("copy.zip", "cd" * 32), [_sample("EP01")], [])
    assert row["n_samples"] == 0 and row["n_quarantined"] == 1
    quarantine = catalog.read_quarantine(tmp_path)
    assert quarantine.loc[0, "reason"] == "duplicate_id" and "a.zip" in quarantine.loc[0, "detail"]
    assert catalog.read_samples(tmp_path)["source"].tolist() == ["a.zip"]


def test_other_schema_versions_are_refused(tmp_path):
    catalog.merge_source(tmp_path, _source("a.zip"), [_sample("EP01")], [])
    table = pq.read_table(tmp_path / catalog.SAMPLES_FILE)
    pq.write_table(table.replace_schema_metadata({b"merflow.schema_version": b"0"}), tmp_path / catalog.SAMPLES_FILE)
    with pytest.raises(catalog.CatalogSchemaError, match="version 0.*re-ingest"):
        catalog.read_samples(tmp_path)


def test_a_version_1_catalog_is_refused_with_a_re_ingest_message(tmp_path):
    # Version 1 had no clip_id / apex_annotated and quarantined apex_outside_clip: its rows cannot be
    # told apart from version 2's, so merflow asks for a fresh ingest rather than guessing.
    catalog.merge_source(tmp_path, _source("a.zip"), [_sample("EP01")], [])
    table = pq.read_table(tmp_path / catalog.SAMPLES_FILE).drop_columns(["clip_id", "apex_annotated"])
    pq.write_table(table.replace_schema_metadata({b"merflow.schema_version": b"1"}), tmp_path / catalog.SAMPLES_FILE)
    with pytest.raises(catalog.CatalogSchemaError, match=r"version 1; this merflow reads version 4 \(and upgrades versions 2, 3\): re-ingest"):
        catalog.read_samples(tmp_path)


def test_summary_warns_of_an_apex_outside_the_clip(tmp_path):
    outside = _sample("EP02") | {"apex_annotated": 9, "apex_source": "outside_clip"}
    catalog.merge_source(tmp_path, _source("a.zip"), [_sample("EP01"), outside], [])
    result = catalog.summary(tmp_path)
    assert result["datasets"]["casme2"]["apex_outside_clip"] == 1 and result["quarantined"] == 0
    assert [(w["sample_key"], w["warning"]) for w in result["warnings"]] == [("casme2/sub01/EP02", "apex_outside_clip")]
    assert "annotated apex 9 outside onset..offset 1..2" in result["warnings"][0]["detail"]


def test_missing_catalog_reads_empty_with_columns(tmp_path):
    assert catalog.read_samples(tmp_path).empty
    assert "reason" in catalog.read_quarantine(tmp_path).columns


def _imported(key_suffix: str) -> dict:
    from merflow.tasks.imports import _row

    return _row("casme2", "sub01", key_suffix, "casme2/sub01", "sub01_EP01 .png; labelled by gt.csv line 1", "1",
                "positive", {"label_megc2019": "positive"})


def test_imported_rows_have_no_frames_and_say_so(tmp_path):
    catalog.merge_source(tmp_path, _source("a.zip"), [_sample("EP01")], [])
    catalog.merge_source(tmp_path, _source("/flows", "cd" * 32) | {"kind": "flow-images"}, [_imported("EP02")], [])
    samples = catalog.read_samples(tmp_path).set_index("sample_id")
    assert samples.at["EP01", "origin"] == "ingested" and pd.isna(samples.at["EP01", "origin_detail"])
    assert samples.at["EP02", "origin"] == "imported" and "gt.csv line 1" in samples.at["EP02", "origin_detail"]
    assert samples.at["EP02", "frame_files"] is None and pd.isna(samples.at["EP02", "onset"])
    assert catalog.summary(tmp_path)["datasets"]["casme2"]["imported"] == 1


def _as_version(folder, version: int) -> None:
    """Rewrite a catalog's files as schema ``version`` (2 or 3) wrote them: the label columns stored, no
    stated_labels (version 2: no origin columns either)."""
    from merflow.configs.catalog import STORED_LABEL_COLUMNS_V3

    for name in (catalog.SAMPLES_FILE, catalog.QUARANTINE_FILE, catalog.SOURCES_FILE):
        table = pq.read_table(folder / name)
        if name == catalog.SAMPLES_FILE:
            import pyarrow as pa

            samples = catalog.read_samples(folder)
            table = table.drop_columns(["stated_labels"])
            for column in STORED_LABEL_COLUMNS_V3:
                table = table.append_column(column, pa.array(samples[column].tolist(), pa.string()))
            if version == 2:  # version 2 had neither column
                table = table.drop_columns(["origin", "origin_detail"])
        pq.write_table(table.replace_schema_metadata({b"merflow.schema_version": str(version).encode()}), folder / name)


def test_a_version_2_catalog_reads_as_every_row_ingested(tmp_path):
    catalog.merge_source(tmp_path, _source("a.zip"), [_sample("EP01")], [])
    _as_version(tmp_path, 2)
    samples = catalog.read_samples(tmp_path)
    assert samples["origin"].tolist() == ["ingested"] and list(samples.columns) == catalog.samples_columns()
    assert samples.at[0, "label_casme2_4"] == "happiness" and samples.at[0, "stated_labels"] is None
    assert len(catalog.read_sources(tmp_path)) == 1
    catalog.merge_source(tmp_path, _source("b.zip", "cd" * 32), [_sample("EP02")], [])  # and is written as 4
    assert pq.read_schema(tmp_path / catalog.SAMPLES_FILE).metadata[b"merflow.schema_version"] == b"4"


def test_old_catalogs_read_with_their_labels_and_the_new_class_sets(tmp_path):
    """Schema 2 and 3 stored the label columns: read as 4, the ingested rows' labels are what the mappings give
    (CAS(ME)^3's new columns included), an imported row's stated label stays, and so does a stored label that
    differs from the mapping (a user's correction)."""
    edited = dict(_sample("EP03", "repression"), label_casme2_4="disgust")  # not what the mapping gives
    for version in (2, 3):
        folder = tmp_path / str(version)
        catalog.merge_source(folder, _source("a.zip"), [_sample("EP01"), edited], [])
        if version == 3:
            catalog.merge_source(folder, _source("/flows", "cd" * 32) | {"kind": "flow-images"}, [_imported("EP02")], [])
        _as_version(folder, version)
        samples = catalog.read_samples(folder).set_index("sample_id")
        assert samples.at["EP01", "label_casme2_4"] == "happiness" and samples.at["EP01", "label_megc2019"] == "positive"
        assert samples.at["EP03", "label_casme2_4"] == "disgust" and samples.at["EP03", "label_casme2_5"] == "repression"
        assert samples.at["EP03", "stated_labels"] == {"casme2_4": "disgust"}
        assert {"label_casme3_7", "label_casme3_4", "label_casme3_3"} <= set(samples.columns)
        assert samples["label_casme3_7"].isna().all()  # CASME II rows are in none of CAS(ME)^3's sets
        if version == 3:
            assert samples.at["EP02", "label_megc2019"] == "positive" and pd.isna(samples.at["EP02", "label_fused4"])
            assert samples.at["EP02", "stated_labels"] == {"megc2019": "positive"}


def test_a_new_class_set_reads_on_an_old_catalog_without_re_ingesting(tmp_path, request):
    from merflow.configs.labels import CLASS_SETS, ClassSet, register_class_set
    from merflow.training.folds import folds

    catalog.merge_source(tmp_path, _source("a.zip"), [_sample(f"EP0{i}", e) for i, e in
                                                       enumerate(("happiness", "disgust", "others", "surprise"))], [])
    _as_version(tmp_path, 3)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.parquet")}
    request.addfinalizer(lambda: CLASS_SETS.pop("valence2", None))  # the registration ends with the test
    register_class_set(ClassSet("valence2", ("negative", "positive"), frozenset({"casme2"}),
                                {"disgust": "negative", "happiness": "positive"}, "a test's two classes"))
    samples = catalog.read_samples(tmp_path).set_index("sample_id")
    assert samples["label_valence2"].tolist() == ["positive", "negative", None, None]
    assert [f.classes for f in folds(samples.reset_index(), "lovo", "casme2", "valence2")][0] == ("negative", "positive")
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.parquet")} == before  # nothing was rewritten
    with pytest.raises(ValueError, match="exists already"):
        register_class_set(ClassSet("casme2_4", (), frozenset(), {}, ""))


def test_an_edited_label_is_stored_as_stated_and_the_others_stay_derived(tmp_path):
    catalog.merge_source(tmp_path, _source("a.zip"), [_sample("EP01"), _sample("EP02", "others")], [])
    samples = catalog.read_samples(tmp_path)
    assert samples["stated_labels"].isna().all()  # an adapter's labels are the mappings': nothing stated
    samples.loc[1, "label_casme2_5"] = None
    catalog.write_table(tmp_path, catalog.SAMPLES_FILE, samples)
    again = catalog.read_samples(tmp_path)
    assert pd.isna(again.loc[1, "label_casme2_5"]) and again.loc[1, "stated_labels"] == {"casme2_5": None}
    assert again.drop(columns=["stated_labels"]).equals(samples.drop(columns=["stated_labels"]))
    assert "label_casme2_5" not in pq.read_schema(tmp_path / catalog.SAMPLES_FILE).names  # derived, never stored
