"""%%ppdl train fl: the cell's model trained federated; model and history land here."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

CELL = """
import torch
g = torch.Generator().manual_seed(0)
x = torch.randn(300, 6, generator=g)
y = (x[:, 1] > 0).long()
model = torch.nn.Linear(6, 2)
data = (x[:240], y[:240])
test = (x[240:], y[240:])
"""


@pytest.fixture
def workers(ip):
    ip.run_cell("import ppdl_nb; from ppdl_nb.workers.transport.virtual import VirtualNetwork\n"
                "_net = VirtualNetwork()\n"
                "fla, flb, flc = (ppdl_nb.VirtualWorker(n, network=_net) "
                "for n in ('fla', 'flb', 'flc'))")
    return ip


def test_train_fl_splits_trains_and_reports(workers, capsys):
    workers.run_cell_magic("ppdl", "train fl --workers fla flb --clients-per-worker 2 "
                           "--rounds 3 --lr 0.5 --seed 1", CELL)
    out = capsys.readouterr().out
    assert "3 rounds over 4 clients on 2 workers" in out
    history = workers.user_ns["fl_history"]
    assert len(history) == 3 and history.last["accuracy"] > 0.8
    assert workers.user_ns["fl_model"] is not workers.user_ns["model"]


def test_train_fl_with_a_trusted_aggregator_and_dp(workers, capsys):
    workers.run_cell_magic("ppdl", "train fl --workers fla flb --clients-per-worker 3 "
                           "--rounds 2 --aggregation trusted --aggregator flc "
                           "--noise-multiplier 1.0 --max-update-norm 0.5 --fraction 0.5 "
                           "--out private", CELL)
    out = capsys.readouterr().out
    assert "epsilon" in out and "trusted aggregator flc" in out
    assert len(workers.user_ns["private_history"]["epsilon"]) == 2


def test_train_fl_builds_the_strategy_the_options_name(workers, capsys):
    workers.run_cell_magic("ppdl", "train fl --workers fla flb flc --rounds 2 --aggregation "
                           "secagg --threshold 2 --server-optimizer fedavgm --server-lr 0.5 "
                           "--progress none --optimizer momentum --lr 0.05", CELL)
    out = capsys.readouterr().out
    assert "pairwise masks (Bonawitz et al.) + FedAvgM server step" in out
    assert len(workers.user_ns["fl_history"]) == 2


@pytest.mark.parametrize("line, message", [
    ("train fl --rounds 1", "--workers"),
    ("train fl --workers fla --aggregation magic", "--aggregation must be one of"),
    ("train fl --workers fla --aggregation trusted", "--aggregator"),
    ("train fl --workers nobody", "no worker named 'nobody'"),
    ("train fl --workers fla --epsilon 1", "--noise-multiplier"),
    ("train fl --workers fla --threshold 3", "'mean' takes no option threshold"),
    ("train fl --workers fla --noise-multiplier -1", "noise_multiplier"),
    ("train fl --workers fla --optimizer lbfgs", "unknown optimizer 'lbfgs'"),
])
def test_train_fl_mistakes_are_usage_errors(workers, line, message):
    with pytest.raises(UsageError, match=message):
        workers.run_cell_magic("ppdl", line, CELL)
