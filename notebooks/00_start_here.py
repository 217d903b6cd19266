# %% [markdown]
# # 00 — Start here: the course map
#
# This course teaches privacy-preserving deep learning by doing it. Data stays with its
# **owners** (workers); you, in this notebook, hold **pointers** to it and train models
# that never see the raw data, using three tools: **secret sharing** (compute on numbers
# nobody can see), **federated learning** (the model travels to the data) and
# **differential privacy** (results that do not reveal any one record). Each tutorial is a
# notebook you run top to bottom (Shift-Enter), with short exercises on the way.
#
# | # | tutorial | what you learn | takes |
# |---|---|---|---|
# | 01 | Pointers | send tensors to workers, compute there, move data between them; private data; remote models, gradients and optimizers | 20 min |
# | 02 | Workers as kernels | workers as real processes: launch, look inside, faults and restarts | 20 min |
# | 03 | Secret sharing | encoding reals in a ring, additive shares, why a share reveals nothing; an owner sharing her private data | 25 min |
# | 04 | SPDZ | multiplying secrets with Beaver triples from a dealer; encrypted inference; the messages between parties | 30 min |
# | 05 | DP-SGD | clipping and noise, privacy accounting (epsilon), budgets kept by the data owner, the privacy-utility trade-off | 40 min |
# | 06 | PATE | a student model taught by the noisy votes of teachers that saw the private data | 25 min |
# | 07 | Membership inference | an attack that tells whether a record was in the training set, and how DP stops it | 25 min |
# | 08 | Federated averaging | FedAvg on workers' data, IID and non-IID splits, FedProx, what travels each round | 35 min |
# | 09 | Secure aggregation | the server learns the sum of updates, not each one: shares, pairwise masks, dropouts | 35 min |
# | 10 | DP-FedAvg | user-level differential privacy for federated learning | 30 min |
# | 11 | Private inference | a CNN classifies secret-shared digits: secure comparison for ReLU and max-pooling, the model owner's weights shared from his worker, per-layer rounds | 25 min |
# | 12 | Encrypted training | a 784-128-128-10 network trained on secret-shared digits of two data owners, compared with plaintext training; what opening the trained model means, and who may | 25 min |
# | 13 | Synthetic data | private synthetic data (DataLens, DP-MERF, GANs) and what it leaks | 35 min |
# | 14 | Homomorphic encryption | computing on ciphertexts (CKKS, BFV) next to secret sharing | 30 min |
#
# **Paths.** Everyone starts with 01 and 02. Then pick a thread: *cryptography* 03 → 04
# → 11 → 12 → 14; *differential privacy* 05 → 06 → 07; *federated learning* 08 → 09 →
# 10 (after 05 for 10); 13 builds on 05 and 08. Coming from PySyft 0.2? Read `docs/FROM_PYSYFT.md`.
#
# **Magics.** `%load_ext ppdl_nb` gives `%ppdl` and `%%ppdl` (`%ppdl help` lists them):
# launch workers, draw chains and share histograms, trace messages, train with live
# progress, show every owner's privacy budget.
# %%
import torch

import ppdl_nb
from ppdl_nb.course import check

%load_ext ppdl_nb
# %% [markdown]
# ## How the exercises work
# An exercise cell has a `...` for you to replace with a line of code; the cell under it
# checks your answer and prints `right` or `not yet` with a hint. Try one: alice holds a
# tensor, and the notebook has a pointer to it.
# %%
alice = ppdl_nb.VirtualWorker("alice")
x = ppdl_nb.send(torch.tensor([1.0, 2.0, 3.0]), alice)
x
# %% [markdown]
# **Exercise.** Multiply `x` by 10 *on alice* (operators on a pointer run on its worker)
# and bring the result back to the notebook with `.get()`. One line.
# %% [exercise]
answer = ...  # ✎ your line here
# solution: answer = (x * 10).get()
# %%
check("x * 10, computed on alice and fetched", answer,
      expected=torch.tensor([10.0, 20.0, 30.0]),
      hint="an operator on the pointer runs on alice; .get() brings the result here")
# %% [markdown]
# Now open `01_pointers.ipynb`.
