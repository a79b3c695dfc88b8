"""Synthetic archives in the real datasets' layouts, with real faces that really move.

``synthesize(SynthConfig(...))`` writes one dataset (layouts.py) from clips rendered by
expressions.py on faces from faces.py, then packs it as zip, tar.gz or leaves a folder.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from merflow.tasks.synthetic.layouts import SPECS, WRITERS, plan_samples

DATASETS = tuple(WRITERS)
ARCHIVE_FORMATS = ("zip", "tar.gz", "none")
# What users type -> the writer's name.
_ALIASES = {"casme2sq": "casme_sq", "ck+": "ckplus", "smic_hs": "smic"}
MANIFEST = "merflow-synthetic.json"


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides a synthetic dataset; written into it as merflow-synthetic.json."""

    dataset: str
    subjects: int = 4
    samples_per_subject: int = 3
    samples: int | None = None      # total; overrides samples_per_subject (e.g. 255 over 26 subjects)
    archive: str = "zip"
    seed: int = 0
    scale: float = 0.5              # frame size relative to the real dataset's
    quirks: bool = True
    # A photo of one frontal face that every subject is made from (each with its own pose, warp and
    # tone, faces.subject_identity), read at run time: the path is recorded, the image never copied.
    face_image: str | None = None
    # Only these emotions (the dataset's own names), in equal numbers; empty: the real proportions.
    emotions: tuple[str, ...] = ()

    def __post_init__(self):
        name = _ALIASES.get(self.dataset.lower(), self.dataset.lower())
        if name not in WRITERS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose from {', '.join(DATASETS)} (or casme2sq)")
        object.__setattr__(self, "dataset", name)
        if self.archive not in ARCHIVE_FORMATS:
            raise ValueError(f"archive must be one of {ARCHIVE_FORMATS}, not {self.archive!r}")
        if self.subjects < 1 or self.total < 1:
            raise ValueError("need at least one subject and one sample")
        if not 0.05 <= self.scale <= 1.0:
            raise ValueError(f"scale must be within 0.05..1, not {self.scale}")
        object.__setattr__(self, "emotions", tuple(self.emotions))
        unknown = sorted(set(self.emotions) - set(SPECS[name].emotions))
        if unknown:
            raise ValueError(f"unknown {name} emotions {unknown}; choose from {', '.join(SPECS[name].emotions)}")
        if self.face_image is not None and not Path(self.face_image).is_file():
            raise ValueError(f"face image {self.face_image!r} is not a file")

    @property
    def total(self) -> int:
        """How many samples are written: ``samples`` if given, else subjects x samples_per_subject."""
        return self.samples if self.samples is not None else self.subjects * self.samples_per_subject


def output_path(config: SynthConfig, out: Path) -> Path:
    """Where ``synthesize`` writes: out/<dataset folder> or out/<dataset folder>.<archive>."""
    name = SPECS[config.dataset].folder
    return Path(out) / (name if config.archive == "none" else f"{name}.{config.archive}")


def synthesize(config: SynthConfig, out: Path, progress=None) -> Path:
    """Write the dataset into out/ as an archive (or a folder) and return its path.

    The folder is built in a temporary place and moved or packed at the end, so an interrupted run
    leaves nothing that looks finished.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = output_path(config, out)
    if target.exists():
        raise FileExistsError(f"{target} exists; remove it or choose another --out")
    spec = SPECS[config.dataset]
    if config.emotions:
        spec = dataclasses.replace(spec, emotions=dict.fromkeys(config.emotions, 1))
    rng = np.random.default_rng([config.seed, DATASETS.index(config.dataset)])
    plans = plan_samples(spec, min(config.subjects, config.total), config.total, rng, macro=config.dataset == "ckplus")
    for plan in plans:
        plan.face_image = str(config.face_image) if config.face_image else None
    with tempfile.TemporaryDirectory(dir=out, prefix=".synth-") as work:
        # The archive unpacks one folder deeper than the real layout (CASME2/CASME2_RAW_selected/...).
        root = Path(work) / spec.folder
        root.mkdir()
        WRITERS[config.dataset](root, plans, config.scale, config.seed, rng, config.quirks, progress)
        # The options a set was made without are left out: older manifests read the same.
        manifest = {k: v for k, v in dataclasses.asdict(config).items() if v or k not in ("face_image", "emotions")}
        (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if config.archive == "none":
            shutil.move(str(root), target)
        else:
            partial = target.with_name(f".{target.name}.partial")
            pack(root, partial, config.archive)
            partial.replace(target)
    return target


def pack(folder: Path, archive: Path, fmt: str) -> None:
    """Pack folder (as its own top-level entry) into a zip or tar.gz, in sorted order for repeatability."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if fmt == "zip":
        with zipfile.ZipFile(archive, "w") as bundle:
            for path in files:
                # Frames are already compressed (JPEG, PNG); deflate only what gains from it.
                stored = path.suffix.lower() in {".jpg", ".png"}
                bundle.write(path, path.relative_to(folder.parent).as_posix(),
                             compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    else:
        with tarfile.open(archive, "w:gz", compresslevel=1) as bundle:
            for path in files:
                bundle.add(path, path.relative_to(folder.parent).as_posix(), recursive=False)
