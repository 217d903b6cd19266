"""Federated learning: models travel to the data, train there, and come back averaged.

* :mod:`.partition`: split a dataset among clients (IID, by label shards, Dirichlet).
* :mod:`.dataset`: :class:`FederatedDataset`, clients' rows held by workers.
* :mod:`.local`: one client's local training, as a pure function.
* :mod:`.aggregation`: notebook mean, trusted aggregator, secure sum, pairwise masks.
* :mod:`.fedavg`: :func:`fit_federated`, FedAvg / FedProx / DP-FedAvg rounds.
* :mod:`.history`: :class:`History`, one record per round.
* :mod:`.by_pointers`: the slow, op-by-op teaching path (PySyft 0.2 style).
"""

from ppdl_nb.fl.dataset import Client, FederatedDataset, public_split
from ppdl_nb.fl.fedavg import FederatedRun, fit_federated
from ppdl_nb.fl.history import History, compare
from ppdl_nb.fl.partition import heterogeneity, label_counts, partition, plot_partition

__all__ = [
    "Client",
    "FederatedDataset",
    "FederatedRun",
    "History",
    "compare",
    "fit_federated",
    "heterogeneity",
    "label_counts",
    "partition",
    "plot_partition",
    "public_split",
]
