"""Secret-sharing subcommands: ``shares`` (share distributions) and ``trace`` (messages)."""

from __future__ import annotations

from typing import Any

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from IPython.display import display
from ppdl_nb.magics.registry import subcommand

from ppdl_nb.viz.trace import Trace, trace


def _evaluate(shell: Any, expr: str) -> Any:
    try:
        return shell.ev(expr)  # the user's own expression, in the user's namespace
    except Exception as exc:
        raise UsageError(f"could not evaluate {expr!r}: {type(exc).__name__}: {exc}") from None


@subcommand("shares")
@magic_arguments.magic_arguments()
@magic_arguments.argument("--secret", metavar="NAME", help="variable holding the plain secret")
@magic_arguments.argument("--bins", type=int, default=40, help="histogram bins (default 40)")
@magic_arguments.argument("expr", nargs="+", help="expression giving a shared tensor")
def shares(shell: Any, args: Any, cell: str | None) -> Any:
    """Plot each party's share next to the secret: uniform, and uncorrelated with it."""
    from ppdl_nb.viz.shares import plot_shares  # matplotlib: on first use

    value = _evaluate(shell, " ".join(args.expr))
    secret = _evaluate(shell, args.secret) if args.secret else None
    try:
        return plot_shares(value, secret=secret, bins=args.bins)
    except TypeError as exc:
        raise UsageError(str(exc)) from None


@subcommand("trace", cell="both")
@magic_arguments.magic_arguments()
@magic_arguments.argument("--out", metavar="NAME", default="ppdl_trace",
                          help="variable to store the Trace in (default ppdl_trace)")
@magic_arguments.argument("--table", action="store_true", help="print the summary only")
def trace_(shell: Any, args: Any, cell: str | None) -> Any:
    """Run the cell and record every message: a sequence diagram per party, with bytes."""
    if cell is None:
        recorded = shell.user_ns.get(args.out)
        if not isinstance(recorded, Trace):
            raise UsageError(f"no trace in {args.out!r}: run a cell with %%ppdl trace first")
        return recorded
    if not args.out.isidentifier():
        raise UsageError(f"--out must be a variable name, not {args.out!r}")
    with trace() as recorded:
        result = shell.run_cell(cell)
    shell.user_ns[args.out] = recorded
    if result.error_in_exec is not None:
        return None
    if args.table:
        print(recorded)
        return None
    print(recorded)
    display(recorded)
    return None
