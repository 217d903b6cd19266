"""The headline demo, headless: ``python -m ppdl_nb.demo`` (or ``make demo``).

Pointers to data on workers, a private tensor refused, an encrypted linear model
evaluated on secret shares and checked against the plaintext model, and a few rounds of
federated averaging with pairwise-mask secure aggregation on the scikit-learn digits.
"""

from __future__ import annotations

import torch

import ppdl_nb


def main() -> None:
    alice, bob, dave = (ppdl_nb.VirtualWorker(n) for n in ("alice", "bob", "dave"))
    x = ppdl_nb.send(torch.tensor([1.0, 2.0, 3.0]), alice)
    print("a pointer:", x)
    print("computed on alice, fetched:", (x * 2 + 1).get())
    private = ppdl_nb.send(torch.tensor([52_000.0, 61_000.0]), alice, private=True)
    try:
        private.mean().get()
    except PermissionError as err:
        print("private data stays put:", str(err).split(";")[0])
    features = torch.randn(4, 3)
    weights = torch.randn(3, 1)
    shared_x = ppdl_nb.share(ppdl_nb.send(features, alice, private=True), alice, bob,
                             dealer=dave)
    shared_w = ppdl_nb.share(ppdl_nb.send(weights, bob, private=True, allow=("alice",)),
                             alice, bob, dealer=dave)
    with ppdl_nb.trace() as t:
        prediction = shared_x @ shared_w
    print("encrypted prediction:\n" + repr(prediction))
    opened = prediction.reveal_to(alice)
    alice.owner.release(opened.id_at_location, to="me")
    diff = (opened.get() - (features @ weights).double()).abs().max().item()
    print(f"matches the plaintext model to {diff:.1e}")
    print(t)
    federated([alice, bob, dave])


def federated(workers: list) -> None:
    from ppdl_nb.fl import FederatedDataset, fit_federated

    fed = FederatedDataset.load("digits", workers, clients_per_worker=2, seed=0, test_rows=297)
    print(fed)
    torch.manual_seed(0)
    run = fit_federated(torch.nn.Linear(64, 10), fed, rounds=5, lr=0.2, seed=0,
                        aggregation="secagg")
    print(run.history)
    print(f"federated accuracy {run.history.last['accuracy']:.3f} after "
          f"{len(run.history)} rounds; the notebook saw only the sums")


if __name__ == "__main__":
    main()
