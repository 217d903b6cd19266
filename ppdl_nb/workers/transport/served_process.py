"""Run ``ppdl-worker`` commands as child processes: what a data owner types, from Python.

For tutorials, tests and benchmarks a served worker stands in for another machine: it is
its own process with its own state directory, started by :func:`start_served` exactly as
its owner would start it (``ppdl-worker serve ...``), and joined by the fingerprint it
prints. Its stderr goes to ``DIR/serve.log``, never into the caller's output. A stand-in
dies with the process that started it (a real owner's worker is started by the owner).

>>> ENTRY.split(";")[0]
'from ppdl_nb.boot import serve_main'
"""

from __future__ import annotations

import atexit
import os
import selectors
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

from ppdl_nb.workers.transport import oscalls

__all__ = ["ServedProcess", "owner_cli", "start_served"]

#: the console script's code, run with this interpreter (no need for it to be on PATH)
ENTRY = "from ppdl_nb.boot import serve_main; raise SystemExit(serve_main())"
_STARTED: weakref.WeakSet[ServedProcess] = weakref.WeakSet()


def _die_with_parent() -> None:  # runs in the child, before exec
    oscalls.die_with_parent(signal.SIGTERM)  # elsewhere: atexit stops it on a normal exit


@atexit.register
def _stop_all() -> None:
    for proc in list(_STARTED):
        proc.kill()


def owner_cli(args: list[str], *, env: dict[str, str] | None = None) -> str:
    """Run one ``ppdl-worker`` command to completion; its stdout. ``ValueError`` (with
    the command's own message) if it fails."""
    done = subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True,
                          text=True, timeout=120, env=env, check=False)
    if done.returncode != 0:
        raise ValueError(f"ppdl-worker {args[0]} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


class ServedProcess:
    """A ``ppdl-worker serve`` child: its address, fingerprint, and its life as a process."""

    def __init__(self, name: str, state_dir: str | os.PathLike[str], listen: str,
                 env: dict[str, str] | None = None, *, netns: str | None = None) -> None:
        self.name, self.state_dir, self.listen, self.env = name, Path(state_dir), listen, env
        self.netns = netns  # run inside this network namespace (``ip netns exec``)
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = self.fingerprint = self.endpoint = ""
        self.boot = -1
        self.datasets: list[str] = []

    def start(self, timeout: float = 60.0) -> ServedProcess:
        """Start it; return once it printed its endpoint and fingerprint."""
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process without waiting (start several, then :meth:`wait_ready`)."""
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log = open(self.state_dir / "serve.log", "ab")  # noqa: SIM115  (the child holds it)
        try:
            wrap = ["ip", "netns", "exec", self.netns] if self.netns else []
            self.proc = subprocess.Popen(
                [*wrap, sys.executable, "-c", ENTRY, "serve", "--name", self.name, "--listen",
                 self.listen, "--state-dir", str(self.state_dir)],
                stdout=subprocess.PIPE, stderr=log, env=self.env,
                start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            log.close()
        _STARTED.add(self)

    def wait_ready(self, timeout: float = 60.0) -> ServedProcess:
        """Wait until it printed its endpoint, fingerprint and datasets."""
        lines = self._read_lines(3, timeout)
        self.endpoint = lines[0].rsplit(" ", 1)[1]
        self.boot = int(lines[0].split("(life ")[1].split(")")[0])
        self.fingerprint = lines[1].split()[1]
        self.datasets = [d for d in lines[2].split()[1].split(",") if d != "-"]
        self.address = f"{self.name}@{self.endpoint.removeprefix('tcp://')}"
        if self.listen.endswith(":0"):  # a restart must come back on the same port
            self.listen = self.endpoint.removeprefix("tcp://")
        return self

    def _read_lines(self, count: int, timeout: float) -> list[str]:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline, buf = time.monotonic() + timeout, b""
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while buf.count(b"\n") < count:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.kill()
                    raise TimeoutError(f"served worker {self.name} did not start in "
                                       f"{timeout:g} s; see {self.state_dir}/serve.log")
                chunk = os.read(fd, 4096)  # unbuffered: select() sees what is left
                if not chunk:
                    self._reap()
                    raise ConnectionError(f"served worker {self.name} exited while starting: "
                                          f"{self.log_tail()}")
                buf += chunk
        return [line.strip() for line in buf.decode().splitlines()[:count]]

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "".join((self.state_dir / "serve.log").read_text().splitlines(True)[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, as its owner's Ctrl-C; SIGKILL if it does not stop in ``timeout``."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap()

    def kill(self) -> None:
        """SIGKILL at once, as a crash would."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
        self._reap()

    def _reap(self) -> None:
        if self.proc is not None:
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def restart(self, timeout: float = 60.0) -> ServedProcess:
        """Stop and start again, same state directory and port."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> ServedProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_served(name: str, state_dir: str | os.PathLike[str], *,
                 listen: str = "127.0.0.1:0", env: dict[str, str] | None = None,
                 netns: str | None = None, timeout: float = 60.0) -> ServedProcess:
    """Start ``ppdl-worker serve --name NAME --listen LISTEN --state-dir STATE_DIR``
    (inside network namespace ``netns``, if given)."""
    return ServedProcess(name, state_dir, listen, env, netns=netns).start(timeout)
