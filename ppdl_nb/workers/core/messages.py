"""The message vocabulary: a registry of kinds, each with the fields it requires.

A worker answers only the kinds registered here (``store``, ``fetch``, ``delete``,
``call``, ``send``, ``info``, ``step``, ...); each handler is a plain function
``handler(worker, message, caller) -> result``. Fields are type-checked before the
handler runs, so a handler never sees a malformed message.

>>> @message("greet", name=str)
... def greet(worker, msg, caller):
...     return f"hello {msg['name']}, from {caller}"
>>> validate({"kind": "greet", "name": 3})
Traceback (most recent call last):
  ...
ppdl_nb.workers.core.messages.MessageError: field 'name' of a 'greet' message must be str, got int
>>> del HANDLERS["greet"]  # (an example only)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HANDLERS", "STEPS", "MessageError", "find_step", "install_step_table", "message",
    "protocol_step", "validate",
]


class MessageError(ValueError):
    """A decoded message does not fit the vocabulary."""


@dataclass(frozen=True)
class Kind:
    handler: Callable[[Any, dict, str], Any]
    fields: dict[str, type | tuple[type, ...]]
    optional: dict[str, type | tuple[type, ...]]


HANDLERS: dict[str, Kind] = {}
STEPS: dict[str, Callable[..., Any]] = {}
# step name -> the module that registers it, imported on first use. Filled once by the
# composition root (ppdl_nb.boot); the module path comes from this table, never from a peer.
_STEP_TABLE: dict[str, str] = {}

_COMMON_OPTIONAL: dict[str, type | tuple[type, ...]] = {"gc": list}


def message(
    kind: str, optional: dict[str, type | tuple[type, ...]] | None = None, **fields: Any
) -> Callable[[Callable[[Any, dict, str], Any]], Callable[[Any, dict, str], Any]]:
    """Register a handler for message ``kind`` with its required field types."""

    def register(fn: Callable[[Any, dict, str], Any]) -> Callable[[Any, dict, str], Any]:
        if kind in HANDLERS:
            raise ValueError(f"message kind {kind!r} is already registered")
        HANDLERS[kind] = Kind(fn, dict(fields), {**_COMMON_OPTIONAL, **(optional or {})})
        return fn

    return register


def protocol_step(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a protocol step a worker runs on request: ``fn(worker, caller, **kwargs)``.

    Secret sharing, federated training and DP queries add their steps this way, so the
    worker runs only code that was installed with it, never code a peer sent.
    """

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in STEPS and STEPS[name] is not fn:
            raise ValueError(f"protocol step {name!r} is already registered")
        STEPS[name] = fn
        return fn

    return register


def install_step_table(table: dict[str, str]) -> None:
    """Say which module registers each step, so a worker imports it only when first asked.

    Called by the composition root; a name already mapped elsewhere is an error.
    """
    for name, module in table.items():
        if _STEP_TABLE.get(name, module) != module:
            raise ValueError(f"protocol step {name!r} already comes from {_STEP_TABLE[name]}")
    _STEP_TABLE.update(table)


def find_step(name: str) -> Callable[..., Any]:
    """The registered step ``name``, importing its module from the fixed table if needed."""
    if name not in STEPS and name in _STEP_TABLE:
        importlib.import_module(_STEP_TABLE[name])
    if name not in STEPS:
        raise KeyError(f"protocol step {name!r} is not installed on this worker; "
                       f"installed: {sorted(set(STEPS) | set(_STEP_TABLE))}")
    return STEPS[name]


def validate(msg: Any) -> Kind:
    """The registered kind for ``msg``, after checking its fields; MessageError otherwise."""
    if not isinstance(msg, dict):
        raise MessageError(f"a message must be a map, got {type(msg).__name__}")
    kind = msg.get("kind")
    if not isinstance(kind, str) or kind not in HANDLERS:
        raise MessageError(
            f"unknown message kind {kind!r}; this worker understands {sorted(HANDLERS)}"
        )
    spec = HANDLERS[kind]
    for name, types in spec.fields.items():
        if name not in msg:
            raise MessageError(f"{kind!r} message lacks required field {name!r}")
        if not _is(msg[name], types):
            raise MessageError(
                f"field {name!r} of a {kind!r} message must be {_names(types)}, "
                f"got {type(msg[name]).__name__}"
            )
    for name, types in spec.optional.items():
        if name in msg and not _is(msg[name], types):
            raise MessageError(f"field {name!r} of a {kind!r} message must be {_names(types)}")
    extra = set(msg) - set(spec.fields) - set(spec.optional) - {"kind"}
    if extra:
        raise MessageError(f"{kind!r} message has unexpected fields {sorted(extra)}")
    return spec


def _is(value: Any, types: type | tuple[type, ...]) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and int in types and bool not in types:
        return False  # a bool is an int to isinstance, never to the protocol
    return isinstance(value, types)


def _names(types: type | tuple[type, ...]) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(t.__name__ for t in types)
