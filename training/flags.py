"""Command-line flags derived from a settings dataclass.

A setting's name, type, choices and help are written once, on the dataclass field
(``field(default=..., metadata={"help": "..."})``); ``add_flags`` turns the chosen fields into
``--kebab-case`` flags and ``flag_values`` reads back the ones given. A flag left out is
``None``, so the profile's value (or the dataclass default) stands.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable
from pathlib import Path


def setting(default, help: str):
    """A dataclass field whose help text is also its command-line flag's."""
    return dataclasses.field(default=default, metadata={"help": help})


def _int_or_str(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def _flag_options(hint) -> dict:
    """argparse options (type, choices, action) for a field's annotation."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if set(members) == {int, str}:
            return {"type": _int_or_str}
        if len(members) != 1:
            raise TypeError(f"no flag for a field of type {hint}")
        hint = members[0]
    if typing.get_origin(hint) is typing.Literal:
        choices = list(typing.get_args(hint))
        return {"type": type(choices[0]), "choices": choices}
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if hint in (int, float, str, Path):
        return {"type": hint}
    raise TypeError(f"no flag for a field of type {hint}")


def add_flags(
    parser: argparse.ArgumentParser,
    settings: type,
    names: Iterable[str],
    defaults: dict | None = None,
    defaults_from: str = "",
) -> None:
    """Add a flag for each named field of the dataclass ``settings``.

    ``defaults`` are values that stand in for the dataclass's when a flag is left out (a
    profile's, named by ``defaults_from``); they only show in the help.
    """
    hints = typing.get_type_hints(settings)
    fields = {f.name: f for f in dataclasses.fields(settings)}
    for name in names:
        spec = fields[name]
        if name in (defaults or {}):
            shown = f" (default {defaults[name]}{' ' + defaults_from if defaults_from else ''})"
        else:
            shown = "" if spec.default is dataclasses.MISSING else f" (default {spec.default})"
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            default=None,
            help=spec.metadata.get("help", name.replace("_", " ")) + shown,
            **_flag_options(hints[name]),
        )


def flag_values(args: argparse.Namespace, settings: type) -> dict:
    """The fields of ``settings`` given as flags (those left out are not in the result)."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(settings)
        if getattr(args, f.name, None) is not None
    }
