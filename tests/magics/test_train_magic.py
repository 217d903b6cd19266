"""%%ppdl train dp: local and on a worker whose budget pays; its own parser; %ppdl tune dp."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

CELL = """
import torch
g = torch.Generator().manual_seed(0)
x = torch.randn(256, 6, generator=g)
y = (x[:, 1] > 0).long()
model = torch.nn.Linear(6, 2)
data = (x[:200], y[:200])
test = (x[200:], y[200:])
"""



def test_train_dp_locally_leaves_results_in_the_namespace(ip, capsys):
    ip.run_cell_magic("ppdl", "train dp --epsilon 1.5 --epochs 3 --batch-size 50 --lr 0.5", CELL)
    assert "epsilon" in capsys.readouterr().out
    assert ip.user_ns["dp_epsilon"] <= 1.5 + 1e-9
    assert len(ip.user_ns["dp_history"]) == 3
    assert ip.user_ns["dp_history"][-1]["accuracy"] > 0.6


def test_train_dp_on_a_worker_charges_its_budget(ip, tmp_path, monkeypatch):
    monkeypatch.setenv("PPDL_NB_STATE_DIR", str(tmp_path))
    ip.run_cell("import ppdl_nb; clinic = ppdl_nb.VirtualWorker('clinic');"
                "records = ppdl_nb.dp.remote(clinic).load('breast_cancer', epsilon=1.0, "
                "delta=1e-5)")
    ip.run_cell_magic("ppdl", "train dp --worker clinic --dataset breast_cancer --epsilon 0.6 "
                      "--epochs 2 --batch-size 64 --progress none --out remote",
                      "model = torch.nn.Linear(30, 2)")
    assert len(ip.user_ns["remote_history"]) == 2
    assert ip.user_ns["records"].budget().remaining_epsilon == pytest.approx(0.4)
    with pytest.raises(PermissionError, match="only \\(epsilon=0.4"):
        ip.run_cell_magic("ppdl", "train dp --worker clinic --dataset breast_cancer "
                          "--epsilon 0.6 --epochs 1", "model = torch.nn.Linear(30, 2)")


@pytest.mark.parametrize(("line", "says"), [
    ("train dp --epochs 1", "exactly one of --epsilon"),
    ("train dp --epsilon 1 --noise-multiplier 1", "exactly one of --epsilon"),
    ("train dp --epsilon 1 --noise 1", "exactly one of --epsilon"),
    ("train xx --epsilon 1", "invalid choice"),
    ("train dp --epsilon 0", "--epsilon must be > 0"),
    ("train dp --noise-multiplier -1", "--noise-multiplier must be >= 0"),
    ("train dp --epsilon 1 --max-grad-norm 0", "--max-grad-norm must be > 0"),
    ("train dp --epsilon 1 --clip 1", "unrecognized arguments: --clip"),
    ("train dp --epsilon 1 --rounds 3", "unrecognized arguments: --rounds"),
    ("train dp --epsilon 1 --progress loud", "invalid choice: 'loud'"),
    ("train dp --epsilon 1 --epochs 0", "--epochs must be >= 1"),
    ("train dp --epsilon 1 --batch-size 0", "--batch-size must be >= 1"),
    ("train dp --epsilon 1 --delta 2", r"delta must be a probability in \(0, 1\)"),
    ("train dp --epsilon 1 --worker clinic", "--worker needs --dataset"),
    ("train dp --epsilon 1 --worker nowhere --dataset d", "not connected to a worker named"),
    ("train dp --epsilon 1 --worker dp_empty --dataset digits", "holds no dataset 'digits'"),
])
def test_train_mistakes_are_usage_errors_before_anything_runs(ip, line, says, capsys):
    ip.run_cell("import ppdl_nb; dp_empty = ppdl_nb.VirtualWorker('dp_empty')")
    ip.user_ns.pop("mistake_ran", None)
    with pytest.raises(UsageError, match=says):
        ip.run_cell_magic("ppdl", line, CELL + "mistake_ran = True\n")
    assert "mistake_ran" not in ip.user_ns  # refused before the cell ran
    assert "IntProgress" not in capsys.readouterr().out  # and before any progress bar


def test_train_without_data_is_a_usage_error(ip):
    ip.user_ns.pop("data", None)
    with pytest.raises(UsageError, match="must set `data = \\(x, y\\)`"):
        ip.run_cell_magic("ppdl", "train dp --epsilon 1", "model = torch.nn.Linear(6, 2)")


def test_train_dp_with_a_noise_multiplier_and_no_progress(ip, capsys):
    ip.run_cell_magic("ppdl", "train dp --noise-multiplier 1.0 --max-grad-norm 0.5 --epochs 1 "
                      "--batch-size 50 --loss cross_entropy --optimizer adam --lr 0.05 "
                      "--progress none --out quiet", CELL)
    assert "IntProgress" not in capsys.readouterr().out
    assert len(ip.user_ns["quiet_history"]) == 1 and ip.user_ns["quiet_epsilon"] > 0


def test_help_train_shows_each_algorithms_own_options(ip, capsys):
    ip.run_line_magic("ppdl", "help train")
    out = capsys.readouterr().out
    dp_help, _, fl_help = out.partition("%ppdl train fl")
    fl_help, _, spdz_help = fl_help.partition("%ppdl train spdz")
    assert "--parties" in spdz_help and "--max-grad-norm" in spdz_help
    assert "%ppdl train dp" in dp_help and "--max-grad-norm" in dp_help
    assert "--noise-multiplier" in dp_help and "--rounds" not in dp_help
    assert "--rounds" in fl_help and "--max-grad-norm" not in fl_help
    for shared in ("--epochs", "--batch-size", "--lr", "--optimizer", "--loss", "--progress"):
        assert shared in dp_help and shared in fl_help
    ip.run_line_magic("ppdl", "help")
    assert "%%ppdl train" in capsys.readouterr().out


def test_an_algorithm_cannot_be_registered_twice():
    from ppdl_nb.magics.train import TRAINERS

    def train_dp(shell, args, cell):
        """Another DP trainer."""

    with pytest.raises(ValueError, match="train dp is already registered"):
        TRAINERS["dp"] = train_dp


def test_tune_dp_makes_a_tuner(ip):
    tuner = ip.run_line_magic("ppdl", "tune dp --dataset breast_cancer")
    assert ip.user_ns["tuner"] is tuner and tuner.epsilon > 0


def test_the_cell_contract_only_what_the_cell_assigns_counts(ip, capsys):
    for name in ("loss", "optimizer"):  # other tests' leftovers would be noted too
        ip.user_ns.pop(name, None)
    ip.run_cell(CELL)  # an earlier cell: data, test and model now sit in the namespace
    with pytest.raises(UsageError, match="must set `data = \\(x, y\\)`"):
        ip.run_cell_magic("ppdl", "train dp --epsilon 1 --epochs 1",
                          "model = torch.nn.Linear(6, 2)")
    assert "not using `data`, `test` from earlier cells" in capsys.readouterr().out
    with pytest.raises(UsageError, match="a `model` from an earlier cell is not used"):
        ip.run_cell_magic("ppdl", "train dp --epsilon 1 --epochs 1", "data = data")
    ip.run_cell_magic("ppdl", "train dp --epsilon 1 --epochs 1 --progress none --out mine",
                      "model = torch.nn.Linear(6, 2)\ndata = data  # this one, on purpose\n")
    out = capsys.readouterr().out
    assert "not using `test` from earlier cells" in out
    assert "accuracy" not in ip.user_ns["mine_history"][-1]  # the earlier `test` was unused


def test_cell_assigns_sees_every_way_a_cell_binds_a_name(ip):
    from ppdl_nb.magics.train import cell_assigns

    cell = ("import torch.nn as nn\nfrom x import data\nfor loss in []: pass\n"
            "def model(): pass\n(test := 1)\n%time 1\noptimizer = 2\nprint(model)\n")
    assert {"nn", "data", "loss", "model", "test", "optimizer"} <= cell_assigns(ip, cell)
    assert "print" not in cell_assigns(ip, cell)


def test_help_train_states_the_cell_contract_with_an_example(ip, capsys):
    ip.run_line_magic("ppdl", "help train")
    out = capsys.readouterr().out
    assert "must itself assign" in out and "Only what the cell itself assigns counts" in out
    assert "  %%ppdl train dp --epsilon 2 --epochs 5\n  model = torch.nn.Linear(64, 10)" in out
    assert "  %%ppdl train dp [--epsilon EPSILON]" in out  # a cell magic: two %
    assert "\n  %ppdl train" not in out
