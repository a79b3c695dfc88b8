import json
from collections import Counter

import pandas as pd
import pytest

from merflow.storage import catalog
from merflow.tasks import sample_lists
from merflow.tasks.datasets import casme_sq, megc2019
from merflow.tasks.labels import protocol_labels
from merflow.tasks.sample_lists import ListRow, SampleListError

from reference_ingest import ingest_catalog
from requires import requires_reference


def _row(dataset, subject, sample_id, emotion, onset=1, clip_id=None, is_macro=False):
    return {"sample_key": f"{dataset}/{subject}/{sample_id}", "dataset": dataset, "subject": subject,
            "sample_id": sample_id, "clip_id": clip_id or sample_id, "onset": onset, "emotion": emotion,
            "is_macro": is_macro, **protocol_labels(dataset, subject, sample_id, emotion, is_macro)}


CATALOG = pd.DataFrame([
    _row("casme", "sub01", "EP01_12@73", "tense", 73, "EP01_12"),
    _row("casme", "sub01", "EP01_12@163", "tense", 163, "EP01_12"),
    _row("casme", "sub01", "EP01_5", "happiness", 113),
    _row("casme2", "sub24", "EP07_01", "sadness"),
    _row("samm", "006", "006_1_2", "anger"),
    _row("smic_hs", "s2", "s2_sur_01", "surprise"),
    _row("smic_hs", "s11", "s11_ne_01", "negative"),
    _row("smic_hs", "s1", "s1_po_01", "positive"),
    _row("smic_vis", "s1", "s1_po_01", "positive"),
    _row("ckplus", "S005", "S005_001", "surprise", is_macro=True),
])


def test_rows_are_matched_by_clip_and_onset_and_labels_follow_the_list():
    rows = [ListRow("casme", 2, "sub01", "EP01_12", 163, "tense"),
            ListRow("casme", 3, "sub01", "EP01_5", 113, "happiness"),
            ListRow("casme", 4, "sub01", "EP01_12", 999, "tense"),        # no expression at that onset
            ListRow("casme2", 210, "sub24", "EP07_01", 24, "surprise"),   # the list relabels it
            ListRow("samm", 9, "007", "007_1_1", 1, "Anger")]             # not in the catalog
    kept, report = sample_lists.select_rows(CATALOG, rows, ["positive", "surprise", "negative", "surprise"])
    assert set(kept["sample_key"]) == {"casme/sub01/EP01_12@163", "casme/sub01/EP01_5", "casme2/sub24/EP07_01",
                                       "smic_hs/s1/s1_po_01", "smic_hs/s2/s2_sur_01", "smic_hs/s11/s11_ne_01",
                                       "ckplus/S005/S005_001"}  # CK+ stays for the macro pretraining
    assert [(r["dataset"], r["row"]) for r in report["unmatched"]] == [("casme", 4), ("samm", 9)]
    relabelled = kept.set_index("sample_key").loc["casme2/sub24/EP07_01"]
    assert relabelled["emotion"] == "surprise" and relabelled["label_fused4"] == "surprise"
    assert pd.isna(relabelled["label_megc2019"])  # MEGC2019 membership is the official list's, not the survey's
    assert report["kept"] == {"casme": 2, "casme2": 1, "smic_hs": 3}
    assert report["left_out"] == 3  # EP01_12@73, SMIC-VIS's clip, and the SAMM clip no list row names
    assert report["smic"] | {"mismatches": None} == {"catalog_hs": 3, "labels": 4, "paired": 3,
                                                     "not_read_by_apex4": 0, "mismatches": None}


def test_smic_labels_pair_in_padded_folder_order_and_mismatches_are_left_out():
    order = sample_lists.smic_folder_order(CATALOG[CATALOG["dataset"] == "smic_hs"])
    assert order["sample_id"].tolist() == ["s1_po_01", "s2_sur_01", "s11_ne_01"]  # s01 < s02 < s11, not s1 < s11 < s2
    kept, report = sample_lists.select_rows(CATALOG, [], ["positive", "negative", "negative"])
    assert set(kept.loc[kept["dataset"] == "smic_hs", "sample_key"]) == {"smic_hs/s1/s1_po_01", "smic_hs/s11/s11_ne_01"}
    assert report["smic"]["mismatches"] == [{"row": 2, "label": "negative", "sample_key": "smic_hs/s2/s2_sur_01",
                                             "catalog": "surprise"}]
    assert any("disagree" in line for line in sample_lists.report_lines(report))


def test_missing_folders_and_files_are_one_clear_error(tmp_path):
    with pytest.raises(SampleListError, match="--sample-lists DIR or set MERFLOW_SAMPLE_LISTS"):
        sample_lists.lists_folder(None, environ={})
    with pytest.raises(SampleListError, match="does not exist"):
        sample_lists.lists_folder(tmp_path / "nowhere", environ={})
    (tmp_path / "CASME.xls").write_bytes(b"not a workbook")
    with pytest.raises(SampleListError, match=r"lacks casme2.xls, samm.xls, CAS\(ME\)2.xls, SMIC.xls"):
        sample_lists.lists_folder(None, environ={"MERFLOW_SAMPLE_LISTS": str(tmp_path)})
    for name in sample_lists.SURVEY_FILES.values():
        (tmp_path / name).write_bytes(b"not a workbook")
    with pytest.raises(SampleListError, match="cannot read sample list .*CASME.xls"):
        sample_lists.select(CATALOG, "survey", sample_lists.lists_folder(tmp_path, environ={}))
    with pytest.raises(SampleListError, match="unknown sample list 'paper'"):
        sample_lists.apply(CATALOG, "paper", tmp_path)
    assert sample_lists.apply(CATALOG, None) == (CATALOG, None)


@pytest.fixture(scope="module")
def survey_catalog(reference, tmp_path_factory):
    """The five datasets' real sheets through the whole ingest path (tests/reference_ingest.py): CASME II
    2014, SAMM, CAS(ME)^2; CASME from a stand-in sheet holding the survey list's rows (the CASME coding
    sheet is not among the reference files); SMIC-HS's 164 clips as the official MEGC2019 list names them."""
    out = tmp_path_factory.mktemp("survey")
    return catalog.read_samples(ingest_catalog(reference, ["casme", "casme2_2014", "samm", "casme_sq", "smic"], out))


@pytest.mark.slow  # five datasets' real sheets through the ingest path: ~7 s on 2 cores
@requires_reference
def test_survey_lists_give_the_survey_pools(reference, survey_catalog):
    kept, report = sample_lists.select(survey_catalog, "survey", reference / "survey")
    assert report["unmatched"] == [] and report["smic"]["mismatches"] == []
    assert report["kept"] == {"casme": 189, "casme2": 240, "casme_sq": 54, "samm": 157, "smic_hs": 164}
    assert report["smic"]["not_read_by_apex4"] == 24
    # The 14 CASME clips with several expressions give one sample each (189 rows, 189 samples).
    casme = kept[kept["dataset"] == "casme"]
    assert casme.groupby(["subject", "clip_id"]).size().gt(1).sum() == 14
    assert casme["sample_id"].str.contains("@").sum() == 33
    assert {"casme/sub01/EP01_12@73", "casme/sub01/EP01_12@163"} <= set(casme["sample_key"])
    # The survey labels from its list: casme2.xls has 2019's surprise for three sub24 clips.
    assert sorted(r["sample_key"] for r in report["emotion_mismatches"]) == [
        "casme2/sub24/EP07_01", "casme2/sub24/EP07_04f", "casme2/sub24/EP10_03"]
    surprise = Counter(kept.loc[kept["label_fused4"] == "surprise", "dataset"])
    assert surprise == {"casme": 20, "casme2": 24, "samm": 15, "casme_sq": 10, "smic_hs": 43}
    assert sum(surprise.values()) == 112
    assert Counter(kept["label_fused4"].dropna()).most_common()[-1][1] == 112  # the smallest 4-class pool
    fear = Counter(kept.loc[kept["label_fused9"] == "fear", "dataset"])
    assert fear == {"casme": 2, "casme2": 2, "samm": 8, "casme_sq": 4} and sum(fear.values()) == 16
    assert min(Counter(kept["label_fused9"].dropna()).values()) == 16  # the smallest 9-class pool
    smic = Counter(kept.loc[kept["dataset"] == "smic_hs", "label_fused4"])
    assert smic == {"negative": 70, "positive": 51, "surprise": 43}


@requires_reference
def test_smic_list_disagrees_with_the_unpadded_folder_order(reference):
    # Why the padded order: SMIC.xls's first 164 labels agree with it row for row, not with s1, s11, s12, ...
    official = megc2019.read_official_list(reference / "megc2019" / "combined_3class_gt.csv")
    hs = official[official["dataset"] == "smic_hs"].rename(columns={"label": "emotion"})
    _, labels = sample_lists.read_survey_lists(reference / "survey")
    padded = sample_lists.smic_folder_order(hs)["emotion"].tolist()
    unpadded = hs.sort_values(["subject", "sample_id"])["emotion"].tolist()
    assert padded == labels[:164]
    assert sum(a != b for a, b in zip(unpadded, labels)) == 109


@requires_reference
def test_casme_sq_subject_numbers_are_the_code_sheets(reference):
    subjects, _ = casme_sq.naming_rules(reference / "casme_sq" / "CAS(ME)^2code_final.xlsx")
    assert {number: folder for number, (_, folder) in subjects.items()} == sample_lists.CASME_SQ_SUBJECTS


def _write_lists(folder, casme2_rows):
    """Survey-format lists (xlsx content under the survey's file names; the reader goes by content)."""
    from openpyxl import Workbook

    headers = {"CASME.xls": ["Subject", "Filename", "OnsetF", "ApexF1", "Emotion"],
               "casme2.xls": ["Filename", "OnsetFrame", "ApexFrame", "Estimated Emotion", "Subject"],
               "samm.xls": ["Subject", "Filename", "Onset Frame", "Apex Frame", "Estimated Emotion"],
               "CAS(ME)2.xls": None, "SMIC.xls": None}
    for name, header in headers.items():
        book = Workbook()
        if header:
            book.active.append(header)
        for row in casme2_rows if name == "casme2.xls" else []:
            book.active.append(row)
        book.save(folder / name)


@pytest.mark.integration
@pytest.mark.slow
def test_load_protocol_keeps_only_the_listed_samples_and_records_it(training_set, tmp_path, monkeypatch):
    from merflow.configs.train import TrainConfig
    from merflow.flows.protocol import load_protocol, train_protocol
    from merflow.storage import results

    samples = catalog.read_samples(training_set["catalog"])
    chosen = samples[samples["dataset"] == "casme2"].iloc[::2]
    _write_lists(tmp_path, [[r.sample_id, r.onset, r.onset, r.emotion, r.subject.removeprefix("sub")]
                            for r in chosen.itertuples()] + [["EP99_01", 1, 2, "happiness", "99"]])
    everything = load_protocol(training_set["catalog"], training_set["store"], "loso", "casme2")
    data = load_protocol(training_set["catalog"], training_set["store"], "loso", "casme2", sample_list="survey",
                         sample_lists=str(tmp_path))
    in_protocol = set(chosen.dropna(subset=["label_casme2_4"])["sample_key"]) - set(data.excluded)
    assert set(data.samples.index) == in_protocol and len(in_protocol) < len(everything.samples) * 0.6
    assert data.sample_list["kept"] == {"casme2": len(chosen)}
    assert [(r["subject"], r["clip"]) for r in data.sample_list["unmatched"]] == [("sub99", "EP99_01")]
    assert data.macro_keys == everything.macro_keys  # CK+ still pretrains the macro encoder
    assert all(set(f.fit_keys + f.validation_keys + f.test_keys) <= set(chosen["sample_key"]) for f in data.folds)
    tiny = TrainConfig(macro_epochs=1, pretrain_epochs=1, meta_epochs=1, batches_per_epoch=1)
    out = tmp_path / "results"
    trained = train_protocol(training_set["catalog"], training_set["store"], "loso", "casme2", tiny, out, run="listed",
                             max_folds=1, sample_list="survey", sample_lists=str(tmp_path))
    results.write_run(out, **trained.tables())
    recorded = json.loads(results.read_table(out, "runs", run="listed")["config"].iloc[0])
    assert recorded["data"]["sample_list"]["kept"] == {"casme2": len(chosen)}
    monkeypatch.delenv("MERFLOW_SAMPLE_LISTS", raising=False)
    with pytest.raises(SampleListError, match="--sample-lists DIR"):
        load_protocol(training_set["catalog"], training_set["store"], "loso", "casme2", sample_list="survey")
