"""How the DP GLM's settings for the paper table were chosen: on PUBLIC proxy data sets.

    python benchmarks/dp_glm_proxies.py [--splits 100] [--only NAME,...] [--json PATH]

The paper benchmark (``bench_dp_paper.py``) may not tune on Boston or Pima: every
hyperparameter must be fixed on public data. This script is that search, kept so it
can be rerun. Proxies of similar size, each with bounds written the way the
benchmark writes Boston's and Pima's (units and physical ranges from the
documentation, never the data's min/max):

* regression: scikit-learn's diabetes (442 x 10, raw units) and mlxtend's auto-mpg
  (392 x 7);
* classification: diabetes target > 140, mpg > 23, and scikit-learn's breast
  cancer (569 x 30).

For each candidate setting (``CANDIDATES``) and proxy it reports, over ``--splits``
random 80/20 splits at (0.5, 1e-5), the mean of DP MSE / reference MSE on the same split
(regression) or of the reference minus DP accuracy in points (classification); the
reference is one fixed non-private fit per task, the same for every candidate. The DP
noise is fixed per split through the test hook ``fixed_seed`` so that candidates meet
the same draws (a tuning aid on public data; never for a release). The setting with
the smallest mean over the proxies of its task is the one the paper
benchmark uses.
"""

from __future__ import annotations

import functools
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

from ppdl_nb.dp.glm import fit_glm  # noqa: E402
from ppdl_nb.dp.noise import fixed_seed  # noqa: E402

EPSILON, DELTA = 0.5, 1e-5
SEED_BASE = 7_000

# Documentation-style bounds (units, physical ranges).
DIABETES_BOUNDS = ([0, 1, 10, 40, 50, 20, 10, 1, 2, 40],
                   [100, 2, 60, 160, 400, 300, 120, 12, 8, 200])
MPG_BOUNDS = ([0, 0, 0, 1000, 5, 70, 1], [12, 500, 250, 6000, 30, 82, 3])


def _proxies() -> dict[str, tuple[str, torch.Tensor, torch.Tensor, tuple, tuple]]:
    from mlxtend.data import autompg_data
    from sklearn.datasets import load_breast_cancer, load_diabetes

    dia = load_diabetes(scaled=False)
    dx, dy = torch.tensor(dia.data), torch.tensor(dia.target)
    mx, my = autompg_data()
    mx, my = torch.tensor(mx[:, :7].astype(float)), torch.tensor(my.astype(float))
    keep = ~torch.isnan(mx).any(1)
    mx, my = mx[keep], my[keep]
    bc = load_breast_cancer()
    bx = torch.tensor(bc.data)
    # breast cancer: documentation gives units, not ranges; 0 to 3x the typical scale
    # of each unit is what such a write-up gives (radius in mm, area in mm^2, ...).
    typical = torch.tensor([15, 20, 100, 700, 0.1, 0.1, 0.1, 0.05, 0.2, 0.06,
                            0.5, 1.2, 3, 40, 0.007, 0.03, 0.03, 0.01, 0.02, 0.004,
                            16, 25, 110, 900, 0.13, 0.25, 0.3, 0.1, 0.3, 0.08],
                           dtype=torch.float64)
    return {
        "diabetes": ("regression", dx, dy, DIABETES_BOUNDS, (0.0, 400.0)),
        "auto-mpg": ("regression", mx, my, MPG_BOUNDS, (0.0, 50.0)),
        "diabetes>140": ("logistic", dx, (dy > 140).double(), DIABETES_BOUNDS, (0.0, 1.0)),
        "mpg>23": ("logistic", mx, (my > 23).double(), MPG_BOUNDS, (0.0, 1.0)),
        "breast-cancer": ("logistic", bx, torch.tensor(bc.target, dtype=torch.float64),
                          (torch.zeros(30, dtype=torch.float64), 3 * typical), (0.0, 1.0)),
    }


_COMMON = {"steps": 2000, "scale": 0.2, "center_clip": 0.5, "scale_clip": 0.3, "z_clip": 3.0,
           "accountant": "pld"}
_V1_REG = {**_COMMON, "center": 0.1, "max_grad_norm": 0.03, "l2": 0.01, "average": 0.9}
_V1_LOG = {**_COMMON, "center": 0.05, "max_grad_norm": 0.5, "l2": 0.003, "average": 0.75}
# v1: the first search's pick; the others: the second search (100 splits; smaller
# clipping norms put every sample in the clipped, sign-like regime, which costs the
# least accuracy per unit of noise).
CANDIDATES: dict[str, dict[str, dict]] = {
    "regression": {
        "v1": _V1_REG,
        "v2": {**_V1_REG, "z_clip": 2.0},
        "v2-clip0.01": {**_V1_REG, "z_clip": 2.0, "max_grad_norm": 0.01},
        "v2-l2=0.03": {**_V1_REG, "z_clip": 2.0, "l2": 0.03},
    },
    "logistic": {
        "v1": _V1_LOG,
        "clip0.1": {**_V1_LOG, "max_grad_norm": 0.1},
        "v2": {**_V1_LOG, "max_grad_norm": 0.1, "z_clip": 2.0},
        "v2-clip0.25": {**_V1_LOG, "max_grad_norm": 0.25, "z_clip": 2.0},
        "v2-4000steps": {**_V1_LOG, "max_grad_norm": 0.1, "z_clip": 2.0, "steps": 4000},
    },
}
# The pick of the last full run (``python benchmarks/dp_glm_proxies.py``, 100 splits):
# regression v2 1.138 (v1 1.192), logistic v2 2.12 points (v1 3.47).
CHOSEN = {"regression": "v2", "logistic": "v2"}


def split(n: int, k: int, seed_base: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k``-th pre-declared random 80/20 split of ``n`` rows: (train, test) indices."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed_base + k))
    cut = int(round(0.8 * n))
    return perm[:cut], perm[cut:]


def score(task: str, model, x, y) -> float:
    """Test MSE (regression) or accuracy at threshold 0.5 (logistic)."""
    pred = model.predict(x).double()
    if task == "regression":
        return float(((pred - y) ** 2).mean())
    return float(((pred > 0.5).double() == y).double().mean())


def evaluate(proxy, settings: dict, splits: int) -> float:
    """Mean over splits of DP MSE / reference MSE, or of the accuracy points lost.

    The reference is the same for every candidate: the non-private fit with the
    first setting of the task (``v1``), so a candidate that changes the pipeline itself
    (say, drops features) is judged by its DP result, not against its own baseline.
    """
    task, x, y, bounds, y_bounds = proxy
    lo, hi = (torch.as_tensor(b, dtype=torch.float64) for b in bounds)
    out = []
    for k in range(splits):
        tr, te = split(len(x), k, SEED_BASE)
        fit = functools.partial(fit_glm, x[tr], y[tr], task=task, x_bounds=(lo, hi),
                                y_bounds=y_bounds, delta=DELTA)
        with fixed_seed(SEED_BASE + 1000 * k):  # the same noise for every candidate
            dp = score(task, fit(epsilon=EPSILON, **settings), x[te], y[te])
        ref = score(task, fit(epsilon=None, **CANDIDATES[task]["v1"]), x[te], y[te])
        out.append(dp / ref if task == "regression" else 100 * (ref - dp))
    return statistics.fmean(out)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--splits", type=int, default=100)
    p.add_argument("--only", default="", help="comma-separated candidate names")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    splits = 2 if args.quick else args.splits
    only = {s for s in args.only.split(",") if s}
    proxies = _proxies()
    rows, best = [], {}
    for task, cands in CANDIDATES.items():
        for cname, settings in cands.items():
            if only and cname not in only:
                continue
            scores = {n: evaluate(pr, settings, splits)
                      for n, pr in proxies.items() if pr[0] == task}
            mean = statistics.fmean(scores.values())
            rows.append({"task": task, "setting": cname, **{k: round(v, 3)
                         for k, v in scores.items()}, "mean": round(mean, 3)})
            if task not in best or mean < best[task][1]:
                best[task] = (cname, mean)
    report(f"DP GLM settings on public proxies, epsilon {EPSILON}, {splits} splits "
           "(regression: DP MSE / reference; logistic: accuracy points lost)", rows, args,
           {"rows": rows, "best": best})


if __name__ == "__main__":
    main()
