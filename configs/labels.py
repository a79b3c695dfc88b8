"""Emotion vocabularies and every protocol's class set: how a sample's normalised emotion becomes its
label under each protocol (the ``label_<class set>`` columns a catalog reads, storage/catalog.py).

The mappings live here, in the leaf ``configs/``, so that storage derives the label columns when it reads a
catalog: a class set is its mapping, not a stored column, and adding one (a ``ClassSet`` in ``CLASS_SETS``,
or ``register_class_set`` at run time) needs no catalog schema change and no re-ingest. tasks/labels.py
keeps the same names for the code that computes.

Mappings follow docs/method.md: the Meta-MMFNet class sets per dataset, the CDE mapping of the paper, the
MEGC2019 composite, the survey's fused 4- and 9-class sets and CAS(ME)^3's 7, 4 and 3 classes, each with its
source. Where the sources are silent the choice made here is commented.
"""

from __future__ import annotations

from dataclasses import dataclass

# Spellings met in the sheets and folder names -> merflow's normalised emotion.
EMOTION_ALIASES: dict[str, str] = {
    "happiness": "happiness", "happy": "happiness",
    "surprise": "surprise", "sur": "surprise", "surprised": "surprise",
    "disgust": "disgust", "repression": "repression",
    "sadness": "sadness", "sad": "sadness",
    "fear": "fear", "anger": "anger", "angry": "anger", "contempt": "contempt",
    "tense": "tense", "pain": "pain", "helpless": "helpless",
    "others": "others", "other": "others",
    # SMIC labels only positive / negative / surprise, in folder names and clip prefixes.
    "positive": "positive", "po": "positive",
    "negative": "negative", "ne": "negative",
}
KNOWN_EMOTIONS = frozenset(EMOTION_ALIASES.values())

NEGATIVE_EMOTIONS = frozenset({"disgust", "repression", "sadness", "fear", "anger", "contempt", "tense",
                               "pain", "helpless", "negative"})


def normalise_emotion(raw: object) -> str | None:
    """The normalised emotion for a raw spelling, or None when it is unknown (the row is quarantined)."""
    if raw is None:
        return None
    key = str(raw).strip().lower()
    return EMOTION_ALIASES.get(key)


@dataclass(frozen=True)
class ClassSet:
    """One protocol's classes, the datasets it draws on, and how an emotion maps into it."""

    name: str
    classes: tuple[str, ...]
    datasets: frozenset[str]
    mapping: dict[str, str]
    description: str
    macro: bool = False   # labels macro-expressions only (CK+'s, for macro pretraining); every other set: micro only

    @property
    def column(self) -> str:
        """The catalog column that reads this set's labels: ``label_<name>``."""
        return f"label_{self.name}"

    def label(self, dataset: str, emotion: str | None) -> str | None:
        """The sample's class in this set, or None when its dataset or emotion is not in it."""
        if dataset not in self.datasets or emotion is None:
            return None
        return self.mapping.get(emotion)


def _identity(*classes: str) -> dict[str, str]:
    return {c: c for c in classes}


SMIC_DATASETS = frozenset({"smic_hs", "smic_vis", "smic_nir"})

# MEGC2019 (the official composite list, Facial-Micro-ExpressionGC/MEGC2019 images/combined_3class_gt.csv
# @ 1220bd0b, 442 rows, no header; rows 1-145 CASME II, 146-309 SMIC-HS, 310-442 SAMM) is the datasets'
# own emotions mapped as below, plus the errata in MEGC2019_EXCLUDED. CASME II's disgust and repression are negative but
# not its fear or sadness (145 CASME II rows); SAMM's five negative emotions are (133 SAMM rows,
# 028_4_1 at row 414 and 032_3_1 at row 421 included: their apex lies outside the clip, but they are
# in the list); every SMIC-HS clip is (164 rows).
_MEGC_CASME2 = {"disgust": "negative", "repression": "negative", "happiness": "positive", "surprise": "surprise"}
_MEGC_SAMM = {"anger": "negative", "contempt": "negative", "disgust": "negative", "fear": "negative",
              "sadness": "negative", "happiness": "positive", "surprise": "surprise"}
_SMIC3 = _identity("negative", "positive", "surprise")

# Rows the mapping would give but the official list does not hold, keyed by (dataset, subject,
# sample_id) as in the catalog, with where they would stand in combined_3class_gt.csv. The list was
# made from the 2014 CASME II sheet: the 2019 sheet's three sub24 relabellings (sadness -> surprise)
# are not in it, so membership is the same whichever sheet is ingested.
MEGC2019_EXCLUDED: dict[tuple[str, str, str], str] = {
    ("casme2", "sub04", "EP12_01f"): "disgust, apex '/' in the 2014 sheet; absent before row 18 (sub04 EP12_02f)",
    ("casme2", "sub05", "EP09_05f"): "disgust; absent between rows 24 (sub05 EP04_06) and 25 (sub05 EP12_03f)",
    ("casme2", "sub24", "EP07_01"): "sadness in 2014, surprise in the 2019 sheet; absent between rows 128 and 129",
    ("casme2", "sub24", "EP07_04f"): "sadness in 2014, surprise in the 2019 sheet; absent between rows 128 and 129",
    ("casme2", "sub24", "EP10_03"): "sadness in 2014, surprise in the 2019 sheet; absent between rows 128 and 129",
}

# The survey's fused 4-class set (wenjgong/microExpressionSurvey apex4.m @ 9da5c7c4, the survey code's own mapping,
# applied to its sample lists): per dataset, an exact-spelling comparison of the list's emotion:
#   SAMM      lines 38-46:   'Happiness' -> positive, 'Other' -> Other, 'Surprise' -> surprise, else negative
#                            (Anger, Contempt, Disgust, Fear, Sadness);
#   SMIC      lines 58-92:   the loop over SMIC's 16 HS subject folders (k2 = 32:47) takes SMIC.xls's labels
#                            (negative / positive / surprise) as they are (line 88);
#   CASME II  lines 129-137: happiness -> positive, others -> Other, surprise -> surprise, else negative
#                            (disgust, repression, sadness, fear);
#   CASME     lines 164-172: the same spellings (tense, disgust, repression, sadness, contempt, fear -> negative);
#   CAS(ME)^2 lines 192-200: the same spellings (disgust, anger, fear, pain, helpless, sadness -> negative).
# So every emotion that is not happiness, others or surprise is negative; merflow names the class
# 'others' (apex4.m writes 'Other'). SMIC is SMIC-HS only: the survey's input folder holds the HS clips.
_FUSED4 = {e: ("negative" if e in NEGATIVE_EMOTIONS else e) for e in KNOWN_EMOTIONS}
_FUSED4["happiness"] = "positive"

# The survey's fused 9-class set (wenjgong/microExpressionSurvey apex9.m @ 9da5c7c4): the labels of SAMM (lines 13-44),
# CASME II (95-125), CASME (129-142) and CAS(ME)^2 (146-159) are lower-cased (162-167), 'others' is
# spelled 'other' (168-172), and line 176 keeps exactly the rows whose label is one of anger, sadness,
# surprise, fear, other, happiness, disgust, repression, tense. SMIC is commented out (47-92).
# CASME's tense is a class of its own; contempt (SAMM, CASME), pain and helpless (CAS(ME)^2) match
# none of the nine and are in no class (label null).
_FUSED9_CLASSES = ("anger", "disgust", "fear", "happiness", "others", "repression", "sadness", "surprise", "tense")
_FUSED9 = _identity(*_FUSED9_CLASSES)

# CAS(ME)^3 part A (jingtingEmmaLi/CAS-ME-3 annotation/partA, sheet 'label' of
# cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx; Li et al., "CAS(ME)^3: A third generation facial spontaneous
# micro-expression database with depth information and high ecological validity", IEEE TPAMI 45(3), 2023):
# 860 rows spelt disgust 250, surprise 187, others 158, Others 3, fear 86, anger 64, sad 57, happy 55.
# - 7 classes: the sheet's seven emotions, 'Others' with 'others' (the dataset paper's 7-class protocol, baseline
#   UF1 0.1773 / UAR 0.1829; muse1998/MMNet @ bedaf547 CASME3_7.py RafDataSet: happy, fear, sad, disgust, anger,
#   surprise, and 'others' or 'Others' as the seventh).
# - 4 classes: negative = anger + disgust + fear + sad, positive = happy, surprise, others (the dataset paper's
#   4-class protocol, baseline UF1 0.3001 / UAR 0.2982) [the grouping is the paper's, not read in public code].
# - 3 classes: the 4 without 'others' (HTNet's cas(me)3_part_A_edited.csv, wangzhifengharrison/HTNet @ 91cf4bd,
#   label_for_3: 0 negative = anger, disgust, fear, sad; 1 positive = happy; 2 surprise; its 687 rows are the sheet
#   less 'others' and 12 more rows HTNet left out, which merflow keeps: 699 on the real sheet).
_CASME3_7 = ("anger", "disgust", "fear", "happiness", "others", "sadness", "surprise")
_CASME3_4 = {"anger": "negative", "disgust": "negative", "fear": "negative", "sadness": "negative",
             "happiness": "positive", "surprise": "surprise", "others": "others"}

CLASS_SETS: dict[str, ClassSet] = {cs.name: cs for cs in [
    ClassSet("casme4", ("disgust", "repression", "surprise", "tense"), frozenset({"casme"}),
             _identity("disgust", "repression", "surprise", "tense"), "CASME 4-class (Meta-MMFNet)"),
    ClassSet("casme2_4", ("disgust", "happiness", "repression", "surprise"), frozenset({"casme2"}),
             _identity("disgust", "happiness", "repression", "surprise"), "CASME II 4-class (Meta-MMFNet)"),
    ClassSet("casme2_5", ("disgust", "happiness", "others", "repression", "surprise"), frozenset({"casme2"}),
             _identity("disgust", "happiness", "others", "repression", "surprise"), "CASME II 5-class"),
    ClassSet("smic3", ("negative", "positive", "surprise"), SMIC_DATASETS, _SMIC3, "SMIC 3-class"),
    # SAMM's usual 5-class set: the emotions with at least 10 samples.
    ClassSet("samm5", ("anger", "contempt", "happiness", "others", "surprise"), frozenset({"samm"}),
             _identity("anger", "contempt", "happiness", "others", "surprise"), "SAMM 5-class"),
    ClassSet("ckplus7", ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"),
             frozenset({"ckplus"}),
             _identity("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"),
             "CK+ 7 macro-expression classes (macro pretraining)", macro=True),
    ClassSet("cde3", ("negative", "positive", "surprise"), frozenset({"casme", "casme2"}) | SMIC_DATASETS,
             {"surprise": "surprise", "happiness": "positive", "positive": "positive",
              **{e: "negative" for e in ("disgust", "repression", "tense", "sadness", "fear", "contempt",
                                         "negative")}},
             "CDE composite: CASME + CASME II + SMIC, 3 classes (Meta-MMFNet Table 7)"),
    ClassSet("fused4", ("negative", "others", "positive", "surprise"),
             frozenset({"casme", "casme2", "casme_sq", "samm", "smic_hs"}), _FUSED4,
             "survey's fused 4-class set over five datasets (apex4.m; SMIC-HS only)"),
    ClassSet("fused9", _FUSED9_CLASSES, frozenset({"casme", "casme2", "casme_sq", "samm"}), _FUSED9,
             "survey's fused 9-class set (apex9.m; SMIC left out)"),
    ClassSet("casme3_7", _CASME3_7, frozenset({"casme3"}), _identity(*_CASME3_7),
             "CAS(ME)^3 part A, 7 classes (the dataset's emotions; 'Others' counted with 'others')"),
    ClassSet("casme3_4", ("negative", "others", "positive", "surprise"), frozenset({"casme3"}), _CASME3_4,
             "CAS(ME)^3 part A, 4 classes: negative (anger, disgust, fear, sad), positive (happy), surprise, others"),
    ClassSet("casme3_3", ("negative", "positive", "surprise"), frozenset({"casme3"}),
             {e: c for e, c in _CASME3_4.items() if c != "others"},
             "CAS(ME)^3 part A, 3 classes: negative, positive, surprise ('others' left out)"),
]}
# The sets built in, in their order (LABEL_COLUMNS, configs/catalog.py); ``register_class_set`` adds to CLASS_SETS.
BUILT_IN_CLASS_SETS = tuple(CLASS_SETS)
MEGC2019_COLUMN = "label_megc2019"  # the MEGC2019 composite: a mapping per dataset and its errata, not a ClassSet


def register_class_set(class_set: ClassSet) -> ClassSet:
    """Add a class set at run time: every catalog read from then on (storage/catalog.py) has its
    ``label_<name>`` column, derived from each ingested row's dataset and emotion; old catalogs included,
    nothing re-ingested. A name already taken (or the MEGC2019 composite's) is a ValueError."""
    if class_set.name in CLASS_SETS or class_set.column == MEGC2019_COLUMN:
        raise ValueError(f"a class set named {class_set.name!r} exists already")
    unknown = sorted(set(class_set.mapping.values()) - set(class_set.classes))
    if unknown:
        raise ValueError(f"class set {class_set.name!r} maps emotions to {unknown}, which are not among its classes "
                         f"{list(class_set.classes)}")
    CLASS_SETS[class_set.name] = class_set
    return class_set


def label_columns() -> tuple[str, ...]:
    """The ``label_*`` columns a catalog reads now: one per class set (built in and registered), then
    ``label_megc2019``."""
    return tuple(cs.column for cs in CLASS_SETS.values()) + (MEGC2019_COLUMN,)



def megc2019_label(dataset: str, subject: str, sample_id: str, emotion: str | None) -> str | None:
    """The MEGC2019 composite label (CASME II + SAMM + SMIC-HS, 3 classes), or None when not in it."""
    if emotion is None or (dataset, subject, sample_id) in MEGC2019_EXCLUDED:
        return None
    if dataset == "casme2":
        return _MEGC_CASME2.get(emotion)
    if dataset == "samm":
        return _MEGC_SAMM.get(emotion)
    if dataset == "smic_hs":
        return _SMIC3.get(emotion)
    return None


def protocol_labels(dataset: str, subject: str, sample_id: str, emotion: str | None,
                    is_macro: bool) -> dict[str, str | None]:
    """Every ``label_*`` column (``label_columns``) of one ingested sample, from its dataset and normalised
    emotion through each class set's mapping. Macro-expressions only get the macro sets' labels (CK+'s)."""
    labels: dict[str, str | None] = {}
    for class_set in CLASS_SETS.values():
        labels[class_set.column] = class_set.label(dataset, emotion) if is_macro == class_set.macro else None
    labels[MEGC2019_COLUMN] = None if is_macro else megc2019_label(dataset, subject, sample_id, emotion)
    return labels
