"""Every optional part a test may need, as one `requires_*` marker each (xarray's pattern): a test
that needs a part carries its marker and is skipped with the marker's reason when the part is absent;
nothing in tests/ skips or `importorskip`s on its own. tests/conftest.py gives a test that uses the
`reference`, `s3_server` or `ray_local` fixture the matching marker.

Only the reference folder is absent in an ordinary checkout (CI's clean clone has none); moto, s3fs,
Ray and the `prefect` console script come with `pip install -e '.[test]'`, so there their markers
never skip."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

REFERENCE = Path(os.environ.get("MERFLOW_REFERENCE", Path(__file__).resolve().parents[1] / ".." / "shared" / "reference")).resolve()
BIN = Path(sys.executable).parent


def _missing(*modules: str) -> list[str]:
    """The names in ``modules`` that cannot be imported (checked without importing them)."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


requires_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"the real reference files are not at {REFERENCE} (set MERFLOW_REFERENCE)")

requires_s3 = pytest.mark.skipif(
    bool(_missing("moto.server", "s3fs")),
    reason=f"moto's S3 server needs moto[server] and s3fs (pip install -e '.[test]'); missing: "
           f"{', '.join(_missing('moto.server', 's3fs'))}")

requires_ray = pytest.mark.skipif(
    bool(_missing("ray.tune")), reason="Ray Tune is not installed (pip install -e '.[test]' installs ray[tune])")

requires_prefect_server = pytest.mark.skipif(
    not (BIN / "prefect").is_file(),
    reason=f"no `prefect` console script beside {sys.executable} to start `prefect server start` with")

# training/shallow_cnn.c is compiled on first use with the C compiler on PATH (or $CC); without one, the
# shallow CNNs train with PyTorch and the kernel's own tests are skipped.
_COMPILER = os.environ.get("CC") or next((name for name in ("cc", "gcc", "clang") if shutil.which(name)), None)
requires_c_compiler = pytest.mark.skipif(
    _COMPILER is None, reason="no C compiler (cc, gcc or clang) to build training/shallow_cnn.c")
