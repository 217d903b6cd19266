"""Federated learning: models travel to the data, train there, and come back averaged.

* :mod:`.partition`: split a dataset among clients (IID, by label shards, Dirichlet).
* :mod:`.dataset`: :class:`FederatedDataset`, clients' rows held by workers.
* :mod:`.local`: one client's local training, as a pure function.
* :mod:`.aggregation`: the strategies that sum a round's updates: :class:`Mean`,
  :class:`Trusted` (an aggregator worker), :class:`Secure` (additive shares),
  :class:`SecAgg` (pairwise masks).
* :mod:`.strategies`: wrappers around any of them: :class:`DPFedAvg`, and the server
  optimizers :class:`FedAvgM` and :class:`FedAdam`.
* :mod:`.engine`: where clients run (:class:`WorkerEngine`: on the workers holding them).
* :mod:`.fedavg`: :func:`fit_federated`, the loop over rounds.
* :mod:`.history`: :class:`History`, one record per round.
* :mod:`.by_pointers`: the slow, op-by-op teaching path (PySyft 0.2 style).

>>> sorted(AGGREGATIONS)
['dpfedavg', 'fedadam', 'fedavgm', 'he', 'mean', 'secagg', 'secure', 'trusted']
"""

from ppdl_nb.fl.aggregation import (
    AGGREGATIONS,
    Mean,
    RoundAborted,
    SecAgg,
    Secure,
    Strategy,
    Trusted,
    make_aggregation,
)
from ppdl_nb.fl.by_pointers import train_by_pointers
from ppdl_nb.fl.dataset import Client, FederatedDataset, public_split
from ppdl_nb.fl.engine import ENGINES, Engine, WorkerEngine
from ppdl_nb.fl.fedavg import FederatedRun, fit_federated
from ppdl_nb.fl.he_aggregation import HE  # noqa: F401  (registers 'he': BFV sums)
from ppdl_nb.fl.history import History, compare
from ppdl_nb.fl.partition import heterogeneity, label_counts, partition, plot_partition
from ppdl_nb.fl.strategies import DPFedAvg, FedAdam, FedAvgM

__all__ = [
    "AGGREGATIONS",
    "ENGINES",
    "Client",
    "DPFedAvg",
    "Engine",
    "FedAdam",
    "FedAvgM",
    "FederatedDataset",
    "FederatedRun",
    "History",
    "Mean",
    "RoundAborted",
    "SecAgg",
    "Secure",
    "Strategy",
    "Trusted",
    "WorkerEngine",
    "compare",
    "fit_federated",
    "heterogeneity",
    "label_counts",
    "make_aggregation",
    "partition",
    "plot_partition",
    "public_split",
    "train_by_pointers",
]
