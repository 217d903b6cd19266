"""The DP tuner: move a slider, see epsilon; train, and see where the run lands on the
privacy-utility chart; audit the last model with a membership-inference attack.

Epsilon is recomputed by the accountant on every slider move (tens of milliseconds).
Training runs in a background thread with a progress bar and a live loss/accuracy plot,
so the notebook stays usable; ``train(wait=True)`` blocks instead (for scripts and tests).
The plots are put into their Output widgets as PNG outputs (``figures.show_in``), not
captured with ``with output:``: a capture from the Train button's thread is lost (the
button then drew nothing), setting the widget's outputs works from any thread.

>>> # tuner = DPTuner(lambda: torch.nn.Linear(64, 10), data=(x, y, x_test, y_test))
>>> # tuner            # displays the widget
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import torch
from IPython.display import display
from torch import nn

from ppdl_nb.dp.audit import loss_threshold_attack
from ppdl_nb.dp.fit import FitResult, fit_private, plan_epsilon
from ppdl_nb.viz.figures import new_figure, png_base64, show_in

__all__ = ["DPTuner"]

Data = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class DPTuner:
    """Widgets over :func:`~ppdl_nb.dp.fit.fit_private` for one model recipe and dataset."""

    def __init__(self, model_fn: Callable[[], nn.Module], data: Data, *, loss: str =
                 "cross_entropy", lr: float = 0.5, accountant: str = "rdp") -> None:
        self.model_fn = model_fn
        self.x, self.y, self.x_test, self.y_test = data
        self.loss, self.lr, self.accountant = loss, lr, accountant
        self.runs: list[FitResult] = []
        self.last_audit: Any = None
        self._thread: threading.Thread | None = None
        style = {"description_width": "120px"}
        layout = widgets.Layout(width="420px")
        self.noise = widgets.FloatLogSlider(value=1.0, base=10, min=-0.5, max=1, step=0.01,
                                            description="noise σ", style=style, layout=layout)
        self.clip = widgets.FloatLogSlider(value=1.0, base=10, min=-1.5, max=1, step=0.05,
                                           description="clipping norm", style=style,
                                           layout=layout)
        self.batch = widgets.IntSlider(value=128, min=16, max=512, step=16,
                                       description="batch size", style=style, layout=layout)
        self.epochs = widgets.IntSlider(value=10, min=1, max=40, description="epochs",
                                        style=style, layout=layout)
        self.delta = widgets.FloatLogSlider(value=1e-5, base=10, min=-8, max=-3, step=0.5,
                                            description="δ", style=style, layout=layout)
        self.mode = widgets.ToggleButtons(options=["set noise", "target ε"],
                                          description="mode", style=style)
        self.target = widgets.FloatLogSlider(value=2.0, base=10, min=-1, max=1.5, step=0.01,
                                             description="target ε", style=style,
                                             layout=layout, disabled=True)
        self.epsilon_label = widgets.HTML()
        self.train_button = widgets.Button(description="Train", button_style="primary")
        self.audit_button = widgets.Button(description="Audit last model",
                                           button_style="warning", disabled=True)
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="epochs")
        self.status = widgets.HTML()
        self.live = widgets.Output(layout=widgets.Layout(width="480px"))
        self.chart = widgets.Output(layout=widgets.Layout(width="480px"))
        for w in (self.noise, self.batch, self.epochs, self.delta, self.target, self.mode):
            w.observe(self._on_change, names="value")
        self.train_button.on_click(lambda _b: self.train())
        self.audit_button.on_click(lambda _b: self.audit())
        controls = widgets.VBox([self.mode, self.noise, self.target, self.clip, self.batch,
                                 self.epochs, self.delta, self.epsilon_label,
                                 widgets.HBox([self.train_button, self.audit_button]),
                                 self.progress, self.status])
        self.widget = widgets.HBox([controls, widgets.VBox([self.live, self.chart])])
        self.widget.add_class("ppdl-tuner")
        self.last_update_ms = 0.0
        self._handle: Any = None  # the display, updated with a picture after each run
        self._on_change()

    def _ipython_display_(self) -> None:
        self._handle = display(self._bundle(), raw=True, display_id=True)

    def _bundle(self) -> dict[str, Any]:
        """The widget view, a fixed plain-text line and, after a run, a PNG of the last
        curve and the chart: JupyterLab draws the widgets; a viewer without their state
        (a preview, nbconvert HTML) shows the picture."""
        bundle = dict(self.widget._repr_mimebundle_())
        bundle["text/plain"] = ("DP tuner: privacy parameters, Train and Audit (widgets); "
                                "after a run, the last curve and the privacy-utility chart")
        if self.runs:
            fig = new_figure(figsize=(9.2, 2.6))
            left, right = fig.subplots(1, 2)
            self._plot_curve(left, self.runs[-1].history)
            self._plot_chart(right)
            bundle["image/png"] = png_base64(fig)
        return bundle

    # ---- privacy accounting on every move ------------------------------------------------
    @property
    def epsilon(self) -> float:
        """The epsilon the current settings would spend."""
        if self.mode.value == "target ε":
            return float(self.target.value)
        return plan_epsilon(noise_multiplier=self.noise.value, batch_size=self.batch.value,
                            n=len(self.x), epochs=self.epochs.value, delta=self.delta.value,
                            accountant=self.accountant)

    def _on_change(self, _change: Any = None) -> None:
        start = time.perf_counter()
        target_mode = self.mode.value == "target ε"
        self.noise.disabled, self.target.disabled = target_mode, not target_mode
        if target_mode:
            text = (f"target <b>ε = {self.target.value:.3g}</b> at δ = {self.delta.value:.0e}: "
                    "the noise is calibrated when training starts")
        else:
            text = (f"<b>ε = {self.epsilon:.3g}</b> at δ = {self.delta.value:.0e} "
                    f"({self.epochs.value} epochs, sampling rate "
                    f"{self.batch.value / len(self.x):.3f})")
        self.epsilon_label.value = text
        self.last_update_ms = (time.perf_counter() - start) * 1e3

    # ---- training --------------------------------------------------------------------------
    def train(self, *, wait: bool = False) -> FitResult | None:
        """Train with the current settings (in the background unless ``wait``)."""
        if self._thread is not None and self._thread.is_alive():
            self.status.value = "a run is already training"
            return None
        self.train_button.disabled = True
        self._on_change()  # the label shows what this run will spend
        self.progress.max, self.progress.value = self.epochs.value, 0
        self._history: list[dict[str, float]] = []
        if wait:
            return self._train()
        self._thread = threading.Thread(target=self._train, name="ppdl-dp-tuner", daemon=True)
        self._thread.start()
        return None

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _train(self) -> FitResult | None:
        kwargs: dict[str, Any] = {"delta": self.delta.value, "max_grad_norm": self.clip.value,
                                  "epochs": self.epochs.value, "batch_size": self.batch.value,
                                  "lr": self.lr, "loss": self.loss, "x_test": self.x_test,
                                  "y_test": self.y_test, "callback": self._on_epoch,
                                  "accountant": self.accountant}
        if self.mode.value == "target ε":
            kwargs["epsilon"] = self.target.value
        else:
            kwargs["noise_multiplier"] = self.noise.value
        try:
            self.status.value = "training..."
            result = fit_private(self.model_fn(), self.x, self.y, **kwargs)
        except Exception as exc:  # shown in the widget: a thread has no caller to raise to
            self.status.value = f"<span style='color:#c00'>training failed: {exc}</span>"
            return None
        finally:
            self.train_button.disabled = False
            self._on_change()
        self.runs.append(result)
        self.audit_button.disabled = False
        last = result.history[-1]
        self.status.value = (f"done: ε = {result.epsilon:.3g}, accuracy "
                             f"{last.get('accuracy', float('nan')):.3f}")
        self._draw_chart()
        if self._handle is not None:
            self._handle.update(self._bundle(), raw=True)  # the stored picture
        return result

    def _on_epoch(self, record: dict[str, float]) -> None:
        self._history.append(record)
        self.progress.value = int(record["epoch"])
        fig = new_figure(figsize=(4.6, 2.6))
        self._plot_curve(fig.add_subplot(), self._history)
        show_in(self.live, fig, f"epoch {int(record['epoch'])}: loss {record['loss']:.3g}, "
                                f"ε {record['epsilon']:.3g}")

    @staticmethod
    def _plot_curve(ax: Any, history: list[dict[str, float]]) -> None:
        from matplotlib.ticker import MaxNLocator

        epochs = [r["epoch"] for r in history]
        ax.plot(epochs, [r["loss"] for r in history], "o-", label="train loss")
        if "accuracy" in history[-1]:
            ax2 = ax.twinx()
            ax2.plot(epochs, [r["accuracy"] for r in history], "s-", color="#59a14f",
                     label="test accuracy")
            ax2.set_ylim(0, 1)
            ax2.set_ylabel("accuracy")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss")
        ax.set_title(f"ε so far: {history[-1]['epsilon']:.3g}")

    def _plot_chart(self, ax: Any) -> list[tuple[float, float]]:
        points = [(r.epsilon, r.history[-1].get("accuracy", float("nan"))) for r in self.runs]
        ax.plot([p[0] for p in points], [p[1] for p in points], "o", color="#4e79a7")
        ax.set_xscale("log")
        ax.set_xlabel("ε (log scale)")
        ax.set_ylabel("test accuracy")
        ax.set_title("privacy-utility trade-off")
        return points

    def _draw_chart(self) -> None:
        fig = new_figure(figsize=(4.6, 2.6))
        points = self._plot_chart(fig.add_subplot())
        show_in(self.chart, fig, f"privacy-utility: {len(points)} runs, (ε, accuracy) "
                                 + ", ".join(f"({e:.3g}, {a:.3f})" for e, a in points))

    # ---- audit -----------------------------------------------------------------------------
    def audit(self) -> Any:
        """Loss-threshold membership inference on the last model: AUC near 0.5 means safe."""
        if not self.runs:
            raise ValueError("train a model first")
        n = min(len(self.x), len(self.x_test))
        result = loss_threshold_attack(self.runs[-1].model, (self.x[:n], self.y[:n]),
                                       (self.x_test[:n], self.y_test[:n]))
        self.last_audit = result
        self.status.value = f"audit: {result}"
        return result
