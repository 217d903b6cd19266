# %% [markdown]
# # 10 — DP-FedAvg: user-level differential privacy for federated learning
#
# Secure aggregation (tutorial 09) hides each update from the server, but the *trained
# model* can still remember one user's data. **DP-FedAvg** (McMahan et al. 2018) bounds
# what the model reveals about any one **user** (all of a client's rows together):
#
# 1. each round samples clients at random (rate *q*), which the accountant relies on;
# 2. each sampled client's update is **clipped** to L2 norm *C*;
# 3. Gaussian noise of std *σ·C* is added to the **sum**, which is divided by the expected
#    number of clients *qN*.
#
# The guarantee is user-level: ε bounds how much the released model changes when one
# client joins or leaves. User-level DP over three users means nothing, so here 300
# logical clients (about 13 rows each, like users of an app) live on 3 kernel workers.
# %%
import torch

import ppdl_nb
from ppdl_nb.dp.accounting import epsilon, noise_multiplier_for
from ppdl_nb.fl import DPFedAvg, FederatedDataset, compare, fit_federated

%load_ext ppdl_nb
torch.set_num_threads(1)
# %%
%ppdl launch alice bob charlie
# %%
fed = FederatedDataset.load("mnist_5k", [alice, bob, charlie], clients_per_worker=100,
                            seed=0, test_rows=1000)
print(fed)
print("rows per client:", min(fed.sizes), "to", max(fed.sizes))
# %% [markdown]
# ## Planning the budget
# Sampling 10% of the clients per round for 30 rounds, at δ = 1e-5: the accountant
# (Google's `dp-accounting`, RDP) gives ε for a noise multiplier, or the multiplier for
# a target ε:
# %%
q, rounds, delta = 0.1, 30, 1e-5
for sigma in (0.5, 1.0, 2.0):
    eps = epsilon(noise_multiplier=sigma, sample_rate=q, steps=rounds, delta=delta)
    print(f"sigma {sigma}: epsilon {eps:.2f}")
sigma_for_4 = noise_multiplier_for(target_epsilon=4.0, sample_rate=q, steps=rounds, delta=delta)
print(f"for epsilon 4: sigma {sigma_for_4:.3f}")
# %% [markdown]
# ## Training
# `DPFedAvg` wraps any aggregation. Around `"secure"` the noise goes in **inside the
# secret shares**: each of the k share-holding workers adds noise of std σC/√(k−1), so the
# total carries at least σC and no single worker, knowing its own part, can subtract
# enough of it to see the un-noised sum. The notebook never sees it either.
# %%
def make_model():  # few weights: the noise is added to every one of them
    torch.manual_seed(0)
    return torch.nn.Linear(784, 10)


options = dict(rounds=rounds, fraction=q, local_epochs=2, batch_size=8, lr=0.1, seed=0)
no_dp = fit_federated(make_model(), fed, aggregation="secure", **options)
dp = DPFedAvg("secure", noise_multiplier=sigma_for_4, max_update_norm=0.5, delta=delta)
private = fit_federated(make_model(), fed, aggregation=dp, **options)
print(f"epsilon spent after {rounds} rounds: {private.history.last['epsilon']:.2f} "
      f"(delta {delta:g})")
# %% [ignore-output]
print(f"test accuracy without DP {no_dp.history.last['accuracy']:.3f}, "
      f"with DP {private.history.last['accuracy']:.3f}")
# %% [ignore-output]
compare({"FedAvg": no_dp.history, f"DP-FedAvg (epsilon {private.history.last['epsilon']:.1f})":
         private.history})
# %% [markdown]
# ε grows with every round; the history records it, so you can stop when the budget is
# spent:
# %%
[round(e, 2) for e in private.history["epsilon"][::5]]
# %% [markdown]
# ## Choosing the clipping norm
# When most client updates are far longer than *C*, clipping throws signal away; far
# shorter, the noise (scaled by *C*) is larger than it needs to be. A common choice is *C*
# near the median update norm. Measuring that on the private clients would itself leak,
# so under DP workers do not report per-client norms (nor losses). Here we measure it on
# a public stand-in, the scikit-learn digits, with the notebook as a plain server:
# %%
proxy = FederatedDataset.load("digits", [alice, bob, charlie], clients_per_worker=10,
                              seed=0, test_rows=0, allow_plain_updates=True)
probe = fit_federated(torch.nn.Linear(64, 10), proxy, rounds=1, local_epochs=2,
                      batch_size=16, lr=0.1, seed=0)
print(f"median client update norm on the proxy: {probe.history.last['median_norm']:.2f}")
# %% [markdown]
# We used *C* = 0.5. The noise on the *average* has std σC/(qN): it shrinks as the number
# of clients grows, which is why DP-FedAvg is deployed over thousands of users, and why
# a small model (fewer weights to noise) helps at this scale.
# %%
%ppdl shutdown
