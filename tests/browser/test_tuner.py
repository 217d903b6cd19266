"""The DP tuner's Train button in a real browser (issue 18, item 2): a click trains in the
background and draws the live curve and the privacy-utility chart; the ε label matches."""

from __future__ import annotations

from .conftest import ARTIFACTS, IDLE

CELLS = [
    "%load_ext ppdl_nb\n%ppdl tune dp --dataset digits",
    # an integer slider: the browser keeps the value as set (a log slider would snap it)
    "tuner.epochs.value = 2\nprint(f'{tuner.epsilon:.3g}')",
]


def test_the_train_button_draws_the_curve_and_the_chart(lab):
    page = lab.open(lab.write("tuner.ipynb", CELLS))
    try:
        lab.run_all(page)
        tuner = page.locator(".ppdl-tuner").first
        tuner.wait_for(state="visible", timeout=120_000)
        page.get_by_text(IDLE).wait_for(timeout=120_000)
        printed = page.locator(".jp-OutputArea-output pre").last.inner_text().strip()
        label = tuner.locator("b", has_text="ε =").first
        page.wait_for_function("(want) => [...document.querySelectorAll('.ppdl-tuner b')]"
                               ".some(b => b.innerText.includes('ε = ' + want))",
                               arg=printed, timeout=30_000)
        assert printed in label.inner_text()  # the label follows the sliders set in code
        tuner.get_by_role("button", name="Train").click()
        images = tuner.locator(".jp-OutputArea-output img")
        page.wait_for_function("() => document.querySelectorAll("
                               "'.ppdl-tuner .jp-OutputArea-output img').length >= 2",
                               timeout=180_000)  # the live curve and the chart
        assert images.count() == 2
        tuner.get_by_text("done: ε =").wait_for(timeout=60_000)
        assert f"done: ε = {printed}" in tuner.inner_text()
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "lab-tuner-failure.png"))
        raise
    finally:
        lab.close(page)
