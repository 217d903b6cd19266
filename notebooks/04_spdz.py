# %% [markdown]
# # 04 — SPDZ: multiplying secrets, and encrypted inference
#
# Adding shared numbers is free; **multiplying** them needs help. SPDZ uses a *Beaver
# triple* `(a, b, c = a*b)`, made by a **dealer** (crypto provider) who gives each party
# shares of it. Then for `z = x*y`:
#
# 1. each party opens `eps = x - a` and `delta = y - b` (random-looking: `a`, `b` mask them);
# 2. `x*y = c + eps*b + a*delta + eps*delta`, computed on shares locally;
# 3. the product has 32 fractional bits instead of 16: a second opening **truncates** it
#    exactly (to one unit in the last place), with a mask the dealer also supplies.
#
# First by hand, with the protocol functions of `ppdl_nb.mpc`, then over workers.
# %%
import torch

import ppdl_nb
from ppdl_nb import mpc
from ppdl_nb.mpc.dealer import simulate_dealer

%load_ext ppdl_nb
# %%
x, y = torch.tensor([1.5, -2.0]), torch.tensor([4.0, 0.25])
rng = mpc.PRG()
xs = mpc.share(mpc.encode(x), 2, rng)      # party 0 and party 1
ys = mpc.share(mpc.encode(y), 2, rng)
triple = simulate_dealer("mul", 2, x_shape=(2,), y_shape=(2,))   # per party: (a_i, b_i, c_i)
# round 1: each party masks its shares; the masked values are opened
opened = [mpc.beaver_open(xs[i], ys[i], triple[i][0], triple[i][1]) for i in range(2)]
eps = mpc.reconstruct([o[0] for o in opened])
delta = mpc.reconstruct([o[1] for o in opened])
# local: each party's share of x*y (party 0 adds eps*delta)
zs = [mpc.beaver_mul_finish(i, eps, delta, *triple[i]) for i in range(2)]
mpc.decode(mpc.reconstruct(zs), 32)   # still 32 fractional bits
# %% [markdown]
# Round 2 truncates back to 16 fractional bits (the dealer supplies a mask `r` with
# `r >> 16` and its top bit):
# %%
masks = simulate_dealer("trunc", 2, shape=(2,), frac_bits=16)
masked = mpc.reconstruct([mpc.trunc_open(i, zs[i], masks[i][0]) for i in range(2)])
z = [mpc.trunc_finish(i, masked, masks[i][1], masks[i][2], 16) for i in range(2)]
mpc.decode(mpc.reconstruct(z)), x * y
# %% [markdown]
# ## Over workers, with every message traced
# `%%ppdl trace` records the messages of a cell: the notebook only tells each party
# which step to run; the openings go **party to party**, and the dealer talks only to
# the last party (the others derive their triple shares from seeds they share with it).
# %%
bob, charlie, dave = (ppdl_nb.VirtualWorker(n) for n in ("bob", "charlie", "dave"))
x_sh = ppdl_nb.share(x, bob, charlie, dealer=dave)
y_sh = ppdl_nb.share(y, bob, charlie, dealer=dave)
# %%
%%ppdl trace
z_sh = x_sh * y_sh
# %%
ppdl_trace.rounds()
# %%
z_sh.get()
# %% [markdown]
# ## Encrypted inference: a linear model on Boston Housing
# alice (a data owner) holds house features; bob (a model owner) holds a linear model.
# Neither shows the other their part: both secret-share among themselves, with dave as
# dealer, and compute `X @ w + b` on shares. bob allows alice to see results computed
# from his model, so only alice can open the predictions.
# %%
from mlxtend.data import boston_housing_data

features, prices = boston_housing_data()
features = torch.tensor(features, dtype=torch.float64)
prices = torch.tensor(prices, dtype=torch.float64)
mean, std = features.mean(0), features.std(0)
features = (features - mean) / std
# the model owner's model: least squares on the first 400 houses
design = torch.cat([features[:400], torch.ones(400, 1, dtype=torch.float64)], dim=1)
solution = torch.linalg.lstsq(design, prices[:400, None]).solution
weights, bias = solution[:-1], solution[-1]
new_houses = features[400:410]
# %%
alice = ppdl_nb.VirtualWorker("alice")
houses_at_alice = ppdl_nb.send(new_houses, alice, private=True)
weights_at_bob = ppdl_nb.send(weights, bob, private=True, allow=("alice",))
bias_at_bob = ppdl_nb.send(bias, bob, private=True, allow=("alice",))

X = ppdl_nb.share(houses_at_alice, alice, bob, dealer=dave)
w = ppdl_nb.share(weights_at_bob, alice, bob, dealer=dave)
b = ppdl_nb.share(bias_at_bob, alice, bob, dealer=dave)
predictions = X @ w + b
predictions
# %% [markdown]
# The notebook cannot open the predictions (nor could bob: only alice may):
# %%
try:
    predictions.get()
except PermissionError as err:
    print("notebook:", type(err).__name__)
# %% [markdown]
# alice opens them on her own worker and, as their owner, releases them to compare with
# the plaintext model:
# %%
at_alice = predictions.reveal_to(alice)
alice.owner.release(at_alice.id_at_location, to="me")
encrypted = at_alice.get().squeeze(1)
plain = (new_houses @ weights + bias).squeeze(1)
error = (encrypted - plain).abs().max().item()
print("encrypted predictions match the plaintext model to within 1e-3:", error < 1e-3)
plain[:5].round(decimals=1)
