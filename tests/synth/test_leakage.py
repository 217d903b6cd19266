"""The leakage measures find leakage where it is (a copy of the training set) and none
where there is none (records independent of the training set)."""

from __future__ import annotations

import pytest
import torch

from ppdl_nb.datasets import load_breast_cancer
from ppdl_nb.synth.leakage import (
    dcr_membership,
    inference_risk,
    linkability_risk,
    singling_out_risk,
    wilson,
)
from ppdl_nb.synth.tabular import fit_tabular_merf, scale_columns


def _split():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(300, 6, generator=g), torch.randn(300, 6, generator=g),
            torch.randn(300, 6, generator=g))


def test_wilson_interval():
    p, lo, hi = wilson(50, 100)
    assert p == 0.5 and lo == pytest.approx(0.404, abs=1e-3) and hi == pytest.approx(0.596,
                                                                                      abs=1e-3)
    with pytest.raises(ValueError):
        wilson(0, 0)


def test_membership_by_distance_to_closest_record():
    train, control, fresh = _split()
    copy = dcr_membership(train.clone(), train, control, bootstrap=50)
    indep = dcr_membership(fresh, train, control, bootstrap=50)
    assert copy.auc > 0.99 and copy.advantage > 0.95
    assert indep.auc_ci[0] < 0.5 < indep.auc_ci[1]
    # a reference release of the same "generator" on other data cancels typicality
    ref = dcr_membership(fresh, train, control, reference=fresh.clone(), bootstrap=0)
    assert ref.auc == pytest.approx(0.5)


def test_anonymeter_style_risks_on_known_answers():
    train, control, fresh = _split()
    copy = train.clone()
    for fn, kw in ((singling_out_risk, {}), (linkability_risk, {}),
                   (inference_risk, {"secret": 2})):
        leak, safe = fn(copy, train, control, **kw), fn(fresh, train, control, **kw)
        assert leak.risk > 0.3 and leak.risk_ci[0] > 0.1, fn.__name__
        assert safe.risk_ci[0] <= 0.05, fn.__name__  # independent data: no excess


def test_tabular_dp_release_of_breast_cancer():
    d = load_breast_cancer()
    order = torch.randperm(len(d.x), generator=torch.Generator().manual_seed(0))
    tr, co = order[:285], order[285:]
    lo, hi = d.x.min(0).values, d.x.max(0).values  # the schema, taken as public
    bounds = list(zip(lo.tolist(), hi.tolist(), strict=True))
    syn = fit_tabular_merf(d.x[tr], d.y[tr], classes=2, epsilon=1.0, delta=1e-5,
                           bounds=bounds, integer_columns=[0], steps=200, features=200)
    xs, ys = syn.sample(285)
    assert bool((xs >= lo).all() and (xs <= hi).all())
    assert bool((xs[:, 0] == xs[:, 0].round()).all())
    assert 0.98 <= syn.epsilon <= 1.0

    def table(x, y):
        return torch.cat([scale_columns(x, lo, hi), y[:, None].float()], 1)

    released, train, control = table(xs, ys), table(d.x[tr], d.y[tr]), table(d.x[co], d.y[co])
    dp = dcr_membership(released, train, control, bootstrap=50)
    leak = dcr_membership(train.clone(), train, control, bootstrap=0)
    assert dp.auc_ci[0] < 0.6 < leak.auc
    with pytest.raises(ValueError, match="bounds"):
        fit_tabular_merf(d.x[:10], d.y[:10], classes=2, epsilon=1.0, delta=1e-5,
                         bounds=[(0, 1)])
