# %%
import torch, ppdl_nb
from ppdl_nb.viz.dashboard import WorkerDashboard
alice, bob, charlie = (ppdl_nb.VirtualWorker(n) for n in ("alice", "bob", "charlie"))
x = ppdl_nb.send(torch.ones(3), bob).send(alice)
WorkerDashboard()
# %%
%load_ext ppdl_nb
%ppdl chain x
