"""%%ppdl train spdz: encrypted training from a cell, on virtual workers (issue 14, item 3).

The fingerprint first (and alone with --fingerprint); the model trained on shares lands in
the namespace, still shared; it opens only when every data owner allowed the notebook
for that program, else the magic says which allowance is missing; Ctrl-C stops after the
step the parties are running."""

from __future__ import annotations

import copy
import signal
import threading
import time

import pytest
import torch
from IPython.core.error import UsageError

from ppdl_nb.dp.accounting import encrypted_training_epsilon
from ppdl_nb.tensors.private_model import PrivateModel
from ppdl_nb.tensors.private_training import EncryptedTraining

LINE = "train spdz --parties sp1 sp2 --dealer sdl --lr 0.5 --momentum 0.5 --batch-size 16 " \
       "--epochs 2 --progress none"
MODEL = """
import torch
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
"""
CELL = MODEL + "data = [(xa, ya), (xb, yb)]\ntest = (x_test, y_test)\n"


@pytest.fixture(scope="module")
def net(ip):
    """Two data owners (sa, sb), two parties, a dealer and a model owner; the data."""
    ip.run_cell("""
import torch, ppdl_nb
from ppdl_nb.workers.transport.virtual import VirtualNetwork
_snet = VirtualNetwork()
sa, sb, sp1, sp2, sdl, smo = (ppdl_nb.VirtualWorker(n, network=_snet)
                              for n in ('sa', 'sb', 'sp1', 'sp2', 'sdl', 'smo'))
_g = torch.Generator().manual_seed(1)
spdz_x = torch.randn(80, 4, generator=_g)
spdz_labels = (spdz_x[:, 0] + spdz_x[:, 1] > 0).long()
spdz_y = torch.eye(2)[spdz_labels]
x_test, y_test = spdz_x[64:], spdz_labels[64:]

def own(fp_alice, fp_bob):
    '''Each owner's 32 rows, private, the notebook allowed for one program (or none).'''
    allow = lambda fp: {fp: ["me"]} if fp else None
    global xa, ya, xb, yb
    xa, ya = (ppdl_nb.send(t[:32], sa, private=True, allow_programs=allow(fp_alice))
              for t in (spdz_x, spdz_y))
    xb, yb = (ppdl_nb.send(t[32:64], sb, private=True, allow_programs=allow(fp_bob))
              for t in (spdz_x, spdz_y))
""")
    yield ip
    for name in ("model", "data", "test"):  # a later module's training cells start clean
        ip.user_ns.pop(name, None)


def _fingerprint(ip, capsys, line: str) -> str:
    ip.run_cell_magic("ppdl", line + " --fingerprint", MODEL)
    out = [line for line in capsys.readouterr().out.splitlines()
           if not line.startswith("note: not using")]  # an earlier cell's data: not used
    fp = ip.user_ns["spdz_fingerprint"]
    assert len(out) == 1 and out[0].startswith(f"training program {fp} ")
    assert f"allow_programs={{'{fp}': ['me']}}" in out[0]
    return fp


def test_the_fingerprint_flag_prints_the_programs_name_and_trains_nothing(net, capsys):
    ip = net
    for name in ("spdz_model", "spdz_history"):
        ip.user_ns.pop(name, None)
    fp = _fingerprint(ip, capsys, LINE)
    assert "spdz_model" not in ip.user_ns and "spdz_history" not in ip.user_ns
    # the API's own fingerprint for the same model and options
    import ppdl_nb

    pm = ppdl_nb.encrypt(ip.user_ns["model"], parties=(ip.user_ns["sp1"], ip.user_ns["sp2"]),
                         dealer=ip.user_ns["sdl"], frac_bits=20)
    assert EncryptedTraining(pm, lr=0.5, momentum=0.5, batch_size=16, epochs=2
                             ).fingerprint == fp
    # any hyperparameter is part of the program: another lr, another fingerprint
    assert _fingerprint(ip, capsys, LINE.replace("--lr 0.5", "--lr 0.4")) != fp
    assert _fingerprint(ip, capsys, LINE + " --open-loss") != fp


def test_trains_on_shares_and_opens_when_every_owner_allowed(net, capsys):
    ip = net
    fp = _fingerprint(ip, capsys, LINE)
    ip.user_ns["own"](fp, fp)
    ip.run_cell_magic("ppdl", LINE, CELL)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"training program {fp} ")
    assert out[1].startswith("encrypted training: 8 steps (2 epochs, batches of 16) on "
                             "sp1, sp2, dealer sdl: ")
    assert "results in spdz_model (shared), spdz_history, spdz_training" in out[1]
    assert out[2].startswith(f"opened in spdz_plain (every data owner allowed 'me' for "
                             f"program {fp}); test accuracy ")
    ns = ip.user_ns
    assert isinstance(ns["spdz_model"], PrivateModel)
    assert ns["spdz_training"].fingerprint == fp
    history = ns["spdz_history"]
    assert [s["step"] for s in history.steps] == list(range(1, 9))
    assert not history.interrupted and all(s["loss"] is None for s in history.steps)
    assert all(s["rounds"] > 0 and s["bytes"] > 0 for s in history.steps)
    # the same as plaintext SGD from the same weights over the same batches
    ref = copy.deepcopy(ns["model"])
    opt = torch.optim.SGD(ref.parameters(), lr=0.5, momentum=0.5)
    x, labels = ns["spdz_x"][:64], ns["spdz_labels"][:64]
    for rows in ns["spdz_training"].batches(64):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ref(x[rows]), labels[rows]).backward()
        opt.step()
    for a, b in zip(ns["spdz_plain"].parameters(), ref.parameters(), strict=True):
        assert (a - b).abs().max().item() < 1e-2


def test_dp_sgd_inside_the_shares_reports_its_epsilon(net, capsys):
    ip = net
    line = LINE + " --max-grad-norm 1.0 --noise-multiplier 1.1 --delta 1e-3"
    fp = _fingerprint(ip, capsys, line)
    assert fp != _fingerprint(ip, capsys, LINE)  # DP settings are part of the program
    ip.user_ns["own"](fp, fp)
    ip.run_cell_magic("ppdl", line + " --out dp", CELL)
    out = capsys.readouterr().out.splitlines()
    eps = encrypted_training_epsilon(ip.user_ns["dp_training"], delta=1e-3, rows=64)
    assert out[2] == (f"DP-SGD inside the shares: epsilon {eps:.2f} at delta 0.001 (noise "
                      "multiplier 1.1, clipping norm 1, sample rate 16/64)")
    assert 0 < eps < float("inf") and len(ip.user_ns["dp_history"].steps) == 8


def test_without_the_allowance_the_model_stays_shared_and_the_magic_says_why(net, capsys):
    ip = net
    fp = _fingerprint(ip, capsys, LINE)
    other = _fingerprint(ip, capsys, LINE.replace("--lr 0.5", "--lr 0.4"))
    ip.user_ns["own"](fp, other)  # bob allowed a program with another learning rate
    ip.user_ns.pop("spdz_plain", None)
    ip.run_cell_magic("ppdl", LINE + " --out refused", CELL)
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == (
        "the notebook may not open the trained model: it is a function of every owner's "
        "data (not differentially private), so it opens only to readers every data owner "
        "allowed for this training program. To open it here, each data owner (sa, sb) must "
        f"allow 'me' for program {fp} when sending its data, send(x, owner, private=True, "
        f"allow_programs={{'{fp}': ['me']}}), and the model be trained on that data. It "
        "stays shared in refused_model.")
    assert isinstance(ip.user_ns["refused_model"], PrivateModel)
    assert "refused_plain" not in ip.user_ns
    with pytest.raises(PermissionError):
        ip.user_ns["refused_model"].get()


def test_open_loss_without_the_allowance_is_a_usage_error(net, capsys):
    ip = net
    ip.user_ns["own"](None, None)
    with pytest.raises(UsageError, match="--open-loss: opening the loss after step 1 was "
                                         "refused"):
        ip.run_cell_magic("ppdl", LINE + " --open-loss --epochs 1 --out loud", CELL)
    assert isinstance(ip.user_ns["loud_model"], PrivateModel)  # still shared, as it said


def test_shared_data_a_model_owner_and_the_loss_opened(net, capsys):
    ip = net
    line = LINE + " --owner smo --allow me --open-loss --epochs 1 --out own"
    ip.run_cell("sh = lambda t: ppdl_nb.share(t, sp1, sp2, dealer=sdl, frac_bits=20)")
    ip.run_cell_magic("ppdl", line, MODEL + "data = (sh(spdz_x[:48]), sh(spdz_y[:48]))")
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("opened in own_plain")  # the notebook's own data: public
    history = ip.user_ns["own_history"]
    assert len(history.steps) == 3 and all(s["loss"] > 0 for s in history.steps)
    assert ip.user_ns["own_model"].owner.name == "smo"


def test_ctrl_c_stops_after_the_running_step_and_keeps_the_model_shared(net, capsys,
                                                                          monkeypatch):
    ip = net
    request = EncryptedTraining._request

    def ctrl_c_during_step_3(self, session, pairs, step, *args):
        if step == 2:  # on the training thread; the notebook's thread gets the signal
            time.sleep(0.05)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        return request(self, session, pairs, step, *args)

    monkeypatch.setattr(EncryptedTraining, "_request", ctrl_c_during_step_3)
    ip.run_cell_magic("ppdl", LINE + " --out cut", MODEL + "data = (spdz_x[:64], spdz_y[:64])")
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == ("stopped after step 3 of 8 (Ctrl-C): the parties finished that step "
                      "together; the model stays shared, as trained so far; results in "
                      "cut_model (shared), cut_history, cut_training")
    assert ip.user_ns["cut_history"].interrupted
    assert len(ip.user_ns["cut_history"].steps) == 3
    assert ip.user_ns["sp1"].ping() == "pong"  # the parties keep serving
    # the model is whole: it opens (the notebook's own data) and trains on
    assert len(list(ip.user_ns["cut_plain"].parameters())) == 4


@pytest.mark.parametrize(("line", "cell", "says"), [
    ("train spdz --dealer sdl", CELL, "needs --parties NAME NAME"),
    ("train spdz --parties sp1 --dealer sdl", CELL, "needs --parties NAME NAME"),
    ("train spdz --parties sp1 sp2", CELL, "and --dealer NAME"),
    ("train spdz --parties sp1 sp2 --dealer sp2", CELL, "must be different workers"),
    ("train spdz --parties sp1 nobody --dealer sdl", CELL,
     "--parties: no worker named 'nobody'"),
    ("train spdz --parties sp1 sp2 --dealer sdl --allow me", CELL, "needs --owner NAME"),
    ("train spdz --parties sp1 sp2 --dealer sdl --optimizer adam", CELL,
     "runs SGD, not 'adam'"),
    ("train spdz --parties sp1 sp2 --dealer sdl --lr -1", CELL, "lr must be"),
    ("train spdz --parties sp1 sp2 --dealer sdl --epochs 0", CELL, "epochs and batch_size"),
    ("train spdz --parties sp1 sp2 --dealer sdl --loss hinge", CELL, "loss must be one of"),
    ("train spdz --parties sp1 sp2 --dealer sdl --momentum", CELL, "expected one argument"),
    ("train spdz --parties sp1 sp2 --dealer sdl --noise 1", CELL,
     "noise_multiplier needs max_grad_norm"),
    ("train spdz --parties sp1 sp2 --dealer sdl --epsilon 1", CELL,
     "unrecognized arguments: --epsilon"),
    ("train spdz --parties sp1 sp2 --dealer sdl", MODEL, "must set `data`"),
    ("train spdz --parties sp1 sp2 --dealer sdl", "data = [(xa, ya)]", "must define `model`"),
    ("train spdz --parties sp1 sp2 --dealer sdl",
     "model = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Sigmoid())\n"
     "data = [(xa, ya)]", "the model cannot be trained on shares: .*Sigmoid"),
    ("train spdz --parties sp1 sp2 --dealer sdl",
     MODEL + "data = [(xa, ya)]\ntest = x_test", "`test` must be \\(x_test, y_test\\)"),
    ("train spdz --parties sp1 sp2 --dealer sdl",
     MODEL + "data = [(xa, spdz_labels[:32])]", "cross-entropy takes one-hot targets"),
])
def test_mistakes_are_usage_errors_that_say_what_to_do(net, line, cell, says):
    net.user_ns["own"](None, None)
    with pytest.raises(UsageError, match=says):
        net.run_cell_magic("ppdl", line, cell)
