from collections import Counter

import numpy as np
import pandas as pd
import pytest

from merflow.tasks.labels import LABEL_COLUMNS, protocol_labels
from merflow.training.folds import (
    PROTOCOLS,
    Fold,
    check_disjoint,
    folds,
    label_column,
    macro_samples,
    protocol_samples,
)


def _row(dataset: str, subject: str, sample_id: str, emotion: str, is_macro: bool = False) -> dict:
    person = "smic" if dataset.startswith("smic") else dataset  # SMIC's cameras filmed the same people
    return {"sample_key": f"{dataset}/{subject}/{sample_id}", "dataset": dataset, "subject": subject,
            "subject_key": f"{person}/{subject}", "sample_id": sample_id, "is_macro": is_macro,
            "emotion": emotion, **protocol_labels(dataset, subject, sample_id, emotion, is_macro)}


def _rotating(dataset: str, subjects: list[str], emotions: list[str], per_subject: int) -> list[dict]:
    """Each subject gets a different run of the emotions, so subjects cover different classes."""
    return [_row(dataset, subject, f"{subject}_{j:02d}", emotions[(i + j) % len(emotions)])
            for i, subject in enumerate(subjects) for j in range(per_subject)]


def build_catalog() -> pd.DataFrame:
    smic = ["negative", "positive", "surprise"]
    rows = [
        # CASME and CASME II both name subjects sub01..: different people.
        *_rotating("casme2", [f"sub{i:02d}" for i in range(1, 6)],
                   ["happiness", "surprise", "disgust", "repression", "others", "fear"], 4),
        _row("casme2", "sub05", "EP09_05f", "disgust"),  # left out of MEGC2019's official list
        *_rotating("casme", ["sub01", "sub02", "sub03"],
                   ["disgust", "surprise", "repression", "tense", "happiness", "sadness"], 3),
        *_rotating("samm", ["006", "007", "008"],
                   ["anger", "contempt", "happiness", "surprise", "others", "fear", "disgust", "sadness"], 4),
        *_rotating("smic_hs", ["s1", "s2", "s3", "s4"], smic, 3),
        *_rotating("smic_vis", ["s1", "s2"], smic, 3),  # the same people and events as smic_hs s1, s2
        *_rotating("casme_sq", ["s15", "s16", "s17"], ["happiness", "disgust", "pain", "surprise", "others"], 3),
        _row("casme_sq", "s15", "macro_01", "happiness", is_macro=True),
        _row("ckplus", "S005", "S005_001", "surprise", is_macro=True),
        _row("ckplus", "S010", "S010_002", "happiness", is_macro=True),
    ]
    return pd.DataFrame(rows)


CATALOG = build_catalog()

CASES = [("loso", "casme2", None), ("loso", "casme2", "casme2_5"), ("loso", "casme", None), ("loso", "samm", None),
         ("loso", "smic", None), ("loso", "smic_vis", None), ("loso", "casme_sq", None), ("lovo", "casme2", None),
         ("lovo", "smic", None), ("megc2019", None, None), ("cde", None, None), ("fused4", None, None),
         ("fused9", None, None)]
LOSO_CASES = [case for case in CASES if case[0] != "lovo"]
CASE_IDS = ["-".join(filter(None, case)) for case in CASES]


def _subjects(keys) -> set[str]:
    subject_of = dict(zip(CATALOG["sample_key"], CATALOG["subject_key"]))
    return {subject_of[k] for k in keys}


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_fit_validation_test_are_subject_disjoint(case):
    protocol = case[0]
    usable = set(protocol_samples(CATALOG, *case)["sample_key"])
    all_subjects = _subjects(usable)
    for fold in folds(CATALOG, *case):
        check_disjoint(fold, CATALOG)
        fit, validation, test = _subjects(fold.fit_keys), _subjects(fold.validation_keys), _subjects(fold.test_keys)
        training_subjects = all_subjects - set(fold.test_subjects)
        assert not validation & (fit | test)
        assert bool(validation) == (len(training_subjects) >= 2)  # smic_vis: 2 people, nobody to spare
        if protocol != "lovo":  # LOVO fits on the test subject's other videos by definition
            assert not fit & test
        # Validation subjects are training subjects; every usable sample has exactly one role.
        assert validation <= training_subjects
        roles = fold.fit_keys + fold.validation_keys + fold.test_keys
        assert len(roles) == len(set(roles)) and set(roles) == usable


@pytest.mark.parametrize("case", LOSO_CASES, ids=["-".join(filter(None, c)) for c in LOSO_CASES])
def test_loso_tests_every_usable_sample_once(case):
    protocol_folds = folds(CATALOG, *case)
    tested = Counter(k for fold in protocol_folds for k in fold.test_keys)
    assert set(tested) == set(protocol_samples(CATALOG, *case)["sample_key"])
    assert set(tested.values()) == {1}
    assert all(len(fold.test_subjects) == 1 for fold in protocol_folds)
    assert [f.test_subjects[0] for f in protocol_folds] == sorted(_subjects(tested))


def test_lovo_holds_out_one_sample_and_fits_on_its_subjects_other_samples():
    samples = protocol_samples(CATALOG, "lovo", "casme2")
    lovo = folds(CATALOG, "lovo", "casme2")
    assert [f.test_keys for f in lovo] == [(k,) for k in samples["sample_key"]]
    fold = next(f for f in lovo if f.name == "lovo-casme2/sub01/sub01_00")
    siblings = set(samples.loc[samples["subject_key"] == "casme2/sub01", "sample_key"]) - set(fold.test_keys)
    assert siblings and siblings <= set(fold.fit_keys)


def test_fold_names():
    assert folds(CATALOG, "loso", "casme2")[0].name == "loso-casme2-sub01"
    assert folds(CATALOG, "loso", "smic")[0].name == "loso-smic_hs-s1"
    assert {f.name for f in folds(CATALOG, "megc2019")} >= {"megc2019-samm/006", "megc2019-smic/s1"}
    assert folds(CATALOG, "lovo", "casme2")[0].name == "lovo-casme2/sub01/sub01_00"


def test_composites_keep_people_apart():
    cde = {f.name: f for f in folds(CATALOG, "cde")}
    casme_sub01 = cde["cde-casme/sub01"]
    assert casme_sub01.test_subjects == ("casme/sub01",)
    assert all(k.startswith("casme/sub01/") for k in casme_sub01.test_keys)
    # CASME II's sub01 is another person: it is trained or validated on when CASME's sub01 is tested.
    assert "casme2/sub01" in _subjects(casme_sub01.fit_keys + casme_sub01.validation_keys)
    assert "cde-casme2/sub01" in cde

    # SMIC's HS and VIS recordings of s1 are one person: one fold, one subject_key.
    assert folds(CATALOG, "loso", "smic_vis")[0].test_subjects == ("smic/s1",)
    hs_s1 = [k for k in CATALOG["sample_key"] if k.startswith("smic_hs/s1/")]
    vis_s1 = [k for k in CATALOG["sample_key"] if k.startswith("smic_vis/s1/")]
    split_person = Fold("split", "fused4", "label_fused4", ("negative",), tuple(vis_s1), (), tuple(hs_s1),
                        ("smic/s1",))
    with pytest.raises(ValueError, match=r"subjects in both fit and test: \['smic/s1'\]"):
        check_disjoint(split_person, CATALOG)


def test_composites_take_one_smic_camera():
    for protocol in ("megc2019", "cde", "fused4"):
        datasets = set(protocol_samples(CATALOG, protocol)["dataset"])
        assert "smic_hs" in datasets and not datasets & {"smic_vis", "smic_nir"}
    assert set(protocol_samples(CATALOG, "fused9")["dataset"]) == {"casme", "casme2", "casme_sq", "samm"}
    assert set(protocol_samples(CATALOG, "megc2019")["dataset"]) == {"casme2", "samm", "smic_hs"}
    assert "casme2/sub05/EP09_05f" not in set(protocol_samples(CATALOG, "megc2019")["sample_key"])
    assert "casme2/sub05/EP09_05f" in set(protocol_samples(CATALOG, "loso", "casme2")["sample_key"])


def _relabel(catalog: pd.DataFrame, subject_key: str, how: str) -> pd.DataFrame:
    """The catalog with one subject's labels changed, column by column, among its labelled samples:
    rotated ("permute": same classes per subject) or all set to one class ("collapse": fewer classes)."""
    changed = catalog.copy()
    for column in ("emotion", *LABEL_COLUMNS):
        rows = changed.index[(changed["subject_key"] == subject_key) & changed[column].notna()]
        values = changed.loc[rows, column].to_numpy()
        changed.loc[rows, column] = np.roll(values, 1) if how == "permute" else sorted(values)[:1] * len(values)
    return changed


@pytest.mark.parametrize("how", ["permute", "collapse"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_validation_ignores_the_test_subjects_labels(case, how):
    original = folds(CATALOG, *case)
    column = original[0].label_column
    changed_labels = 0
    for subject in sorted({s for fold in original for s in fold.test_subjects}):
        relabelled = _relabel(CATALOG, subject, how)
        changed_labels += not CATALOG[column].equals(relabelled[column])
        again = {f.name: f for f in folds(relabelled, *case)}
        for fold in (f for f in original if f.test_subjects == (subject,)):
            assert (again[fold.name].fit_keys, again[fold.name].validation_keys, again[fold.name].test_keys) == \
                   (fold.fit_keys, fold.validation_keys, fold.test_keys)
    assert changed_labels  # the relabelling did change labels: the check is not vacuous


def _casme2_catalog(emotions_by_subject: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame([_row("casme2", subject, f"EP{j:02d}", emotion)
                         for subject, emotions in emotions_by_subject.items() for j, emotion in enumerate(emotions)])


def test_validation_covers_the_most_classes():
    catalog = _casme2_catalog({"sub01": ["happiness"], "sub02": ["surprise"],
                               "sub03": ["disgust", "repression", "happiness", "surprise"],
                               "sub04": ["disgust", "repression"], "sub05": ["happiness"]})
    fold = next(f for f in folds(catalog, "loso", "casme2") if f.name == "loso-casme2-sub05")
    # 4 training subjects -> round(0.2 * 4) = 1 validation subject; sub03 covers all 4 classes and the
    # others still cover all 4 in fit.
    assert _subjects_of(catalog, fold.validation_keys) == {"casme2/sub03"}


def test_validation_never_takes_a_class_away_from_fit():
    # sub03 alone has repression: validating on it would cover 4 classes but leave fit without repression.
    catalog = _casme2_catalog({"sub01": ["happiness"], "sub02": ["surprise"],
                               "sub03": ["disgust", "repression", "happiness", "surprise"],
                               "sub04": ["disgust"], "sub05": ["happiness"]})
    fold = next(f for f in folds(catalog, "loso", "casme2") if f.name == "loso-casme2-sub05")
    assert "casme2/sub03" not in _subjects_of(catalog, fold.validation_keys)
    fit_labels = set(catalog.set_index("sample_key").loc[list(fold.fit_keys), "label_casme2_4"])
    assert fit_labels == set(fold.classes)


def _subjects_of(catalog: pd.DataFrame, keys) -> set[str]:
    return set(catalog.set_index("sample_key").loc[list(keys), "subject_key"])


def test_validation_size_and_determinism():
    fused4 = folds(CATALOG, "fused4")  # 15 subjects: 14 training -> round(0.2 * 14) = 3 validation subjects
    assert {len(_subjects(f.validation_keys)) for f in fused4} == {3}
    assert folds(CATALOG, "fused4", seed=3) == folds(CATALOG, "fused4", seed=3)
    assert all(not f.validation_keys for f in folds(CATALOG, "loso", "casme2", validation_fraction=0))
    with pytest.raises(ValueError, match="validation_fraction"):
        folds(CATALOG, "loso", "casme2", validation_fraction=1.0)


def test_macro_rows_stay_out_of_micro_folds():
    macro_keys = set(CATALOG.loc[CATALOG["is_macro"], "sample_key"])
    for case in CASES:
        for fold in folds(CATALOG, *case):
            assert not macro_keys & set(fold.fit_keys + fold.validation_keys + fold.test_keys)
    assert list(macro_samples(CATALOG)["sample_key"]) == ["ckplus/S005/S005_001", "ckplus/S010/S010_002"]


def test_class_sets_per_protocol():
    def classes(*case):
        return folds(CATALOG, *case)[0].classes

    assert classes("loso", "casme2") == ("disgust", "happiness", "repression", "surprise")
    assert classes("loso", "casme2", "casme2_5") == ("disgust", "happiness", "others", "repression", "surprise")
    assert classes("megc2019") == ("negative", "positive", "surprise")
    assert classes("cde") == ("negative", "positive", "surprise")
    assert classes("loso", "smic") == ("negative", "positive", "surprise")
    assert classes("fused4") == ("negative", "others", "positive", "surprise")
    assert set(classes("fused9")) <= {"anger", "disgust", "fear", "happiness", "others", "repression", "sadness",
                                      "surprise", "tense"}  # apex9.m's nine: no contempt; CASME's tense


def test_label_columns():
    assert label_column("loso", "casme") == "label_casme4"
    assert label_column("loso", "casme2") == "label_casme2_4"
    assert label_column("lovo", "casme2", "casme2_5") == "label_casme2_5"
    assert {label_column("loso", d) for d in ("smic", "smic_hs", "smic_vis", "smic_nir")} == {"label_smic3"}
    assert label_column("loso", "samm") == "label_samm5"
    assert label_column("loso", "casme_sq") == "label_fused4"
    assert [label_column(p) for p in PROTOCOLS[2:]] == ["label_megc2019", "label_cde3", "label_fused4",
                                                        "label_fused9"]


@pytest.mark.parametrize(("args", "message"), [
    (("loocv", "casme2"), "unknown protocol 'loocv'"),
    (("loso",), "'loso' needs a dataset"),
    (("lovo", "ckplus"), "macro-expressions only"),
    (("loso", "casme4"), "unknown dataset 'casme4'"),  # casme3 (CAS(ME)^3) is known since issue 19
    (("loso", "casme3", "casme2_4"), "'casme2_4' has no labels for dataset 'casme3'.*casme3_3, casme3_4, casme3_7"),
    (("megc2019", "casme2"), "composite .* takes no dataset"),
    (("cde", None, "smic3"), "uses class set 'cde3'"),
    (("loso", "smic", "fused9"), "'fused9' has no labels for dataset 'smic_hs'"),
    (("loso", "casme2", "casme5"), "unknown class set 'casme5'"),
])
def test_label_column_errors_are_clear(args, message):
    with pytest.raises(ValueError, match=message):
        label_column(*args)


def test_loso_and_lovo_over_a_whole_class_set_span_its_datasets():
    from merflow.training.folds import class_set_datasets

    assert class_set_datasets("fused4") == {"casme", "casme2", "casme_sq", "samm", "smic_hs"}
    assert class_set_datasets("fused9") == {"casme", "casme2", "casme_sq", "samm"}
    lovo = folds(CATALOG, "lovo", None, "fused4", validation_fraction=0.0)
    samples = protocol_samples(CATALOG, "lovo", None, "fused4")
    assert set(samples["dataset"]) == class_set_datasets("fused4")  # one SMIC camera, as the composites
    assert [f.test_keys for f in lovo] == [(k,) for k in samples["sample_key"]]
    # No inner validation: each fold trains on every other sample, its person's other clips included.
    assert all(len(f.fit_keys) == len(samples) - 1 and not f.validation_keys for f in lovo)
    loso = folds(CATALOG, "loso", None, "fused4")
    assert {f.test_subjects[0] for f in loso} == set(samples["subject_key"])
    assert loso[0].name == "loso-casme/sub01"
    with pytest.raises(ValueError, match="needs a dataset .* or a class set"):
        label_column("lovo")
    with pytest.raises(ValueError, match="unknown class set 'fused5'"):
        folds(CATALOG, "lovo", None, "fused5")


def test_undersample_balances_every_class_to_the_smallest_seeded():
    from merflow.training.folds import undersample

    samples = protocol_samples(CATALOG, "lovo", None, "fused4")
    kept, record = undersample(samples, "label_fused4", seed=3)
    counts = Counter(kept["label_fused4"])
    assert set(counts.values()) == {min(Counter(samples["label_fused4"]).values())} == {record["per_class"]}
    assert record["kept"] == sorted(kept["sample_key"]) and record["seed"] == 3
    assert undersample(samples.sample(frac=1, random_state=0), "label_fused4", seed=3)[1]["kept"] == record["kept"]
    assert undersample(samples, "label_fused4", seed=4)[1]["kept"] != record["kept"]


def _survey_rows(dataset: str, count: int) -> pd.DataFrame:
    """The survey's imported images: named by position, person unknown (tasks/imports.py)."""
    classes = ["negative", "others", "positive", "surprise"]
    return pd.DataFrame([{"sample_key": f"{dataset}/unknown/{i:04d}", "dataset": dataset, "subject": "unknown",
                          "subject_key": f"{dataset}/unknown", "sample_id": f"{i:04d}", "is_macro": False,
                          **dict.fromkeys(LABEL_COLUMNS), "label_fused4": classes[i % 4]} for i in range(1, count + 1)])


def test_the_imported_survey_set_runs_lovo_only_and_stays_out_of_the_fused_datasets():
    catalog = pd.concat([CATALOG, _survey_rows("survey_c4", 8)], ignore_index=True)
    lovo = folds(catalog, "lovo", "survey_c4", validation_fraction=0.0)
    assert len(lovo) == 8 and lovo[0].classes == ("negative", "others", "positive", "surprise")
    assert all(len(f.fit_keys) == 7 for f in lovo)
    with pytest.raises(ValueError, match=r"holds out people, but 8 of its samples name none \(survey_c4.*--protocol lovo"):
        folds(catalog, "loso", "survey_c4")
    # The survey's own datasets' fused4 runs (a class set over the five) do not draw the imported images in.
    assert "survey_c4" not in set(protocol_samples(catalog, "lovo", class_set="fused4")["dataset"])
    assert "survey_c4" not in set(protocol_samples(catalog, "fused4")["dataset"])
