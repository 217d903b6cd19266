"""The DP tuner: epsilon follows the sliders, a run lands on the chart, the audit runs."""

from __future__ import annotations

import pytest
import torch

from ppdl_nb.dp.fit import plan_epsilon
from ppdl_nb.viz.tuner import DPTuner


@pytest.fixture(scope="module")
def tuner():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g)
    y = (x[:, 0] > 0).long()
    return DPTuner(lambda: torch.nn.Linear(8, 2), (x[:300], y[:300], x[300:], y[300:]))


def test_epsilon_follows_the_sliders(tuner):
    tuner.noise.value = 2.0
    low = tuner.epsilon
    tuner.noise.value = 0.8
    high = tuner.epsilon
    assert high > low
    assert high == pytest.approx(plan_epsilon(noise_multiplier=0.8, batch_size=128, n=300,
                                              epochs=10, delta=1e-5))
    assert f"{high:.3g}" in tuner.epsilon_label.value


def test_a_run_lands_on_the_chart_and_can_be_audited(tuner):
    tuner.epochs.value = 3
    result = tuner.train(wait=True)
    assert result is not None and len(result.history) == 3
    assert tuner.runs[-1] is result and tuner.progress.value == 3
    assert result.history[-1]["accuracy"] > 0.6  # a linearly separable toy problem
    audit = tuner.audit()
    assert 0.0 <= audit.auc <= 1.0
    assert "AUC" in tuner.status.value


def test_target_mode_calibrates_the_noise(tuner):
    tuner.mode.value = "target ε"
    tuner.target.value = 1.0
    result = tuner.train(wait=True)
    assert result.epsilon <= 1.0 + 1e-9
    assert tuner.noise.disabled
    tuner.mode.value = "set noise"


def test_the_train_button_draws_the_live_curve_and_the_chart_from_its_thread(tuner):
    tuner.mode.value = "set noise"
    tuner.noise.value, tuner.epochs.value = 1.5, 2
    before = len(tuner.runs)
    tuner.live.outputs, tuner.chart.outputs = (), ()
    tuner.train_button.click()  # what a click in JupyterLab does: train in a thread
    tuner.wait(120)
    assert len(tuner.runs) == before + 1
    (live,) = tuner.live.outputs
    assert live["data"]["image/png"] and live["data"]["text/plain"].startswith("epoch 2:")
    (chart,) = tuner.chart.outputs
    assert chart["data"]["image/png"]
    assert f"{before + 1} runs" in chart["data"]["text/plain"]
    run = tuner.runs[-1]
    assert f"({run.epsilon:.3g}, " in chart["data"]["text/plain"]
    # the label says what the sliders (and so this run) spend
    assert run.epsilon == pytest.approx(tuner.epsilon, rel=1e-6)
    assert f"ε = {tuner.epsilon:.3g}" in tuner.epsilon_label.value


def test_after_a_run_its_display_carries_a_picture_for_viewers_without_widgets(monkeypatch):
    import ppdl_nb.viz.tuner as tuner_module

    shown = []

    class Handle:
        def update(self, bundle, raw=False):
            shown.append(bundle)

    def fake_display(bundle, raw=False, display_id=False):
        shown.append(bundle)
        return Handle()

    monkeypatch.setattr(tuner_module, "display", fake_display)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 4, generator=g)
    y = (x[:, 0] > 0).long()
    tuner = DPTuner(lambda: torch.nn.Linear(4, 2), (x[:150], y[:150], x[150:], y[150:]))
    tuner._ipython_display_()
    tuner.epochs.value = 2
    tuner.train(wait=True)
    first, after = shown
    assert "application/vnd.jupyter.widget-view+json" in first and "image/png" not in first
    assert after["image/png"] and "application/vnd.jupyter.widget-view+json" in after
    assert first["text/plain"] == after["text/plain"]  # fixed: nbval compares it
