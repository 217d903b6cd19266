"""Worker subcommands: ``workers`` (more arrive with kernel workers)."""

from __future__ import annotations

from typing import Any

from IPython.core import magic_arguments

from ppdl_nb.workers.party import local_party

from .registry import subcommand


@subcommand("workers")
@magic_arguments.magic_arguments()
def workers(shell: Any, args: Any, cell: str | None) -> None:
    """List the connected workers with what they hold."""
    rows = [("name", "kind", "objects", "bytes", "msgs in", "msgs out")]
    for w in local_party().workers():
        info = w.info()
        rows.append((w.name, w.kind, str(info["objects"]), str(info["bytes"]),
                     str(info["messages_in"]), str(info["messages_out"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
