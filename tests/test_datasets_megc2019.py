import pandas as pd
import pytest

from merflow.storage import catalog
from merflow.tasks.datasets import casme2, megc2019, samm

from reference_ingest import ingest_catalog
from requires import requires_reference


def _rows(frame, dataset):
    return set(map(tuple, frame[frame["dataset"] == dataset].values.tolist()))


@requires_reference
def test_composite_from_the_sheets_equals_the_official_list(reference):
    official = megc2019.read_official_list(reference / "megc2019" / "combined_3class_gt.csv")
    assert len(official) == 442
    derived = megc2019.composite_from_annotations(
        casme2.read_sheet(reference / "casme2" / "CASME2-coding-20140508.edited.xlsx")
        + samm.read_sheet(reference / "samm" / "SAMM_Micro_FACS_Codes_v2.xlsx"))
    for dataset, count in (("casme2", 145), ("samm", 133)):
        assert len(_rows(derived, dataset)) == count
        assert _rows(derived, dataset) == _rows(official, dataset)


@requires_reference
def test_both_official_formats_agree_and_ids_match_the_folders(reference):
    plain = megc2019.read_official_list(reference / "megc2019" / "combined_3class_gt.csv")
    htnet = megc2019.read_official_list(reference / "megc2019" / "combined_3_class2_for_optical_flow.csv")
    assert plain.equals(htnet)
    smic = plain[plain["dataset"] == "smic_hs"]
    assert len(smic) == 164 and smic["subject"].str.match(r"^s[1-9]\d*$").all()
    assert smic["sample_id"].iloc[0] == "s1_ne_01"
    assert set(plain.loc[plain["dataset"] == "samm", "subject"]) >= {"006", "037"}


@pytest.fixture(scope="module")
def ingested(reference, tmp_path_factory):
    """The real CASME II (2014, and 2019 alone) and SAMM sheets through the whole ingest path:
    detection, adapters, build_samples with frame folders, labels, the catalog on disk."""
    out = tmp_path_factory.mktemp("megc")
    return {"2014": catalog.read_samples(ingest_catalog(reference, ["casme2_2014", "samm"], out)),
            "2019": catalog.read_samples(ingest_catalog(reference, ["casme2_2019"], out))}


def _catalog_rows(samples, dataset):
    rows = samples[(samples["dataset"] == dataset) & samples["label_megc2019"].notna()]
    return set(zip(rows["dataset"], rows["subject"], rows["sample_id"], rows["label_megc2019"]))


@pytest.mark.slow  # the real CASME II and SAMM sheets through the ingest path: ~7 s on 2 cores
@requires_reference
def test_ingested_catalogs_hold_exactly_the_official_rows(reference, ingested):
    official = megc2019.read_official_list(reference / "megc2019" / "combined_3class_gt.csv")
    samples = ingested["2014"]
    for dataset, count in (("casme2", 145), ("samm", 133)):
        assert _catalog_rows(samples, dataset) == _rows(official, dataset)
        assert len(_catalog_rows(samples, dataset)) == count
    # SAMM 028_4_1 and 032_3_1 (apex outside onset..offset) are in the list: kept, their apex spotted.
    outside = samples[samples["apex_source"] == "outside_clip"].set_index("sample_id")
    assert set(outside.index) == {"028_4_1", "032_3_1"}
    assert outside["apex"].isna().all() and outside.loc["028_4_1", "apex_annotated"] == 1143
    # The 2019 sheet relabels three sub24 clips; membership stays the official list's.
    assert _catalog_rows(ingested["2019"], "casme2") == _rows(official, "casme2")
    differences, absent = megc2019.check_catalog(samples, official)
    assert differences.empty and absent == ["smic_hs"]


def test_check_catalog_lists_every_difference():
    official = pd.DataFrame([("casme2", "sub01", "EP01", "negative"), ("casme2", "sub01", "EP02", "positive"),
                             ("samm", "006", "006_1_2", "surprise"), ("smic_hs", "s1", "s1_ne_01", "negative")],
                            columns=megc2019.COLUMNS)
    samples = pd.DataFrame([("casme2", "sub01", "EP01", "negative"), ("casme2", "sub01", "EP03", "surprise"),
                            ("samm", "006", "006_1_2", "negative"), ("samm", "006", "006_1_3", None)],
                           columns=["dataset", "subject", "sample_id", "label_megc2019"])
    differences, absent = megc2019.check_catalog(samples, official)
    assert differences.values.tolist() == [
        ["casme2", "sub01", "EP02", "positive", None, "missing"],
        ["casme2", "sub01", "EP03", None, "surprise", "extra"],
        ["samm", "006", "006_1_2", "surprise", "negative", "label"]]
    assert absent == ["smic_hs"]


def test_official_list_path_needs_a_path_or_the_reference_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass --official"):
        megc2019.official_list_path(None, environ={})
    with pytest.raises(FileNotFoundError, match="not found"):
        megc2019.official_list_path(None, environ={"MERFLOW_REFERENCE": str(tmp_path)})
    (tmp_path / "megc2019").mkdir()
    (tmp_path / "megc2019" / "combined_3class_gt.csv").write_text("casme2,sub01,EP02_01f,1\n")
    assert megc2019.official_list_path(None, environ={"MERFLOW_REFERENCE": str(tmp_path)}).is_file()
