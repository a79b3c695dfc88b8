"""One adapter per dataset behind one interface (see base.py): ``detect(root)`` and ``read(root)``.

``ADAPTERS`` maps the name a user passes as ``--dataset`` to the adapter module. ``megc2019`` is not
here: it is a composite list over other datasets' samples, not a set of clips (see megc2019.py).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from merflow.tasks.datasets import casme, casme2, casme3, casme_sq, casme_sq_lv, ckplus, samm, samm_lv, smic

ADAPTERS: dict[str, ModuleType] = {
    "casme": casme, "casme2": casme2, "casme_sq": casme_sq, "smic": smic, "samm": samm, "ckplus": ckplus,
    "casme3": casme3,
}
# Names users type for the same dataset.
ALIASES = {"casme2sq": "casme_sq", "casme^2": "casme_sq", "cas(me)^2": "casme_sq", "ck+": "ckplus",
           "smic_hs": "smic", "smic_vis": "smic", "smic_nir": "smic", "casme_ii": "casme2", "casmeii": "casme2",
           "casme^3": "casme3", "cas(me)^3": "casme3", "casme3a": "casme3"}
# The long-video sets (spotting, tasks/datasets/long_videos.py): their own interface (``read`` gives videos and
# intervals, storage/long_videos.py's tables), read from the same sources as the clips beside them.
LONG_VIDEO_ADAPTERS: dict[str, ModuleType] = {"samm_lv": samm_lv, "casme_sq_lv": casme_sq_lv}


def adapter(name: str) -> ModuleType:
    """The adapter module registered for a dataset name or alias (case-insensitive); a ValueError naming the known ones."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in ADAPTERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(ADAPTERS)}")
    return ADAPTERS[key]


def detect_datasets(root: Path) -> list[str]:
    """Every dataset whose layout is found under root (a folder may hold several)."""
    return [name for name, module in ADAPTERS.items() if module.detect(root)]


def detect_long_videos(root: Path) -> list[str]:
    """Every long-video set whose sheet is found under root."""
    return [name for name, module in LONG_VIDEO_ADAPTERS.items() if module.detect(root)]
