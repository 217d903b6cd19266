"""Expected errors, shown short: the user's own lines and the worker's message.

A refusal from a worker (``PermissionError`` on ``.get()`` of a private tensor), a worker
that is not running, objects on different workers: these answer a mistake, they are not
bugs, and the message already says what, why and what to do. ``%load_ext ppdl_nb``
registers :func:`show_expected` with IPython for them (:data:`EXPECTED`), so such an
error shows the frames of the user's own code (the cell, the user's functions), then the
message as the worker wrote it; the frames of ppdl_nb, torch and IPython and the worker's
traceback are one ``%tb`` away (or ``%ppdl tb``). Any other exception is shown as usual.

>>> user_traceback(None) is None  # no frame of the user's: only the message is shown
True
"""

from __future__ import annotations

import os
import sys
import sysconfig
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from ppdl_nb.magics.registry import subcommand

from ppdl_nb.errors import RemoteError, WorkerMismatchError, WorkerUnavailableError

__all__ = ["EXPECTED", "install", "show_expected", "uninstall", "user_traceback"]

#: the errors ppdl_nb raises on purpose, with a message that says what to do
EXPECTED: tuple[type[BaseException], ...] = (RemoteError, WorkerUnavailableError,
                                             WorkerMismatchError)
_LIBRARY = tuple(str(Path(p).resolve()) + os.sep for p in {
    *(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")),
    Path(__file__).parent, Path(sys.modules["ppdl_nb"].__file__).parent})


def _is_library(frame: types.FrameType) -> bool:
    name = frame.f_code.co_filename
    if name.startswith("<"):
        return name.startswith("<frozen")  # "<ipython-input-...>" is the user's cell
    return str(Path(name).resolve()).startswith(_LIBRARY)


def _chain(frames: list[tuple[types.FrameType, int, int]]) -> types.TracebackType | None:
    tb = None
    for frame, lasti, lineno in reversed(frames):
        tb = types.TracebackType(tb, frame, lasti, lineno)
    return tb


def user_traceback(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` with only the frames of the user's code (cells, the user's own modules)."""
    kept = []
    while tb is not None:
        if not _is_library(tb.tb_frame):
            kept.append((tb.tb_frame, tb.tb_lasti, tb.tb_lineno))
        tb = tb.tb_next
    return _chain(kept)


@contextmanager
def _short(value: BaseException, hint: str) -> Iterator[None]:
    """While formatting: the hint as the only note, no chained exceptions."""
    saved = (getattr(value, "__notes__", None), value.__cause__, value.__context__,
             value.__suppress_context__)
    value.__notes__ = [hint]
    value.__cause__ = value.__context__ = None
    try:
        yield
    finally:
        notes, value.__cause__, value.__context__, value.__suppress_context__ = saved
        if notes is None:
            del value.__notes__
        else:
            value.__notes__ = notes


def _hint(value: BaseException) -> str:
    where = (f"ppdl_nb's frames and worker {value.worker}'s traceback are hidden"
             if isinstance(value, RemoteError) else "ppdl_nb's frames are hidden")
    return f"({where}: %tb shows the full traceback)"


def show_expected(shell: Any, etype: type[BaseException], value: BaseException,
                  tb: types.TracebackType | None, tb_offset: int | None = None) -> list[str]:
    """IPython's custom handler for :data:`EXPECTED`: show the short traceback."""
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb
    sys.last_exc = value  # %tb shows this one in full
    with _short(value, _hint(value)):
        stb = shell.InteractiveTB.structured_traceback(etype, value, user_traceback(tb),
                                                       tb_offset=0)
    shell._showtraceback(etype, value, stb)
    return stb


def install(shell: Any) -> None:
    """Show :data:`EXPECTED` errors short in ``shell`` (unless it has its own handler)."""
    if not shell.custom_exceptions:
        shell.set_custom_exc(EXPECTED, show_expected)


def uninstall(shell: Any) -> None:
    if tuple(shell.custom_exceptions) == EXPECTED:
        shell.set_custom_exc((), None)


@subcommand("tb")
@magic_arguments.magic_arguments()
def tb(shell: Any, args: Any, cell: str | None) -> None:
    """The full traceback of the last error: ppdl_nb's frames and the worker's too."""
    if getattr(sys, "last_value", None) is None:
        raise UsageError("no error yet: %ppdl tb shows the full traceback of the last one")
    shell.showtraceback((type(sys.last_value), sys.last_value, sys.last_traceback))
