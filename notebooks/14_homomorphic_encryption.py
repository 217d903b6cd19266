# %% [markdown]
# # 14 — Homomorphic encryption, next to secret sharing
#
# Two families of tools compute on data nobody may see:
#
# * **secret sharing** (SPDZ, tutorials 03-04): the data is split into shares held by
#   several parties; they compute together, exchanging messages each round, with a
#   dealer handing out Beaver triples. Cheap arithmetic, many rounds.
# * **homomorphic encryption** (HE): the data owner encrypts under its own key; another
#   party computes **alone** on the ciphertexts and sends back a ciphertext that only the
#   key's owner can decrypt. No rounds, but heavy arithmetic and large ciphertexts.
#
# Here the same model (a logistic regression on 8x8 digits) predicts privately both ways,
# and federated updates are summed with pairwise masks, with shares and under HE. We
# compare latency, bytes, accuracy, and who must trust whom. HE needs the `he` extra
# (TenSEAL), which `make` installs.
# %%
import time

import torch

import ppdl_nb
from ppdl_nb import datasets
from ppdl_nb.fl import FederatedDataset, fit_federated, public_split
from ppdl_nb.fl.he_aggregation import HE
from ppdl_nb.he.remote import make_keys, pin, private_predict
from ppdl_nb.viz import new_figure
from ppdl_nb.workers.transport.virtual import VirtualNetwork

torch.set_num_threads(1)
# %% [markdown]
# ## The model, trained in the clear
# The model owner trains `Linear(64, 10)` on 1,500 digits; 100 held-out digits belong to
# a data owner who wants predictions without showing them.
# %%
data = datasets.load_digits()
train, test = public_split(len(data.y), 297, seed=0)
x, y = data.x[train].float(), data.y[train]
x_new, y_new = data.x[test][:100].float(), data.y[test][:100]
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.5)
for _ in range(200):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
with torch.no_grad():
    plain_accuracy = float((model(x_new).argmax(1) == y_new).float().mean())
print(f"plaintext accuracy on the 100 new digits: {plain_accuracy:.2f}")
# %% [markdown]
# Four in-process workers: **alice** owns the digits, **bob** owns the model, **dave**
# deals Beaver triples for SPDZ. Every worker counts the bytes it receives.
# %%
net = VirtualNetwork()
alice, bob, dave = (ppdl_nb.VirtualWorker(n, network=net) for n in ("alice", "bob", "dave"))


def traffic(workers):
    """Bytes received so far by these workers and by the notebook from them."""
    return sum(int(w.info()["bytes_in"]) + w.bytes_received for w in workers)


digits_at_alice = ppdl_nb.send(x_new, alice, private=True)
rows = []
# %% [markdown]
# ## Private prediction with SPDZ
# alice and bob secret-share their inputs between themselves (dave deals); `X @ W + b`
# runs on shares; only alice may open the scores (bob allowed her to).
# %%
W_at_bob = ppdl_nb.send(model[0].weight.detach().T.contiguous(), bob, private=True,
                        allow=("alice",))
b_at_bob = ppdl_nb.send(model[0].bias.detach(), bob, private=True, allow=("alice",))
before, t0 = traffic([alice, bob, dave]), time.perf_counter()
X = ppdl_nb.share(digits_at_alice, alice, bob, dealer=dave)
W = ppdl_nb.share(W_at_bob, alice, bob, dealer=dave)
b = ppdl_nb.share(b_at_bob, alice, bob, dealer=dave)
scores = (X @ W + b).reveal_to(alice)
spdz_seconds = time.perf_counter() - t0
alice.owner.release(scores.id_at_location, to="me")  # alice shows the notebook her result
spdz_accuracy = float((scores.get().argmax(1) == y_new).float().mean())
rows.append({"what": "inference: SPDZ", "seconds": spdz_seconds,
             "bytes": traffic([alice, bob, dave]) - before, "accuracy": spdz_accuracy,
             "trust": "alice and bob do not collude; dave deals only randomness"})
print(f"SPDZ accuracy {spdz_accuracy:.2f} (plaintext {plain_accuracy:.2f})")
# %% [markdown]
# ## Private prediction with CKKS
# alice makes the keys and keeps the secret one (`make_keys` returns the fingerprint of
# the public context). bob fetches that public context **from alice himself** and checks
# the fingerprint (`pin`), so the notebook cannot slip in a key of its own. Then alice
# encrypts, bob computes on ciphertexts (one digit per slot: all 100 in one batch), and
# alice decrypts only the 10 logits per digit. bob never sees a decryption: with CKKS,
# approximate decryptions in the hands of a party holding the ciphertexts reveal the key.
# %%
fp = make_keys(alice, preset="small")
pin(bob, owner=alice, fingerprint=fp)
model_at_bob = ppdl_nb.send(model, bob, private=True)
before, t0 = traffic([alice, bob]), time.perf_counter()
run = private_predict(digits_at_alice, model_at_bob, fingerprint=fp, packing="batched",
                      allow=["me"])  # alice lets her notebook read her logits
ckks_seconds = time.perf_counter() - t0
logits = run.logits.get()
ckks_accuracy = float((logits.argmax(1) == y_new).float().mean())
rows.append({"what": "inference: CKKS", "seconds": ckks_seconds,
             "bytes": traffic([alice, bob]) - before, "accuracy": ckks_accuracy,
             "trust": "nobody for alice's data; bob: CKKS noise leaks little of the model"})
print(f"CKKS accuracy {ckks_accuracy:.2f}; packing {run.packing}; other slots zeroed: "
      f"{run.masked}")
# %% [markdown]
# The logits agree with the plaintext model to CKKS precision:
# %%
with torch.no_grad():
    print("largest logit error below 1e-2:", bool((logits - model(x_new)).abs().max() < 1e-2))
# %% [markdown]
# What crossed the wire, and what did bob's computation cost?
# %% [ignore-output]
print(f"alice -> bob, ciphertexts of 64 features x 100 digits: {run.bytes_sent:,} bytes")
print(f"bob -> alice, 10 logit ciphertexts: {run.bytes_received:,} bytes")
print(f"bob's time on ciphertexts: {sum(la['seconds'] for la in run.layers):.2f} s")
# %% [markdown]
# ## Federated updates summed with masks, shares and HE
# Three data workers train one FedAvg round; their updates are summed three ways:
#
# * `secagg`: pairwise masks that cancel in the sum (Bonawitz et al.; tutorial 09);
# * `secure`: additive shares among the workers;
# * `HE(key_holder=..., aggregator=...)`: each worker encrypts its update under the key
#   holder's BFV key; the aggregator adds the ciphertexts, which it cannot read; the key
#   holder decrypts only the sum (BFV is exact on the quantised integers).
# %%
clients = [ppdl_nb.VirtualWorker(n, network=net) for n in ("c1", "c2", "c3")]
aggregator = ppdl_nb.VirtualWorker("aggregator", network=net)
key_holder = ppdl_nb.VirtualWorker("keyholder", network=net)
fed = FederatedDataset.load("digits", clients, seed=0, test_rows=297)
everyone = [*clients, aggregator, key_holder]
trust = {"secagg": "fewer than the threshold of clients collude with the server",
         "secure": "the share holders (the workers) do not all collude",
         "he": "the aggregator and the key holder do not collude"}
for name, strategy in (("secagg", "secagg"), ("secure", "secure"),
                       ("he", HE(key_holder=key_holder, aggregator=aggregator))):
    torch.manual_seed(0)
    before = traffic(everyone)
    fl_run = fit_federated(torch.nn.Linear(64, 10), fed, rounds=1, lr=0.5, seed=0,
                           aggregation=strategy)
    rows.append({"what": f"FL sum: {name}", "seconds": fl_run.history["seconds"][0],
                 "bytes": traffic(everyone) - before,
                 "accuracy": fl_run.history.last["accuracy"], "trust": trust[name]})
print("the three rounds reach the same accuracy:",
      len({round(r["accuracy"], 3) for r in rows[2:]}) == 1)
# %% [markdown]
# ## Side by side
# %% [ignore-output]
print(f"{'':18} {'seconds':>8} {'bytes':>12} {'accuracy':>8}  who must trust whom")
for r in rows:
    print(f"{r['what']:18} {r['seconds']:8.2f} {r['bytes']:12,} {r['accuracy']:8.2f}  "
          f"{r['trust']}")
# %% [ignore-output]
fig = new_figure(figsize=(8, 3))
ax_time, ax_bytes = fig.subplots(1, 2)
labels = [r["what"] for r in rows]
colors = ["#4c72b0", "#dd8452", "#55a868", "#8172b3", "#c44e52"]
ax_time.barh(labels, [r["seconds"] for r in rows], color=colors)
ax_time.invert_yaxis()
ax_time.set_xlabel("seconds")
ax_bytes.barh(labels, [r["bytes"] for r in rows], color=colors)
ax_bytes.invert_yaxis()
ax_bytes.set_xscale("log")
ax_bytes.set_xlabel("bytes received (log)")
ax_bytes.set_yticklabels([])
fig
# %% [markdown]
# ## What to take away
# * **Accuracy**: all the same here. SPDZ's fixed point and CKKS's noise are far below
#   what changes an argmax; BFV sums are exact (up to the quantisation of updates).
# * **Bytes**: a CKKS ciphertext is hundreds of kilobytes whatever it holds, so HE moves
#   far more than SPDZ's shares for a small model; it pays back when many inputs share
#   one ciphertext (one per slot) and when rounds are expensive (HE needs none).
# * **Trust**: SPDZ needs parties that do not collude; HE needs only that the key owner
#   keeps its key, for the inputs. For the **model**, CKKS without circuit privacy can
#   leak something to the data owner (the noise of a decrypted result depends on the
#   weights), which is why the model owner zeroes every slot but the logits before
#   returning them. HE aggregation moves trust to two parties that must not collude.
# * For TenSEAL's MNIST CNN (one conv, square, dense, square, dense),
#   `benchmarks/bench_he.py` compares batched inference (one image per slot) and one
#   image per ciphertext with TenSEAL's own tutorial approach, in the same run.
