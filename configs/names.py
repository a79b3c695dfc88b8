"""Names that become folder and file names: the one check every writer uses before a name becomes a path.

Two forms:

- **A name** (``check_name``; pydantic types ``RunId``, ``Name``): run ids and search names (``--run``),
  dataset names, protocols, part names: 1 to 128 of ``A-Z a-z 0-9 . _ -``, starting with a letter or a
  digit (``NAME_FORM``). Such a value is one path component that can't be ``.``, ``..``, hidden, empty
  or absolute, holds no separator, ``=`` (hive partitions: ``run=<id>``) or space, and is the same
  text on every file system and in every URL, so two different names never share a folder (on a
  case-sensitive file system, as object stores and Linux are; on macOS's default one, names differing
  only in case would). Nothing is rewritten: a name that does not fit is refused with one line naming
  the form (rewriting ``a b`` to ``a_b`` made two searches share one folder).
- **Any text as a name** (``encoded_name``): where a name is made of someone's text (a fold named after
  a sheet's subject, in a part's file name), the text itself when it is a name, else a readable part
  and a digest: injective, never refused.
- **A folder name from someone's data** (``check_folder_name``): a dataset's own subject and clip names,
  as its sheet or folders give them (``EP01_12@73``, ``disgust1_1``): any text that is exactly one folder
  name (no ``/``, ``\\``, NUL or control character, not ``.`` or ``..``, at most 255 bytes). The
  adapters (tasks/datasets/base.py) quarantine a row whose name is not one.

For writers: call ``check_name(value, "what it is")`` where a name enters (a CLI option, a flow
parameter: annotate it ``RunId`` or ``Name`` and Prefect validates it and shows the form in a
deployment's form), and again where it becomes a path (storage/results.py, storage/checkpoints.py,
the search's experiment folder): ``InvalidName`` is a ``ValueError`` with one line.

A leaf: nothing of the project, so every layer may import it.
"""

from __future__ import annotations

import hashlib
import re
from functools import partial
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

NAME_MAX = 128
NAME_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{NAME_MAX - 1}}}$"
NAME_FORM = (f"1 to {NAME_MAX} letters, digits, '.', '_' or '-', starting with a letter or digit "
             "(e.g. casme2-loso-1)")
_NAME = re.compile(NAME_PATTERN)
FOLDER_NAME_MAX_BYTES = 255  # the longest file name of ext4, XFS, APFS and NTFS (in bytes or UTF-16 units)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidName(ValueError):
    """A name that would not stay one folder of its own: one line naming the value and the allowed form."""


def is_name(value: object) -> bool:
    """Whether ``value`` is a name of ``NAME_FORM``."""
    return isinstance(value, str) and _NAME.match(value) is not None


def check_name(value: object, what: str = "name") -> str:
    """``value`` if it is a name of ``NAME_FORM``; else ``InvalidName``: "<what> '<value>' is not allowed: ...".
    ``what`` says which name it is (run id, search name, dataset name) for the message."""
    if is_name(value):
        return value
    shown = "an empty " + what if value == "" else f"{what} {value!r}"
    raise InvalidName(f"{shown} is not allowed: use {NAME_FORM}")


def encoded_name(text: str) -> str:
    """A name of ``NAME_FORM`` for any text (a fold named after a sheet's subject, in a part's file name): the
    text itself where it is one, else its letters, digits, '.', '_' and '-' (other runs as '_') and 10 hex
    digits of its SHA-256, so that two texts get two names (``a b`` and ``a_b`` do not meet)."""
    if is_name(text):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).lstrip("._-")[: NAME_MAX - 11]
    return f"{readable}-{digest}" if readable else digest


def folder_name_problem(value: object) -> str | None:
    """Why ``value`` is not exactly one folder name (see the module's docstring), or None when it is."""
    if not isinstance(value, str) or not value:
        return "is empty"
    if value in (".", ".."):
        return "is a reference to a folder, not a folder name"
    if "/" in value or "\\" in value:
        return "holds a path separator"
    if _CONTROL.search(value):
        return "holds a control character"
    if len(value.encode("utf-8", "surrogatepass")) > FOLDER_NAME_MAX_BYTES:
        return f"is longer than {FOLDER_NAME_MAX_BYTES} bytes"
    return None


def check_folder_name(value: object, what: str = "folder name") -> str:
    """``value`` if it is exactly one folder name; else ``InvalidName`` saying why."""
    problem = folder_name_problem(value)
    if problem:
        raise InvalidName(f"{what} {value!r} {problem}: it must be one folder name")
    return value


def _name_type(what: str):
    """A pydantic string type checked by ``check_name``; its JSON schema (a Prefect deployment's form)
    carries the pattern and the form, so the form is checked before a run is created too."""
    return Annotated[str, AfterValidator(partial(check_name, what=what)),
                     WithJsonSchema({"type": "string", "pattern": NAME_PATTERN, "maxLength": NAME_MAX,
                                     "description": f"{what}: {NAME_FORM}"})]


RunId = _name_type("run id")   # --run of train and tune (a search's name), the pipeline's run
Name = _name_type("name")      # any other name that becomes a folder: a dataset, a protocol, a bundle
