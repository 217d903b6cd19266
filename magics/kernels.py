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


class Launched:
    """The workers ``%ppdl launch`` started, by name: the only ones ``%ppdl shutdown`` stops.

    Workers made in Python (``ppdl_nb.launch``, ``VirtualWorker``) or connected to
    (``ppdl_nb.connect``) are the notebook's to use, not the magics' to stop.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, Any] = {}

    def add(self, worker: Any) -> None:
        self._by_name[worker.name] = worker

    def get(self, name: str) -> Any | None:
        return self._by_name.get(name)

    def running(self) -> list[Any]:
        return [w for _, w in sorted(self._by_name.items()) if _running(w)]


LAUNCHED = Launched()


def _running(worker: Any) -> bool:
    return (worker.status() if hasattr(worker, "status") else "running") == "running"


def _describe(worker: Any) -> str:
    pid = f", pid {worker.pid}" if getattr(worker, "pid", None) else ""
    return f"{worker.kind} worker{pid}"


def _others_running(name: str) -> list[Any]:
    """Running workers called ``name`` that ``%ppdl launch`` did not start."""
    return [w for w in local_party().workers()
            if w.name == name and w is not LAUNCHED.get(name) and _running(w)]


def _to_replace(names: list[str], replace: bool) -> list[Any]:
    """The running workers ``launch --replace`` stops; refuse a name already running."""
    stop = []
    for name in names:
        if others := _others_running(name):
            raise UsageError(
                f"a worker named {name} is already running ({_describe(others[0])}), made in "
                f"Python or connected to, not by %ppdl launch: pick another name, or stop it "
                f"where it was made ({name}.shutdown()) and launch again")
        mine = LAUNCHED.get(name)
        if mine is not None and _running(mine):
            if not replace:
                raise UsageError(
                    f"{name} is already running ({_describe(mine)}): use it as it is, or "
                    f"%ppdl launch --replace {name} to stop it and start a fresh one (what "
                    "it holds is lost)")
            stop.append(mine)
    return stop


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
@magic_arguments.argument("--replace", action="store_true",
                          help="stop a running worker of that name first (its data is lost)")
@magic_arguments.argument("names", nargs="+", help="worker names, bound as variables")
def launch(shell: Any, args: Any, cell: str | None) -> None:
    """Start workers (separate kernels by default) and bind them as variables.

    A name already running is refused; ``--replace`` stops it first (only a worker that
    ``%ppdl launch`` started: one made in Python or connected to is never stopped here).
    """
    names = _names(args.names)
    if stop := _to_replace(names, args.replace):
        for w in stop:
            w.shutdown()
        print("stopped to replace: " + ", ".join(w.name for w in stop))
    if args.virtual:
        workers = [VirtualWorker(n) for n in names]
    else:
        from ppdl_nb.workers.transport.kernel import launch as launch_kernels

        workers = list(launch_kernels(*names, inspect=not args.no_inspect))
    for w in workers:
        LAUNCHED.add(w)
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
    from ppdl_nb.viz.units import human_bytes

    rows = [("name", "kind", "pid", "status", "objects", "held", "msgs in", "msgs out")]
    for w in local_party().workers():
        status = w.status() if hasattr(w, "status") else "running"
        info = w.info() if status == "running" else {}
        held = human_bytes(info["bytes"]) if "bytes" in info else "-"
        rows.append((w.name, w.kind, str(w.pid or "-"), status, str(info.get("objects", "-")),
                     held, *(str(info.get(k, "-")) for k in ("messages_in", "messages_out"))))
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
@magic_arguments.argument("names", nargs="*",
                          help="workers to stop (default: all that %%ppdl launch started)")
def shutdown(shell: Any, args: Any, cell: str | None) -> None:
    """Stop workers %ppdl launch started (all by default); what they hold is gone.

    Workers made in Python or connected to are left running: stop those with their own
    ``.shutdown()``. Prints exactly the workers it stopped.
    """
    targets = [_launched(n) for n in args.names] if args.names else LAUNCHED.running()
    stopped = []
    for w in dict.fromkeys(targets):
        if _running(w):
            w.shutdown()
            stopped.append(w.name)
    print("shut down: " + (", ".join(stopped) or _nothing(args.names)))


def _launched(name: str) -> Any:
    worker = LAUNCHED.get(name)
    if worker is not None:
        return worker
    _worker(name)  # a name the notebook does not know: says so, with the connected names
    raise UsageError(f"{name} was not started by %ppdl launch (it was made in Python or "
                     "connected to), so %ppdl shutdown leaves it alone: stop it with "
                     f"{name}.shutdown() where it was made")


def _nothing(names: list[str]) -> str:
    if names:
        return f"nothing ({', '.join(names)} already stopped)"
    return "nothing (no worker that %ppdl launch started is running)"


@subcommand("restart")
@magic_arguments.magic_arguments()
@magic_arguments.argument("name", help="the worker to restart (empty, same name)")
def restart(shell: Any, args: Any, cell: str | None) -> None:
    """Restart a worker: a fresh process under the same name (privacy ledgers survive)."""
    worker = _worker(args.name)
    worker.restart()
    pid = f" (pid {worker.pid})" if worker.pid else ""
    print(f"restarted {worker.name}{pid}")
