"""Expected errors (issue 18, item 6): the worker's message, the user's frames, one name."""

from __future__ import annotations

import sys
import traceback

import pytest
import torch
from IPython.core.error import UsageError

import ppdl_nb
from ppdl_nb.errors import RemoteError

CELL = """
import torch, ppdl_nb
tb_alice = ppdl_nb.VirtualWorker("tb_alice")
tb_secret = ppdl_nb.send(torch.ones(3), tb_alice, private=True)
def fetch(p):
    return p.get()
fetch(tb_secret)
"""


def test_a_refusal_shows_the_users_frames_and_the_workers_message(ip, capsys):
    result = ip.run_cell(CELL)
    out = capsys.readouterr().out
    assert isinstance(result.error_in_exec, PermissionError)
    assert "PermissionError                " in out  # the header
    assert "PermissionError: [on worker tb_alice] tb_alice:" in out  # the last line
    assert "is private to tb_alice" in out
    assert "----> 6 fetch(tb_secret)" in out and "----> 5     return p.get()" in out
    assert "Remote" not in out  # one name throughout
    for hidden in ("pointer.py", "client.py", "traceback on worker", "store.py"):
        assert hidden not in out, hidden
    assert "(ppdl_nb's frames and worker tb_alice's traceback are hidden: %tb shows the " \
           "full traceback)" in out
    assert len(out.strip().splitlines()) <= 16
    ip.run_line_magic("ppdl", "tb")  # the full one, on demand
    full = capsys.readouterr().out
    assert "pointer.py" in full and "--- traceback on worker tb_alice ---" in full
    assert "store.py" in full
    ip.run_line_magic("tb", "")
    assert "--- traceback on worker tb_alice ---" in capsys.readouterr().out
    assert result.error_in_exec.__notes__[0].startswith("--- traceback on worker")


def test_a_worker_that_was_shut_down_is_short_too(ip, capsys):
    ip.run_cell("tb_bob = ppdl_nb.VirtualWorker('tb_bob'); tb_bob.shutdown()")
    result = ip.run_cell("ppdl_nb.send(torch.ones(1), tb_bob)")
    out = capsys.readouterr().out
    assert isinstance(result.error_in_exec, ConnectionError)
    assert "WorkerUnavailableError: worker tb_bob was shut down; restart it with " \
           "tb_bob.restart()" in out
    assert "virtual.py" not in out and "(ppdl_nb's frames are hidden" in out


def test_other_errors_keep_their_usual_traceback(ip, capsys):
    result = ip.run_cell("def boom():\n    raise ValueError('mine')\nboom()")
    out = capsys.readouterr().out
    assert isinstance(result.error_in_exec, ValueError)
    assert "ValueError: mine" in out and "hidden" not in out


def test_one_name_in_plain_python_too():
    worker = ppdl_nb.VirtualWorker("tb_plain")
    secret = ppdl_nb.send(torch.ones(1), worker, private=True)
    with pytest.raises(PermissionError) as info:
        secret.get()
    exc = info.value
    assert isinstance(exc, RemoteError) and type(exc).__name__ == "PermissionError"
    last = traceback.format_exception_only(exc)[0]
    assert last.startswith("PermissionError: [on worker tb_plain]")
    assert repr(exc).startswith("PermissionError(")


def test_tb_before_any_error_says_so(ip, monkeypatch):
    monkeypatch.delattr(sys, "last_value", raising=False)
    with pytest.raises(UsageError, match="no error yet"):
        ip.run_line_magic("ppdl", "tb")


def test_in_a_kernel_the_error_message_carries_one_name_and_a_short_traceback():
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        kc.execute_interactive("%load_ext ppdl_nb", timeout=120)
        reply = kc.execute_interactive(CELL, timeout=120)
        content = reply["content"]
        assert content["status"] == "error"
        assert content["ename"] == "PermissionError"
        text = "\n".join(content["traceback"])
        assert "pointer.py" not in text and "hidden: %tb shows" in text
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
