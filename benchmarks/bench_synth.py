"""DP synthetic data: DataLens vs DP-MERF vs a DP-SGD GAN vs a DP-SGD classifier, and leakage.

    python benchmarks/bench_synth.py [--json PATH] [--quick] [--seeds 3] [--epsilons 1 10]
                                     [--grids DIR] [--no-digits] [--no-tabular]
                                     [--tabular-only] [--no-anonymeter]
                                     [--methods datalens merf gan gan-nonprivate dpsgd real]

Protocol (fixed before the runs):
* utility data: ``ppdl_nb.datasets.load_mnist_5k`` shuffled by ``torch.Generator`` seed 0,
  the first 4,000 digits are the private training set, the last 1,000 the real test set;
  and scikit-learn's 8x8 digits (1,400 train / 397 test, same shuffle rule);
* each generator is trained on the training digits at (epsilon, delta = 1e-5), releases
  4,000 labelled samples, and an MLP (``ppdl_nb.synth.models.fit_classifier``, 10 epochs)
  trained on those samples only is scored on the real test digits;
* the direct DP-SGD classifier (the yardstick) trains the same MLP on the real digits with
  ``make_private`` at the same (epsilon, delta); the ceilings are the same conditional GAN
  without privacy and the MLP trained on the real digits;
* figures: median test accuracy over ``--seeds`` seeds with min-max, median wall time per
  run on this machine (torch threads 1), the epsilon each run's own ledger reports, and a
  membership-inference AUC (distance to the closest synthetic record, 1,000 training
  digits vs the 1,000 test digits) for each MNIST release of the first seed;
* hyperparameters (``DATALENS``, ``MERF``, ``GAN``, ``DPSGD``) were set on the training
  digits (a handful of settings, at epsilon infinity or 10), never on the test digits
  (DataLens's on a split of the MNIST training digits: generators on the first 3,000,
  scored on the last 1,000); the kernel lengthscale of DP-MERF is fixed, not read off the
  private data;
* leakage (tables): Pima Indians Diabetes from ``../shared/data`` (breast cancer when the
  file is absent), half train / half control; tabular DP-MERF at epsilon 1 and 10 and
  without noise, a non-private GAN, and a copy of the training rows, each attacked by
  membership inference, singling out, linkability and attribute inference (the label),
  each with a 95% interval; the same three risks also by anonymeter itself (1.1.0, in the
  side venv ``.venv-anonymeter``, via ``benchmarks/anonymeter_risks.py``) on the same
  tables with the same attack sizes (``ATTACKS``), side by side. Without that venv the
  anonymeter columns are skipped and the command to make it is printed:
  ``python3.11 -m venv .venv-anonymeter && .venv-anonymeter/bin/pip install anonymeter==1.1.0``.

``--quick`` (a smoke test, ~20 s; its figures mean nothing): one seed, epsilon 10, 600
MNIST training digits, a few dozen steps per method, 1,000 released samples, a shorter
classifier and bootstrap, breast cancer for leakage.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

from ppdl_nb.datasets import load_breast_cancer, load_csv, load_digits, load_mnist_5k  # noqa: E402
from ppdl_nb.dp import make_private, noise_multiplier_for  # noqa: E402
from ppdl_nb.synth.anonymeter_io import MAKE_VENV, run_anonymeter, side_python  # noqa: E402
from ppdl_nb.synth.datalens import train_datalens  # noqa: E402
from ppdl_nb.synth.dpgan import train_gan  # noqa: E402
from ppdl_nb.synth.leakage import (  # noqa: E402
    dcr_membership,
    inference_risk,
    linkability_risk,
    singling_out_risk,
)
from ppdl_nb.synth.merf import train_dp_merf  # noqa: E402
from ppdl_nb.synth.models import accuracy, fit_classifier, mlp_classifier  # noqa: E402
from ppdl_nb.synth.tabular import fit_tabular_merf, scale_columns  # noqa: E402

DELTA, RELEASE, CLF_EPOCHS = 1e-5, 4000, 10
# DataLens: votes on 16 DCT coefficients per sample (basis), one kept per sample,
# closed-form centroid teachers of 10 records each (teachers = n // 10); see docs/SYNTH.md.
DATALENS = {"records_per_teacher": 10, "steps": 500, "batch_size": 16, "k_per_sample": 1,
            "threshold_sigmas": 1.0, "lr": 2e-3, "basis": 16, "teacher": "centroid"}
MERF = {"features": 2000, "steps": 1000, "lengthscale_per_sqrt_dim": 0.35}
GAN = {"steps": 2000, "batch_size": 64, "max_grad_norm": 1.0, "lr": 2e-4}
DPSGD = {"epochs": 15, "batches": 32, "max_grad_norm": 1.0, "lr": 0.5}
QUICK = {"datalens_steps": 10, "datalens_teachers": 50, "merf_steps": 40, "merf_features": 500,
         "gan_steps": 20, "gan_batch": 32, "dpsgd_epochs": 1, "release": 1000, "clf_epochs": 4,
         "bootstrap": 20, "tab_steps": 50, "tab_gan_steps": 20}
METHODS = {"DataLens": "datalens", "DP-MERF": "merf", "DP-SGD GAN": "gan"}
ALL_METHODS = ["datalens", "merf", "gan", "gan-nonprivate", "dpsgd", "real"]
# leakage attacks, both sides: 500 attacks (singling-out predicates; linkability and
# inference attack min(500, rows) records), 3 columns per predicate, link halves [:d//2]
ATTACKS = {"n_attacks": 500, "n_cols": 3, "seed": 0}
ROOT = Path(__file__).resolve().parents[1]
PIMA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pima-indians-diabetes.csv"


def split(data, n_train: int):
    order = torch.randperm(len(data.x), generator=torch.Generator().manual_seed(0))
    tr, te = order[:n_train], order[n_train:]
    return data.x[tr], data.y[tr], data.x[te], data.y[te]


def run_generator(method: str, x, y, eps: float, seed: int, quick: bool):
    """Train one generator; return (samples, labels, epsilon spent)."""
    n_release = QUICK["release"] if quick else RELEASE
    if method == "DataLens":
        cfg = dict(DATALENS, teachers=len(x) // DATALENS["records_per_teacher"])
        cfg.pop("records_per_teacher")
        if quick:
            cfg.update(steps=QUICK["datalens_steps"], teachers=QUICK["datalens_teachers"])
        res = train_datalens(x, y, classes=10, epsilon=eps, delta=DELTA, seed=seed, **cfg)
        xs, ys = res.generator.release(n_release, seed=seed)
    elif method == "DP-MERF":
        res = train_dp_merf(x, y, classes=10, epsilon=eps, delta=DELTA, seed=seed,
                            features=QUICK["merf_features"] if quick else MERF["features"],
                            steps=QUICK["merf_steps"] if quick else MERF["steps"],
                            lengthscale=MERF["lengthscale_per_sqrt_dim"] * x.shape[1] ** 0.5)
        xs, ys = res.generator.release(n_release, class_weights=res.class_weights, seed=seed)
    else:  # "DP-SGD GAN" or, at eps = inf, the non-private GAN
        cfg = dict(GAN, **({"steps": QUICK["gan_steps"], "batch_size": QUICK["gan_batch"]}
                           if quick else {}))
        res = train_gan(x, y, classes=10, epsilon=eps, delta=DELTA, seed=seed, **cfg)
        xs, ys = res.generator.release(n_release, seed=seed)
    return xs, ys, res.epsilon


def run_dpsgd(x, y, eps: float, seed: int, quick: bool):
    torch.manual_seed(seed)
    epochs = QUICK["dpsgd_epochs"] if quick else DPSGD["epochs"]
    model = mlp_classifier(x.shape[1], 10)
    z = noise_multiplier_for(target_epsilon=eps, sample_rate=1 / DPSGD["batches"],
                             steps=epochs * DPSGD["batches"], delta=DELTA)
    module, opt, loader = make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=DPSGD["lr"]),
        data_loader=DataLoader(TensorDataset(x, y), batch_size=len(x) // DPSGD["batches"]),
        noise_multiplier=z, max_grad_norm=DPSGD["max_grad_norm"])
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(module(xb), yb).backward()
            opt.step()
    return model, opt.accountant.epsilon(DELTA)


def row(name: str, eps, accs, secs, spent, **extra):
    return {"method": name, "epsilon": eps, "test_acc": statistics.median(accs),
            "min-max": f"[{min(accs):.3f}, {max(accs):.3f}]", "s/run": statistics.median(secs),
            "eps_spent": max(spent) if spent else "", "runs": len(accs), **extra}


def utility(name: str, data, n_train: int, args, grids: dict) -> list[dict]:  # long: table
    x, y, xt, yt = split(data, n_train)
    seeds = 1 if args.quick else args.seeds
    epsilons = [10.0] if args.quick else args.epsilons
    clf_epochs = QUICK["clf_epochs"] if args.quick else CLF_EPOCHS
    rows = []
    jobs = [(m, e) for e in epsilons for m in ("DataLens", "DP-MERF", "DP-SGD GAN")
            if METHODS[m] in args.methods]
    if "gan-nonprivate" in args.methods:
        jobs.append(("GAN, no privacy", math.inf))
    for method, eps in jobs:
        accs, secs, spent, mia = [], [], [], ""
        for s in range(seeds):
            t0 = time.perf_counter()
            xs, ys, e = run_generator(method, x, y, eps, s, args.quick)
            secs.append(time.perf_counter() - t0)
            accs.append(accuracy(fit_classifier(xs, ys, classes=10, epochs=clf_epochs,
                                                seed=s), xt, yt))
            spent.append(e)
            if s == 0:
                m = dcr_membership(xs, x[:len(xt)], xt,
                                   bootstrap=QUICK["bootstrap"] if args.quick else 100)
                mia = f"{m.auc:.3f} [{m.auc_ci[0]:.3f}, {m.auc_ci[1]:.3f}]"
                grids[f"{name} {method} eps={eps}"] = (xs[:100], ys[:100])
        rows.append(row(method, eps, accs, secs, spent, data=name, mia_auc=mia))
    for eps in epsilons if "dpsgd" in args.methods else []:
        accs, secs, spent = [], [], []
        for s in range(seeds):
            t0 = time.perf_counter()
            model, e = run_dpsgd(x, y, eps, s, args.quick)
            secs.append(time.perf_counter() - t0)
            accs.append(accuracy(model, xt, yt))
            spent.append(e)
        rows.append(row("DP-SGD classifier (real digits)", eps, accs, secs, spent, data=name))
    if "real" not in args.methods:
        return rows
    accs, secs = [], []
    for s in range(seeds):
        t0 = time.perf_counter()
        accs.append(accuracy(fit_classifier(x, y, classes=10, epochs=clf_epochs, seed=s),
                             xt, yt))
        secs.append(time.perf_counter() - t0)
    rows.append(row("classifier on real digits", math.inf, accs, secs, [], data=name))
    return rows


def anonymeter_side(train, control, releases: dict, names: list[str], args) -> dict:
    """anonymeter's figures for every release (one process in the side venv), or {} with
    a note on how to make the venv when it is absent."""
    py = side_python(ROOT)
    if py is None or args.no_anonymeter:
        if py is None:
            print(f"anonymeter columns skipped: {ROOT / '.venv-anonymeter'} is absent; make "
                  f"it (from the repository root) with\n  {MAKE_VENV}")
        return {}
    t0 = time.perf_counter()
    doc = run_anonymeter(py, ROOT / "benchmarks" / "anonymeter_risks.py", train, control,
                         {k: rel for k, (rel, _) in releases.items()}, names,
                         secret=names[-1], split=len(names) // 2, **ATTACKS)
    doc["_meta"]["wall_s"] = time.perf_counter() - t0
    return doc


def leakage(args) -> tuple[list[dict], dict]:  # long: one row per release, in one place
    if PIMA.is_file() and not args.quick:
        data, name, ints = load_csv(PIMA, target="target"), "pima", [0, 7]
    else:
        data, name, ints = load_breast_cancer(), "breast_cancer", []
    order = torch.randperm(len(data.x), generator=torch.Generator().manual_seed(0))
    half = len(order) // 2
    tr, co = order[:half], order[half:2 * half]
    lo, hi = data.x.min(0).values, data.x.max(0).values  # schema bounds, taken as public
    bounds = list(zip(lo.tolist(), hi.tolist(), strict=True))

    def table(xx, yy):
        return torch.cat([scale_columns(xx, lo, hi), yy[:, None].float()], 1)

    train, control = table(data.x[tr], data.y[tr]), table(data.x[co], data.y[co])
    steps = QUICK["tab_steps"] if args.quick else 2000
    releases = {}
    for eps in (1.0, 10.0, math.inf):
        syn = fit_tabular_merf(data.x[tr], data.y[tr], classes=2, epsilon=eps, delta=DELTA,
                               bounds=bounds, integer_columns=ints, steps=steps)
        label = f"tabular DP-MERF eps={eps:g}" if math.isfinite(eps) else "MERF, no noise"
        releases[label] = (table(*syn.sample(half)), syn.epsilon)
    gan = train_gan(scale_columns(data.x[tr], lo, hi), data.y[tr], classes=2,
                    epsilon=math.inf, delta=DELTA,
                    steps=QUICK["tab_gan_steps"] if args.quick else 4000,
                    batch_size=64, hidden=128, output="sigmoid")
    xs, ys = gan.generator.release(half)
    releases["GAN, no privacy"] = (torch.cat([xs, ys[:, None].float()], 1), math.inf)
    releases["copy of the training rows"] = (train.clone(), math.inf)
    rows = []
    label_col = train.shape[1] - 1
    an = anonymeter_side(train, control, releases, [*data.feature_names, "target"], args)
    n, k, seed = ATTACKS["n_attacks"], ATTACKS["n_cols"], ATTACKS["seed"]

    def fmt(r) -> str:
        return f"{r.risk:.3f} [{r.risk_ci[0]:.3f}, {r.risk_ci[1]:.3f}]"

    for label, (rel, eps) in releases.items():
        m = dcr_membership(rel, train, control, bootstrap=QUICK["bootstrap"] if args.quick
                           else 200)
        row = {"data": name, "release": label, "epsilon": eps,
               "mia_auc": f"{m.auc:.3f} [{m.auc_ci[0]:.3f}, {m.auc_ci[1]:.3f}]"}
        risks = {"singling_out": singling_out_risk(rel, train, control, attacks=n,
                                                   columns=k, seed=seed),
                 "linkability": linkability_risk(rel, train, control, attacks=n, seed=seed),
                 "inference": inference_risk(rel, train, control, secret=label_col,
                                             attacks=n, seed=seed)}
        for key, r in risks.items():
            col = "inference(label)" if key == "inference" else key
            row[col] = fmt(r)
            if an:
                a = an[label][key]
                row[f"anonymeter {col}"] = f"{a['risk']:.3f} [{a['ci'][0]:.3f}, {a['ci'][1]:.3f}]"
        rows.append(row)
    return rows, an


def save_grids(grids: dict, folder: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Path(folder).mkdir(parents=True, exist_ok=True)
    for title, (xs, ys) in grids.items():
        side = int(xs.shape[1] ** 0.5)
        order = ys.argsort()
        fig, axes = plt.subplots(10, 10, figsize=(6, 6))
        for ax, i in zip(axes.flat, order.tolist(), strict=False):
            ax.imshow(xs[i].view(side, side).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.axis("off")
        fig.suptitle(title)
        fig.savefig(Path(folder) / (title.replace(" ", "_").replace(",", "") + ".png"))
        plt.close(fig)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 10.0])
    p.add_argument("--grids", metavar="DIR", help="save sample grids (PNG) here")
    p.add_argument("--no-digits", action="store_true", help="skip sklearn's 8x8 digits")
    p.add_argument("--no-tabular", action="store_true", help="skip the leakage tables")
    p.add_argument("--tabular-only", action="store_true",
                   help="only the leakage tables (no digits, no utility rows)")
    p.add_argument("--no-anonymeter", action="store_true",
                   help="skip anonymeter's columns even when .venv-anonymeter exists")
    p.add_argument("--methods", nargs="+", choices=ALL_METHODS, default=ALL_METHODS,
                   help="utility rows to run (default: all)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    grids: dict = {}
    rows = [] if args.tabular_only else utility(
        "mnist_5k", load_mnist_5k(), 600 if args.quick else 4000, args, grids)
    if not args.no_digits and not args.quick and not args.tabular_only:
        rows += utility("sklearn_digits", load_digits(), 1400, args, grids)
    leak, anon = ([], {}) if args.no_tabular else leakage(args)
    if args.grids:
        save_grids(grids, args.grids)
    extra = {"datalens": DATALENS, "merf": MERF, "gan": GAN, "dpsgd": DPSGD, "delta": DELTA,
             "epsilons": args.epsilons, "seeds": 1 if args.quick else args.seeds,
             "leakage": leak, "attacks": ATTACKS, "anonymeter": anon or "skipped",
             "wall_s": time.perf_counter() - t0}
    if rows or not leak:
        report("Classifier trained on synthetic digits, tested on real held-out digits "
               f"(median of {extra['seeds']} seed(s), delta {DELTA})", rows, args, extra)
    if leak:
        print("\nWhat the tabular releases leak (risk = excess over the control records, "
              "95% interval; leakage.py, and anonymeter where its venv exists)")
        report("leakage", leak, args if not rows else type(args)(json=None, quick=args.quick),
               extra if not rows else None)
    print(f"\nwall time {extra['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
