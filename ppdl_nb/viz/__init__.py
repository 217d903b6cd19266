"""Pictures: chain diagrams, protocol traces, federated runs, share histograms, budgets.

Importing this package registers its drawing functions with :mod:`ppdl_nb.plotting`, so
that lower layers (``History.plot``, ``fl.plot_partition``) can draw without importing
it; ``import ppdl_nb`` imports it. It imports no matplotlib, ipywidgets, DP or FL code
until a picture is drawn: a worker process can import it at no cost.

The lighter pictures are exported here. Those that need widgets or DP training live in
their modules: :mod:`ppdl_nb.viz.shares` (``plot_shares``), :mod:`ppdl_nb.viz.budget`
(``plot_budgets``), :mod:`ppdl_nb.viz.dashboard` (``WorkerDashboard``) and
:mod:`ppdl_nb.viz.tuner` (``DPTuner``).

>>> import torch, ppdl_nb.viz as viz
>>> viz.ChainDiagram.of(torch.ones(2)).svg().startswith("<svg")
True
>>> sorted(name for name in viz.PLOTS if name.startswith("fl."))
['fl.compare', 'fl.history', 'fl.partition']
"""

from ppdl_nb.plotting import PLOTS
from ppdl_nb.viz.chain_diagram import ChainDiagram, worker_color
from ppdl_nb.viz.figures import new_figure
from ppdl_nb.viz.fl_plots import compare_histories, plot_history, plot_partition_counts
from ppdl_nb.viz.trace import Trace, trace

__all__ = [
    "PLOTS",
    "ChainDiagram",
    "Trace",
    "compare_histories",
    "new_figure",
    "plot_history",
    "plot_partition_counts",
    "trace",
    "worker_color",
]
