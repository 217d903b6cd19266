# %% [markdown]
# # 01 — Pointers: tensors that live somewhere else
#
# In privacy-preserving deep learning the data stays with its **owner**. The notebook
# (you, the data scientist) holds **pointers**: small local handles that say *where* a
# tensor lives and *what shape* it has, but not what is in it.
#
# Here the owners are **virtual workers**: in-process stand-ins that speak exactly the
# same protocol as the kernel workers of tutorial 02 (every message goes through the same
# codec: msgpack headers plus raw tensor bytes, nothing executable).
# %%
import torch
import torch.nn.functional as F

import ppdl_nb
from ppdl_nb.course import check

%load_ext ppdl_nb
_ = torch.manual_seed(0)
# %%
alice = ppdl_nb.VirtualWorker("alice")
bob = ppdl_nb.VirtualWorker("bob")
alice, bob
# %% [markdown]
# ## Sending a tensor gives a pointer
# `ppdl_nb.send(tensor, worker)` stores the tensor on the worker and returns a
# `PointerTensor`. Its printed form is its **chain**: who holds the pointer (`me`, the
# notebook), where it points (`alice:<id>`), and the shape and dtype, known locally.
# %%
x = ppdl_nb.send(torch.tensor([1.0, 2.0, 3.0, 4.0]), alice)
x
# %%
x.shape, x.dtype
# %% [markdown]
# ## Computing remotely
# Torch functions and operators on pointers run **on the worker** and return new
# pointers. Nothing was patched inside torch: pointers take part through
# `__torch_function__`, and the worker runs only allowlisted operations.
# %%
y = x * 2 + 1
z = F.relu(y - 6)
z
# %%
w = ppdl_nb.send(torch.arange(8.0).reshape(4, 2), alice)
(x @ w).get()
# %% [markdown]
# `.get()` brings the value back (and removes it from the worker):
# %%
z.get()
# %% [markdown]
# ## Moving data between workers
# `ptr.move(bob)` sends the tensor from alice **directly** to bob; the notebook only
# learns the new location.
# %%
v = ppdl_nb.send(torch.ones(3), alice)
v.move(bob)
v
# %% [markdown]
# Operations need their inputs in one place; mixing workers is an error that says what
# to do:
# %%
try:
    x[:3] + v
except ppdl_nb.WorkerMismatchError as err:
    print(err)
# %% [markdown]
# ## Chains: pointers to pointers
# Sending a *pointer* on gives a chain: the notebook points to alice, who points to bob.
# Operations travel down the chain, and `.get()` unwinds one level.
# %%
chain = v.send(alice)
chain
# %%
%ppdl chain chain
# %%
doubled = chain + chain
inner = doubled.get()  # one level up: now a pointer from me to bob
inner
# %%
inner.get()
# %% [markdown]
# ## Private data stays private
# A data owner can store tensors as **private**. `.get()` is refused, and so is
# anything computed from them: privacy is contagious. Only the owner can release a
# result (later tutorials show the safe ways: secret sharing and differential privacy).
# %%
salaries = ppdl_nb.send(torch.tensor([52_000.0, 61_000.0, 58_500.0]), alice, private=True)
attempts = {
    "salaries.get()": lambda: salaries.get(),
    "(salaries * 1).get()": lambda: (salaries * 1).get(),
    "salaries.mean().move(bob)": lambda: salaries.mean().move(bob),
}
for what, attempt in attempts.items():
    try:
        attempt()
    except PermissionError as err:
        print(what, "->", type(err).__name__)
# %%
try:
    salaries.mean().get()
except PermissionError as err:
    print(err)
# %% [markdown]
# The owner (code running on alice; for a virtual worker, `alice.owner`) may release one
# result to the notebook:
# %%
mean = salaries.mean()
alice.owner.release(mean.id_at_location, to="me")
mean.get()
# %% [markdown]
# ## Models travel as architecture + weights
# A model is described as a graph of allowlisted layers and operations plus its weights,
# and rebuilt on the worker. No pickles: a payload naming anything outside the allowlist
# is refused.
# %%
model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
model_ptr = ppdl_nb.send(model, alice)
data = ppdl_nb.send(torch.randn(5, 4), alice)
prediction = model_ptr(data)
prediction
# %%
back = model_ptr.get()
type(back).__name__, torch.equal(back[0].weight, model[0].weight)
# %% [markdown]
# `model_ptr.get()` *returns* the model as a new module (the worker's copy is gone): keep
# what it returns, `model = model_ptr.get()`; the `model` you sent is not updated in place.
#
# ## Gradients stay where the data is
# `backward()` on a remote result runs on the worker, and the gradients stay there:
# `w_ptr.grad` is a pointer. (Coming from PySyft 0.2: `w_ptr.get().grad` is `None`,
# because `.get()` brings the tensor back without its remote gradient; fetch the
# gradient itself.)
# %%
w_ptr = ppdl_nb.send(torch.tensor([1.0, -2.0, 3.0], requires_grad=True), alice)
(w_ptr * w_ptr).sum().backward()
w_ptr.grad
# %%
w_ptr.grad.get()
# %% [markdown]
# **Exercise.** `v_ptr` points to `[3.0, 4.0]` on alice. Compute the gradient of
# `(v_ptr ** 2).sum()` on alice and fetch it into `answer` (two lines: a backward, then a
# fetch).
# %%
v_ptr = ppdl_nb.send(torch.tensor([3.0, 4.0], requires_grad=True), alice)
# %% [exercise]
answer = ...  # ✎ your lines here
# solution: (v_ptr ** 2).sum().backward()
# solution: answer = v_ptr.grad.get()
# %%
check("the gradient of sum(v ** 2), fetched from alice", answer,
      expected=torch.tensor([6.0, 8.0]),
      hint="call .backward() on the remote sum, then fetch v_ptr.grad (not v_ptr.get().grad)")
# %% [markdown]
# To train a remote model step by step, an optimizer for its parameters runs the update
# on the worker too: `ppdl_nb.tensors.optim.SGD` and `Adam` do torch.optim's arithmetic
# with pointer ops and keep their state (Adam's moments) on the worker.
# %%
from ppdl_nb.tensors.optim import Adam

model_ptr = ppdl_nb.send(model, alice)
target = ppdl_nb.send(torch.randn(5, 1), alice)
opt = Adam(model_ptr.parameters(), lr=0.05)
for step in range(30):
    opt.zero_grad()
    loss = F.mse_loss(model_ptr(data), target)
    loss.backward()
    opt.step()
    if step % 10 == 0:
        print(f"step {step}: loss {loss.get().item():.3f}")
print(opt)
# %% [markdown]
# ## Nothing leaks
# When the last pointer to a remote object is garbage-collected, the worker frees it
# (deletes ride along with the next message).
# %%
import gc

before = alice.info()["objects"]
for _ in range(1000):
    tmp = x + 1
del tmp
gc.collect()
alice.flush()
before, alice.info()["objects"]
# %%
%ppdl workers --text
