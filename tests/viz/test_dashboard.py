"""The worker dashboard: rows that follow what workers hold, buttons that act, no hangs."""

from __future__ import annotations

import torch

import ppdl_nb
from ppdl_nb.viz.dashboard import COLUMNS, WorkerDashboard
from ppdl_nb.workers.core.waiting import wait_until
from ppdl_nb.workers.transport.virtual import VirtualNetwork


def _pair():
    net = VirtualNetwork()
    return ppdl_nb.VirtualWorker("dash_a", network=net), ppdl_nb.VirtualWorker("dash_b",
                                                                              network=net)


def _row(dash: WorkerDashboard, name: str) -> list:
    cells = list(dash.grid.children)[len(COLUMNS):]
    rows = [cells[i:i + len(COLUMNS)] for i in range(0, len(cells), len(COLUMNS))]
    return next(r for r in rows if r[0].value == name)


def _values(dash: WorkerDashboard, name: str) -> list[str]:
    return [c.value for c in _row(dash, name)[:8]]


def test_rows_follow_what_each_worker_holds():
    a, b = _pair()
    dash = WorkerDashboard([a, b], interval=None)
    assert len(dash.grid.children) == 3 * len(COLUMNS)
    assert _values(dash, "dash_a")[1:6] == ["virtual", "", "running", "0", "0 B"]
    ptr = ppdl_nb.send(torch.zeros(512), a)
    dash.refresh()
    assert _values(dash, "dash_a")[4:6] == ["1", "2.0 KiB"]
    assert int(_values(dash, "dash_a")[6]) >= 1  # messages in: the send
    bundle = dash._bundle()  # a snapshot for viewers without the widgets' state
    assert "<td>dash_a</td><td>virtual</td>" in bundle["text/html"]
    assert "<td>2.0 KiB</td>" in bundle["text/html"]
    assert bundle["text/plain"] == "ppdl workers: dash_a (running), dash_b (running)"
    del ptr
    dash.refresh()
    assert _values(dash, "dash_a")[4] == "0"  # the pointer's deletion reached the worker


def test_buttons_restart_and_shut_down():
    a, b = _pair()
    ppdl_nb.send(torch.ones(3), a)
    dash = WorkerDashboard([a, b], interval=None)
    restart, stop = _row(dash, "dash_a")[8:]
    restart.click()
    assert dash.message.value == "dash_a: restart done"
    assert _values(dash, "dash_a")[3:5] == ["running", "0"]
    stop.click()
    assert dash.message.value == "dash_a: shutdown done"
    assert _values(dash, "dash_a")[3] == "shut down"
    assert _values(dash, "dash_b")[3] == "running"


class _Stuck:
    """A worker whose process answers status but not requests."""

    name, kind, pid = "dash_stuck", "kernel", 4242

    def status(self) -> str:
        return "running"

    def info(self) -> dict:
        raise TimeoutError("no reply within 5 s")

    def restart(self) -> None:
        raise RuntimeError("the kernel did not come back")


def test_a_worker_that_does_not_answer_shows_as_unavailable():
    dash = WorkerDashboard([_Stuck()], interval=None)
    assert _values(dash, "dash_stuck")[2:4] == ["4242", "unavailable (TimeoutError)"]
    _row(dash, "dash_stuck")[8].click()  # a failing action is shown, not raised
    assert dash.message.value == "dash_stuck: restart failed: the kernel did not come back"


def test_live_refresh_picks_up_changes_and_stops():
    a, _ = _pair()
    dash = WorkerDashboard([a], interval=0.05)
    try:
        ptr = ppdl_nb.send(torch.ones(3), a)  # noqa: F841  (kept alive: held remotely)
        assert wait_until(lambda: _values(dash, "dash_a")[4] == "1", 10)
    finally:
        dash.stop()
    assert wait_until(lambda: not dash._thread.is_alive(), 5)


def test_a_row_says_restarting_and_its_buttons_wait_while_a_button_acts():
    a, _ = _pair()
    dash = WorkerDashboard([a], interval=None)
    seen = {}
    real_restart = a.restart

    def restart():  # what the row shows while the restart runs
        row = _row(dash, "dash_a")
        seen.update(status=row[3].value, disabled=(row[8].disabled, row[9].disabled))
        real_restart()

    a.restart = restart
    restart_button, stop_button = _row(dash, "dash_a")[8:]
    restart_button.click()
    assert seen == {"status": "restarting…", "disabled": (True, True)}
    assert _values(dash, "dash_a")[3] == "running"
    assert not restart_button.disabled and not stop_button.disabled
    stop_button.click()
    assert _values(dash, "dash_a")[3] == "shut down"
    assert stop_button.disabled and not restart_button.disabled  # only what can apply
    assert "dash_a: shutdown done" in dash.message.value
