# %% [markdown]
# # 02 — Workers as kernels: real processes that own their data
#
# In tutorial 01 the workers lived inside the notebook. Here each worker is **its own
# Jupyter kernel**: a separate operating-system process holding its own data. The notebook
# talks to each over an **encrypted, authenticated channel**: every worker makes its own
# key pair and the notebook only learns public keys; workers talk to each other directly,
# with keys of their own, so the notebook cannot read what bob sends charlie.
#
# *Honest note:* workers launched from one notebook model separate parties, but they run
# as the same OS user on the same machine. They are a faithful teaching model of the
# protocol, not a security boundary between people.
# %%
import torch

import ppdl_nb
from ppdl_nb.course import check

%load_ext ppdl_nb
# %%
%ppdl launch alice bob charlie
# %% [markdown]
# `%ppdl workers` shows a live dashboard: one row per worker, refreshed while cells run,
# with buttons to restart or shut a worker down.
# %% [ignore-output]
%ppdl workers
# %% [markdown]
# ## Pointers across processes
# Everything from tutorial 01 works the same: the data now sits in another process.
# %%
x = ppdl_nb.send(torch.tensor([1.0, 2.0, 3.0]), alice)
y = (x * 10).move(bob)           # alice sends it to bob over their own channel
y
# %%
%ppdl chain y
# %% [markdown]
# **Exercise.** `y` lives on bob. Send it on to charlie (worker to worker: the data does
# not pass through the notebook), then fetch its value into `answer`. One line.
# %% [exercise]
answer = ...  # ✎ your line here
# solution: answer = y.move(charlie).get()
# %%
check("y moved from bob to charlie, then fetched", answer,
      expected=torch.tensor([10.0, 20.0, 30.0]),
      hint="ptr.move(worker) moves what it points to; .get() fetches it")
# %% [markdown]
# ## Looking inside a worker
# `%%ppdl on alice` runs a cell **inside alice's kernel** and shows what alice sees. (A
# worker launched with `--no-inspect` refuses this.) Here alice, as the data owner,
# loads data of her own and keeps it private.
# %%
%%ppdl on alice
import torch
from ppdl_nb.workers.transport.runtime import current

me = current()
me.put(torch.tensor([52_000.0, 61_000.0, 58_500.0]), private=True, name="salaries")
print(f"{me.name} holds {len(me.store)} objects; published: {sorted(me.names)}")
# %% [markdown]
# The notebook gets a pointer to alice's data, not the data:
# %%
from ppdl_nb.tensors.pointer import pointer_to

salaries = pointer_to(alice, "salaries")
print(salaries)
try:
    salaries.get()
except PermissionError as err:
    print("get() refused:", type(err).__name__)
# %% [markdown]
# ## Faults: a worker that dies
# If a worker's process dies, the next call says so at once (no hang), and the worker can
# be restarted under the same name (empty: its data is gone).
# %%
charlie.process.kill()
try:
    charlie.ping()
except ppdl_nb.WorkerUnavailableError as err:
    print(err)
# %%
%ppdl restart charlie
charlie.ping()
# %% [ignore-output]
%ppdl workers --text
# %%
{w.name: w.status() for w in (alice, bob, charlie)}
# %% [markdown]
# Shut the workers down when done (they also stop when this notebook's kernel stops).
# %%
%ppdl shutdown bob
