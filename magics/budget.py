"""The ``budget`` subcommand: every data owner's privacy ledger, as a table and a chart."""

from __future__ import annotations

from typing import Any

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from ppdl_nb.magics.registry import subcommand

from ppdl_nb.viz.budget import ledgers, plot_budgets
from ppdl_nb.workers.transport.party import local_party


@subcommand("budget")
@magic_arguments.magic_arguments()
@magic_arguments.argument("--text", action="store_true", help="the ledgers only, no chart")
@magic_arguments.argument("names", nargs="*", help="workers to ask (default: all running)")
def budget(shell: Any, args: Any, cell: str | None) -> Any:
    """Privacy budgets kept by the data owners: each release charged, and what is left."""
    try:
        workers = [local_party().client_for(n) for n in args.names] or None
    except ConnectionError as exc:
        raise UsageError(str(exc)) from None
    found = ledgers(workers)
    if not found:
        print("no worker holds a dataset with a budget; a data owner loads one with "
              "ppdl_nb.dp.remote(worker).load(dataset, epsilon=..., delta=...)")
        return None
    print("\n\n".join(b.text() for b in found))
    return None if args.text else plot_budgets(found)
