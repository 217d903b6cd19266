# %% [markdown]
# # 06 — PATE: a private student taught by a crowd of teachers
#
# **PATE** splits the private data into *disjoint* parts, one per **teacher**. Each person
# is in one part only, so they can change at most one teacher's vote. The teachers vote on
# public, unlabelled examples; a **noisy arg-max** of the votes labels them, and a
# **student** learns from those labels. Only the noisy labels are released.
# %%
import torch

from ppdl_nb.datasets import load_digits
from ppdl_nb.dp.pate import noisy_max, pate_epsilon, teacher_votes, train_teachers

_ = torch.manual_seed(0)
digits = load_digits()
private_x, private_y = digits.x[:1200], digits.y[:1200]   # the sensitive data
public_x, test_x, test_y = digits.x[1200:1500], digits.x[1500:], digits.y[1500:]
# %% [markdown]
# ## Teachers on disjoint partitions
# %%
def train(x, y, epochs=60):
    model = torch.nn.Linear(64, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


n_teachers = 20
parts = [(private_x[i::n_teachers], private_y[i::n_teachers]) for i in range(n_teachers)]
teachers = train_teachers(parts, train)
votes = teacher_votes(teachers, public_x, n_classes=10)
votes[:3]
# %% [markdown]
# ## Noisy arg-max, and what it costs
# More noise (a larger σ) means a smaller ε, and more wrong labels. The data-independent
# bound holds whatever the votes; the data-dependent one is much tighter when teachers
# agree, but it depends on the votes themselves (releasing it is not private as such).
# %%
for sigma in (2.0, 4.0, 20.0):
    independent = pate_epsilon(votes, sigma=sigma, delta=1e-5, data_dependent=False)
    dependent = pate_epsilon(votes, sigma=sigma, delta=1e-5, data_dependent=True)
    print(f"sigma {sigma:>4}: epsilon {independent:7.2f} (data-independent), "
          f"{dependent:6.2f} (data-dependent)")
# %% [markdown]
# ## The student learns only from noisy labels
# %% [ignore-output]
labels = noisy_max(votes, sigma=4.0)
student = train(public_x, labels, epochs=120)
agreement = (labels == votes.argmax(1)).float().mean().item()
accuracy = (student(test_x).argmax(1) == test_y).float().mean().item()
print(f"noisy labels agree with the plurality: {agreement:.2f}; student test accuracy "
      f"{accuracy:.2f}")
# %% [markdown]
# With only 1,200 private examples split 20 ways, a guarantee this weak (ε in the tens) is
# the honest price: PATE shines with thousands of teachers on large datasets, where the
# votes agree strongly and the data-dependent analysis gives single-digit ε.
# %%
accuracy > 0.6, agreement > 0.7
