"""The DP tuner's Train button in a real browser (issue 18, item 2): a click trains in the
background and draws the live curve and the privacy-utility chart; the ε label matches."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from .lab import CHROMIUM, CHROMIUM_ARGS, have_browser, jupyter_lab

pytestmark = pytest.mark.skipif(not have_browser(),
                                reason="needs Debian's chromium and the playwright package")

CELLS = [
    "%load_ext ppdl_nb\n%ppdl tune dp --dataset digits",
    # an integer slider: the browser keeps the value as set (a log slider would snap it)
    "tuner.epochs.value = 2\nprint(f'{tuner.epsilon:.3g}')",
]
IDLE = "Python 3 (ipykernel) | Idle"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def test_the_train_button_draws_the_curve_and_the_chart(tmp_path):
    from playwright.sync_api import sync_playwright

    root = tmp_path / "notebooks"
    root.mkdir()
    ARTIFACTS.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, root / "tuner.ipynb")
    with jupyter_lab(root, tmp_path / "home") as server, sync_playwright() as pw:
        base, token = server.split("|")
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        try:
            page.goto(f"{base}/lab/tree/tuner.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            page.get_by_text(IDLE).wait_for(timeout=90_000)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
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
            browser.close()
    shutil.rmtree(tmp_path / "home", ignore_errors=True)
