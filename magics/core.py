"""Core subcommands: ``help``, ``chain``, ``workers`` (text)."""

from __future__ import annotations

from typing import Any

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from ppdl_nb.magics.registry import SUBCOMMANDS, help_text, subcommand

from ppdl_nb.tensors.chain import chain_text
from ppdl_nb.viz.chain_diagram import ChainDiagram


@subcommand("help")
@magic_arguments.magic_arguments()
@magic_arguments.argument("name", nargs="?", help="subcommand to explain")
def help_(shell: Any, args: Any, cell: str | None) -> None:
    """Show the subcommands, or one subcommand's options."""
    if args.name is None:
        print(help_text())
        return
    if args.name not in SUBCOMMANDS:
        raise UsageError(f"no subcommand {args.name!r}. " + help_text())
    print(SUBCOMMANDS[args.name].usage())


@subcommand("chain")
@magic_arguments.magic_arguments()
@magic_arguments.argument("--text", action="store_true", help="print the text form only")
@magic_arguments.argument("expr", nargs="+", help="expression giving a tensor or pointer")
def chain(shell: Any, args: Any, cell: str | None) -> Any:
    """Draw the chain of a tensor: wrappers, pointers, and where the data lives."""
    expr = " ".join(args.expr)
    try:
        value = shell.ev(expr)  # the user's own expression, in the user's namespace
    except Exception as exc:
        raise UsageError(f"could not evaluate {expr!r}: {type(exc).__name__}: {exc}") from None
    try:
        if args.text:
            print(chain_text(value))
            return None
        return ChainDiagram.of(value)
    except TypeError as exc:
        raise UsageError(str(exc)) from None
