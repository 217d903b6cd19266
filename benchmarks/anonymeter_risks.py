"""anonymeter's singling out, linkability and inference risks, run in its own venv.

anonymeter 1.1.0 pins numpy<1.27, so this script runs with the side venv's python, not
the project's (``ppdl_nb.synth.anonymeter_io`` writes the CSVs and calls it; so does
``benchmarks/bench_synth.py``'s leakage part). Make the venv from the repository root:

    python3.11 -m venv .venv-anonymeter && .venv-anonymeter/bin/pip install anonymeter==1.1.0

    .venv-anonymeter/bin/python benchmarks/anonymeter_risks.py \
        --original ori.csv --control control.csv --secret target \
        --synthetic a=syn_a.csv b=syn_b.csv [--n-attacks 500] [--n-cols 3] [--split 4] \
        [--seed 0] [--jobs 1]

For each synthetic table: ``SinglingOutEvaluator`` (multivariate, ``n_cols`` columns,
``n_attacks`` queries), ``LinkabilityEvaluator`` (auxiliary columns ``[:split]`` and
``[split:]``, one neighbour, ``min(n_attacks, rows)`` targets) and ``InferenceEvaluator``
(secret = ``--secret``, every other column auxiliary, categorical: exact match), each
against the control table. Prints one JSON line: ``{name: {risk: {...}}, "_meta": {...}}``
where each risk holds anonymeter's ``risk`` and 95% ``ci`` as it reports them (clamped to
[0, 1]), the unclamped ``residual`` ``(main - control) / (1 - control)`` and its error,
the main, control and baseline (random-guess) success rates and counts, and any warning
anonymeter raised (e.g. "attack is as good or worse as baseline").
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from importlib.metadata import version

import numpy as np
import pandas as pd
from anonymeter.evaluators import InferenceEvaluator, LinkabilityEvaluator, SinglingOutEvaluator
from anonymeter.stats.confidence import residual_success


def summary(evaluator, seconds: float, caught: list) -> dict:
    """anonymeter's risk and interval, and the figures behind them."""
    r = evaluator.results(confidence_level=0.95)
    risk = evaluator.risk(confidence_level=0.95)
    res = residual_success(r.attack_rate, r.control_rate)
    return {"risk": risk.value, "ci": list(risk.ci), "residual": res.value,
            "residual_error": res.error, "main_rate": r.attack_rate.value,
            "control_rate": r.control_rate.value, "baseline_rate": r.baseline_rate.value,
            "n_attacks": r.n_attacks_ori, "n_success": int(r.n_success),
            "n_control": float(r.n_control), "n_baseline": int(r.n_baseline),
            "seconds": seconds, "warnings": sorted({str(w.message)[:160] for w in caught})}


def evaluate(ori: pd.DataFrame, syn: pd.DataFrame, control: pd.DataFrame,
             args: argparse.Namespace) -> dict:
    cols = list(ori.columns)
    n_rows = min(args.n_attacks, len(ori), len(control))
    makers = {
        "singling_out": lambda: SinglingOutEvaluator(
            ori=ori, syn=syn, control=control, n_attacks=args.n_attacks, n_cols=args.n_cols,
            seed=args.seed).evaluate(mode="multivariate"),
        "linkability": lambda: LinkabilityEvaluator(
            ori=ori, syn=syn, control=control, n_attacks=n_rows, n_neighbors=1,
            aux_cols=(cols[:args.split], cols[args.split:])).evaluate(n_jobs=args.jobs),
        "inference": lambda: InferenceEvaluator(
            ori=ori, syn=syn, control=control, n_attacks=n_rows, secret=args.secret,
            aux_cols=[c for c in cols if c != args.secret],
            regression=False).evaluate(n_jobs=args.jobs),
    }
    out = {}
    for name, make in makers.items():
        np.random.seed(args.seed)  # pandas' .sample() in linkability/inference draws here
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ev = make()
            out[name] = summary(ev, time.perf_counter() - t0, caught)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--original", required=True, help="CSV of the training records")
    p.add_argument("--control", required=True, help="CSV of records not trained on")
    p.add_argument("--synthetic", nargs="+", required=True, metavar="NAME=CSV")
    p.add_argument("--secret", required=True, help="column the inference attack guesses")
    p.add_argument("--n-attacks", type=int, default=500)
    p.add_argument("--n-cols", type=int, default=3)
    p.add_argument("--split", type=int, help="linkability: first half of the columns")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1)
    args = p.parse_args()
    ori, control = pd.read_csv(args.original), pd.read_csv(args.control)
    if list(ori.columns) != list(control.columns) or args.secret not in ori.columns:
        raise SystemExit(f"columns differ or lack {args.secret!r}: {list(ori.columns)}")
    args.split = len(ori.columns) // 2 if args.split is None else args.split
    t0 = time.perf_counter()
    doc: dict = {}
    for item in args.synthetic:
        name, _, path = item.partition("=")
        syn = pd.read_csv(path)
        if list(syn.columns) != list(ori.columns):
            raise SystemExit(f"{path}: columns {list(syn.columns)} differ from the original's")
        doc[name] = evaluate(ori, syn, control, args)
    doc["_meta"] = {"anonymeter": version("anonymeter"),
                    "numpy": np.__version__, "pandas": pd.__version__,
                    "rows": [len(ori), len(control)], "n_attacks": args.n_attacks,
                    "n_cols": args.n_cols, "split": args.split, "seed": args.seed,
                    "seconds": time.perf_counter() - t0}
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
