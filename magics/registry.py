"""The ``%ppdl`` subcommand registry: each feature adds its subcommands in its own module.

A subcommand is a function ``fn(shell, args, cell)`` decorated with IPython's
``magic_arguments`` (so its options parse, and print as help) and with
:func:`subcommand`. The dispatcher splits ``%ppdl NAME REST`` and hands REST to NAME's
parser; a mistake raises ``UsageError``. Modules listed in :data:`MODULES` are imported
when the extension loads.

>>> @subcommand("hello")
... @magic_arguments.magic_arguments()
... @magic_arguments.argument("who")
... def hello(shell, args, cell):
...     print("hello", args.who)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from IPython.core import magic_arguments
from IPython.core.error import UsageError

__all__ = ["MODULES", "SUBCOMMANDS", "Subcommand", "dispatch", "help_text", "subcommand"]

# Modules that register subcommands; each feature appends its own module name here.
MODULES: list[str] = [
    "ppdl_nb.magics.budget",
    "ppdl_nb.magics.core",
    "ppdl_nb.magics.kernels",
    "ppdl_nb.magics.mpc",
    "ppdl_nb.magics.train",
    "ppdl_nb.magics.train_fl",
    "ppdl_nb.magics.train_spdz",
    "ppdl_nb.magics.tracebacks",
]


@dataclass(frozen=True)
class Subcommand:
    name: str
    fn: Callable[[Any, Any, str | None], Any]
    cell: str  # "line", "cell" or "both"

    @property
    def summary(self) -> str:
        parser = getattr(self.fn, "parser", None)
        doc = (parser.description if parser is not None else self.fn.__doc__) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def usage(self) -> str:
        parser = getattr(self.fn, "parser", None)
        if parser is None:
            return self.fn.__doc__ or ""
        body = parser.format_help().removeprefix("::").strip("\n")
        return "usage: " + body.strip()


SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(name: str, *, cell: str = "line") -> Callable[[Callable], Callable]:
    """Register ``fn`` as ``%ppdl name`` (``cell`` says if it is a line or cell magic)."""
    if cell not in ("line", "cell", "both"):
        raise ValueError("cell must be 'line', 'cell' or 'both'")

    def register(fn: Callable) -> Callable:
        if name in SUBCOMMANDS and SUBCOMMANDS[name].fn.__module__ != fn.__module__:
            raise ValueError(f"%ppdl {name} is already registered by {SUBCOMMANDS[name].fn}")
        parser = getattr(fn, "parser", None)
        if parser is not None:
            parser.prog = f"ppdl {name}"  # IPython's formatter adds the %
        SUBCOMMANDS[name] = Subcommand(name, fn, cell)
        return fn

    return register


def load_modules() -> list[str]:
    """Import every registered subcommand module that is installed; return the failures."""
    missing = []
    for mod in MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
            missing.append(mod)
    return missing


def dispatch(shell: Any, line: str, cell: str | None) -> Any:
    """Run ``%ppdl line`` (or ``%%ppdl line`` with ``cell``)."""
    name, _, rest = line.strip().partition(" ")
    if not name:
        raise UsageError("%ppdl needs a subcommand. " + help_text())
    sub = SUBCOMMANDS.get(name)
    if sub is None:
        raise UsageError(f"%ppdl has no subcommand {name!r}. " + help_text())
    if cell is None and sub.cell == "cell":
        raise UsageError(f"{name} is a cell magic: write %%ppdl {name} ... at the top of a cell")
    if cell is not None and sub.cell == "line":
        raise UsageError(f"{name} is a line magic: write %ppdl {name} ... (one %)")
    args = magic_arguments.parse_argstring(sub.fn, rest) if hasattr(sub.fn, "parser") else rest
    return sub.fn(shell, args, cell)


def help_text() -> str:
    lines = ["Subcommands (details: %ppdl help NAME):"]
    for name in sorted(SUBCOMMANDS):
        sub = SUBCOMMANDS[name]
        marker = "%%" if sub.cell == "cell" else "%"
        lines.append(f"  {f'{marker}ppdl {name}':<17} {sub.summary}")
    return "\n".join(lines)
