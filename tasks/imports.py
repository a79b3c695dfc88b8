"""Features someone else's pipeline made, as researchers hold them (`merflow import-features`): read, checked,
named, labelled and grouped by person, as catalog rows, quarantine rows and the arrays to store.

Formats (``FORMATS``; configs/features.py ``IMPORT_FORMATS``):

- ``survey-mat``: the survey baseline's own balanced inputs (wenjgong/microExpressionSurvey @ 9da5c7c4, C4.mat /
  C9.mat): ``qutrain_C``, H x W x C x N (MATLAB order) 0..255 images, with its label file (label4.mat /
  label9.mat), a MATLAB ``categorical`` read by tasks/matlab.py. The images name no sample and no person:
  they are named by position (``survey_c4/unknown/0001`` is image 1) and their subject is unknown, so only
  leave-one-video-out runs on them (training/folds.py);
- ``flow-images``: a folder of STSTNet-style flow images, one ``<subject>_<clip> .png`` a sample (with the
  space before .png, as HTNet distributes them: wangzhifengharrison/HTNet @ 91cf4bda
  datasets/STSNet_whole_norm_u_v_os), read as cv2.imread decodes them (BGR = optical strain, v, u; each
  channel min-max scaled to 0..255 per image);
- ``flow-folds``: the same images in STSTNet's own per-fold trees (christy1206/STSTNet @ 1afb56e main.py:
  ``norm_u_v_os/<subject>/u_train|u_test/<label>/<image>``): each sample is read once, from the ``u_test``
  folder of its own subject; the ``u_train`` copies are checked by name against it;
- ``apex-images``: a folder of apex frames ``<subject>_<clip>.jpg`` (any size: brought to the store's size).

The folders' samples are named, labelled and grouped by person by the list (``--list``: the MEGC2019 composite's
official ``combined_3class_gt.csv`` or HTNet's ``combined_3_class2_for_optical_flow.csv``;
tasks/datasets/megc2019.py reads both): their catalog keys are the datasets' own ids as the adapters write them
(``casme2/sub01/EP02_01f``, ``samm/006/006_1_2``, ``smic_hs/s1/s1_ne_01``), so that the composite's protocol
runs on them. A file the list does not name, a list row without a file, an unreadable or mis-shaped image and a
label file whose length differs from the images are quarantined with the reason, never guessed.

Pure: everything here reads and returns values; flows/imports.py fingerprints the source and writes the catalog
and the store through storage/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from merflow.configs.catalog import IMPORTED, LABEL_COLUMNS, SURVEY_SETS, UNKNOWN_SUBJECT
from merflow.tasks.datasets import megc2019
from merflow.tasks.datasets.base import IMAGE_SUFFIXES, JUNK_NAMES
from merflow.tasks.features import SampleError, as_rgb_channels, read_frame
from merflow.tasks.labels import CLASS_SETS, SMIC_DATASETS, normalise_emotion
from merflow.tasks.matlab import MatFileError, MatlabObject, read_categorical, read_mat

FORMATS = ("survey-mat", "flow-images", "flow-folds", "apex-images")
SURVEY_IMAGES = "qutrain_C"        # the survey's image variable (apex4.m / apex9.m save it)
FLOW_SUFFIX = " .png"              # STSTNet's names: "<subject>_<clip> .png", a space before .png
FOLD_TRAIN, FOLD_TEST = "u_train", "u_test"
FOLD_LABELS = megc2019.LABELS      # STSTNet's label folders: 0 negative, 1 positive, 2 surprise (main.py)

# How each format's array is stored, channel by channel (configs/features.py ImportedConfig).
FLOW_CONVENTION = {
    "array": "flow", "channels": ("strain", "v", "u"),
    "scaling": "uint8 0..255, each channel min-max scaled per image (STSTNet's preprocessing: TV-L1 flow from "
               "onset to apex, optical strain); stored unchanged",
    "order": "the PNG's channels as cv2.imread decodes them (BGR): B optical strain, G v, R u, as STSTNet's "
             "main.py reads them"}
SURVEY_CONVENTION = {
    "array": "apex", "channels": ("red", "green", "blue"),
    "scaling": "uint8 0..255 as the survey saved them (apex4.m: imread, imresize to 28x28); grey datasets' "
               "images (SAMM, CASME) fill the first channel and leave the other two at 0",
    "order": "qutrain_C(:, :, c, n), MATLAB's H x W x C x N with imread's RGB, stored (C, H, W)"}
APEX_CONVENTION = {
    "array": "apex", "channels": ("red", "green", "blue"),
    "scaling": "uint8 0..255 as decoded; grey images as three equal channels (as merflow's computed crops)",
    "order": "cv2.imread's BGR turned to RGB, as tasks/features.py reads frames"}
CONVENTIONS = {"survey-mat": SURVEY_CONVENTION, "flow-images": FLOW_CONVENTION, "flow-folds": FLOW_CONVENTION,
               "apex-images": APEX_CONVENTION}
# Apex images of another size are brought to the store's (survey_cnn.py resizes its crops the same way).
APEX_RESIZE = "cv2.resize with INTER_AREA to the store's size where an image has another (its own size is in its mark)"


class ImportFormatError(ValueError):
    """A source whose format cannot be told, or that cannot be read at all; the message says what to do."""


@dataclass
class ImportedSamples:
    """What one source gives: catalog rows, quarantine rows, the arrays to store by sample key, and what to tell."""

    format: str
    datasets: list[str]
    samples: list[dict]
    problems: list[dict]
    arrays: dict[str, np.ndarray]          # sample key -> (C, size, size) uint8, as stored
    marks: dict[str, dict] = field(default_factory=dict)   # sample key -> what its store mark records
    notes: list[str] = field(default_factory=list)          # lines the CLI prints
    size: int = 28


# ------------------------------------------------------------------------------------------ formats
def detect_format(path: Path) -> str:
    """The format of a source (a local file or folder), from its content; ImportFormatError if it is none."""
    path = Path(path)
    if path.is_file():
        if path.read_bytes()[:19] == b"MATLAB 5.0 MAT-file":
            return "survey-mat"
        raise ImportFormatError(f"{path} is not a MAT-file: `merflow import-features` reads the survey's .mat "
                                "files and folders of flow or apex images (merflow ingest reads archives)")
    if not path.is_dir():
        raise ImportFormatError(f"{path} does not exist")
    root = content_root(path)
    if any((child / FOLD_TEST).is_dir() for child in _children(root) if child.is_dir()):
        return "flow-folds"
    images = [f for f in _children(root) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if images and all(f.name.endswith(FLOW_SUFFIX) for f in images if f.suffix.lower() == ".png") \
            and any(f.name.endswith(FLOW_SUFFIX) for f in images):
        return "flow-images"
    if images and not any(f.name.endswith(FLOW_SUFFIX) for f in images):
        return "apex-images"
    raise ImportFormatError(f"{path}: cannot tell its format (no u_test/ fold folders, and its images are neither all "
                            f"STSTNet flow images '<subject>_<clip>{FLOW_SUFFIX}' nor apex frames): pass --format "
                            f"({', '.join(FORMATS)})")


def _children(folder: Path) -> list[Path]:
    return sorted(c for c in folder.iterdir() if c.name not in JUNK_NAMES and not c.name.startswith("._"))


def content_root(folder: Path) -> Path:
    """Descend through folders that are the only thing in their parent (an archive's wrapper, e.g.
    norm_u_v_os/), but not into a fold tree's subject folder (it holds u_test/)."""
    current = Path(folder)
    while True:
        children = _children(current)
        if len(children) != 1 or not children[0].is_dir() or (children[0] / FOLD_TEST).is_dir() \
                or (current / FOLD_TEST).is_dir():
            return current
        current = children[0]


def mat_role(path: Path) -> str:
    """``images`` (a survey image file: it holds qutrain_C) or ``labels`` (it holds one categorical)."""
    try:
        variables = read_mat(path)
    except MatFileError as error:
        raise ImportFormatError(str(error)) from None
    if SURVEY_IMAGES in variables:
        return "images"
    if any(isinstance(v, MatlabObject) and v.class_name == "categorical" for v in variables.values()):
        return "labels"
    raise ImportFormatError(f"{path} holds neither the survey's images ({SURVEY_IMAGES}) nor a categorical label "
                            f"vector; it holds {', '.join(variables) or 'nothing'}")


# ------------------------------------------------------------------------------------------ ids and lists
def id_key(text: str) -> str:
    """An id compared without case and with every number unpadded: the official list pads SMIC (s01_ne_01) and
    not SAMM (6), the flow files pad both (s01_s01_ne_01, 006_006_1_2), the folders on disk SAMM only (006, s1):
    one clip is one key whichever spelling (``s1_s1_ne_1``, ``6_6_1_2``, ``sub1_ep2_1f``)."""
    return re.sub(r"\d+", lambda m: str(int(m.group())), text.strip().lower())


def read_sample_list(path: Path) -> pd.DataFrame:
    """The list's rows (tasks/datasets/megc2019.py ``read_list_rows``) with each one's ``file_key``: the
    ``id_key`` of ``<listed subject>_<listed clip>``, the stem of the file that holds it. Two rows of one key are
    an error naming their lines (the list is ambiguous: nothing is guessed)."""
    try:
        rows = megc2019.read_list_rows(path)
    except (OSError, pd.errors.ParserError, KeyError, IndexError) as error:
        raise ImportFormatError(f"the list {path} cannot be read as a MEGC2019 list (dataset, subject, clip, label "
                                f"0/1/2): {error}") from None
    rows["file_key"] = [id_key(f"{s}_{c}") for s, c in zip(rows["listed_subject"], rows["listed_id"])]
    repeated = rows[rows["file_key"].duplicated(keep=False)]
    if len(repeated):
        first = repeated.iloc[0]
        raise ImportFormatError(f"the list {path} names clip {first.listed_subject}/{first.listed_id} twice (lines "
                                f"{', '.join(map(str, repeated.loc[repeated['file_key'] == first.file_key, 'line']))})")
    return rows


def subject_key(dataset: str, subject: str) -> str:
    """The person, as the adapters key them (tasks/datasets/base.py: SMIC's cameras share people: ``smic/s1``)."""
    return f"{'smic' if dataset in SMIC_DATASETS else dataset}/{subject}"


def _row(dataset: str, subject: str, sample_id: str, subject_of: str, detail: str, emotion_raw: str,
         emotion: str | None, labels: dict[str, str]) -> dict:
    """A catalog row of an imported sample: no frames (schema 3: the frame fields null), its labels as given."""
    row = {"sample_key": f"{dataset}/{subject}/{sample_id}", "dataset": dataset, "subject": subject,
           "subject_key": subject_of, "sample_id": sample_id, "clip_id": sample_id, "is_macro": False,
           "origin": IMPORTED, "origin_detail": detail, "clip_dir": None, "frame_files": None, "n_frames": None,
           "fps": None, "onset": None, "apex": None, "apex_annotated": None, "apex_source": None, "offset": None,
           "action_units": None, "emotion_raw": emotion_raw, "emotion": emotion, "objective_class": None}
    return row | {column: None for column in LABEL_COLUMNS} | labels


def _problem(key: str, dataset: str, subject: str | None, sample_id: str | None, reason: str, detail: str) -> dict:
    return {"sample_key": key, "dataset": dataset, "subject": subject, "sample_id": sample_id, "reason": reason,
            "detail": detail}


def _unlisted(name: str, detail: str, reason: str = "unlisted_file") -> dict:
    """A file no list row names: it has no dataset or id, so it is keyed by its name under ``unlisted``."""
    return _problem(f"unlisted/{name}", "unlisted", None, None, reason, detail)


# ------------------------------------------------------------------------------------------ survey-mat
# label4.mat's categories (apex4.m's spellings) -> merflow's fused 4-class names (tasks/labels.py fused4):
# apex4.m writes the fourth class 'Other' where merflow writes 'others'; negative, positive and surprise agree.
SURVEY4_LABELS = {"other": "others", "negative": "negative", "positive": "positive", "surprise": "surprise"}


def _category(name: str) -> str:
    """A category name as written, without the NUL padding label9.mat's names carry (apex9.m builds its labels
    from a char matrix padded with NULs to 10 characters: 'anger\\0\\0\\0\\0\\0')."""
    return name.rstrip("\0").strip()


def survey_set(categories: list[str]) -> str:
    """Which of the survey's sets these category names label: survey_c4 (fused4) or survey_c9 (fused9)."""
    names = {_category(c).lower() for c in categories}
    if names <= set(SURVEY4_LABELS) and names - {"other", "surprise"}:
        return "survey_c4"
    nine = {normalise_emotion(n) for n in names}
    if None not in nine and nine <= set(CLASS_SETS["fused9"].classes) and nine - {"others", "surprise"}:
        return "survey_c9"
    raise ImportFormatError(f"the label categories {sorted(names)} are neither the survey's 4 classes (Other, negative, "
                            "positive, surprise) nor its 9 (anger, disgust, fear, happiness, other, repression, sadness, "
                            "surprise, tense): pass --dataset survey_c4 or survey_c9")


def _survey_label(dataset: str, category: str) -> tuple[str | None, str | None]:
    """(emotion, class) of a survey category in the set's class set; (None, None) where it has none."""
    name = _category(category).lower()
    if SURVEY_SETS[dataset] == "fused4":
        label = SURVEY4_LABELS.get(name)
        return label, label
    emotion = normalise_emotion(name)   # apex9.m spells 'other' what merflow calls 'others'
    return (emotion, emotion) if emotion in CLASS_SETS["fused9"].classes else (None, None)


def read_survey(images_path: Path, labels_path: Path, dataset: str | None = None) -> ImportedSamples:
    """The survey's balanced images (``qutrain_C``) and their categorical labels, paired by position.

    Each image becomes ``<set>/unknown/<position, 4 digits, 1-based>``, labelled in its set's class set
    (label_fused4 or label_fused9). Images and labels of different lengths pair nothing: every image is
    quarantined (``label_count_mismatch``); an image whose label is <undefined> or outside the class set is
    quarantined alone."""
    images_path, labels_path = Path(images_path), Path(labels_path)
    try:
        variables = read_mat(images_path)
        labels = read_categorical(labels_path)
    except MatFileError as error:
        raise ImportFormatError(str(error)) from None
    if SURVEY_IMAGES not in variables:
        raise ImportFormatError(f"{images_path} holds no {SURVEY_IMAGES} (it holds {', '.join(variables)})")
    stack = np.asarray(variables[SURVEY_IMAGES])
    if stack.ndim != 4 or stack.shape[2] != 3 or stack.shape[0] != stack.shape[1]:
        raise ImportFormatError(f"{images_path}: {SURVEY_IMAGES} is {'x'.join(map(str, stack.shape))}; the survey's is "
                                "H x W x 3 x N with H = W")
    dataset = dataset or survey_set(list(labels.categories))
    if dataset not in SURVEY_SETS:
        raise ImportFormatError(f"--dataset {dataset!r}: the survey's images are one of {', '.join(SURVEY_SETS)}")
    label_column = f"label_{SURVEY_SETS[dataset]}"
    count, size = stack.shape[3], stack.shape[0]
    where = f"{images_path.name} {SURVEY_IMAGES}(:,:,:,{{n}}), {labels_path.name} {labels.variable}({{n}})"
    result = ImportedSamples("survey-mat", [dataset], [], [], {}, size=size)
    result.notes.append(f"{images_path.name}: {count} images that name no sample and no person: named by their position "
                        f"({dataset}/{UNKNOWN_SUBJECT}/0001 is image 1), subject unknown (leave-one-video-out only)")
    width = max(4, len(str(count)))
    if len(labels.codes) != count:
        for n in range(1, count + 1):
            sample_id = f"{n:0{width}d}"
            result.problems.append(_problem(f"{dataset}/{UNKNOWN_SUBJECT}/{sample_id}", dataset, UNKNOWN_SUBJECT,
                                            sample_id, "label_count_mismatch",
                                            f"{images_path.name} holds {count} images, {labels_path.name} "
                                            f"{len(labels.codes)} labels: they pair by position, so none can"))
        result.notes.append(f"{labels_path.name} has {len(labels.codes)} labels for {count} images: nothing imported")
        return result
    grey = 0
    for n, category in enumerate(labels.labels, start=1):
        sample_id = f"{n:0{width}d}"
        key = f"{dataset}/{UNKNOWN_SUBJECT}/{sample_id}"
        image = stack[:, :, :, n - 1]
        if category is None:
            result.problems.append(_problem(key, dataset, UNKNOWN_SUBJECT, sample_id, "undefined_label",
                                            f"{labels_path.name} {labels.variable}({n}) is <undefined>"))
            continue
        emotion, label = _survey_label(dataset, category)
        if label is None:
            result.problems.append(_problem(key, dataset, UNKNOWN_SUBJECT, sample_id, "unknown_label",
                                            f"{labels_path.name} {labels.variable}({n}) is {_category(category)!r}, "
                                            f"not a class of {SURVEY_SETS[dataset]}"))
            continue
        if not np.array_equal(image, np.round(image)) or image.min() < 0 or image.max() > 255:
            result.problems.append(_problem(key, dataset, UNKNOWN_SUBJECT, sample_id, "not_uint8",
                                            f"{where.format(n=n)} holds values outside whole numbers 0..255"))
            continue
        stored = np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.uint8)
        is_grey = bool(stored[1:].max() == 0 and stored[0].max() > 0)
        grey += is_grey
        result.samples.append(_row(dataset, UNKNOWN_SUBJECT, sample_id, f"{dataset}/{UNKNOWN_SUBJECT}",
                                   f"{where.format(n=n)}: the file names no sample, so it is named by its position",
                                   _category(category), emotion, {label_column: label}))
        result.arrays[key] = stored
        result.marks[key] = {"position": n, "grey_in_first_channel": is_grey}
    result.notes.append(f"{grey} of {len(result.samples)} images are grey in channel 1 (the other two exactly 0): the "
                        "survey's grey datasets (SAMM, CASME)")
    return result


# ------------------------------------------------------------------------------------------ folders and the list
def _chosen(rows: pd.DataFrame, dataset: str | None) -> set[str]:
    """The file keys of the list's rows to import: every row, or one dataset's (``--dataset``; its files are read,
    the other datasets' files are left out, neither read nor quarantined)."""
    if dataset is None:
        return set(rows["file_key"])
    chosen = rows[rows["dataset"] == megc2019.DATASETS.get(dataset, dataset)]
    if chosen.empty:
        raise ImportFormatError(f"the list names no {dataset} sample; it holds {', '.join(sorted(rows['dataset'].unique()))}")
    return set(chosen["file_key"])


def _left_out(result: ImportedSamples, rows: pd.DataFrame, chosen: set[str], dataset: str | None) -> pd.DataFrame:
    """The rows to import; a note of how many the dataset filter left out."""
    if len(chosen) < len(rows):
        result.notes.append(f"{len(rows) - len(chosen)} rows of the list's other datasets left out (--dataset {dataset})")
    return rows[rows["file_key"].isin(chosen)]


def _labelled_row(row, detail: str, label_source: str) -> dict:
    """The catalog row of a list row: the composite's label (label_megc2019) as the list gives it."""
    return _row(row.dataset, row.subject, row.sample_id, subject_key(row.dataset, row.subject),
                f"{detail}; labelled and grouped by {label_source} line {row.line}",
                str(next(k for k, v in megc2019.LABELS.items() if v == row.label)), row.label,
                {"label_megc2019": row.label})


def _read_flow_image(path: Path, size: int) -> np.ndarray:
    """A flow image as stored: (3, size, size) uint8 in the file's decoded (BGR) order; SampleError names the fault."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise SampleError("unreadable_image", f"{path.name} cannot be decoded")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape != (size, size, 3):
        raise SampleError("wrong_shape", f"{path.name} is {'x'.join(map(str, image.shape))} {image.dtype}; a flow image "
                                         f"is {size}x{size}x3 uint8 (strain, v, u)")
    return np.ascontiguousarray(image.transpose(2, 0, 1))


def _read_apex_image(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """An apex frame as stored: (3, size, size) uint8 RGB, resized where it has another size; and its own size."""
    image = read_frame(path)   # RGB or grey uint8; SampleError: missing, unreadable, blank
    own = image.shape[:2]
    if own != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return as_rgb_channels(image), own


def _flow_stem(name: str) -> str | None:
    """The ``<subject>_<clip>`` of a flow image's name (``<stem> .png``, or ``<stem>.png``); None: not a PNG."""
    if not name.lower().endswith(".png"):
        return None
    return name[:-4].rstrip(" ")


def read_folder(folder: Path, list_path: Path, fmt: str, size: int = 28, dataset: str | None = None) -> ImportedSamples:
    """A folder of flow images (``flow-images``) or apex frames (``apex-images``), one file a sample named
    ``<subject>_<clip>``, matched to the list's rows by ``id_key``: each listed file read and stored, each file
    the list does not name, list row without a file, unreadable or mis-shaped image quarantined with the reason."""
    rows = read_sample_list(list_path)
    chosen = _chosen(rows, dataset)
    root = content_root(Path(folder))
    by_key = {row.file_key: row for row in rows.itertuples()}
    result = ImportedSamples(fmt, sorted(rows.loc[rows["file_key"].isin(chosen), "dataset"].unique()), [], [], {},
                             size=size)
    found: dict[str, Path] = {}
    for path in _children(root):
        if path.is_dir():
            result.problems.append(_unlisted(path.name, f"{path.name}/ is a folder; a {fmt} source holds one file a "
                                                        "sample"))
            continue
        stem = _flow_stem(path.name) if fmt == "flow-images" else (
            path.stem if path.suffix.lower() in IMAGE_SUFFIXES else None)
        if stem is None:
            result.problems.append(_unlisted(path.name, f"{path.name} is not a {'PNG' if fmt == 'flow-images' else 'image'} "
                                                        "file"))
            continue
        key = id_key(stem)
        if key not in by_key:
            result.problems.append(_unlisted(path.name, f"{path.name}: the list {list_path.name} names no clip "
                                                        f"'{stem}' (<subject>_<clip>)"))
            continue
        if key not in chosen:
            continue
        if key in found:
            row = by_key[key]
            result.problems.append(_problem(f"{row.dataset}/{row.subject}/{row.sample_id}", row.dataset, row.subject,
                                            row.sample_id, "duplicate_file",
                                            f"{found[key].name} and {path.name} both hold it: which is meant is not "
                                            "guessed"))
            continue
        found[key] = path
    duplicated = {p["sample_key"] for p in result.problems if p["reason"] == "duplicate_file"}
    for row in _left_out(result, rows, chosen, dataset).itertuples():
        sample_key = f"{row.dataset}/{row.subject}/{row.sample_id}"
        if sample_key in duplicated:
            continue
        path = found.get(row.file_key)
        if path is None:
            result.problems.append(_problem(sample_key, row.dataset, row.subject, row.sample_id, "missing_file",
                                            f"{list_path.name} line {row.line} lists {row.listed_subject} "
                                            f"{row.listed_id}; {root} holds no file of it"))
            continue
        try:
            if fmt == "flow-images":
                array, mark = _read_flow_image(path, size), {"file": path.name}
            else:
                array, own = _read_apex_image(path, size)
                mark = {"file": path.name, "size": list(own)}
        except SampleError as error:
            result.problems.append(_problem(sample_key, row.dataset, row.subject, row.sample_id, error.reason,
                                            error.detail))
            continue
        result.samples.append(_labelled_row(row, f"{path.name}", list_path.name))
        result.arrays[sample_key] = array
        result.marks[sample_key] = mark
    resized = sum(m.get("size", [size, size]) != [size, size] for m in result.marks.values())
    if resized:
        result.notes.append(f"{resized} apex images of another size resized to {size}x{size} (INTER_AREA)")
    return result


def read_folds(folder: Path, list_path: Path, size: int = 28, dataset: str | None = None) -> ImportedSamples:
    """STSTNet's per-fold trees ``<subject>/u_train|u_test/<label>/<image>``: each sample read once from its own
    subject's ``u_test``, named, labelled and grouped by the list. The folders' own subject and label must agree
    with the list's (``subject_conflict``, ``label_conflict``: quarantined), and so must every ``u_train`` copy's
    label (checked by name); a sample some fold's ``u_train`` lacks is told, not quarantined."""
    rows = read_sample_list(list_path)
    chosen = _chosen(rows, dataset)
    root = content_root(Path(folder))
    by_key = {row.file_key: row for row in rows.itertuples()}
    result = ImportedSamples("flow-folds", sorted(rows.loc[rows["file_key"].isin(chosen), "dataset"].unique()), [],
                             [], {}, size=size)
    tested: dict[str, tuple[Path, str, str]] = {}     # file key -> (path, subject folder, label folder)
    trained: dict[str, dict[str, str]] = {}           # file key -> {subject folder: label folder} of u_train copies
    subjects = [s for s in _children(root) if s.is_dir()]
    for subject in subjects:
        for part, record in ((FOLD_TEST, True), (FOLD_TRAIN, False)):
            for label_dir in (d for d in _children(subject / part) if d.is_dir()) if (subject / part).is_dir() else []:
                for path in _children(label_dir):
                    stem = _flow_stem(path.name)
                    key = id_key(stem) if stem else None
                    if not record:
                        if key:
                            trained.setdefault(key, {})[subject.name] = label_dir.name
                        continue
                    where = f"{subject.name}/{FOLD_TEST}/{label_dir.name}/{path.name}"
                    if key is None or key not in by_key:
                        result.problems.append(_unlisted(where, f"{where}: the list {list_path.name} names no such clip"))
                    elif key not in chosen:
                        continue
                    elif key in tested:
                        row = by_key[key]
                        result.problems.append(_problem(f"{row.dataset}/{row.subject}/{row.sample_id}", row.dataset,
                                                        row.subject, row.sample_id, "duplicate_file",
                                                        f"in the u_test of two folds: {tested[key][1]} and {subject.name}"))
                    else:
                        tested[key] = (path, subject.name, label_dir.name)
    duplicated = {p["sample_key"] for p in result.problems if p["reason"] == "duplicate_file"}
    missing_copies = 0
    for row in _left_out(result, rows, chosen, dataset).itertuples():
        sample_key = f"{row.dataset}/{row.subject}/{row.sample_id}"
        if sample_key in duplicated:
            continue

        def quarantine(reason: str, detail: str, row=row, sample_key=sample_key) -> None:
            result.problems.append(_problem(sample_key, row.dataset, row.subject, row.sample_id, reason, detail))

        if row.file_key not in tested:
            quarantine("missing_file", f"{list_path.name} line {row.line} lists {row.listed_subject} {row.listed_id}; no "
                                       f"fold's {FOLD_TEST} holds it")
            continue
        path, fold, label_folder = tested[row.file_key]
        where = f"{fold}/{FOLD_TEST}/{label_folder}/{path.name}"
        folder_label = FOLD_LABELS.get(int(label_folder)) if label_folder.isdigit() else None
        if id_key(fold) != id_key(row.listed_subject) and id_key(fold) != id_key(row.subject):
            quarantine("subject_conflict", f"{where} sits in fold {fold}; {list_path.name} line {row.line} gives "
                                           f"subject {row.listed_subject}")
            continue
        if folder_label != row.label:
            quarantine("label_conflict", f"{where}: folder label {label_folder!r}; {list_path.name} line {row.line} "
                                         f"gives {row.label}")
            continue
        copies = trained.get(row.file_key, {})
        wrong = sorted(f for f, label in copies.items() if label != label_folder)
        if wrong:
            quarantine("label_conflict", f"{where}: its {FOLD_TRAIN} copies in {', '.join(wrong[:3])} sit under "
                                         f"another label")
            continue
        missing_copies += len([s for s in subjects if s.name != fold and s.name not in copies])
        try:
            array = _read_flow_image(path, size)
        except SampleError as error:
            quarantine(error.reason, f"{where}: {error.detail}")
            continue
        result.samples.append(_labelled_row(row, where, list_path.name))
        result.arrays[sample_key] = array
        result.marks[sample_key] = {"file": where}
    if missing_copies:
        result.notes.append(f"{missing_copies} (sample, fold) pairs: a sample absent from another subject's {FOLD_TRAIN} "
                            "(merflow's folds train on every other subject's samples)")
    return result
