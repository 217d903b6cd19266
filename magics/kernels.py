"""Worker subcommands: ``launch``, ``workers`` (the dashboard), ``on``, ``restart``,
``shutdown``. Each calls the plain API in :mod:`ppdl_nb.workers`."""

from __future__ import annotations

import sys
from typing import Any

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from ppdl_nb.magics.registry import subcommand

from ppdl_nb.workers.transport.party import local_party
from ppdl_nb.workers.transport.virtual import VirtualWorker

# workers whose cells the notebook was told run as their owner (told once per worker)
_WARNED_OWNER: set[str] = set()
OWNER_WARNING = (
    "ppdl: %%ppdl on {name} runs this cell inside {name}'s kernel, as {name}, the data "
    "owner: it can read {name}'s private data, and what it prints comes back to this "
    "notebook. (Said once per worker; launch with --no-inspect to close a worker's shell.)"
)


def _worker(name: str) -> Any:
    try:
        return local_party().client_for(name)
    except ConnectionError as exc:
        raise UsageError(str(exc)) from None


def _names(names: list[str]) -> list[str]:
    for n in names:
        if not n.isidentifier():
            raise UsageError(f"worker name {n!r} must be a Python identifier (it becomes a "
                             "variable)")
    if len(set(names)) != len(names):
        raise UsageError("worker names must differ")
    return names


@subcommand("launch")
@magic_arguments.magic_arguments()
@magic_arguments.argument("--virtual", action="store_true",
                          help="in-process workers instead of separate kernels")
@magic_arguments.argument("--no-inspect", action="store_true",
                          help="refuse %%%%ppdl on: the worker's shell stays closed")
@magic_arguments.argument("names", nargs="+", help="worker names, bound as variables")
def launch(shell: Any, args: Any, cell: str | None) -> None:
    """Start workers (separate kernels by default) and bind them as variables."""
    names = _names(args.names)
    if args.virtual:
        workers = [VirtualWorker(n) for n in names]
    else:
        from ppdl_nb.workers.transport.kernel import launch as launch_kernels

        workers = list(launch_kernels(*names, inspect=not args.no_inspect))
    for w in workers:
        shell.user_ns[w.name] = w
    kind = "virtual workers" if args.virtual else "kernel workers"
    pids = "" if args.virtual else " (pids " + ", ".join(str(w.pid) for w in workers) + ")"
    print(f"launched {len(workers)} {kind}: {', '.join(names)}{pids}")


@subcommand("workers")
@magic_arguments.magic_arguments()
@magic_arguments.argument("--text", action="store_true", help="a plain table, not the widget")
@magic_arguments.argument("--interval", type=float, default=1.0,
                          help="seconds between live refreshes (0: no live refresh)")
def workers(shell: Any, args: Any, cell: str | None) -> Any:
    """The worker dashboard: what each worker holds, live, with restart/shutdown buttons."""
    if not args.text:
        from ppdl_nb.viz.dashboard import WorkerDashboard  # ipywidgets: on first use

        return WorkerDashboard(interval=args.interval or None)
    rows = [("name", "kind", "pid", "status", "objects", "bytes", "msgs in", "msgs out")]
    for w in local_party().workers():
        status = w.status() if hasattr(w, "status") else "running"
        info = w.info() if status == "running" else {}
        rows.append((w.name, w.kind, str(w.pid or "-"), status,
                     *(str(info.get(k, "-")) for k in ("objects", "bytes", "messages_in",
                                                       "messages_out"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return None


@subcommand("on", cell="cell")
@magic_arguments.magic_arguments()
@magic_arguments.argument("--timeout", type=float, default=60.0)
@magic_arguments.argument("name", help="the kernel worker to run the cell in")
def on(shell: Any, args: Any, cell: str | None) -> None:
    """Run the cell inside a worker's kernel, as its owner, and show what it prints.

    The cell can read the worker's private data: on stderr, the first cell run on each
    worker says so. Workers launched with ``--no-inspect`` refuse.
    """
    worker = _worker(args.name)
    if worker.kind != "kernel":
        raise UsageError(f"{args.name} is a {worker.kind} worker: only kernel workers have a "
                         "shell to run cells in (launch it without --virtual)")
    if not worker.inspect:
        raise UsageError(f"worker {args.name} was started with inspect=False: its shell is "
                         "not open to the notebook")
    if worker.name not in _WARNED_OWNER:
        _WARNED_OWNER.add(worker.name)
        print(OWNER_WARNING.format(name=worker.name))
    try:
        result = worker.execute(cell, timeout=args.timeout)
    except PermissionError as exc:
        raise UsageError(str(exc)) from None
    result.show()
    if result.status != "ok":
        print(f"--- error on worker {args.name} ---\n{result.error}", file=sys.stderr)


@subcommand("shutdown")
@magic_arguments.magic_arguments()
@magic_arguments.argument("names", nargs="*", help="workers to stop (default: all)")
def shutdown(shell: Any, args: Any, cell: str | None) -> None:
    """Stop workers (all of them by default); their data is gone."""
    targets = [_worker(n) for n in args.names] or local_party().workers()
    for w in targets:
        w.shutdown()
    print("shut down: " + (", ".join(w.name for w in targets) or "nothing"))


@subcommand("restart")
@magic_arguments.magic_arguments()
@magic_arguments.argument("name", help="the worker to restart (empty, same name)")
def restart(shell: Any, args: Any, cell: str | None) -> None:
    """Restart a worker: a fresh process under the same name (privacy ledgers survive)."""
    worker = _worker(args.name)
    worker.restart()
    pid = f" (pid {worker.pid})" if worker.pid else ""
    print(f"restarted {worker.name}{pid}")
