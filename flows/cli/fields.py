"""Command-line options made from a configuration's fields: the option's type, choices, default and help
all come from the pydantic model that owns the setting (its annotation, default and ``description``), so
that none of them is written again in the parser.

``add_config_options(parser, TrainConfig, ["shots", "seed"])`` adds ``--shots`` and ``--seed``:

- the name: ``--kebab-case`` of the field (``rename`` where the command line calls it otherwise:
  ``{"algorithm": "flow"}`` gives ``--flow``); argparse's attribute is the option's name, as always;
- the type: the annotation's (``int``, ``float``, ``str``, under ``Annotated`` and ``X | None``); a tuple field
  takes one text (a grid or a comma list) that the command reads;
- the choices: a ``choice()`` / ``Literal`` annotation's values;
- the default: the model's; ``unset`` names the fields whose option defaults to None ("not given": another
  source decides, e.g. the recipe), each with the help's text for that default;
- the help: the field's ``description`` and ``(default X)``;
- a bool: ``--name`` (store_true) where the default is False, ``--no-name`` (store_true, attribute
  ``no_name``) where it is True.

``overrides`` passes argparse keywords for one field on top (a metavar, choices from a registry that adds
values such as ``all``). Only argparse, typing and pydantic are imported: the parser stays light.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel


def _unwrapped(annotation: Any) -> tuple[Any, bool]:
    """The annotation without ``Annotated`` and ``None`` (``int | None`` -> int), and whether None was allowed."""
    optional = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            optional = optional or len(members) < len(get_args(annotation))
            if len(members) != 1:
                return annotation, optional
            annotation = members[0]
        else:
            return annotation, optional


def option_name(field: str, rename: Mapping[str, str] | None = None) -> str:
    """``--kebab-case`` of ``field``, or of its new name in ``rename``."""
    return "--" + (rename or {}).get(field, field).replace("_", "-")


def default_text(value: Any) -> str:
    """A default as the help shows it (and as the option reads it back): 0.5, 1e-05, a,b for a tuple."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ",".join(default_text(v) for v in value)
    return str(value)


def option_arguments(config: type[BaseModel], field: str, *, required: bool = False, unset: str | None = None,
                     rename: Mapping[str, str] | None = None) -> tuple[list[str], dict]:
    """The option strings and ``add_argument`` keywords of ``config``'s ``field`` (see the module's docstring)."""
    info = config.model_fields[field]
    annotation, _ = _unwrapped(info.annotation)
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    description = (info.description or "").replace("%", "%%")  # argparse formats help with %
    kwargs: dict[str, Any] = {}
    if annotation is bool:
        name = option_name(field, rename)
        if default is True:
            name = "--no-" + name[2:]
            description = f"without {description}" if description else ""
        return [name], {"action": "store_true", "help": description or None}
    origin = get_origin(annotation)
    if origin is Literal:
        kwargs["choices"] = list(get_args(annotation))
        kinds = {type(value) for value in kwargs["choices"]}
        if len(kinds) == 1 and kinds != {str}:
            kwargs["type"] = kinds.pop()
    elif origin in (tuple, list):
        default = None  # one text (a grid, a comma list) that the command reads
    elif annotation in (int, float):
        kwargs["type"] = annotation
    if required:
        kwargs["required"] = True
        shown = None
    elif unset is not None:
        kwargs["default"], shown = None, unset
    else:
        kwargs["default"] = default
        shown = None if default is None else f"default {default_text(default)}"
    if description and shown:
        kwargs["help"] = f"{description} ({shown})"
    else:
        kwargs["help"] = description or shown
    return [option_name(field, rename)], kwargs


def add_config_options(parser: argparse.ArgumentParser, config: type[BaseModel], names: Iterable[str], *,
                       rename: Mapping[str, str] | None = None, required: Iterable[str] = (),
                       unset: Mapping[str, str] | None = None,
                       overrides: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Add one option per field of ``config`` in ``names``, in that order (see the module's docstring)."""
    names, required, unset, overrides = list(names), set(required), dict(unset or {}), dict(overrides or {})
    unknown = (set(names) | required | set(unset) | set(overrides)) - set(config.model_fields)
    if unknown:
        raise LookupError(f"{config.__name__} has no field {', '.join(sorted(unknown))}")
    for name in names:
        strings, kwargs = option_arguments(config, name, required=name in required, unset=unset.get(name),
                                           rename=rename)
        parser.add_argument(*strings, **(kwargs | dict(overrides.get(name, {}))))
