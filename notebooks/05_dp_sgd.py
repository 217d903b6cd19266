# %% [markdown]
# # 05 — Differential privacy: DP-SGD, accounting, and budgets kept by data owners
#
# A model trained on people's data can leak it. **Differential privacy** bounds that leak:
# whatever the model reveals, it would have revealed (almost) the same had any one person
# been left out. *Almost* is measured by **epsilon** (smaller is more private) and
# **delta** (a tiny probability of failure).
#
# **DP-SGD** gets there by (1) clipping each example's gradient to a norm `C`, so nobody
# moves the model much, and (2) adding Gaussian noise `σ·C` to the sum. An **accountant**
# turns (σ, sampling rate, steps, δ) into ε.
# %%
import torch

import ppdl_nb
from ppdl_nb.datasets import load_digits
from ppdl_nb.dp import epsilon, noise_multiplier_for

%load_ext ppdl_nb
_ = torch.manual_seed(0)
# %% [markdown]
# ## Accounting
# The classic reference: σ = 1.1, batches of 256 out of 60,000, 14,100 steps, δ = 1e-5.
# %%
eps = epsilon(noise_multiplier=1.1, sample_rate=256 / 60_000, steps=14_100, delta=1e-5)
round(eps, 3)
# %% [markdown]
# More noise, fewer steps or a smaller sampling rate all lower ε. The other way round:
# the noise needed for a target ε (never above it).
# %%
sigma = noise_multiplier_for(target_epsilon=1.0, sample_rate=256 / 60_000, steps=14_100,
                             delta=1e-5)
round(sigma, 2), epsilon(noise_multiplier=sigma, sample_rate=256 / 60_000, steps=14_100,
                         delta=1e-5) <= 1.0
# %% [markdown]
# ## Training privately with one magic
# The cell defines `model` and names the data; the options are the privacy parameters.
# Progress and a live loss/accuracy plot show while it trains (a learning rate of 0.2: with
# clipping and noise, a larger one makes the loss climb back up after a few epochs).
# %%
digits = load_digits()
n = 1400
# %% [ignore-output]
%%ppdl train dp --epsilon 2 --delta 1e-5 --max-grad-norm 1.0 --epochs 8 --batch-size 128 --lr 0.2
model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
data = (digits.x[:n], digits.y[:n])
test = (digits.x[n:], digits.y[n:])
# %%
dp_epsilon <= 2.0, dp_history[-1]["accuracy"] > 0.5
# %% [markdown]
# ## The tuner: move a slider, see ε
# `%ppdl tune dp` gives sliders for σ, clipping, batch size, epochs and δ (or a target ε).
# ε is recomputed on every move; **Train** runs in the background with live progress and
# adds a point to the privacy-utility chart; **Audit** attacks the last model (tutorial 07).
# %% [ignore-output]
%ppdl tune dp --dataset digits
# %% [markdown]
# The same tuner from Python (here a short run, waiting for it to finish):
# %% [ignore-output]
tuner.noise.value = 1.5
tuner.epochs.value = 4
run = tuner.train(wait=True)  # outside JupyterLab, the live plots print here
# %%
len(tuner.runs), abs(run.epsilon - tuner.epsilon) < 1e-9
# %% [markdown]
# ## Budgets live with the data
# A hospital's worker holds its dataset and a **total** budget. Every query or training
# run is charged *by the worker* before it answers; when the budget is spent, it refuses.
# The ledger is on disk, so restarting the worker does not reset it. `remote(worker)` is
# the notebook's side: it checks your arguments (a misspelt one is a `TypeError` naming
# it, before anything is sent) and asks the owner.
# %%
from ppdl_nb.dp import remote

hospital = ppdl_nb.VirtualWorker("hospital")
records = remote(hospital).load("breast_cancer", epsilon=1.0, delta=1e-5)
records, records.budget().remaining_epsilon
# %% [ignore-output]
mean_radius = records.mean(column=0, bounds=(0, 30), epsilon=0.5)
round(mean_radius, 1)
# %%
try:
    records.count(epsilon=0.8)
except PermissionError as err:
    print(str(err).split("] ", 1)[1])
# %%
ledger = records.budget()
[(what.split(" (")[0], eps) for what, eps, delta in ledger.history]
# %% [markdown]
# `%ppdl budget` asks every data owner the notebook is connected to (or the ones you
# name) for its ledgers: what each release cost, and what is left, as a table and a bar
# per dataset. The numbers come from the owners; the notebook only reads them.
# %%
%ppdl budget hospital
