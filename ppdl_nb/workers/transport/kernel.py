"""Workers as separate Jupyter kernels: real processes that own their data.

``launch("alice", "bob")`` starts one ipykernel per worker (``ipc`` transport, output to
a log file, killed with the notebook). Each kernel starts its worker runtime while it
boots, from settings in its environment (``kernel_boot.ENV``; the entry point is the
composition root's ``ppdl_nb.boot.kernel_main``), and reports the runtime's endpoint,
public key and pid in a 0600 file in the kernel's private directory. The notebook then
connects to each over an encrypted channel keyed by the worker's own key pair and
introduces the workers to each other. With ``inspect=True`` (the default) the kernel's
shell stays open, so ``%%ppdl on alice`` can run a cell inside alice, as alice; with
``inspect=False`` the kernel refuses every execute, comm, debug and introspection request.
Each kernel's directory (connection file, sockets, log, temp files) is removed when it is
shut down or restarted, also after it was killed.

>>> # with ppdl_nb.launch("alice", "bob") as (alice, bob):
>>> #     x = ppdl_nb.send(torch.ones(3), alice)
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

from ppdl_nb.errors import WorkerUnavailableError
from ppdl_nb.workers.transport.channel_client import ChannelClient
from ppdl_nb.workers.transport.kernel_boot import ENV, read_report
from ppdl_nb.workers.transport.keys import KeyPair
from ppdl_nb.workers.transport.oscalls import process_running
from ppdl_nb.workers.transport.party import Siblings
from ppdl_nb.workers.transport.runtime import DEFAULT_TIMEOUT, ChannelConnection

__all__ = ["KernelProcess", "KernelWorker", "WorkerGroup", "launch"]

_NOTEBOOK_KEYS: KeyPair | None = None
_LAUNCHED: weakref.WeakSet[KernelProcess] = weakref.WeakSet()
_RUN_DIR: str | None = None
SPEC_NAME = "ppdl-worker"
#: what a worker kernel runs: the composition root boots ipykernel with the worker in it
ENTRY_POINT = "from ppdl_nb.boot import kernel_main; kernel_main()"


def notebook_keys() -> KeyPair:
    """The notebook's key pair (one per process; only its public half is ever sent)."""
    global _NOTEBOOK_KEYS
    if _NOTEBOOK_KEYS is None:
        _NOTEBOOK_KEYS = KeyPair.generate()
    return _NOTEBOOK_KEYS


def _run_dir() -> str:
    """This notebook's private (0700) directory: the kernel spec, one directory per kernel."""
    global _RUN_DIR
    if _RUN_DIR is None:
        _RUN_DIR = tempfile.mkdtemp(prefix="ppdl-kernels-")
        spec = os.path.join(_RUN_DIR, "kernels", SPEC_NAME)
        os.makedirs(spec)
        with open(os.path.join(spec, "kernel.json"), "w") as f:
            json.dump({"argv": [sys.executable, "-c", ENTRY_POINT, "-f", "{connection_file}",
                                "--HistoryManager.enabled=False",
                                "--IPKernelApp.matplotlib=inline"],
                       "display_name": "ppdl worker", "language": "python"}, f)
        atexit.register(shutil.rmtree, _RUN_DIR, True)
    return _RUN_DIR


@dataclass
class ExecResult:
    """What running code inside a worker kernel printed, showed and raised."""

    status: str
    stdout: str
    stderr: str
    display: list[str]
    error: str

    def show(self) -> None:
        if self.stdout:
            print(self.stdout, end="")
        for text in self.display:
            print(text)
        if self.stderr:
            print(self.stderr, end="", file=sys.stderr)


class KernelProcess:
    """One ipykernel process: start, run code in it, watch it, stop it.

    Everything the kernel needs on disk (connection file, ipc sockets, its log, its report,
    its ``TMPDIR``) lives in one private directory, removed at shutdown, also after a kill.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.dir = self.log_path = self.report_path = ""  # made by spawn
        self.km: KernelManager | None = None
        self._kc: Any = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        provisioner = getattr(self.km, "provisioner", None)
        process = getattr(provisioner, "process", None)
        return getattr(process, "pid", None)

    def spawn(self, notebook_key: str | None = None, *, inspect: bool = True) -> None:
        """Start the process (call from a long-lived thread: see kernel_boot).

        With ``notebook_key``, the kernel starts worker ``name`` while it boots, known to
        the notebook by that key, and reports it (see :meth:`wait_booted`).
        """
        self.dir = tempfile.mkdtemp(prefix=f"{self.name[:20]}-", dir=_run_dir())
        self.log_path, self.report_path = (os.path.join(self.dir, f) for f in ("log", "ready"))
        ksm = KernelSpecManager(kernel_dirs=[os.path.join(_run_dir(), "kernels")])
        self.km = KernelManager(kernel_name=SPEC_NAME, kernel_spec_manager=ksm,
                                transport="ipc", ip=os.path.join(self.dir, "k"),
                                connection_file=os.path.join(self.dir, "connection.json"))
        env = dict(os.environ)
        from ppdl_nb.workers.core.state import state_root

        env.update({ENV["parent"]: str(os.getpid()), "PPDL_NB_STATE_DIR": str(state_root()),
                    "PYDEVD_DISABLE_FILE_VALIDATION": "1", "TMPDIR": self.dir})
        env.pop(ENV["worker"], None)
        if notebook_key is not None:
            env.update({ENV["worker"]: self.name, ENV["notebook_key"]: notebook_key,
                        ENV["inspect"]: "1" if inspect else "0",
                        ENV["report"]: self.report_path})
        log = open(self.log_path, "ab")  # noqa: SIM115  (the child holds it)
        try:
            self.km.start_kernel(stdout=log, stderr=log, env=env)
        finally:
            log.close()
        _LAUNCHED.add(self)

    def wait_booted(self, timeout: float) -> dict[str, Any]:
        """The worker's report (endpoint, public key, pid), once the kernel has written it."""
        deadline = time.monotonic() + timeout
        pause = 0.002
        while (report := read_report(self.report_path)) is None:
            if not self.is_alive() or time.monotonic() > deadline:
                why = "died while starting" if not self.is_alive() else \
                    f"did not start in {timeout:g} s"
                raise WorkerUnavailableError(f"worker kernel {self.name} {why}; the end of "
                                             f"its log:\n{self.log_tail()}")
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        if "error" in report:
            raise WorkerUnavailableError(f"worker {self.name} failed to start its runtime: "
                                         f"{report['error']}\n{self.log_tail()}")
        return report

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    @property
    def kc(self) -> Any:
        """A Jupyter client of the kernel's shell, connected on first use."""
        if self._kc is None:
            self.wait_ready(60.0)
        return self._kc

    def wait_ready(self, timeout: float) -> None:
        """Connect a Jupyter client and wait until the kernel's shell answers."""
        if self.km is None:
            raise WorkerUnavailableError(f"worker kernel {self.name} was never started")
        kc = self.km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=timeout)
        except RuntimeError as exc:
            kc.stop_channels()
            raise WorkerUnavailableError(
                f"worker kernel {self.name} did not start in {timeout:g} s ({exc}); the end "
                f"of its log:\n{self.log_tail()}"
            ) from None
        self._kc = kc

    def is_alive(self) -> bool:
        """Checked before every request, so it must cost microseconds: the notebook started
        the kernel, so ``Popen.poll`` answers (and reaps a zombie) without the kernel
        manager's event loop (about 100 µs a call, a fifth of a pointer op)."""
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        if self.km is None or process is None:
            return False
        if hasattr(process, "poll"):
            return process.poll() is None
        return process_running(process.pid) and self.km.is_alive()

    def execute(self, code: str, *, timeout: float = 60.0) -> ExecResult:
        """Run ``code`` in the kernel's shell; collect what it prints and raises."""
        if not self.is_alive():
            raise WorkerUnavailableError(f"worker kernel {self.name} is not running")
        out: dict[str, Any] = {"stdout": [], "stderr": [], "display": [], "error": ""}

        def hook(msg: dict[str, Any]) -> None:
            kind, content = msg["header"]["msg_type"], msg["content"]
            if kind == "stream":
                out[content["name"]].append(content["text"])
            elif kind in ("execute_result", "display_data"):
                out["display"].append(content["data"].get("text/plain", ""))
            elif kind == "error":
                out["error"] = "\n".join(content.get("traceback", []))

        with self._lock:
            try:
                reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook,
                                                    allow_stdin=False, store_history=False)
            except TimeoutError:
                raise TimeoutError(f"code in worker {self.name} ran over {timeout:g} s") from None
        content = reply["content"]
        if content["status"] == "error" and not out["error"]:  # refused, not raised
            out["error"] = f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"
        return ExecResult(content["status"], "".join(out["stdout"]), "".join(out["stderr"]),
                          out["display"], out["error"])

    def kill(self) -> None:
        """Kill the process (and its process group) at once, as a crash would."""
        pid = self.pid
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def shutdown(self) -> None:
        """Stop the process and remove its directory (connection file, sockets, log)."""
        if self._kc is not None:
            self._kc.stop_channels()
            self._kc = None
        if self.km is not None:
            pid = self.pid
            try:
                if self.km.is_alive():
                    self.km.shutdown_kernel(now=True)
            except Exception:
                pass
            if pid is not None:
                try:
                    os.killpg(pid, signal.SIGKILL)  # anything the kernel started, too
                except (ProcessLookupError, PermissionError):
                    pass
            self.km.cleanup_resources()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        _LAUNCHED.discard(self)


class KernelWorker(ChannelConnection):
    """The notebook's handle on a worker running in its own kernel process."""

    kind = "kernel"

    def __init__(self, name: str, *, inspect: bool = True, timeout: float = DEFAULT_TIMEOUT,
                 process: KernelProcess | None = None, siblings: Siblings | None = None) -> None:
        self.process = process or KernelProcess(name)
        self.inspect = inspect
        self.group: WorkerGroup | None = None
        self._stopped = False
        self.siblings = siblings or Siblings()
        super().__init__(name, None, caller="me", context=self.siblings, timeout=timeout,
                         alive=self.process.is_alive)

    @property
    def pid(self) -> int | None:  # type: ignore[override]
        return self.process.pid

    def _spawn(self) -> None:
        self.process.spawn(notebook_keys().public_hex, inspect=self.inspect)

    def _boot(self, timeout: float) -> None:
        """Wait for the runtime the kernel started at boot, and connect to it."""
        info = self.process.wait_booted(timeout)
        if info.get("pid") != self.process.pid:
            raise WorkerUnavailableError(f"worker {self.name} reported pid {info.get('pid')}, "
                                         f"but its kernel is pid {self.process.pid}")
        keys = notebook_keys()
        self.endpoint, self.public_key = info["endpoint"], info["public_key"]
        self.channel = ChannelClient(keys, self.endpoint, self.public_key, "me", peer=self.name)
        self.channel.alive = self.process.is_alive
        self._stopped = False
        self.siblings.add(self)

    def status(self) -> str:
        if self._stopped:
            return "shut down"
        return "running" if self.process.is_alive() else "dead"

    def execute(self, code: str, *, timeout: float = 60.0) -> ExecResult:
        """Run a cell inside this worker (what ``%%ppdl on`` does)."""
        if not self.inspect:
            raise PermissionError(f"worker {self.name} was started with inspect=False: its "
                                  "shell is not open to the notebook")
        return self.process.execute(code, timeout=timeout)

    def shutdown(self) -> None:
        """Stop the worker process; everything it held is gone."""
        if self.channel is not None:
            self.channel.close()
        self.process.shutdown()
        self._stopped = True

    def restart(self, *, timeout: float = 60.0) -> None:
        """A fresh worker process under the same name (its privacy ledgers survive)."""
        self.shutdown()
        self.process = KernelProcess(self.name)
        self._alive = self.process.is_alive
        self._spawn()
        self._boot(timeout)
        if self.group is not None:
            self.group.introduce()


class WorkerGroup(tuple):
    """The workers of one launch: a tuple, a context manager, and their introducer."""

    def __new__(cls, workers: list[KernelWorker]) -> WorkerGroup:
        return super().__new__(cls, workers)

    def __init__(self, workers: list[KernelWorker]) -> None:
        for w in workers:
            w.group = self

    def introduce(self) -> None:
        """Tell every worker the others' endpoints and public keys."""
        running = [w for w in self if w.status() == "running"]
        peers = {w.name: [w.endpoint, w.public_key] for w in running}
        for w in running:
            w.request({"kind": "peers", "peers": peers})

    def shutdown(self) -> None:
        for w in self:
            w.shutdown()

    def __enter__(self) -> WorkerGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __iter__(self) -> Iterator[KernelWorker]:
        return super().__iter__()


def launch(*names: str, inspect: bool = True, timeout: float = 90.0) -> WorkerGroup:
    """Start one kernel worker per name, in parallel; returns them as a :class:`WorkerGroup`."""
    if not names:
        raise ValueError("launch() needs at least one worker name, e.g. launch('alice', 'bob')")
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"worker name {name!r} must be a Python identifier")
    if len(set(names)) != len(names):
        raise ValueError(f"worker names must differ: {names}")
    siblings = Siblings()
    workers = [KernelWorker(n, inspect=inspect, siblings=siblings) for n in names]
    try:
        for w in workers:  # spawn from this (long-lived) thread: see kernel_boot
            w._spawn()
        for w in workers:  # they boot in parallel; each reports when its runtime serves
            w._boot(timeout)
    except BaseException:
        for w in workers:
            w.shutdown()
        raise
    group = WorkerGroup(workers)
    group.introduce()
    return group


@atexit.register
def _shutdown_all() -> None:
    for process in list(_LAUNCHED):
        process.shutdown()

