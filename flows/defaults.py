"""The one place the flows and the CLI read a setting's default: from the configuration class that owns it.

A flow's signature and an argparse option take their defaults through ``default(Config, "field")``
(every configuration is a pydantic model), or, for an option passed on to a function that owns its
default, ``parameter(function, "name")``: no default is written twice.
"""

from __future__ import annotations

import inspect
from typing import Any


def default(config: type, name: str) -> Any:
    """The default of field ``name`` of the pydantic model ``config`` (a factory's value)."""
    fields = config.model_fields
    if name not in fields:
        raise LookupError(f"{config.__name__} has no field {name!r}")
    if fields[name].is_required():
        raise LookupError(f"{config.__name__}.{name} has no default")
    return fields[name].get_default(call_default_factory=True)


def parameter(function, name: str) -> Any:
    """The default of parameter ``name`` of ``function`` (a Prefect flow's too), for an option that passes it on."""
    function = getattr(function, "fn", function)  # a Prefect Flow keeps the function as .fn
    value = inspect.signature(function).parameters[name].default
    if value is inspect.Parameter.empty:
        raise LookupError(f"{function.__name__}({name}) has no default")
    return value


def description(config: type, name: str) -> str | None:
    """The ``description`` of field ``name`` of the pydantic model ``config``: an option model that mirrors a
    configuration's field (flows/parameters.py) shows the configuration's own text in Prefect's form."""
    fields = config.model_fields
    if name not in fields:
        raise LookupError(f"{config.__name__} has no field {name!r}")
    return fields[name].description
