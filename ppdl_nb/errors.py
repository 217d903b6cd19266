"""Exceptions of ppdl_nb, each rooted in a builtin so ``except ValueError`` still works.

Messages say what went wrong, why, and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "CodecError",
    "RemoteError",
    "TrainingInterrupted",
    "WorkerMismatchError",
    "WorkerUnavailableError",
    "error_message",
    "remote_exception",
    "wire_type",
]


class CodecError(ValueError):
    """A message could not be encoded or decoded (malformed, truncated, oversized, bad dtype)."""


class WorkerMismatchError(ValueError):
    """An operation mixed objects that live on different workers."""


class WorkerUnavailableError(ConnectionError):
    """A worker is not running, died, or did not answer in time."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by an interrupt (Ctrl-C, the notebook's stop button).

    Still a ``KeyboardInterrupt``, so a script stops as usual; ``result`` holds what was
    done (the model as trained so far, the history of the epochs or rounds that finished,
    and the privacy spent), and ``where`` says where it stopped ("epoch 3 of 8").
    """

    def __init__(self, where: str, result: object) -> None:
        super().__init__(f"interrupted at {where}")
        self.where, self.result = where, result


class RemoteError(Exception):
    """Mixin for errors raised on a worker and re-raised in the caller.

    ``worker`` names where it happened; ``remote_traceback`` is the worker's traceback
    (also attached as a note, so it prints under the local traceback). The class made for
    each builtin carries the builtin's name (a ``PermissionError`` from alice prints as
    ``PermissionError`` in every header and last line); ``isinstance(e, RemoteError)``
    tells it apart from a local one.
    """

    worker: str = "?"
    remote_traceback: str = ""

    def __str__(self) -> str:  # the message as sent (KeyError would quote it)
        if len(self.args) == 1 and isinstance(self.args[0], str):
            return self.args[0]
        return super().__str__()


# Only these exception types are re-created from a worker's error reply; anything else
# becomes a RuntimeError. The name comes from a peer, so it is looked up, never imported.
_REMOTE_TYPES: dict[str, type[Exception]] = {
    t.__name__: t
    for t in (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        PermissionError,
        RuntimeError,
        NotImplementedError,
        ZeroDivisionError,
        OverflowError,
        MemoryError,
        TimeoutError,
        ConnectionError,
        LookupError,
        ArithmeticError,
        AttributeError,
    )
}
_REMOTE_CLASSES: dict[type[Exception], type[Exception]] = {}


def wire_type(exc: BaseException) -> str:
    """The builtin type a caller should see for ``exc`` (its nearest allowlisted base)."""
    for cls in type(exc).__mro__:
        if cls.__name__ in _REMOTE_TYPES and _REMOTE_TYPES[cls.__name__] is cls:
            return cls.__name__
    return "RuntimeError"


def error_message(exc: BaseException) -> str:
    """What ``exc`` says, as a person reads it: a KeyError's text without the quotes that
    ``str(KeyError(...))`` adds.

    >>> error_message(KeyError("no dataset 'x'; load it first"))
    "no dataset 'x'; load it first"
    """
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def remote_exception(type_name: str, message: str, worker: str, traceback: str = "") -> Exception:
    """Build the local exception for an error a worker reported.

    >>> e = remote_exception("PermissionError", "no", "alice")
    >>> isinstance(e, PermissionError), isinstance(e, RemoteError), e.worker
    (True, True, 'alice')
    >>> e
    PermissionError('[on worker alice] no')
    """
    base = _REMOTE_TYPES.get(type_name, RuntimeError)
    cls = _REMOTE_CLASSES.get(base)
    if cls is None:  # one name throughout: the builtin's (tracebacks print no module)
        cls = type(base.__name__, (RemoteError, base),
                   {"__module__": "builtins", "__qualname__": base.__name__})
        _REMOTE_CLASSES[base] = cls
    exc = cls(f"[on worker {worker}] {message}")
    exc.worker = worker
    exc.remote_traceback = traceback
    if traceback:
        exc.add_note(f"--- traceback on worker {worker} ---\n{traceback.rstrip()}")
    return exc
