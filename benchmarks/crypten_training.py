"""CrypTen 0.4.1's encrypted training step, 2 parties: the anchor for issue #14.

One step (forward, softmax cross-entropy, backward, SGD update with lr 0.1) of the MLP
784-128-128-10 (ReLU) of ``crypten_inference.py`` on a batch of 64, weights, inputs and
one-hot labels all encrypted, with CrypTen's default trusted-first-party provider
(``TFP``) and its trusted-third-party provider (``TTP``). The data are synthetic (fixed
seed, no downloads).

Like ``crypten_inference.py`` (whose runner, model and /proc reader this reuses), run it
with any interpreter: without CrypTen it re-runs itself under ``.venv-crypten/bin/python``
when that exists, and otherwise says so and exits 0 (writing ``{"skipped": ...}`` with
``--json``).

    python benchmarks/crypten_training.py [--providers TFP,TTP] [--repeats 3]
                                          [--quick] [--json out.json]

Figures per provider, with the conventions of ``crypten_inference.py``: ``ms``, the
median over repeats of the time party 0 sees per step (after two warm-up steps; triples
made during the step); ``cpu_ms``, the CPU time per step of every CrypTen process (both
parties and, with TTP, the third party), from /proc; ``rounds`` and ``bytes_per_party``
from CrypTen's communicator statistics of one untimed step: party 1's, bytes halved
(party 0's requests to the TTP are given apart as ``ttp_rounds`` and ``ttp_bytes``).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import crypten_inference  # noqa: E402
from _crypten import anchor_parser, start_anchor  # noqa: E402
from crypten_inference import _siblings_cpu, mlp  # noqa: E402

LR = 0.1
WARMUP = 2


def _count_one(step) -> dict[str, int]:
    """This party's rounds and bytes (sent + received) for one call of ``step``."""
    import crypten
    import crypten.communicator as comm

    crypten.cfg.communicator.verbose = True
    comm.get().reset_communication_stats()
    step()
    stats = comm.get().get_communication_stats()
    crypten.cfg.communicator.verbose = False
    return {"rounds": int(stats["rounds"]), "bytes": int(stats["bytes"])}


def _train_party(ops: list[str], repeats: int, quick: bool, out_path: str) -> None:
    """One party, as ``crypten_inference.run`` forks it (its ``party``)."""
    import crypten
    import crypten.communicator as comm
    import torch

    del ops  # one op here: the training step
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same initial weights in both parties
    g = torch.Generator().manual_seed(0)  # benchmark data only
    rank, batch = comm.get().get_rank(), 8 if quick else 64
    model = crypten.nn.from_pytorch(mlp(), torch.zeros(1, 784))
    model.encrypt()
    model.train()
    loss_fn = crypten.nn.CrossEntropyLoss()
    x = crypten.cryptensor(torch.randn(batch, 784, generator=g))
    labels = torch.randint(0, 10, (batch,), generator=g)
    y = crypten.cryptensor(torch.nn.functional.one_hot(labels, 10).float())

    def step():
        loss = loss_fn(model(x), y)
        model.zero_grad()
        loss.backward()
        model.update_parameters(LR)

    for _ in range(WARMUP):
        step()
    row = _count_one(step)
    comm.get().barrier()
    cpu0, times = _siblings_cpu() if rank == 0 else 0.0, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    comm.get().barrier()
    row.update(ms=statistics.median(times) * 1e3, samples_ms=[t * 1e3 for t in times],
               cpu_ms=(_siblings_cpu() - cpu0) / repeats * 1e3 if rank == 0 else 0.0)
    Path(f"{out_path}.{rank}").write_text(json.dumps({"mlp_train": row}))


def run(provider: str, repeats: int, quick: bool) -> dict:
    """The figures of one provider, by ``crypten_inference.run`` with our party."""
    return crypten_inference.run(provider, ["mlp_train"], repeats, quick,
                                 party=_train_party)["mlp_train"]


def main(argv: list[str] | None = None) -> int:
    args = anchor_parser(__doc__.splitlines()[0], "a batch of 8 instead of 64").parse_args(argv)
    crypten = start_anchor(args, __file__, argv)
    if crypten is None:
        return 0

    import torch

    rows = [{"op": "mlp_train", **run(provider, args.repeats, args.quick)}
            for provider in args.providers.split(",") if provider]
    print(f"CrypTen {crypten.__version__}: one training step of the MLP 784-128-128-10, "
          f"batch {8 if args.quick else 64}, lr {LR}, 2 parties")
    print(f"{'provider':8} {'median ms':>10} {'cpu ms':>8} {'rounds':>7} "
          f"{'B sent/party':>13} {'TTP rounds':>10} {'TTP bytes':>12}")
    for r in rows:
        print(f"{r['provider']:8} {r['ms']:10.1f} {r['cpu_ms']:8.1f} {r['rounds']:7d} "
              f"{r['bytes_per_party']:13,d} {r['ttp_rounds']:10d} {r['ttp_bytes']:12,d}")
    if args.json:
        args.json.write_text(json.dumps({"crypten": crypten.__version__,
                                         "torch": torch.__version__, "n_parties": 2,
                                         "batch": 8 if args.quick else 64, "lr": LR,
                                         "warmup": WARMUP, "repeats": args.repeats,
                                         "quick": args.quick, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
