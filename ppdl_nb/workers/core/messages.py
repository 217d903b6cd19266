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

import functools
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HANDLERS", "STEPS", "MessageError", "Step", "find_step", "install_step_table", "message",
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
STEPS: dict[str, Step] = {}
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


class Step:
    """A registered protocol step: the worker's function and the notebook's typed handle.

    On a worker, ``step(worker, caller, **kwargs)`` runs it. On the notebook,
    ``step.on(client, **kwargs)`` asks ``client``'s worker to run it, after checking the
    keyword arguments against the step's own signature, so a misspelt argument is a
    ``TypeError`` naming what the user typed, before anything is sent; "go to definition"
    on the handle lands on the code the worker runs.
    """

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name = name
        self.fn = fn
        functools.update_wrapper(self, fn)
        params = list(inspect.signature(fn).parameters.values())[2:]  # past worker, caller
        self.signature = inspect.Signature(params)

    def __call__(self, worker: Any, caller: str, **kwargs: Any) -> Any:
        return self.fn(worker, caller, **kwargs)

    def check(self, **kwargs: Any) -> None:
        """Raise ``TypeError`` if ``kwargs`` do not fit the step's parameters."""
        try:
            self.signature.bind(**kwargs)
        except TypeError as exc:
            raise TypeError(f"step {self.name}: {exc}") from None

    def on(self, client: Any, /, **kwargs: Any) -> Any:
        """Run this step on ``client``'s worker (the notebook's side)."""
        self.check(**kwargs)
        return client.step(self.name, **kwargs)

    def __repr__(self) -> str:
        return f"<protocol step {self.name}{self.signature}>"


def protocol_step(name: str) -> Callable[[Callable[..., Any]], Step]:
    """Register a protocol step a worker runs on request: ``fn(worker, caller, **kwargs)``.

    Secret sharing, federated training and DP queries add their steps this way, so the
    worker runs only code that was installed with it, never code a peer sent. The
    decorator returns a :class:`Step`, the typed handle the notebook side calls.
    """

    def register(fn: Callable[..., Any]) -> Step:
        if name in STEPS and STEPS[name].fn is not fn:
            raise ValueError(f"protocol step {name!r} is already registered")
        step = STEPS[name] = Step(name, fn)
        return step

    return register


def install_step_table(table: dict[str, str]) -> None:
    """Say which module registers each step, so a worker imports it only when first asked.

    Called by the composition root; a name already mapped elsewhere is an error.
    """
    for name, module in table.items():
        if _STEP_TABLE.get(name, module) != module:
            raise ValueError(f"protocol step {name!r} already comes from {_STEP_TABLE[name]}")
    _STEP_TABLE.update(table)


def find_step(name: str) -> Step:
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
