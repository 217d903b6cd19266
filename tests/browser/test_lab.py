"""The UI in a real browser: JupyterLab on loopback, headless Chromium driven by Playwright.

Opens tutorial 02, runs every cell, and checks that the worker dashboard and the chain
diagram are visible and that a dashboard button does what it says; opens tutorial 05
without running it and checks that its stored pictures show. Screenshots are saved
under ``artifacts/`` for people to look at.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .conftest import ARTIFACTS, IDLE

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = "02_kernels.ipynb"
STORED = "05_dp_sgd.ipynb"  # a live training curve, a widget and a chart, as stored


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


def test_tutorial_runs_in_jupyterlab_with_dashboard_and_chain(lab):
    _cleared_copy(REPO / "notebooks" / NOTEBOOK, lab.root / NOTEBOOK)
    page = lab.open(NOTEBOOK)
    try:
        lab.run_all(page)
        dashboard = page.locator(".ppdl-dashboard").first
        dashboard.wait_for(state="visible", timeout=180_000)
        chain = page.locator(".jp-CodeCell", has_text="%ppdl chain y").locator(
            ".jp-RenderedImage img[src^='data:image/png']").first  # the chain, as a PNG
        chain.wait_for(state="visible", timeout=180_000)
        page.get_by_text(IDLE).wait_for(timeout=180_000)
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
        lab.close(page)
    assert (ARTIFACTS / "lab-dashboard.png").stat().st_size > 10_000


def test_a_stored_tutorial_shows_its_pictures_without_running(lab):
    """Issue 18, item 5: a student previewing a tutorial sees its training curves and
    widgets' pictures before running anything (the stored outputs, as saved)."""
    shutil.copy(REPO / "notebooks" / STORED, lab.root / STORED)
    page = lab.open(STORED, wait_idle=False)  # nothing runs
    try:
        pngs = page.locator(".jp-OutputArea-output img[src^='data:image/png']")
        pngs.first.wait_for(state="attached", timeout=60_000)
        stored = _stored_pngs(REPO / "notebooks" / STORED)
        page.wait_for_function(  # each rendered with real pixels
            "(n) => [...document.querySelectorAll('.jp-OutputArea-output "
            "img[src^=\"data:image/png\"]')].filter(i => i.naturalWidth > 100).length >= n",
            arg=stored, timeout=60_000)
        assert page.get_by_text("VBox(children=").count() == 0  # no bare widget reprs
        assert page.get_by_text("Error displaying widget").count() == 0
        page.locator(".jp-OutputArea-output img").nth(0).scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "lab-stored-pictures.png"), full_page=False)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "lab-stored-failure.png"))
        raise
    finally:
        lab.close(page)


def _stored_pngs(path: Path) -> int:
    """Outputs of ``path`` with a PNG (widgets' too: without their live state, a viewer
    shows the picture stored next to the widget view)."""
    nb = json.loads(path.read_text())
    return sum(1 for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
               if "image/png" in o.get("data", {}))
