"""Evaluation protocols: which catalog samples fit, validate and test in each fold.

Protocols (docs/method.md "Protocols"): LOSO per dataset (CAS(ME)^3 on casme3_7, casme3_4 or casme3_3), LOVO
(leave one video out) per dataset, and the
leave-one-subject-out composites MEGC2019 (CASME II + SAMM + SMIC-HS), CDE (CASME + CASME II + SMIC,
Meta-MMFNet Table 7) and the survey's fused 4- and 9-class sets.

Leakage-free by construction:
- a subject is the person, ``subject_key``: ids repeat across datasets (CASME and CASME II both have
  ``sub01``) and SMIC's HS/VIS/NIR cameras filmed the same people (``smic/s3``);
- the inner validation split (which chooses epochs, alpha, shots) is drawn from the training subjects
  other than the test subject, and only their labels steer it: permuting the test subject's labels
  changes no fit or validation set.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from merflow.configs.catalog import SURVEY_SETS, UNKNOWN_SUBJECT
from merflow.tasks.labels import CLASS_SETS

PROTOCOLS = ("loso", "lovo", "megc2019", "cde", "fused4", "fused9")
PER_DATASET_PROTOCOLS = ("loso", "lovo")
LEAKY_PROTOCOLS = ("lovo",)       # a held-out sample's person has other clips in training (docs/method.md)
LEAKY_BALANCES = ("undersample",)  # balanced before the split: the held-out samples are removed by their labels

# SMIC filmed each event with up to three cameras; one event is one sample, so composites take one
# camera: HS, as MEGC2019 does and as the survey code does (its 16 SMIC subject folders are HS's).
SMIC_MODALITY = "smic_hs"
DATASET_ALIASES = {"smic": SMIC_MODALITY}


@dataclass(frozen=True)
class _Composite:
    class_set: str
    datasets: frozenset[str]


COMPOSITES = {
    "megc2019": _Composite("megc2019", frozenset({"casme2", "samm", SMIC_MODALITY})),
    "cde": _Composite("cde3", frozenset({"casme", "casme2", SMIC_MODALITY})),
    "fused4": _Composite("fused4", frozenset({"casme", "casme2", "casme_sq", "samm", SMIC_MODALITY})),
    "fused9": _Composite("fused9", frozenset({"casme", "casme2", "casme_sq", "samm"})),
}

# The class set LOSO/LOVO uses for a dataset unless another is asked for.
NATIVE_CLASS_SETS = {
    "casme": "casme4", "casme2": "casme2_4", "samm": "samm5",
    "smic_hs": "smic3", "smic_vis": "smic3", "smic_nir": "smic3",
    # CAS(ME)^2 has no class set of its own in the sources: its micro-expressions are studied only in
    # the survey's fused sets, so LOSO on it uses the fused 4-class set.
    "casme_sq": "fused4",
    # CAS(ME)^3 part A: the dataset paper's 7 classes (casme3_4 and casme3_3 on request: --class-set).
    "casme3": "casme3_7",
    # The survey's own balanced inputs, imported (`merflow import-features C4.mat label4.mat`): images of the
    # five datasets that name neither sample nor person, labelled in the fused sets (configs/catalog.py).
    **SURVEY_SETS,
}
MACRO_DATASET = "ckplus"



def micro_class_set_datasets() -> dict[str, frozenset[str]]:
    """Micro-expression class sets and the datasets each labels (megc2019 is not a ClassSet in labels.py); read
    when asked, so that a class set registered at run time (configs.labels.register_class_set) has its protocols."""
    sets = {name: cs.datasets for name, cs in CLASS_SETS.items() if not cs.macro}
    sets["megc2019"] = COMPOSITES["megc2019"].datasets
    for survey_set, class_set in SURVEY_SETS.items():  # labelled by their set alone; never drawn into a composite
        sets[class_set] = sets[class_set] | {survey_set}
    return sets


# Random validation splits tried per fold; with fewer possible splits than this, all are tried.
VALIDATION_CANDIDATES = 16


@dataclass(frozen=True)
class Fold:
    """One fold: its sample keys by role, sorted; a sample has exactly one role."""

    name: str                          # "loso-casme2-sub01", "megc2019-samm/006", "lovo-casme2/sub01/EP02_01f"
    protocol: str
    label_column: str
    classes: tuple[str, ...]           # sorted; a class's index is its position
    fit_keys: tuple[str, ...]          # training subjects minus the validation subjects: what the weights learn from
    validation_keys: tuple[str, ...]   # subject-disjoint inner split of the training subjects: chooses epochs, alpha, shots
    test_keys: tuple[str, ...]         # the held-out subject's samples (LOSO) / the one held-out sample (LOVO)
    test_subjects: tuple[str, ...]     # subject_keys of the test samples


def _resolve_dataset(dataset: str) -> str:
    resolved = DATASET_ALIASES.get(dataset, dataset)
    if resolved == MACRO_DATASET:
        raise ValueError("ckplus holds macro-expressions only: it has no micro-expression protocol; "
                         "use macro_samples() for macro pretraining")
    if resolved not in NATIVE_CLASS_SETS:
        known = sorted(set(NATIVE_CLASS_SETS) | set(DATASET_ALIASES))
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {known}")
    return resolved


def label_column(protocol: str, dataset: str | None = None, class_set: str | None = None) -> str:
    """The catalog column holding the labels of a protocol (``label_<class set>``).

    loso/lovo need a dataset and use its native class set unless ``class_set`` names another that
    labels that dataset (e.g. ``casme2_5``); composites take no dataset and only their own class set.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if protocol in COMPOSITES:
        composite = COMPOSITES[protocol]
        if dataset is not None:
            raise ValueError(f"protocol {protocol!r} is a composite of {sorted(composite.datasets)}: "
                             f"it takes no dataset (got {dataset!r}); use 'loso' or 'lovo' for one dataset")
        if class_set not in (None, composite.class_set):
            raise ValueError(f"protocol {protocol!r} uses class set {composite.class_set!r}, not {class_set!r}")
        return f"label_{composite.class_set}"
    if dataset is None:
        if class_set is not None:  # loso/lovo over every dataset the class set labels (class_set_datasets)
            class_set_datasets(class_set)
            return f"label_{class_set}"
        raise ValueError(f"protocol {protocol!r} needs a dataset (one of {sorted(NATIVE_CLASS_SETS)} or 'smic') "
                         "or a class set, e.g. --class-set fused4 for LOVO over the survey's fused datasets")
    dataset = _resolve_dataset(dataset)
    name = class_set or NATIVE_CLASS_SETS[dataset]
    sets = micro_class_set_datasets()
    if name not in sets:
        raise ValueError(f"unknown class set {name!r}; expected one of {sorted(sets)}")
    if dataset not in sets[name]:
        raise ValueError(f"class set {name!r} has no labels for dataset {dataset!r} "
                         f"(it labels {sorted(sets[name])}; {dataset}'s: "
                         f"{', '.join(sorted(n for n, d in sets.items() if dataset in d))})")
    return f"label_{name}"


def class_set_datasets(class_set: str) -> frozenset[str]:
    """The datasets that loso/lovo over a whole class set (no dataset named) spans: every dataset the
    class set labels, SMIC as one camera (HS) as the composites take it. The survey's LOVO ran over its
    fused sets this way (448 folds over five datasets; docs/method.md "Protocols")."""
    sets = micro_class_set_datasets()
    if class_set not in sets:
        raise ValueError(f"unknown class set {class_set!r}; expected one of {sorted(sets)}")
    labelled = sets[class_set] - set(SURVEY_SETS)  # imported survey sets: named only
    smic = labelled & {"smic_hs", "smic_vis", "smic_nir"}
    return frozenset(labelled - smic) | (frozenset({SMIC_MODALITY}) if smic else frozenset())


def protocol_samples(catalog: pd.DataFrame, protocol: str, dataset: str | None = None,
                     class_set: str | None = None) -> pd.DataFrame:
    """The micro-expression rows usable under a protocol (labelled in its class set), sorted by sample_key.

    loso/lovo: that dataset only ('smic' means SMIC-HS), or with no dataset but a class set, every
    dataset that class set labels (``class_set_datasets``). Composites: their datasets, SMIC as HS only.
    """
    column = label_column(protocol, dataset, class_set)
    if protocol not in PER_DATASET_PROTOCOLS:
        datasets = COMPOSITES[protocol].datasets
    elif dataset is None:
        datasets = class_set_datasets(class_set)
    else:
        datasets = {_resolve_dataset(dataset)}
    usable = (~catalog["is_macro"].astype(bool)) & catalog[column].notna() & catalog["dataset"].isin(datasets)
    return catalog[usable].sort_values("sample_key").reset_index(drop=True)


def macro_samples(catalog: pd.DataFrame) -> pd.DataFrame:
    """CK+ macro-expression rows with a 7-class label: the macro model's pretraining data."""
    usable = (catalog["is_macro"].astype(bool) & (catalog["dataset"] == MACRO_DATASET)
              & catalog["label_ckplus7"].notna())
    return catalog[usable].sort_values("sample_key").reset_index(drop=True)


def _fold_rng(seed: int, fold_name: str) -> np.random.Generator:
    # Python's hash() of a string changes between processes; a digest does not.
    digest = hashlib.sha256(f"{seed}/{fold_name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _validation_size(n_candidates: int, validation_fraction: float) -> int:
    if validation_fraction == 0 or n_candidates < 2:
        return 0
    # At least one subject to validate on, at least one left to fit on.
    return min(max(round(validation_fraction * n_candidates), 1), n_candidates - 1)


def _choose_validation(candidates: list[str], subject_classes: dict[str, frozenset[str]],
                       validation_fraction: float, seed: int, fold_name: str) -> frozenset[str]:
    """Validation subjects among ``candidates`` (training subjects other than the test subject).

    Among seeded candidate splits, keep the one whose fit subjects cover the most classes (a class
    missing from fit can be neither learnt nor drawn as support shots), then whose validation subjects
    cover the most; ties go to the earlier candidate in seeded order. Only candidates' labels are read.
    """
    size = _validation_size(len(candidates), validation_fraction)
    if size == 0:
        return frozenset()
    rng = _fold_rng(seed, fold_name)
    if math.comb(len(candidates), size) <= VALIDATION_CANDIDATES:
        splits = [frozenset(s) for s in itertools.combinations(candidates, size)]
        splits = [splits[i] for i in rng.permutation(len(splits))]
    else:
        splits = [frozenset(rng.choice(candidates, size=size, replace=False).tolist())
                  for _ in range(VALIDATION_CANDIDATES)]

    def coverage(split: frozenset[str]) -> tuple[int, int]:
        fit_classes = set().union(*(subject_classes[s] for s in candidates if s not in split))
        validation_classes = set().union(*(subject_classes[s] for s in split))
        return len(fit_classes), len(validation_classes)

    return max(splits, key=coverage)  # max() keeps the first of equals


def folds(catalog: pd.DataFrame, protocol: str, dataset: str | None = None, class_set: str | None = None,
          validation_fraction: float = 0.2, seed: int = 0) -> list[Fold]:
    """The folds of a protocol: one per subject_key (sorted) for LOSO-type protocols, one per sample
    (sorted by sample_key) for LOVO.

    Validation takes ``round(validation_fraction * n)`` of the n training subjects other than the test
    subject (at least 1 when n >= 2 and the fraction is not 0; 0 means no inner validation), chosen
    deterministically from ``seed`` and the fold's name. In LOVO the test sample's subject's other
    samples are fit on (that is LOVO) but never validated on.
    """
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    column = label_column(protocol, dataset, class_set)
    samples = protocol_samples(catalog, protocol, dataset, class_set)
    if samples.empty:
        raise ValueError(f"no usable samples for protocol {protocol!r}"
                         + (f" on dataset {dataset!r}" if dataset else "") + f" ({column} is empty)")
    nameless = samples[samples["subject"] == UNKNOWN_SUBJECT]
    if protocol != "lovo" and len(nameless):
        raise ValueError(f"protocol {protocol!r} holds out people, but {len(nameless)} of its samples name none "
                         f"({', '.join(sorted(nameless['dataset'].unique()))}: images named by position, subject "
                         f"{UNKNOWN_SUBJECT!r}): run leave-one-video-out on them (--protocol lovo --dataset "
                         f"{nameless['dataset'].iloc[0]})")
    classes = tuple(sorted(samples[column].unique()))
    subject_of = dict(zip(samples["sample_key"], samples["subject_key"]))
    subject_classes = {s: frozenset(labels) for s, labels in samples.groupby("subject_key")[column]}

    if protocol == "lovo":
        held_out = [(f"lovo-{key}", (key,)) for key in subject_of]
    elif protocol == "loso" and dataset is not None:
        # One dataset: its own subject id reads best ("loso-casme2-sub01").
        held_out = [(f"loso-{rows['dataset'].iloc[0]}-{rows['subject'].iloc[0]}", tuple(rows["sample_key"]))
                    for _, rows in samples.groupby("subject_key", sort=True)]
    else:
        held_out = [(f"{protocol}-{subject_key}", tuple(rows["sample_key"]))
                    for subject_key, rows in samples.groupby("subject_key", sort=True)]

    result = []
    for name, test_keys in held_out:
        test_subjects = tuple(sorted({subject_of[k] for k in test_keys}))
        candidates = sorted(s for s in subject_classes if s not in test_subjects)
        validation_subjects = _choose_validation(candidates, subject_classes, validation_fraction, seed, name)
        held = set(test_keys)
        training = [(k, s) for k, s in subject_of.items() if k not in held]
        result.append(Fold(
            name=name, protocol=protocol, label_column=column, classes=classes,
            fit_keys=tuple(k for k, s in training if s not in validation_subjects),
            validation_keys=tuple(k for k, s in training if s in validation_subjects),
            test_keys=test_keys, test_subjects=test_subjects,
        ))
    return result


def check_disjoint(fold: Fold, catalog: pd.DataFrame) -> None:
    """Raise ValueError if a sample is in two of fit/validation/test, or a person (subject_key) is.

    LOVO is the one exception its definition makes: the test sample's subject is also fit on.
    """
    subject_of = dict(zip(catalog["sample_key"], catalog["subject_key"]))
    parts = {"fit": fold.fit_keys, "validation": fold.validation_keys, "test": fold.test_keys}
    unknown = [k for keys in parts.values() for k in keys if k not in subject_of]
    if unknown:
        raise ValueError(f"fold {fold.name}: sample keys not in the catalog: {unknown[:5]}")
    if {subject_of[k] for k in fold.test_keys} != set(fold.test_subjects):
        raise ValueError(f"fold {fold.name}: test_subjects {fold.test_subjects} do not match its test samples")
    for (a, a_keys), (b, b_keys) in itertools.combinations(parts.items(), 2):
        shared_samples = set(a_keys) & set(b_keys)
        if shared_samples:
            raise ValueError(f"fold {fold.name}: samples in both {a} and {b}: {sorted(shared_samples)[:5]}")
        if fold.protocol == "lovo" and {a, b} == {"fit", "test"}:
            continue
        shared_subjects = {subject_of[k] for k in a_keys} & {subject_of[k] for k in b_keys}
        if shared_subjects:
            raise ValueError(f"fold {fold.name}: subjects in both {a} and {b}: {sorted(shared_subjects)}")


def undersample(samples: pd.DataFrame, column: str, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Every class of ``column`` subsampled at random to the size of the smallest class, before any split:
    the survey's balancing (docs/method.md "Protocols": 4 x 112 = 448 and 9 x 16 = 144; the
    survey published no seed). Returns the kept rows (sorted by sample_key) and what to record: the
    seed, the class counts before and after, and the kept keys.

    Seeded by ``seed`` only: the same catalog rows and seed keep the same samples in any process.
    """
    counts = samples[column].value_counts().sort_index()
    if counts.empty:
        raise ValueError(f"nothing to balance: no sample has a {column}")
    size = int(counts.min())
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"undersample/{seed}".encode()).digest()[:8], "little"))
    kept = []
    for label in counts.index:  # classes in sorted order, keys sorted: the draw depends on nothing else
        keys = np.sort(samples.loc[samples[column] == label, "sample_key"].to_numpy())
        kept.extend(keys[np.sort(rng.choice(len(keys), size=size, replace=False))].tolist())
    balanced = samples[samples["sample_key"].isin(kept)].sort_values("sample_key").reset_index(drop=True)
    record = {"method": "undersample", "seed": seed, "per_class": size,
              "before": {str(k): int(v) for k, v in counts.items()},
              "after": {str(k): size for k in counts.index}, "kept": sorted(kept)}
    return balanced, record


def undersample_training(fold: Fold, samples: pd.DataFrame, seed: int = 0) -> tuple[Fold, dict]:
    """``fold`` with its fit samples balanced inside the fold: every class of the fold's fit samples subsampled
    at random to the smallest of them (seeded by ``seed`` and the fold's name); validation and test samples
    are left as they are. The honest variant of the survey's balancing (``undersample`` before the split reads
    the held-out subject's labels). ``samples``: the protocol's rows, with ``sample_key`` and the fold's label
    column. Returns the fold and its per-class count."""
    labels = samples.set_index("sample_key")[fold.label_column]
    fit = pd.DataFrame({"sample_key": list(fold.fit_keys), fold.label_column: labels.loc[list(fold.fit_keys)].to_numpy()})
    counts = fit[fold.label_column].value_counts().sort_index()
    size = int(counts.min()) if len(counts) else 0
    rng = _fold_rng(seed, f"undersample-training/{fold.name}")
    kept = []
    for label in counts.index:
        keys = np.sort(fit.loc[fit[fold.label_column] == label, "sample_key"].to_numpy())
        kept.extend(keys[np.sort(rng.choice(len(keys), size=size, replace=False))].tolist())
    kept_set = set(kept)
    balanced = Fold(fold.name, fold.protocol, fold.label_column, fold.classes,
                    tuple(k for k in fold.fit_keys if k in kept_set), fold.validation_keys, fold.test_keys,
                    fold.test_subjects)
    return balanced, {"per_class": size, "classes": len(counts)}


def leak_reasons(protocol: str, balance: str | None = None) -> list[str]:
    """Why a run's numbers depend on its test labels, one line each (empty: they do not): LOVO (a held-out
    sample's person has other clips in training) and balancing before the split (``balance undersample``: the
    held-out subject's samples are removed by their labels, so its classes become the training minority)."""
    reasons = []
    if protocol in LEAKY_PROTOCOLS:
        reasons.append("LOVO: a held-out sample's person has other clips in training")
    if balance in LEAKY_BALANCES:
        reasons.append("balanced before the split: the held-out samples were removed by their labels, so the "
                       "held-out classes are the training minority")
    return reasons
