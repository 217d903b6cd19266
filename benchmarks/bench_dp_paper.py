"""The PySyft paper's DP table, reproduced: Boston housing MSE and Pima diabetes accuracy.

    python benchmarks/bench_dp_paper.py [--data-dir DIR] [--splits 50] [--json PATH] [--quick]

Ryffel et al. (2018), "A generic framework for privacy preserving deep learning",
report test error with and without differential privacy at (epsilon, delta) =
(0.5, 1e-5) and the DP / non-DP training-time ratio (15.3 s vs 10.1 s on Boston).

Protocol (fixed before looking at results):
* the CSVs are read from ``--data-dir`` (default ``../shared/data`` relative to the
  repository root); nothing is bundled with the package;
* ``--splits`` (>= 50) random 80/20 splits drawn from the pre-declared seeds
  ``SPLIT_SEED_BASE + k``; DP and non-DP models are trained on the *same* split and
  paired; a split's DP figure is the mean of ``--draws`` runs with fresh noise (one
  run's noise moves the median over 50 splits by several MSE points); each figure is
  the median over splits with a 95% interval (the 2.5th and 97.5th percentiles over
  splits) and a bootstrap 95% CI of the median;
* features are scaled to [-1, 1] with PUBLIC bounds taken from the datasets'
  documentation (``BOSTON_BOUNDS``, ``PIMA_BOUNDS``: units and physical ranges),
  never from the data, so scaling costs no privacy budget;
* mechanism (``ppdl_nb.dp.glm.fit_glm``): linear regression (Boston) and logistic
  regression (Pima) fitted in three Gaussian releases composed by the PLD accountant
  into exactly (0.5, 1e-5): a DP centre of the publicly scaled features (10% of the
  budget for Boston, 5% for Pima), a DP spread per feature (20%), and full-batch
  noisy gradient descent with per-sample clipping (closed form for GLMs), ridge and
  tail averaging (the rest). The
  non-DP model is the same pipeline without noise or clipping (exact centre and
  spread), so the pair differs only by privacy;
* hyperparameters (``HYPER``) are fixed on PUBLIC proxies of similar size, never on
  these datasets: ``benchmarks/dp_glm_proxies.py`` (scikit-learn's diabetes and
  mlxtend's auto-mpg for regression; diabetes > 140, mpg > 23 and breast cancer for
  classification; documentation-style bounds; epsilon 0.5; 100 splits) scores each
  candidate and names the pick (``CHOSEN``), which this script imports. (Earlier
  versions of this benchmark were run on the targets with other settings and another
  mechanism; the DP issue's closing notes list those runs.)

Timing: each fit is timed alone (median over splits); the ratio is DP / non-DP on
the same split. The noise calibration (a bisection over sigma that depends only on
public epsilon, delta and step count) is done once before timing.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402
from dp_glm_proxies import CANDIDATES, CHOSEN, score, split  # noqa: E402

from ppdl_nb.datasets import load_csv  # noqa: E402
from ppdl_nb.dp.glm import fit_glm  # noqa: E402

EPSILON, DELTA = 0.5, 1e-5
SPLIT_SEED_BASE = 20_181_204
# fit_glm settings per task, chosen on public proxies by dp_glm_proxies.py (see there).
HYPER = {task: CANDIDATES[task][name] for task, name in CHOSEN.items()}

# Public bounds from the datasets' documentation (units, physical ranges), per column.
BOSTON_BOUNDS = {  # Harrison & Rubinfeld (1978), StatLib description
    "crim": (0, 100), "zn": (0, 100), "indus": (0, 100), "chas": (0, 1), "nox": (0, 1),
    "rm": (3, 9), "age": (0, 100), "dis": (0, 15), "rad": (1, 24), "tax": (0, 800),
    "ptratio": (10, 25), "b": (0, 400), "lstat": (0, 40),
}
BOSTON_TARGET_BOUNDS = (0.0, 50.0)  # medv is censored at 50 ($1000s)
PIMA_BOUNDS = {  # UCI description: counts, mg/dL, mm Hg, mm, mu U/ml, kg/m^2, years
    "NumTimesPrg": (0, 20), "PlGlcConc": (0, 200), "BloodP": (0, 130), "SkinThick": (0, 100),
    "TwoHourSerIns": (0, 900), "BMI": (0, 70), "DiPedFunc": (0, 2.5), "Age": (20, 90),
}


def _bounds(names: tuple[str, ...], table: dict[str, tuple[float, float]]):
    lo = torch.tensor([float(table[n][0]) for n in names])
    hi = torch.tensor([float(table[n][1]) for n in names])
    return lo, hi


def _summary(values: list[float], boot_seed: int = 0) -> dict[str, float]:
    v = torch.tensor(values, dtype=torch.float64)
    g = torch.Generator().manual_seed(boot_seed)
    idx = torch.randint(0, len(v), (2000, len(v)), generator=g)
    meds = v[idx].median(1).values
    return {
        "median": float(v.median()),
        "p2.5": float(torch.quantile(v, 0.025)),
        "p97.5": float(torch.quantile(v, 0.975)),
        "ci_lo": float(torch.quantile(meds, 0.025)),
        "ci_hi": float(torch.quantile(meds, 0.975)),
    }


def _evaluate(task: str, x, y, bounds, y_bounds, splits: int, draws: int
              ) -> dict[str, dict[str, float]]:
    def fit(xtr, ytr, eps):
        return fit_glm(xtr, ytr, task=task, x_bounds=bounds, y_bounds=y_bounds, epsilon=eps,
                       delta=DELTA, **HYPER[task])

    fit(x[:10], y[:10], EPSILON)  # calibrate sigma once (public) and warm up
    dp_scores, plain_scores, ratios, dp_times, plain_times = [], [], [], [], []
    for k in range(splits):
        tr, te = split(len(x), k, SPLIT_SEED_BASE)
        t0 = time.perf_counter()
        plain = fit(x[tr], y[tr], None)
        plain_time = time.perf_counter() - t0
        plain_scores.append(score(task, plain, x[te], y[te]))
        scores, times = [], []
        for _ in range(draws):  # the DP noise varies: average it out of the split's figure
            t0 = time.perf_counter()
            dp = fit(x[tr], y[tr], EPSILON)
            times.append(time.perf_counter() - t0)
            scores.append(score(task, dp, x[te], y[te]))
        dp_scores.append(statistics.fmean(scores))
        plain_times.append(plain_time)
        dp_times.append(statistics.median(times))
        ratios.append(dp_times[-1] / plain_time)
    return {
        "dp": _summary(dp_scores),
        "no_dp": _summary(plain_scores),
        "time_ratio": _summary(ratios),
        "dp_time_ms": {"median": 1e3 * statistics.median(dp_times)},
        "no_dp_time_ms": {"median": 1e3 * statistics.median(plain_times)},
    }


def main() -> None:
    p = parser(__doc__)
    root = Path(__file__).resolve().parents[1]
    p.add_argument("--data-dir", default=str(root.parent / "shared" / "data"),
                   help="folder with boston-housing.csv and pima-indians-diabetes.csv")
    p.add_argument("--splits", type=int, default=50, help="number of 80/20 splits (>= 50)")
    p.add_argument("--draws", type=int, default=5,
                   help="DP runs per split (fresh noise each); the split's figure is their mean")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    splits = 3 if args.quick else args.splits
    draws = 1 if args.quick else args.draws
    if not args.quick and splits < 50:
        p.error("--splits must be at least 50 (the protocol); use --quick for a smoke test")
    data = Path(args.data_dir)
    try:
        boston = load_csv(data / "boston-housing.csv", target="medv")
        pima = load_csv(data / "pima-indians-diabetes.csv", target="target")
    except FileNotFoundError as e:
        if not args.quick:
            p.error(f"{e} (point --data-dir at the folder holding both CSVs)")
        report("PySyft paper table: skipped, the data sets are not here", [{"skipped": str(e)}],
               args, {"skipped": str(e)})
        return
    results = {
        "boston_mse": _evaluate("regression", boston.x, boston.y,
                                _bounds(boston.feature_names, BOSTON_BOUNDS),
                                BOSTON_TARGET_BOUNDS, splits, draws),
        "pima_accuracy": _evaluate("logistic", pima.x, pima.y,
                                   _bounds(pima.feature_names, PIMA_BOUNDS), (0.0, 1.0), splits,
                                   draws),
    }
    rows = []
    for name, res in results.items():
        for what in ("dp", "no_dp", "time_ratio"):
            s = res[what]
            rows.append({
                "dataset": name, "what": f"eps={EPSILON}" if what == "dp" else what,
                "median": s["median"], "95% over splits": f"[{s['p2.5']:.4g}, {s['p97.5']:.4g}]",
                "95% CI of median": f"[{s['ci_lo']:.4g}, {s['ci_hi']:.4g}]",
            })
        rows.append({"dataset": name, "what": "fit ms (dp / no_dp)",
                     "median": f"{res['dp_time_ms']['median']:.3g} / "
                               f"{res['no_dp_time_ms']['median']:.3g}"})
    report(
        f"PySyft paper table at (epsilon, delta) = ({EPSILON}, {DELTA}), {splits} paired 80/20 "
        f"splits, {draws} DP runs each (goals: Boston MSE <= 29, Pima accuracy >= 0.76, "
        "time ratio <= 1.5)",
        rows, args,
        {"results": results, "splits": splits, "draws": draws, "hyper": HYPER,
         "epsilon": EPSILON,
         "delta": DELTA, "split_seed_base": SPLIT_SEED_BASE},
    )


if __name__ == "__main__":
    main()
