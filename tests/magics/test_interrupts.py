"""An interrupt stops a training cell (issue 18, item 1): one line says where, what was
trained so far is kept, the workers keep serving; no traceback from inside the libraries."""

from __future__ import annotations

import pytest
from ppdl_nb.magics import train_fl

from ppdl_nb.errors import TrainingInterrupted

DP_CELL = """
import torch
g = torch.Generator().manual_seed(0)
x = torch.randn(200, 6, generator=g)
model = torch.nn.Linear(6, 2)
data = (x, (x[:, 0] > 0).long())
calls = [0]
def loss(out, y):  # Ctrl-C arrives during the 6th batch (epoch 2 of 3, 4 batches each)
    calls[0] += 1
    if calls[0] == 6:
        raise KeyboardInterrupt
    return torch.nn.functional.cross_entropy(out, y)
"""


def test_an_interrupted_dp_cell_keeps_the_model_so_far_and_what_it_spent(ip, capsys):
    ip.run_cell_magic("ppdl", "train dp --noise-multiplier 1 --epochs 3 --batch-size 50 "
                      "--progress none --out cut", DP_CELL)
    out = capsys.readouterr().out
    assert out.startswith("interrupted at epoch 2 of 3, after 1 full epochs: epsilon ")
    assert "Traceback" not in out
    assert len(ip.user_ns["cut_history"]) == 1
    # the steps of the unfinished epoch are spent too
    assert ip.user_ns["cut_epsilon"] > ip.user_ns["cut_history"][0]["epsilon"]
    assert isinstance(ip.user_ns["cut_model"], type(ip.user_ns["model"]))
    ip.user_ns.pop("loss")  # this cell's loss must not linger for other tests' cells


def test_fit_private_raises_a_keyboard_interrupt_that_carries_the_result():
    import torch

    from ppdl_nb.dp.fit import fit_private

    def stop(record):
        raise KeyboardInterrupt

    x = torch.randn(100, 3)
    with pytest.raises(KeyboardInterrupt) as info:  # a script still stops
        fit_private(torch.nn.Linear(3, 2), x, (x[:, 0] > 0).long(), noise_multiplier=1.0,
                    delta=1e-5, max_grad_norm=1.0, epochs=3, batch_size=50, callback=stop)
    assert isinstance(info.value, TrainingInterrupted)
    assert info.value.where == "epoch 1 of 3" and len(info.value.result.history) == 1


FL_CELL = """
import torch
x = torch.randn(120, 4)
model = torch.nn.Linear(4, 2)
data = (x, (x[:, 0] > 0).long())
"""


def test_an_interrupted_fl_cell_keeps_the_finished_rounds(ip, capsys, monkeypatch):
    def two_rounds_then_ctrl_c(model, data, *, rounds, callback, **kwargs):
        for r in (1, 2):
            callback({"round": r, "rounds": rounds, "loss": 1.0 / r, "sampled": 2})
        raise KeyboardInterrupt

    monkeypatch.setattr(train_fl, "fit_federated", two_rounds_then_ctrl_c)
    ip.run_cell("import ppdl_nb\nint_a, int_b = ppdl_nb.VirtualWorker('int_a'), "
                "ppdl_nb.VirtualWorker('int_b')")
    ip.run_cell_magic("ppdl", "train fl --workers int_a int_b --rounds 5 --progress none "
                      "--out part", FL_CELL)
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == ("interrupted at round 3 of 5, after 2 full rounds: "
                                    "results so far in part_history; the workers keep serving")
    assert "Traceback" not in out
    assert len(ip.user_ns["part_history"]) == 2
    assert ip.user_ns["int_a"].ping() == "pong"  # still serving


class _SwallowsCtrlC:
    """Ctrl-C that lands in a finalizer: Python prints 'Exception ignored' and goes on."""

    def __del__(self):
        import signal
        import threading

        # to this very thread: delivered before pthread_kill returns (os.kill may pick
        # another thread of this process, and the handler then runs too late)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        for _ in range(1000):  # the handler runs here, and its KeyboardInterrupt is dropped
            pass


@pytest.fixture
def default_sigint():
    """SIGINT as a fresh Python process has it: Python's handler, not blocked. (Signal
    state is process-wide; this test is about what our code does on top of it.)"""
    import signal

    inherited = (signal.signal(signal.SIGINT, signal.default_int_handler),
                 signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}))
    yield inherited
    signal.pthread_sigmask(signal.SIG_SETMASK, inherited[1])
    signal.signal(signal.SIGINT, inherited[0])


def test_a_ctrl_c_swallowed_by_a_finalizer_still_stops_at_the_next_round(ip, capsys,
                                                                           monkeypatch,
                                                                           default_sigint):
    def swallowed_at_round_1(model, data, *, rounds, callback, **kwargs):
        for r in range(1, rounds + 1):
            if r == 1:
                _SwallowsCtrlC()  # freed at once
            callback({"round": r, "rounds": rounds, "loss": 1.0 / r, "sampled": 2})
        raise AssertionError("training was not stopped")

    import sys

    swallowed = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: swallowed.append(u.exc_type))
    _SwallowsCtrlC()  # outside training, a dropped Ctrl-C is reported as usual
    assert swallowed == [KeyboardInterrupt], f"inherited SIGINT state: {default_sigint}"
    swallowed.clear()
    monkeypatch.setattr(train_fl, "fit_federated", swallowed_at_round_1)
    ip.run_cell("import ppdl_nb\nint_c, int_d = ppdl_nb.VirtualWorker('int_c'), "
                "ppdl_nb.VirtualWorker('int_d')")
    ip.run_cell_magic("ppdl", "train fl --workers int_c int_d --rounds 5 --progress none "
                      "--out cut", FL_CELL)
    out = capsys.readouterr().out
    assert swallowed == []  # the dropped first press printed nothing
    assert out.splitlines()[-1].startswith("interrupted at round 2 of 5, after 1 ")
    assert len(ip.user_ns["cut_history"]) == 1
