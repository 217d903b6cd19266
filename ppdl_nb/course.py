"""Exercises in the tutorials: a line for the student to write, and a cell that checks it.

An exercise cell leaves a placeholder, ``answer = ...``; the cell after it calls
:func:`check`, which prints ``not yet`` (with a hint) until the answer is right, then
``right``. It never raises for a student, so the stored tutorials, placeholders and all,
run clean under nbval.

The checks are tested too: ``tools/nbbuild.py`` keeps each exercise's solution in its
cell's metadata (the ``# solution:`` lines of the tutorial's ``.py``, hidden from the
reader), and with ``PPDL_NB_SOLUTIONS=1`` in the environment ``notebooks/conftest.py``
puts the solution in place of the placeholder before the cell runs; :func:`check` then
raises ``AssertionError`` if an injected solution does not pass (``make test`` runs the
tutorials a second time that way).

>>> check("two plus two", 4, expected=4)
right: two plus two
>>> check("two plus two", ..., expected=4, hint="add them")
not yet: two plus two (add them)
>>> check("a positive number", -1, test=lambda v: v > 0)
not yet: a positive number (not quite: try again)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["SOLUTIONS_ENV", "check", "solutions_injected"]

#: set to "1" to run the tutorials with their exercises' solutions in place
SOLUTIONS_ENV = "PPDL_NB_SOLUTIONS"


def solutions_injected() -> bool:
    """True when the tutorials run with their solutions (``PPDL_NB_SOLUTIONS=1``)."""
    return os.environ.get(SOLUTIONS_ENV) == "1"


def _matches(answer: Any, expected: Any, test: Callable[[Any], Any] | None) -> bool:
    try:
        if test is not None:
            return bool(test(answer))
        import torch

        if isinstance(expected, torch.Tensor):
            return (isinstance(answer, torch.Tensor) and answer.shape == expected.shape
                    and bool(torch.allclose(answer.double(), expected.double(), atol=1e-4)))
        return bool(answer == expected)
    except Exception:  # a wrong answer may not even compare: it is still just wrong
        return False


def check(name: str, answer: Any, *, expected: Any = None,
          test: Callable[[Any], Any] | None = None, hint: str = "") -> None:
    """Say whether ``answer`` is right: equal to ``expected`` (tensors: close), or
    accepted by ``test``. Prints ``right: NAME`` or ``not yet: NAME (HINT)``."""
    if answer is not Ellipsis and _matches(answer, expected, test):
        print(f"right: {name}")
        return
    if solutions_injected():
        raise AssertionError(f"exercise {name!r}: the injected solution gave {answer!r}, "
                             "which its check refuses; fix the solution or the check")
    why = hint or ("replace the ... above with your answer" if answer is Ellipsis
                   else "not quite: try again")
    print(f"not yet: {name} ({why})")
