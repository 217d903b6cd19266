# %% [markdown]
# # 03 — Secret sharing: computing on numbers nobody can see
#
# **Additive secret sharing** splits a secret `x` into random *shares*
# `x = s_1 + s_2 + ... + s_n`. Each share alone is a uniformly random number: it says
# nothing about `x`. Yet parties can add shared numbers by adding their shares locally.
#
# We first do it by hand in plain torch, then with `ppdl_nb`.
# %%
import torch

import ppdl_nb
from ppdl_nb import mpc

%load_ext ppdl_nb
# %% [markdown]
# ## By hand: shares in the ring of 64-bit integers
# We compute modulo 2^64 — that is exactly what `int64` arithmetic does when it wraps
# around. Random shares come from a **cryptographic** generator (AES in counter mode),
# never from `torch.manual_seed`-style generators, whose future output can be predicted.
# %%
secret = torch.tensor([42])
rng = mpc.PRG()
share_1 = rng.int64((1,))          # uniformly random over all 2^64 values
share_2 = secret - share_1         # wraps around: still exact modulo 2^64
share_1 + share_2
# %% [markdown]
# Each share on its own is a huge random number; only their sum means anything:
# %%
int(share_1.abs().item()) > 1000, int(share_2.abs().item()) > 1000
# %% [markdown]
# Adding two shared secrets = each party adds its own shares. No communication at all:
# %%
other = torch.tensor([100])
o1 = rng.int64((1,))
o2 = other - o1
(share_1 + o1) + (share_2 + o2)
# %% [markdown]
# ## Fixed precision: real numbers as integers
# Shares live in the integers, so reals are **encoded**: multiply by 2^16 and round.
# Decoding is exact, negative numbers included.
# %%
x = torch.tensor([3.14159, -2.5, 0.0001])
encoded = mpc.encode(x)        # int64, 16 fractional bits
encoded, mpc.decode(encoded)
# %% [markdown]
# Numbers too large for the encoding are refused with an explanation:
# %%
try:
    mpc.encode(torch.tensor([1e15]))
except ValueError as err:
    print(err)
# %% [markdown]
# ## With the library
# `ppdl_nb.share(x, bob, charlie, dealer=dave)` encodes `x` and gives one share to each
# party. The result is a **chain**: a fixed-precision tensor, wrapping a shared tensor,
# wrapping one pointer per share. The *dealer* (crypto provider) holds no share: it will
# only supply the randomness multiplication needs (tutorial 04).
# %%
bob, charlie, dave = (ppdl_nb.VirtualWorker(n) for n in ("bob", "charlie", "dave"))
x_shared = ppdl_nb.share(torch.tensor([1.5, -2.0, 10.0]), bob, charlie, dealer=dave)
x_shared
# %%
%ppdl chain x_shared
# %% [markdown]
# Linear operations run locally on each party; the result is exact:
# %%
y_shared = ppdl_nb.share(torch.tensor([0.5, 0.5, 0.5]), bob, charlie, dealer=dave)
((x_shared + y_shared) * 2 - 1).get()
# %% [markdown]
# ## What a share looks like
# Each party's share is spread uniformly over the whole ring, whatever the secret —
# and one share plotted against the secret shows no relation at all.
# %%
torch.manual_seed(0)
values = torch.randn(2000) * 5
values_shared = ppdl_nb.share(values, bob, charlie, dealer=dave)
%ppdl shares values_shared --secret values
# %% [markdown]
# ## Private data, shared by its owner
# When the data is **private** to alice, she shares it herself: the shares go from alice
# straight to bob and charlie, and the notebook never sees the data nor any share.
# Whatever is computed from it can be opened only by alice.
# %%
alice = ppdl_nb.VirtualWorker("alice")
salaries = ppdl_nb.send(torch.tensor([52_000.0, 61_000.0, 58_500.0]), alice, private=True)
salaries_shared = ppdl_nb.share(salaries, bob, charlie, dealer=dave)
total = salaries_shared.sum()
try:
    total.get()
except PermissionError as err:
    print("refused:", type(err).__name__)
# %% [markdown]
# alice can have the result opened on her own worker (each share moves to her), and then
# decide to release it:
# %%
total_at_alice = total.reveal_to(alice)
alice.owner.release(total_at_alice.id_at_location, to="me")
total_at_alice.get()
