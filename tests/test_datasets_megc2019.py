from merflow.tasks.datasets import casme2, megc2019, samm

from conftest import requires_reference


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
