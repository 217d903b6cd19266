# %% [markdown]
# # 07 — Why DP matters: a membership-inference audit
#
# Does a model reveal **who was in its training set**? A membership-inference attack
# guesses from the model's behaviour: models fit their training examples better, so a
# low loss hints "member". We measure the attack's **AUC** (0.5 = guessing) and its
# true-positive rate at a 1% false-positive rate, on a model trained normally and on
# DP-SGD models with decreasing ε.
# %%
import torch

from ppdl_nb.course import check
from ppdl_nb.datasets import load_digits
from ppdl_nb.dp.audit import loss_threshold_attack
from ppdl_nb.dp.fit import fit_private
from ppdl_nb.training import evaluate
from ppdl_nb.viz.dp_plots import plot_roc

torch.set_default_dtype(torch.float64)  # the same numbers on every CPU (float32 rounds per CPU)
_ = torch.manual_seed(0)
data = load_digits()
x, y = data.x.double(), data.y
members, non_members = (x[:200], y[:200]), (x[200:400], y[200:400])
# %% [markdown]
# A model with many parameters for few examples, trained long without privacy, memorises:
# %%
def make_model():
    return torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(),
                               torch.nn.Linear(512, 10))


plain = make_model()
opt = torch.optim.Adam(plain.parameters(), lr=1e-2)
for _ in range(500):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(plain(members[0]), members[1]).backward()
    opt.step()
attack = loss_threshold_attack(plain, members, non_members)
print("no DP:", attack)
# %% [markdown]
# **Exercise.** Why does the attack work? Measure the plain model's *generalisation gap*:
# its accuracy on the members (which it trained on) minus its accuracy on the
# non-members, a number between 0 and 1, into `answer`.
# %% [exercise]
answer = ...  # ✎ your lines here
# solution: def accuracy(model, data):
# solution:     return (model(data[0]).argmax(1) == data[1]).float().mean().item()
# solution: answer = accuracy(plain, members) - accuracy(plain, non_members)
# %%
gap = (evaluate(plain, *members, "cross_entropy")["accuracy"]
       - evaluate(plain, *non_members, "cross_entropy")["accuracy"])
check("the plain model's generalisation gap", answer, test=lambda a: abs(a - gap) < 1e-3,
      hint="accuracy = (model(x).argmax(1) == y).float().mean(), on each set")
# %% [markdown]
# The same model with DP-SGD at decreasing ε: the attack's advantage shrinks.
# %% [ignore-output]
test_set = (x[400:], y[400:])  # neither members nor non-members: the models' accuracy
attacks = {"no DP": attack}
accuracy = {"no DP": evaluate(plain, *test_set, "cross_entropy")["accuracy"]}
for eps in (8.0, 1.0):
    run = fit_private(make_model(), *members, epsilon=eps, delta=1e-5, max_grad_norm=1.0,
                      epochs=30, batch_size=64, lr=0.1)
    attacks[f"epsilon {eps:g}"] = loss_threshold_attack(run.model, members, non_members)
    accuracy[f"epsilon {eps:g}"] = evaluate(run.model, *test_set, "cross_entropy")["accuracy"]
    print(f"epsilon {eps:g}:", attacks[f"epsilon {eps:g}"])
results = {name: a.auc for name, a in attacks.items()}
# %% [markdown]
# Each model's attack as a ROC curve (every threshold the attacker could pick), with the
# model's accuracy on data it never saw: the diagonal is guessing. Privacy costs some
# accuracy here (few examples, a large model) and brings the curve down to the diagonal.
# %% [ignore-output]
plot_roc(attacks, accuracy=accuracy)
# %%
results["no DP"] > results["epsilon 1"]
