"""Emotion vocabularies and the class sets of every protocol: one place that turns a sample's
normalised emotion into its label under each protocol (``label_<class set>`` catalog columns).

Mappings follow ../shared/METHOD.md: the Meta-MMFNet class sets per dataset, the CDE mapping of
the paper, the MEGC2019 composite, and the survey's fused 4- and 9-class sets. Where the sources
are silent the choice made here is commented.
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

    def label(self, dataset: str, emotion: str | None) -> str | None:
        if dataset not in self.datasets or emotion is None:
            return None
        return self.mapping.get(emotion)


def _identity(*classes: str) -> dict[str, str]:
    return {c: c for c in classes}


SMIC_DATASETS = frozenset({"smic_hs", "smic_vis", "smic_nir"})

# MEGC2019 takes CASME II's disgust and repression as negative but not its fear or sadness
# (checked against the official combined_3class_gt.csv: 145 CASME II rows), and SAMM's five
# negative emotions (133 SAMM rows).
_MEGC_CASME2 = {"disgust": "negative", "repression": "negative", "happiness": "positive", "surprise": "surprise"}
_MEGC_SAMM = {"anger": "negative", "contempt": "negative", "disgust": "negative", "fear": "negative",
              "sadness": "negative", "happiness": "positive", "surprise": "surprise"}
_SMIC3 = _identity("negative", "positive", "surprise")

# The official MEGC2019 list leaves out two CASME II disgust clips: sub04/EP12_01f (its apex is '/'
# in the 2014 sheet) and sub05/EP09_05f. Keyed by (dataset, subject, sample_id) as in the catalog.
MEGC2019_EXCLUDED = frozenset({("casme2", "sub04", "EP12_01f"), ("casme2", "sub05", "EP09_05f")})

_FUSED4 = {e: ("negative" if e in NEGATIVE_EMOTIONS else e) for e in KNOWN_EMOTIONS}
_FUSED4["happiness"] = "positive"

# The survey's 9 classes are the raw emotions of SAMM, CASME II, CASME and CAS(ME)^2 with at least
# a few samples each; CASME's 'tense' and CAS(ME)^2's 'pain'/'helpless' have no class of their own
# there, so merflow files them under 'others' (a choice: the survey code does not say).
_FUSED9_CLASSES = ("anger", "contempt", "disgust", "fear", "happiness", "others", "repression", "sadness", "surprise")
_FUSED9 = _identity(*_FUSED9_CLASSES) | {"tense": "others", "pain": "others", "helpless": "others"}

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
             "CK+ 7 macro-expression classes (macro pretraining)"),
    ClassSet("cde3", ("negative", "positive", "surprise"), frozenset({"casme", "casme2"}) | SMIC_DATASETS,
             {"surprise": "surprise", "happiness": "positive", "positive": "positive",
              **{e: "negative" for e in ("disgust", "repression", "tense", "sadness", "fear", "contempt",
                                         "negative")}},
             "CDE composite: CASME + CASME II + SMIC, 3 classes (Meta-MMFNet Table 7)"),
    ClassSet("fused4", ("negative", "others", "positive", "surprise"),
             frozenset({"casme", "casme2", "casme_sq", "samm"}) | SMIC_DATASETS, _FUSED4,
             "survey's fused 4-class set over five datasets"),
    ClassSet("fused9", _FUSED9_CLASSES, frozenset({"casme", "casme2", "casme_sq", "samm"}), _FUSED9,
             "survey's fused 9-class set (SMIC left out)"),
]}

LABEL_COLUMNS = tuple(f"label_{name}" for name in CLASS_SETS) + ("label_megc2019",)


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
    """Every ``label_*`` column for one sample. Macro-expressions only get CK+'s macro labels."""
    labels: dict[str, str | None] = {}
    for name, class_set in CLASS_SETS.items():
        macro_set = name == "ckplus7"
        labels[f"label_{name}"] = class_set.label(dataset, emotion) if is_macro == macro_set else None
    labels["label_megc2019"] = None if is_macro else megc2019_label(dataset, subject, sample_id, emotion)
    return labels
