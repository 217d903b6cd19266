# %% [markdown]
# # 15 — Beyond one machine
#
# So far every worker was a kernel this notebook started on its own machine: the notebook
# made every key and introduced every worker. Real data owners keep their own machines.
# This tutorial goes past one machine in two directions:
#
# 1. **A worker served by its owner** (`ppdl-worker serve`): a process of its own, on a
#    TCP port, with its own key pair, its own datasets and privacy budgets, serving only
#    the notebooks its owner allowed. The notebook joins it by its **fingerprint**.
# 2. **Thousands of federated clients on Ray**: a *simulation* of cost and convergence
#    on a pool of Ray actors.
#
# Who dials whom: the notebook dials each worker; a worker dials a peer when it has
# something to send it. A served worker listens on TCP; kernel workers listen only on a
# private socket of the notebook's machine.
# %%
import os
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import clear_output, display

import ppdl_nb
from ppdl_nb import datasets
from ppdl_nb.dp import remote
from ppdl_nb.fl import fit_federated, public_split
from ppdl_nb.fl.ray_engine import RayEngine, simulated_dataset
from ppdl_nb.workers.transport.served_client import notebook_identity
from ppdl_nb.workers.transport.served_process import start_served
from ppdl_nb.workers.transport.served_state import OwnerState, fingerprint

torch.set_num_threads(1)
here = Path(tempfile.mkdtemp(prefix="tutorial15-"))
# the notebook's identity: by default ~/.config/ppdl_nb/identity/x25519.key (0600)
os.environ["PPDL_NB_IDENTITY"] = str(here / "notebook" / "x25519.key")
me = fingerprint(notebook_identity().public)
print("this notebook's fingerprint has", len(me), "hex characters")
# %% [ignore-output]
print(me)  # what the owner allows; `ppdl-worker whoami` prints it too
# %% [markdown]
# ## The owner's side (another machine, played by a process here)
# The owner of a hospital's data keeps it in a CSV file in the worker's own directory,
# registers it as a private dataset with a total privacy budget, and allows this notebook
# by its fingerprint (sent to them by mail, say). These are the commands the owner types:
#
# ```
# ppdl-worker dataset cancer cancer.csv --target label --epsilon 2 --delta 1e-5 --state-dir DIR
# ppdl-worker allow FINGERPRINT --name nb --state-dir DIR
# ppdl-worker serve --name hospital --listen 127.0.0.1:0 --state-dir DIR
# ```
#
# Here the first two run as the functions they call (`OwnerState`), to save the seconds a
# fresh Python takes to start; the worker itself runs `ppdl-worker serve` in its own
# process, exactly as its owner would.
# %%
data = datasets.load_breast_cancer()
owner_dir = here / "hospital"
owner_dir.mkdir(mode=0o700)
table = np.column_stack([data.x.numpy()[:, :4], data.y.numpy()])
np.savetxt(owner_dir / "cancer.csv", table, delimiter=",", comments="",
           header="radius,texture,perimeter,area,label")
owner = OwnerState(owner_dir)
owner.add_dataset("cancer", "cancer.csv", target="label", epsilon=2.0, delta=1e-5)
owner.allow(me, "nb")
hospital_proc = start_served("hospital", owner_dir)
print("the owner's worker serves datasets:", hospital_proc.datasets)
# %% [markdown]
# When it starts, the worker prints its address and its fingerprint: the public half of
# a key pair it made once and keeps (mode 0600) in its own directory. The owner publishes
# both; the notebook pins the fingerprint, so nobody else can pose as the hospital.
# %% [ignore-output]
print(hospital_proc.address)
print(hospital_proc.fingerprint)
# %%
hospital = ppdl_nb.connect(hospital_proc.address, fingerprint=hospital_proc.fingerprint)
x = ppdl_nb.send(torch.tensor([1.0, 2.0, 3.0]), hospital)
print((x * 10).get())
# %% [markdown]
# A wrong fingerprint is refused: whoever listens there cannot prove that key.
# %%
try:
    ppdl_nb.connect(hospital_proc.address, fingerprint="ab" * 32)
except PermissionError as err:
    print(type(err).__name__ + ":", str(err)[str(err).index("does not"):][:48], "...")
# %% [markdown]
# ## The owner's data stays the owner's
# The notebook never sees the rows. It may ask differentially private questions; the
# owner's worker charges its own ledger, which lives in the owner's directory.
# %% [ignore-output]
cancer = remote(hospital).dataset("cancer")  # the DP side of the owner's dataset
mean_radius = cancer.mean(0, bounds=(0.0, 30.0), epsilon=0.5)
print(f"noisy mean radius: {mean_radius:.2f}")
# %%
budget = cancer.budget()
print(f"spent {budget.spent_epsilon} of {budget.total_epsilon} epsilon")
# %% [markdown]
# The owner restarts the worker (an update, a reboot). Its datasets and budgets come
# back; objects computed before are gone, and using one says so. The same `hospital`
# handle reconnects by itself, to the same identity.
# %%
hospital_proc.restart()
print(cancer.budget().spent_epsilon, "epsilon spent")
try:
    x.get()
except KeyError as err:
    print("KeyError:", err.args[0].split(": ")[1])
# %% [markdown]
# ## 1,000 clients on Ray: a simulation
# Ray runs the clients on a pool of actors sized to the CPUs (never one process per
# client). Say it plainly: **this is a simulation**. The driver (this notebook) holds every
# client's data, so secure aggregation on Ray protects nothing; it shows cost and
# convergence before real owners are asked to join.
# %%
mnist = datasets.load_mnist_5k()
xs, ys = mnist.x.float(), mnist.y
train, test = public_split(len(ys), 1000, seed=0)
fed = simulated_dataset(xs[train], ys[train], 1000, seed=0, test=(xs[test], ys[test]))
torch.manual_seed(0)
mlp = torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
ray_engine = RayEngine(actors=2).start()
# %% [markdown]
# Ten rounds, 100 clients sampled per round, one local epoch each; the chart follows the
# rounds as they come.
# %% [ignore-output]
accuracy = []


def live_chart(record):
    accuracy.append(record["accuracy"])
    clear_output(wait=True)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(range(1, len(accuracy) + 1), accuracy, marker="o")
    ax.set(xlabel="round", ylabel="test accuracy", xlim=(0.5, 10.5),
           title="FedAvg, 1,000 simulated clients on Ray")
    display(fig)
    plt.close(fig)


run = fit_federated(mlp, fed, rounds=10, fraction=0.1, batch_size=32, lr=0.1, seed=0,
                    engine=ray_engine, callback=live_chart)
# %%
print(len(fed.clients), "clients,", run.history["clients"][-1], "sampled per round")
print("accuracy went up:", run.history["accuracy"][-1] > run.history["accuracy"][0])
# %% [markdown]
# ## Clean up
# %%
ray_engine.close()
hospital.close()
hospital_proc.stop()
shutil.rmtree(here)  # the owner's directory and this notebook's tutorial identity
print("done")
