"""How a worker kernel process boots: die with the notebook, start the worker, serve a shell.

The launcher (:mod:`ppdl_nb.workers.transport.kernel`) starts ``ppdl_nb.boot.kernel_main``
with the worker's settings in the environment (:data:`ENV`: its name, the notebook's
public key, whether its shell is open, where to report). :func:`run_kernel` then

1. asks Linux to kill this process when the launcher dies (``PR_SET_PDEATHSIG``), so a
   crashed notebook leaves no orphan workers behind;
2. builds the ipykernel application, with :class:`ClosedKernel` as its kernel class when
   the worker was launched with ``inspect=False``;
3. starts the worker runtime (the composition root passes the function that does it) and
   reports its endpoint, public key and pid in a 0600 file inside the launcher's private
   directory: never through the kernel's shell, which a closed worker does not run;
4. serves the kernel.

>>> report = {"name": "alice", "endpoint": "ipc:///tmp/x", "public_key": "ab", "pid": 1}
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "ready.json")
>>> write_report(path, report); read_report(path) == report
True
>>> oct(os.stat(path).st_mode & 0o777)
'0o600'
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from ipykernel.ipkernel import IPythonKernel

from ppdl_nb.workers.transport import oscalls

__all__ = ["ENV", "ClosedKernel", "read_report", "run_kernel", "write_report"]

#: environment variables the launcher sets for a worker kernel
ENV = {
    "parent": "PPDL_NB_PARENT_PID",  # the launcher's pid: die with it
    "worker": "PPDL_NB_WORKER",  # the worker's name (absent: a kernel without a worker)
    "notebook_key": "PPDL_NB_NOTEBOOK_KEY",  # the notebook's public key (hex)
    "inspect": "PPDL_NB_INSPECT",  # "1": the shell stays open to the notebook; "0": closed
    "report": "PPDL_NB_READY_FILE",  # where to write endpoint, public key and pid
}
StartWorker = Callable[..., dict[str, Any]]


class ClosedKernel(IPythonKernel):
    """An ipykernel that runs nothing sent to it: the shell of an ``inspect=False`` worker.

    Only ``kernel_info``, ``connect``, ``interrupt`` and ``shutdown`` requests are served.
    Every other request (execute, including one with only ``user_expressions``, complete,
    inspect, history, comm info, is_complete, debug, usage, subshells), on the shell or the
    control channel, gets an error reply naming the refusal; comm messages are dropped.
    """

    OPEN = frozenset({"kernel_info_request", "connect_request", "interrupt_request",
                      "shutdown_request"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for handlers in (self.shell_handlers, self.control_handlers):
            for msg_type in list(handlers):
                if msg_type not in self.OPEN:
                    handlers[msg_type] = self._refuse
        for msg_type in ("comm_open", "comm_msg", "comm_close"):
            self.shell_handlers[msg_type] = self._refuse

    def _refusal(self, msg_type: str) -> str:
        name = os.environ.get(ENV["worker"], "this worker")
        return (f"worker {name} was started with inspect=False (inspection off): its kernel "
                f"refuses {msg_type}; launch it with inspect=True to open its shell")

    def _refuse(self, stream: Any, ident: Any, parent: dict[str, Any]) -> None:
        msg_type = parent["header"]["msg_type"]
        text = self._refusal(msg_type)
        print(f"[ppdl] refused {msg_type}", file=sys.__stderr__, flush=True)
        if not msg_type.endswith("_request"):
            return  # comm messages have no reply
        content = {"status": "error", "ename": "PermissionError", "evalue": text,
                   "traceback": [f"PermissionError: {text}"]}
        if msg_type == "execute_request":
            content.update(execution_count=self.execution_count, user_expressions={},
                           payload=[])
        self.session.send(stream, msg_type.replace("_request", "_reply"), content, parent,
                          ident)


def die_with_parent() -> None:
    """Be killed when the launcher dies; exit now if it already has."""
    parent = int(os.environ.get(ENV["parent"], "0"))
    oscalls.die_with_parent(signal.SIGKILL)  # elsewhere: shutdown and atexit clean up
    if parent and os.getppid() != parent:
        sys.exit(1)  # the launcher died before we could register


def write_report(path: str, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON to ``path``, readable by this user only, atomically."""
    partial = f"{path}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(report, f)
    os.replace(partial, path)


def read_report(path: str) -> dict[str, Any] | None:
    """The report at ``path``, or ``None`` while the kernel has not written it."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def run_kernel(start_worker: StartWorker, argv: list[str] | None = None) -> None:
    """Boot this process as a worker kernel (see the module docstring); serves until shutdown."""
    die_with_parent()
    from ipykernel.kernelapp import IPKernelApp

    name = os.environ.get(ENV["worker"])
    inspect = name is None or os.environ.get(ENV["inspect"]) == "1"  # a worker: closed by default
    app = IPKernelApp.instance(kernel_class=IPythonKernel if inspect else ClosedKernel)
    app.initialize(sys.argv[1:] if argv is None else argv)
    if name is not None:
        report = os.environ[ENV["report"]]
        try:
            info = start_worker(name, os.environ[ENV["notebook_key"]], inspect=inspect)
        except BaseException as exc:
            write_report(report, {"error": f"{type(exc).__name__}: {exc}"})
            raise
        write_report(report, info)
    app.start()
