"""tasks/imports.py: the formats `merflow import-features` reads, on small synthetic sources of each (so CI without
the reference covers them) and on the real ones (the survey's C4/C9, the MEGC2019 composite's 442 flow images)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from mat_files import write_categorical, write_survey_images

from merflow.tasks import imports

# (dataset as the official list writes it, subject, clip, label code) and the file stem as HTNet names it.
LISTED = [("casme2", "sub01", "EP02_01f", 1, "sub01_EP02_01f"), ("casme2", "sub02", "EP03_02", 0, "sub02_EP03_02"),
          ("samm", "6", "006_1_2", 0, "006_006_1_2"), ("samm", "7", "007_3_1", 2, "007_007_3_1"),
          ("smic", "s01", "s01_ne_01", 0, "s01_s01_ne_01"), ("smic", "s02", "s02_sur_01", 2, "s02_s02_sur_01")]


def write_list(path: Path, rows=LISTED, header: bool = False) -> Path:
    """The official headerless list, or HTNet's with its header (SAMM subjects padded there)."""
    lines = ["dataset,sub,filename_o,label,apex,imagename,sub_filename"] if header else []
    for dataset, subject, clip, label, stem in rows:
        subject = f"{int(subject):03d}" if header and dataset == "samm" else subject
        lines.append(f"{dataset},{subject},{clip},{label}" + (f",,{stem}.jpg," if header else ""))
    path.write_text("\n".join(lines) + "\n")
    return path


def flow_image(seed: int, size: int = 28) -> np.ndarray:
    """A flow image as STSTNet's are: each channel min-max scaled to 0..255."""
    image = np.random.default_rng(seed).integers(1, 255, (size, size, 3)).astype(np.uint8)
    image[0, 0], image[0, 1] = 0, 255
    return image


def flow_folder(root: Path, rows=LISTED) -> Path:
    root.mkdir(parents=True)
    for seed, row in enumerate(rows):
        cv2.imwrite(str(root / f"{row[4]} .png"), flow_image(seed))
    return root


def test_ids_compare_unpadded_and_without_case():
    assert imports.id_key("s01_s01_ne_01") == imports.id_key("s1_s1_ne_01") == "s1_s1_ne_1"
    assert imports.id_key("006_006_1_2") == imports.id_key("6_006_1_2") == "6_6_1_2"
    assert imports.id_key("sub01_EP02_01f") == "sub1_ep2_1f" != imports.id_key("sub01_EP02_01")


def test_both_list_formats_give_the_same_rows(tmp_path):
    plain = imports.read_sample_list(write_list(tmp_path / "gt.csv"))
    htnet = imports.read_sample_list(write_list(tmp_path / "htnet.csv", header=True))
    columns = ["dataset", "subject", "sample_id", "label", "file_key"]
    assert plain[columns].equals(htnet[columns])
    assert plain["sample_id"].tolist()[4:] == ["s1_ne_01", "s2_sur_01"] and plain["subject"].tolist()[2] == "006"
    assert plain["line"].tolist()[0] == 1 and htnet["line"].tolist()[0] == 2  # HTNet's header is line 1
    twice = write_list(tmp_path / "twice.csv", LISTED + [("samm", "006", "006_1_2", 1, "")])
    with pytest.raises(imports.ImportFormatError, match=r"names clip .*006_1_2 twice \(lines 3, 7\)"):
        imports.read_sample_list(twice)
    bad = tmp_path / "bad.csv"
    bad.write_text("casme2,sub01,EP02_01f,7\n")
    with pytest.raises(ValueError, match="bad.csv line 1: dataset 'casme2' or label '7'"):
        imports.read_sample_list(bad)


def test_a_flow_folder_keeps_its_images_as_they_are(tmp_path):
    folder = flow_folder(tmp_path / "flows")
    read = imports.read_folder(folder, write_list(tmp_path / "gt.csv"), "flow-images")
    assert imports.detect_format(folder) == "flow-images" and not read.problems
    keys = [s["sample_key"] for s in read.samples]
    assert keys == ["casme2/sub01/EP02_01f", "casme2/sub02/EP03_02", "samm/006/006_1_2", "samm/007/007_3_1",
                    "smic_hs/s1/s1_ne_01", "smic_hs/s2/s2_sur_01"]  # the adapters' ids
    first = read.samples[0]
    assert (first["subject_key"], first["label_megc2019"], first["origin"], first["frame_files"]) == (
        "casme2/sub01", "positive", "imported", None)
    assert read.samples[4]["subject_key"] == "smic/s1" and read.samples[4]["label_megc2019"] == "negative"
    assert {k: v for k, v in first.items() if k.startswith("label_") and v} == {"label_megc2019": "positive"}
    # Stored in the file's decoded order (BGR = strain, v, u), values untouched.
    stored = read.arrays["samm/006/006_1_2"]
    assert stored.dtype == np.uint8 and np.array_equal(stored, flow_image(2).transpose(2, 0, 1))
    # One dataset's rows (--dataset): the others' files are left out, not quarantined.
    samm = imports.read_folder(folder, write_list(tmp_path / "gt.csv"), "flow-images", dataset="samm")
    assert [s["sample_key"] for s in samm.samples] == ["samm/006/006_1_2", "samm/007/007_3_1"] and not samm.problems
    assert samm.datasets == ["samm"] and samm.notes == ["4 rows of the list's other datasets left out (--dataset samm)"]


def test_what_a_flow_folder_and_its_list_disagree_on_is_quarantined_by_name(tmp_path):
    folder = flow_folder(tmp_path / "flows")
    (folder / "s02_s02_sur_01 .png").unlink()                                  # a list row without a file
    cv2.imwrite(str(folder / "sub09_EP01_01 .png"), flow_image(9))             # a file the list does not name
    cv2.imwrite(str(folder / "sub02_EP03_02 .png"), flow_image(1, size=32))    # mis-shaped
    (folder / "007_007_3_1 .png").write_bytes(b"not a png")                    # unreadable
    (folder / "notes.txt").write_text("hello")
    read = imports.read_folder(folder, write_list(tmp_path / "gt.csv"), "flow-images")
    reasons = {p["sample_key"]: p["reason"] for p in read.problems}
    assert reasons == {"unlisted/notes.txt": "unlisted_file", "unlisted/sub09_EP01_01 .png": "unlisted_file",
                       "casme2/sub02/EP03_02": "wrong_shape", "samm/007/007_3_1": "unreadable_image",
                       "smic_hs/s2/s2_sur_01": "missing_file"}
    detail = {p["sample_key"]: p["detail"] for p in read.problems}
    assert "32x32x3" in detail["casme2/sub02/EP03_02"] and "gt.csv line 6" in detail["smic_hs/s2/s2_sur_01"]
    assert [s["sample_key"] for s in read.samples] == ["casme2/sub01/EP02_01f", "samm/006/006_1_2",
                                                       "smic_hs/s1/s1_ne_01"]


def fold_tree(root: Path, flows: Path, rows=LISTED) -> Path:
    """STSTNet's per-fold layout: <subject>/u_test/<label>/ its own images, u_train/<label>/ everyone else's."""
    for subject in {(r[4].split("_")[0]) for r in rows}:
        for row in rows:
            part = "u_test" if row[4].split("_")[0] == subject else "u_train"
            target = root / subject / part / str(row[3])
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(flows / f"{row[4]} .png", target)
    return root


def test_a_fold_tree_reads_each_sample_once_and_checks_its_copies(tmp_path):
    flows = flow_folder(tmp_path / "flows")
    tree = fold_tree(tmp_path / "wrapper" / "norm_u_v_os", flows)
    listed = write_list(tmp_path / "gt.csv")
    assert imports.detect_format(tmp_path / "wrapper") == "flow-folds"  # one folder deeper, as an archive unpacks
    read = imports.read_folds(tmp_path / "wrapper", listed)
    assert not read.problems and len(read.samples) == 6
    assert np.array_equal(read.arrays["smic_hs/s1/s1_ne_01"], flow_image(4).transpose(2, 0, 1))
    # A u_train copy under another label than its u_test: the sample is quarantined, not guessed.
    moved = tree / "sub01" / "u_train" / "0" / "006_006_1_2 .png"
    (tree / "sub01" / "u_train" / "1").mkdir(exist_ok=True)
    moved.rename(tree / "sub01" / "u_train" / "1" / moved.name)
    read = imports.read_folds(tree, listed)
    assert [(p["sample_key"], p["reason"]) for p in read.problems] == [("samm/006/006_1_2", "label_conflict")]
    assert "sub01" in read.problems[0]["detail"]


def test_apex_frames_of_any_size_are_brought_to_the_store_size(tmp_path):
    folder = tmp_path / "apex"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index, row in enumerate(LISTED):
        shape = (60, 40, 3) if index % 2 else (50, 50)   # colour and grey, two sizes
        cv2.imwrite(str(folder / f"{row[4]}.png"), rng.integers(0, 255, shape).astype(np.uint8))
    assert imports.detect_format(folder) == "apex-images"
    read = imports.read_folder(folder, write_list(tmp_path / "gt.csv"), "apex-images", size=28)
    assert not read.problems and all(a.shape == (3, 28, 28) and a.dtype == np.uint8 for a in read.arrays.values())
    grey = read.arrays["casme2/sub01/EP02_01f"]
    assert np.array_equal(grey[0], grey[1]) and np.array_equal(grey[0], grey[2])  # grey: three equal channels
    assert read.marks["casme2/sub02/EP03_02"]["size"] == [60, 40]
    assert read.notes == ["6 apex images of another size resized to 28x28 (INTER_AREA)"]


def survey_source(tmp_path: Path, count: int = 8, codes=None, categories=("Other", "negative", "positive", "surprise")):
    rng = np.random.default_rng(3)
    images = rng.integers(1, 255, (28, 28, 3, count)).astype(np.uint8)
    images[:, :, 1:, :2] = 0                              # two grey images: channel 1 only, as the survey's
    codes = list(codes if codes is not None else [1 + i % len(categories) for i in range(count)])
    return (write_survey_images(tmp_path / "C4.mat", images),
            write_categorical(tmp_path / "label4.mat", list(categories), codes), images)


def test_the_survey_images_are_named_by_position_and_labelled_in_their_set(tmp_path):
    images_path, labels_path, images = survey_source(tmp_path)
    assert imports.detect_format(images_path) == "survey-mat" and imports.mat_role(labels_path) == "labels"
    read = imports.read_survey(images_path, labels_path)
    assert read.datasets == ["survey_c4"] and not read.problems
    first = read.samples[0]
    assert first["sample_key"] == "survey_c4/unknown/0001" and first["subject_key"] == "survey_c4/unknown"
    assert (first["emotion_raw"], first["label_fused4"], first["label_megc2019"]) == ("Other", "others", None)
    assert "named by its position" in first["origin_detail"] and "C4.mat qutrain_C(:,:,:,1)" in first["origin_detail"]
    assert np.array_equal(read.arrays["survey_c4/unknown/0003"], images[:, :, :, 2].transpose(2, 0, 1))
    assert any("2 of 8 images are grey in channel 1" in note for note in read.notes)
    assert [m["grey_in_first_channel"] for m in read.marks.values()] == [True, True] + [False] * 6


def test_survey_labels_that_do_not_pair_are_quarantined_never_guessed(tmp_path):
    images_path, labels_path, _ = survey_source(tmp_path, codes=[1, 2, 3, 4, 1, 2, 3])  # 7 labels, 8 images
    read = imports.read_survey(images_path, labels_path)
    assert not read.samples and len(read.problems) == 8
    assert {p["reason"] for p in read.problems} == {"label_count_mismatch"}
    assert "C4.mat holds 8 images, label4.mat 7 labels" in read.problems[0]["detail"]
    images_path, labels_path, _ = survey_source(tmp_path, codes=[1, 2, 0, 4, 1, 2, 3, 4])
    read = imports.read_survey(images_path, labels_path)
    assert [(p["sample_key"], p["reason"]) for p in read.problems] == [("survey_c4/unknown/0003", "undefined_label")]


def test_the_nine_class_names_map_into_fused9(tmp_path):
    nine = ["anger\0\0\0\0\0", "disgust", "fear", "happiness", "other", "repression", "sadness", "surprise", "tense"]
    images_path, labels_path, _ = survey_source(tmp_path, count=9, categories=nine)
    read = imports.read_survey(images_path, labels_path)
    assert read.datasets == ["survey_c9"]
    assert [s["label_fused9"] for s in read.samples] == ["anger", "disgust", "fear", "happiness", "others",
                                                         "repression", "sadness", "surprise", "tense"]
    assert read.samples[0]["emotion_raw"] == "anger"  # the NUL padding is not part of the name


def test_sources_of_no_known_format_say_what_to_do(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    with pytest.raises(imports.ImportFormatError, match="cannot tell its format.*pass --format"):
        imports.detect_format(tmp_path / "docs")
    with pytest.raises(imports.ImportFormatError, match="is not a MAT-file"):
        imports.detect_format(tmp_path / "docs" / "a.txt")


# ------------------------------------------------------------------------------------------ the real inputs
@pytest.mark.parametrize("images, labels, count, per_class, grey", [("C4.mat", "label4.mat", 448, 112, 155),
                                                                    ("C9.mat", "label9.mat", 144, 16, 86)])
def test_the_survey_published_inputs(reference, images, labels, count, per_class, grey):
    read = imports.read_survey(reference / "survey" / images, reference / "survey" / labels)
    column = "label_fused4" if count == 448 else "label_fused9"
    assert len(read.samples) == count and not read.problems
    assert set(Counter(s[column] for s in read.samples).values()) == {per_class}
    assert sum(m["grey_in_first_channel"] for m in read.marks.values()) == grey


def test_the_real_megc2019_flow_images(reference, tmp_path):
    listed = reference / "megc2019" / "combined_3class_gt.csv"
    read = imports.read_folder(reference / "megc2019_features" / "STSNet_whole_norm_u_v_os", listed, "flow-images")
    assert len(read.samples) == 442 and not read.problems
    assert len({s["subject_key"] for s in read.samples}) == 68
    assert Counter(s["label_megc2019"] for s in read.samples) == {"negative": 250, "positive": 109, "surprise": 83}
    # One file misnamed (its clip's "f" dropped): reported by name, and its list row as without a file.
    copy = shutil.copytree(reference / "megc2019_features" / "STSNet_whole_norm_u_v_os", tmp_path / "flows")
    (copy / "sub01_EP02_01f .png").rename(copy / "sub01_EP02_01 .png")
    read = imports.read_folder(copy, listed, "flow-images")
    assert len(read.samples) == 441
    assert [(p["sample_key"], p["reason"]) for p in read.problems] == [
        ("unlisted/sub01_EP02_01 .png", "unlisted_file"), ("casme2/sub01/EP02_01f", "missing_file")]


def test_a_real_fold_tree(reference, tmp_path):
    """STSTNet's own layout, built from the real images of three subjects (one per dataset)."""
    rows = [r for r in imports.read_sample_list(reference / "megc2019" / "combined_3class_gt.csv").itertuples()
            if (r.dataset, r.subject) in {("casme2", "sub01"), ("samm", "006"), ("smic_hs", "s1")}]
    listed = [(r.dataset.replace("smic_hs", "smic"), r.listed_subject, r.listed_id,
               {"negative": 0, "positive": 1, "surprise": 2}[r.label],
               f"{'006' if r.dataset == 'samm' else r.listed_subject}_{r.listed_id}") for r in rows]
    tree = fold_tree(tmp_path / "norm_u_v_os", reference / "megc2019_features" / "STSNet_whole_norm_u_v_os", listed)
    read = imports.read_folds(tree, write_list(tmp_path / "three.csv", listed))
    assert len(read.samples) == len(listed) == 3 + 11 + 6 and not read.problems
    key = "samm/006/006_1_2"
    real = cv2.imread(str(reference / "megc2019_features" / "STSNet_whole_norm_u_v_os" / "006_006_1_2 .png"))
    assert np.array_equal(read.arrays[key], real.transpose(2, 0, 1))
