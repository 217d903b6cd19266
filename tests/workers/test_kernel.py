"""Kernel workers as processes: start, inspect, crash, restart, shut down, no orphans."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ppdl_nb
from ppdl_nb.errors import WorkerUnavailableError
from ppdl_nb.workers.core.waiting import wait_until
from ppdl_nb.workers.transport.kernel import launch


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def pair():
    group = launch("kw_a", "kw_b")
    yield group
    group.shutdown()


def test_workers_are_separate_processes_and_data_lives_there(pair):
    a, b = pair
    assert a.pid != os.getpid() and a.pid != b.pid and alive(a.pid)
    x = ppdl_nb.send(torch.arange(4.0), a)
    inside = a.execute("from ppdl_nb.workers.transport.runtime import current\n"
                       "w = current()\nprint(w.name, len(w.store))")
    assert inside.status == "ok" and inside.stdout.startswith("kw_a")
    assert "WARNING" not in inside.stdout + inside.stderr  # no TCP-encryption warning
    torch.testing.assert_close((x + 1).get(), torch.arange(4.0) + 1)


def test_move_goes_between_workers_over_their_own_channel(pair):
    a, b = pair
    x = ppdl_nb.send(torch.ones(1000), a)
    before = a.bytes_received + a.bytes_sent
    x.move(b)
    assert a.bytes_received + a.bytes_sent - before < 2000  # 4 KB went a -> b, not via us
    assert x.location is b


def test_a_killed_worker_gives_a_clear_error_restarts_and_leaves_no_files():
    (c,) = launch("kw_c")
    try:
        pid, first_dir = c.pid, c.process.dir
        assert os.path.isdir(first_dir) and os.stat(first_dir).st_mode & 0o077 == 0
        c.process.kill()
        assert wait_until(lambda: not alive(pid), 10)
        start = time.monotonic()
        with pytest.raises(WorkerUnavailableError, match="kw_c is not running"):
            c.ping()
        assert time.monotonic() - start < 5
        assert c.status() == "dead"
        c.restart()
        assert not os.path.exists(first_dir)  # the killed kernel's files are gone
        assert c.status() == "running" and c.ping() == "pong" and c.pid != pid
    finally:
        c.shutdown()
    assert wait_until(lambda: not alive(c.pid or 0), 10)
    assert not os.path.exists(c.process.dir)


def _reply(channel, request, timeout=10.0):
    while True:  # skip replies to anything else
        msg = channel.get_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") == request["header"]["msg_id"]:
            return msg["content"]


def test_inspection_off_is_refused_by_the_kernel_itself(tmp_path):
    (d,) = launch("kw_d", inspect=False)
    try:
        with pytest.raises(PermissionError, match="inspect=False"):
            d.execute("print(1)")
        marker = tmp_path / "ran"
        touch = f"open({str(marker)!r}, 'w').close()"
        kc = d.process.kc  # bypassing the notebook-side check: a raw Jupyter client
        for kwargs in ({"code": touch}, {"code": "", "user_expressions": {"x": touch}}):
            reply = kc.execute(reply=True, timeout=10, **kwargs)["content"]
            assert reply["status"] == "error" and "inspection off" in reply["evalue"]
            assert not reply.get("user_expressions")
        debug = kc.session.msg("debug_request", {"command": "evaluate",
                                                 "arguments": {"expression": touch}})
        kc.control_channel.send(debug)
        assert _reply(kc.control_channel, debug)["status"] == "error"
        comm = kc.session.msg("comm_open", {"comm_id": "c1", "target_name": "jupyter.widget",
                                            "data": {}})
        kc.shell_channel.send(comm)
        log = Path(d.process.log_path)
        assert wait_until(lambda: "refused comm_open" in log.read_text(), 10)
        assert not marker.exists()
        sneaky = d.process.execute("print('ran')")
        assert sneaky.status == "error" and "inspection off" in sneaky.error
        assert d.ping() == "pong"  # the protocol still works
        torch.testing.assert_close((ppdl_nb.send(torch.ones(3), d) + 1).get(), torch.ones(3) + 1)
    finally:
        d.shutdown()


CRASHING_NOTEBOOK = """
import os, sys
from ppdl_nb.workers.transport.kernel import launch
group = launch("orphan_a", "orphan_b")
print(" ".join(str(w.pid) for w in group), flush=True)
sys.stdin.read()
"""


def test_no_orphans_after_the_notebook_process_is_killed():
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_NOTEBOOK], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids)
    finally:
        proc.kill()
        proc.wait()
    assert wait_until(lambda: not any(alive(p) for p in pids), 15), "orphan worker kernels"


def test_shutdown_leaves_no_process():
    group = launch("kw_e")
    pid, files = group[0].pid, group[0].process.dir
    group.shutdown()
    assert wait_until(lambda: not alive(pid), 10)
    assert not os.path.exists(files)  # connection file, sockets, log: all gone


def test_a_worker_dying_mid_request_is_noticed_without_waiting_for_the_timeout():
    import threading

    (f,) = launch("kw_f")
    try:
        big = ppdl_nb.send(torch.randn(2500, 2500), f)
        threading.Timer(0.3, f.process.kill).start()
        start = time.monotonic()
        with pytest.raises(WorkerUnavailableError, match="kw_f"):
            for _ in range(20):  # each product takes about a second
                big = big @ big
        assert time.monotonic() - start < 10
    finally:
        f.shutdown()


def test_a_restarted_worker_keeps_its_key_and_its_group_still_moves_to_it():
    from ppdl_nb.workers.core.state import state_root

    group = launch("kr_a", "kr_b", "kr_c")
    try:
        a, b, c = group
        key, pid = c.public_key, c.pid
        secret = state_root() / "kr_c" / "identity" / "x25519.key"
        assert secret.stat().st_mode & 0o777 == 0o600
        assert secret.parent.stat().st_mode & 0o077 == 0
        c.process.kill()
        assert wait_until(lambda: not alive(pid), 10)
        c.restart()  # the group introduces it again: same key, new endpoint
        assert c.pid != pid and c.public_key == key
        x = ppdl_nb.send(torch.arange(3.0), a)
        x.move(c)  # alice reaches the restarted charlie over their own channel
        assert x.location is c
        torch.testing.assert_close(x.get(), torch.arange(3.0))
        y = ppdl_nb.send(torch.ones(2), c)
        y.move(b)  # and the restarted charlie reaches bob
        torch.testing.assert_close(y.get(), torch.ones(2))
        with pytest.raises(PermissionError, match="cannot be replaced"):  # still fixed
            from ppdl_nb.workers.transport.keys import KeyPair

            a.request({"kind": "peers", "peers": {"kr_c": [c.endpoint,
                                                           KeyPair.generate().public_hex]}})
    finally:
        group.shutdown()


def test_two_launches_of_one_name_share_its_identity_without_conflict():
    first = launch("kr_d", "kr_e")
    try:
        (second,) = launch("kr_d")  # a second "kr_d" while the first still runs
        try:
            assert second.public_key == first[0].public_key
            x = ppdl_nb.send(torch.ones(2), first[0])
            x.move(first[1])
            torch.testing.assert_close(x.get(), torch.ones(2))
            assert second.ping() == "pong" and first[0].ping() == "pong"
        finally:
            second.shutdown()
    finally:
        first.shutdown()
