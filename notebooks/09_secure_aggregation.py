# %% [markdown]
# # 09 — Secure aggregation: the server learns the average, not the updates
#
# In tutorial 08 each worker sent the notebook the sum of its clients' updates. An update
# is computed from private data and can leak it (gradients can be inverted into training
# images). FedAvg only needs the **average**, so we can do better. Three ways, each a
# value of `aggregation=`:
#
# | aggregation | who sees an individual worker's update |
# |---|---|
# | `"mean"` | the notebook |
# | `"trusted"` | a trusted aggregator worker (the notebook gets only the average) |
# | `"secure"` | nobody: additive secret shares among the workers |
# | `"secagg"` | nobody: pairwise masks (Bonawitz et al. 2017), tolerates dropouts |
#
# We check each claim against what the notebook actually received.
# %%
import torch

import ppdl_nb
from ppdl_nb.fl import FederatedDataset, SecAgg, Trusted, fit_federated
from ppdl_nb.fl.transcript import crash_before, notebook_transcript

%load_ext ppdl_nb
torch.set_num_threads(1)
# %%
%ppdl launch alice bob charlie dave
# %%
# allow_plain_updates=True: the owners let "mean" and Trusted run too, for the comparison
fed = FederatedDataset.load("digits", [alice, bob, charlie], clients_per_worker=2, seed=0,
                            test_rows=297, allow_plain_updates=True)
workers = [alice, bob, charlie, dave]


def make_model():
    torch.manual_seed(0)
    return torch.nn.Linear(64, 10)


def one_round(aggregation):
    """One round of FedAvg, recording every tensor the notebook receives."""
    with notebook_transcript(workers) as seen:
        run = fit_federated(make_model(), fed, rounds=1, lr=0.05, seed=3,
                            aggregation=aggregation)
    return run, seen
# %% [markdown]
# ## The notebook as server
# With `"mean"` the notebook receives each worker's update (here, 650 weights each):
# %%
plain, seen_plain = one_round("mean")
seen_plain
# %% [markdown]
# Those three float vectors *are* the individual updates. Keep them, to look for them in
# the other transcripts: every run below trains exactly the same updates (same seed).
# %%
individual = seen_plain.tensors("fl.train")
[u.shape for u in individual]
# %% [markdown]
# ## A trusted aggregator
# The workers keep their updates private, readable only by `dave`; the notebook moves
# them to dave (worker to worker) and receives the average. The message trace shows the
# moves going alice → dave, not through the notebook:
# %%
with ppdl_nb.trace() as t:
    trusted, seen_trusted = one_round(Trusted(aggregator=dave))
# %% [ignore-output]
t
# %%
print("the notebook received an individual update:",
      any(seen_trusted.holds(u) for u in individual))
print("same model as the notebook-server run:",
      torch.allclose(trusted.model.weight, plain.model.weight, atol=1e-6))
# %% [markdown]
# ## Secret-shared sum
# Each worker splits its update into three **additive shares** in Z_2^64 (fixed point, 24
# fractional bits), keeps one and sends the others to the other two workers directly.
# Each worker adds up the shares it holds and hands the notebook only that sum. A share,
# and a sum of shares, is uniformly random on its own: only all three together reveal
# the total.
# %%
with ppdl_nb.trace() as t:
    secure, seen_secure = one_round("secure")
seen_secure
# %%
print("the notebook received an individual update:",
      any(seen_secure.holds(u) for u in individual))
print("same model (up to fixed point):",
      torch.allclose(secure.model.weight, plain.model.weight, atol=1e-5))
# %% [markdown]
# What the notebook got from alice looks like noise over the whole 64-bit range:
# %% [ignore-output]
import matplotlib.pyplot as plt

from_alice = [t_ for w, label, t_ in seen_secure.entries if w == "alice"
              and label == "fl.sum_shares"][0]
fig, ax = plt.subplots(figsize=(5, 2.4))
ax.hist(from_alice.double().numpy(), bins=40)
ax.set_title("alice's sum of shares, as received by the notebook")
plt.show()
# %% [markdown]
# The trace: training requests, then each worker sending its shares to the other two, then
# one sum of shares from each back to the notebook.
# %% [ignore-output]
t
# %% [markdown]
# ## Pairwise masks, and a worker that dies mid-round
# Secret sharing needs every share holder alive. **SecAgg** (Bonawitz et al.) needs only a
# threshold: each pair of clients agrees on a mask (X25519 key agreement) that one adds
# and the other subtracts, so masks cancel in the sum. Each client also adds a private
# self-mask, and Shamir-shares both its self-mask seed and its mask key among the
# others, so that if it drops out the survivors can help remove its pairwise masks, and
# never both secrets of the same client.
#
# Here every logical client (6 of them) is a SecAgg client. We kill charlie's kernel just
# before it would send its clients' masked updates:
# %%
with crash_before(charlie, "secagg.masked"):
    dropped, seen_secagg = one_round(SecAgg(threshold=3))
for event in dropped.history.events:
    print(event["text"])
# %%
print("the notebook received an individual update:",
      any(seen_secagg.holds(u) for u in individual))
print("status of charlie:", charlie.status())
print("accuracy after the round:", dropped.history.last["accuracy"] > 0.1)
# %% [markdown]
# The round completed with the four clients on alice and bob: their masks were removed
# with the survivors' help, and the sum is theirs alone. Below the threshold the round
# is aborted (the model stays unchanged) rather than revealing anything.
# %%
%ppdl shutdown
