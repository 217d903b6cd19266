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
    assert int(row[5]) == 40  # ten float32 values


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
