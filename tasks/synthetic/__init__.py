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
from pathlib import Path

import numpy as np

from merflow.configs.synth import SYNTH_DATASETS, SYNTH_EMOTIONS, SynthConfig
from merflow.tasks.synthetic.layouts import SPECS, WRITERS, plan_samples

DATASETS = tuple(WRITERS)
MANIFEST = "merflow-synthetic.json"
# SynthConfig (configs/synth.py, a leaf) names the datasets and their emotions; the writers must be those.
if DATASETS != SYNTH_DATASETS or any(tuple(SPECS[n].emotions) != SYNTH_EMOTIONS[n] for n in DATASETS):
    raise ImportError("configs/synth.py SYNTH_EMOTIONS does not match tasks/synthetic/layouts.py WRITERS and SPECS")
__all__ = ["DATASETS", "MANIFEST", "output_path", "pack", "synthesize"]


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
        manifest = {k: v for k, v in config.to_dict().items() if v or k not in ("face_image", "emotions")}
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
