"""The worker subcommands: launch, workers (table and dashboard), on, shutdown, restart."""

from __future__ import annotations

import pytest
import torch
from IPython.core.error import UsageError

import ppdl_nb
from ppdl_nb.viz.dashboard import WorkerDashboard


def test_launch_virtual_binds_workers_that_hold_data(ip, capsys):
    ip.run_line_magic("ppdl", "launch --virtual mg_alice mg_bob")
    assert "launched 2 virtual workers: mg_alice, mg_bob" in capsys.readouterr().out
    alice, bob = ip.user_ns["mg_alice"], ip.user_ns["mg_bob"]
    x = ppdl_nb.send(torch.arange(3.0), alice)
    assert torch.equal(x.move(bob).get(), torch.arange(3.0))


@pytest.mark.parametrize("line", ["launch --virtual 1st", "launch --virtual a-b",
                                  "launch --virtual twin twin"])
def test_launch_refuses_names_that_cannot_be_variables(ip, line):
    with pytest.raises(UsageError, match="identifier|must differ"):
        ip.run_line_magic("ppdl", line)


def test_workers_table_shows_what_each_worker_holds(ip, capsys):
    ip.run_line_magic("ppdl", "launch --virtual mg_holder")
    holder = ip.user_ns["mg_holder"]
    ptr = ppdl_nb.send(torch.zeros(10), holder)  # noqa: F841  (kept alive: held remotely)
    capsys.readouterr()
    ip.run_line_magic("ppdl", "workers --text")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["name", "kind", "pid", "status"]
    row = next(line.split() for line in lines if line.startswith("mg_holder "))
    assert row[1:5] == ["virtual", "-", "running", "1"]
    assert row[5:7] == ["40", "B"]  # ten float32 values, in the dashboard's units


def test_workers_without_text_is_the_dashboard(ip):
    dash = ip.run_line_magic("ppdl", "workers --interval 0")
    assert isinstance(dash, WorkerDashboard) and dash.interval is None


def test_on_needs_a_kernel_worker(ip):
    ip.run_line_magic("ppdl", "launch --virtual mg_virtual")
    with pytest.raises(UsageError, match="only kernel workers"):
        ip.run_cell_magic("ppdl", "on mg_virtual", "print(1)")
    with pytest.raises(UsageError, match="not connected to a worker named 'mg_nobody'"):
        ip.run_cell_magic("ppdl", "on mg_nobody", "print(1)")


def test_shutdown_and_restart(ip, capsys):
    ip.run_line_magic("ppdl", "launch --virtual mg_temp")
    temp = ip.user_ns["mg_temp"]
    ppdl_nb.send(torch.ones(2), temp)
    ip.run_line_magic("ppdl", "shutdown mg_temp")
    assert "shut down: mg_temp" in capsys.readouterr().out
    assert temp.status() == "shut down"
    with pytest.raises(ConnectionError, match="shut down"):
        ppdl_nb.send(torch.ones(2), temp)
    ip.run_line_magic("ppdl", "restart mg_temp")
    assert "restarted mg_temp" in capsys.readouterr().out
    assert temp.status() == "running" and temp.info()["objects"] == 0
    assert ppdl_nb.send(torch.ones(2), temp).get().tolist() == [1.0, 1.0]


def test_on_runs_the_cell_as_the_owner_and_says_so_once(ip, capsys):
    ip.run_line_magic("ppdl", "launch mg_kernel")
    worker = ip.user_ns["mg_kernel"]
    try:
        capsys.readouterr()
        cell = "from ppdl_nb.workers.transport.runtime import current\nprint(current().name)"
        ip.run_cell_magic("ppdl", "on mg_kernel", cell)
        first = capsys.readouterr()
        notice, ran = first.out.splitlines()
        assert ran == "mg_kernel"  # the cell ran inside the worker, as the worker
        assert "as mg_kernel, the data owner: it can read mg_kernel's private data" in notice
        assert first.err == ""  # a notice, not an error: nothing on stderr
        ip.run_cell_magic("ppdl", "on mg_kernel", cell)
        assert capsys.readouterr().out == "mg_kernel\n"  # said once per worker
    finally:
        worker.shutdown()


def test_launch_of_a_running_name_refuses_and_replace_restarts_it(ip, capsys):
    ip.run_line_magic("ppdl", "launch --virtual mg_once")
    first = ip.user_ns["mg_once"]
    held = ppdl_nb.send(torch.ones(2), first)  # noqa: F841  (alive: held remotely)
    with pytest.raises(UsageError, match=r"mg_once is already running \(virtual worker\).*"
                                         r"%ppdl launch --replace mg_once"):
        ip.run_line_magic("ppdl", "launch --virtual mg_fresh mg_once")
    assert ip.user_ns["mg_once"] is first and first.info()["objects"] == 1
    assert "mg_fresh" not in ip.user_ns  # refused before anything was launched
    capsys.readouterr()
    ip.run_line_magic("ppdl", "launch --virtual --replace mg_once")
    out = capsys.readouterr().out
    assert out.splitlines() == ["stopped to replace: mg_once",
                                "launched 1 virtual workers: mg_once"]
    assert first.status() == "shut down"
    fresh = ip.user_ns["mg_once"]
    assert fresh is not first and fresh.info()["objects"] == 0
    ip.run_line_magic("ppdl", "shutdown mg_once")


def test_launch_refuses_a_name_made_in_python_even_with_replace(ip):
    mine = ppdl_nb.VirtualWorker("mg_python")
    for line in ("launch --virtual mg_python", "launch --virtual --replace mg_python"):
        with pytest.raises(UsageError, match="made in Python or connected to, not by "
                                             r"%ppdl launch.*mg_python.shutdown\(\)"):
            ip.run_line_magic("ppdl", line)
    assert mine.status() == "running"


def test_shutdown_stops_only_what_the_magics_launched_and_says_what(ip, capsys):
    ip.run_line_magic("ppdl", "shutdown")  # whatever earlier tests left running
    ip.run_line_magic("ppdl", "launch --virtual mg_l1 mg_l2")
    own = ppdl_nb.VirtualWorker("mg_own")  # made in Python: the notebook's, not the magics'
    capsys.readouterr()
    ip.run_line_magic("ppdl", "shutdown")
    assert capsys.readouterr().out == "shut down: mg_l1, mg_l2\n"
    assert own.status() == "running"
    ip.run_line_magic("ppdl", "shutdown")
    assert capsys.readouterr().out == ("shut down: nothing (no worker that %ppdl launch "
                                       "started is running)\n")
    ip.run_line_magic("ppdl", "shutdown mg_l1")
    assert capsys.readouterr().out == "shut down: nothing (mg_l1 already stopped)\n"
    with pytest.raises(UsageError, match=r"mg_own was not started by %ppdl launch.*"
                                         r"mg_own.shutdown\(\)"):
        ip.run_line_magic("ppdl", "shutdown mg_own")
    with pytest.raises(UsageError, match="not connected to a worker named 'mg_nobody'"):
        ip.run_line_magic("ppdl", "shutdown mg_nobody")
    assert own.status() == "running"
