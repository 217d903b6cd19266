"""The UI in a real browser: JupyterLab on loopback, headless Chromium driven by Playwright.

Opens tutorial 02, runs every cell, and checks that the worker dashboard and the chain
diagram are visible and that a dashboard button does what it says. A screenshot is
saved under ``artifacts/`` for people to look at.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .lab import CHROMIUM, CHROMIUM_ARGS, have_browser, jupyter_lab

pytestmark = pytest.mark.skipif(not have_browser(),
                                reason="needs Debian's chromium and the playwright package")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = "02_kernels.ipynb"
ARTIFACTS = REPO / "artifacts"


STATUS_JS = """([name, want]) => {
  const cell = document.querySelector('.ppdl-dashboard .ppdl-status-' + name);
  const text = cell ? cell.innerText.trim() : null;
  return want === undefined ? text : text === want;
}"""


def _status(page, name: str) -> str:
    return page.evaluate(STATUS_JS, [name])


def _cleared_copy(src: Path, dst: Path) -> None:
    nb = json.loads(src.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    dst.write_text(json.dumps(nb))


def test_tutorial_runs_in_jupyterlab_with_dashboard_and_chain(tmp_path):
    from playwright.sync_api import sync_playwright

    root = tmp_path / "notebooks"
    root.mkdir()
    _cleared_copy(REPO / "notebooks" / NOTEBOOK, root / NOTEBOOK)
    ARTIFACTS.mkdir(exist_ok=True)
    with jupyter_lab(root, tmp_path / "home") as server, sync_playwright() as pw:
        base, token = server.split("|")
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        try:
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=90_000)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            dashboard = page.locator(".ppdl-dashboard").first
            dashboard.wait_for(state="visible", timeout=180_000)
            chain = page.locator(".jp-CodeCell", has_text="%ppdl chain y").locator(
                ".jp-RenderedImage img[src^='data:image/png']").first  # the chain, as a PNG
            chain.wait_for(state="visible", timeout=180_000)
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=180_000)
            # the live view catches up with charlie's restart within its refresh interval
            page.wait_for_function(STATUS_JS, arg=["charlie", "running"], timeout=30_000)
            page.locator(".ppdl-shutdown-charlie").first.click()
            page.wait_for_function(STATUS_JS, arg=["charlie", "shut down"], timeout=60_000)
            assert _status(page, "alice") == "running"  # only charlie was touched
            dashboard.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "lab-dashboard.png"), full_page=False)
            errors = page.locator(".jp-OutputArea-output[data-mime-type="
                                  "'application/vnd.jupyter.stderr']")
            assert errors.count() == 0, errors.first.inner_text()
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "lab-failure.png"))
            raise
        finally:
            browser.close()
    assert (ARTIFACTS / "lab-dashboard.png").stat().st_size > 10_000
    shutil.rmtree(tmp_path / "home", ignore_errors=True)
