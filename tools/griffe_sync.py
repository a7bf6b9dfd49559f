"""A griffe extension for the API reference: Client's and SyncClient's methods with every parameter they take.

`SyncClient.chat = _blocking(Client.chat)` (src/llmclient/sync.py) derives each blocking method from `Client`'s at
import, so their signatures cannot drift apart; griffe reads the source without importing it and would show those
methods as bare attributes. This extension (mkdocs.yml, the python handler's `extensions`) rebuilds each one as a
method with the `Client` method's parameters and docstring, returning what the blocking call returns.

The calls take their options as `**options: Unpack[ChatOptions]` (one declaration, src/llmclient/options.py); the
reference spells them out as keyword parameters, as `help(Client.chat)` does, before `**options`.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_DERIVED = re.compile(r"_(blocking|streaming)\(Client\.(\w+)\)")
_UNPACK = re.compile(r"Unpack\[(\w+)\]")


def _fields(options: griffe.Module, name: str) -> list[griffe.Attribute]:
    """A TypedDict's annotated fields, its bases' first (bases defined in the same module)."""
    cls = options.members[name]
    local = [
        str(base) for base in cls.bases if str(base) in options.members and not options.members[str(base)].is_alias
    ]
    inherited = [field for base in local for field in _fields(options, base)]
    own = [member for member in cls.members.values() if isinstance(member, griffe.Attribute) and member.annotation]
    return inherited + own


def _spelled_out(function: griffe.Function, options: griffe.Module) -> None:
    """Spell out `**options: Unpack[SomeOptions]` as SomeOptions' fields, keyword parameters (default None), before
    it (the docstrings' Args describe `**options` as a whole, so it stays)."""
    last = function.parameters[-1] if len(function.parameters) else None
    match = _UNPACK.fullmatch(str(last.annotation)) if last and last.kind is griffe.ParameterKind.var_keyword else None
    if last is None or match is None or match.group(1) not in options.members:
        return
    fields = _fields(options, match.group(1))
    keyword = griffe.ParameterKind.keyword_only
    function.parameters = griffe.Parameters(
        *[parameter for parameter in function.parameters if parameter is not last],
        *[griffe.Parameter(field.name, annotation=field.annotation, kind=keyword, default="None") for field in fields],
        last,
    )


class SyncMethods(griffe.Extension):
    """Turns `SyncClient`'s derived attributes into methods (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "llmclient":
            return
        sync, client = pkg["sync.SyncClient"], pkg["client.Client"]
        for name, member in list(sync.members.items()):
            match = _DERIVED.fullmatch(str(getattr(member, "value", "")))
            if not match:
                continue
            kind, source = match.groups()
            original = client.members[source]
            method = griffe.Function(
                name,
                parameters=original.parameters,
                returns="SyncStream" if kind == "streaming" else original.returns,
                lineno=member.lineno,
                endlineno=member.endlineno,
            )
            if original.docstring is not None:
                method.docstring = griffe.Docstring(original.docstring.value, parent=method)
            sync.set_member(name, method)
        for cls in (client, sync):
            for member in cls.members.values():
                if isinstance(member, griffe.Function):
                    _spelled_out(member, pkg["options"])
