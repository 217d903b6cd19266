"""One JupyterLab and one headless Chromium for all browser tests (each costs seconds to
start); each test writes its notebooks into ``lab.root`` and opens its own page."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

from .lab import CHROMIUM, CHROMIUM_ARGS, have_browser, jupyter_lab

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
IDLE = "Python 3 (ipykernel) | Idle"


@dataclass
class Lab:
    root: Path  # the server's notebook directory
    base: str
    token: str
    browser: Any

    def write(self, name: str, cells: list[str]) -> str:
        """A notebook of ``cells`` under ``root``; returns its name."""
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, self.root / name)
        return name

    def open(self, name: str, *, wait_idle: bool = True):
        """A new page showing notebook ``name`` (its kernel idle, unless told not to)."""
        page = self.browser.new_page(viewport={"width": 1500, "height": 1100})
        # its own workspace, reset: the notebooks earlier tests opened are not restored
        stem = Path(name).stem
        page.goto(f"{self.base}/lab/workspaces/{stem}/tree/{name}?reset&token={self.token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
        if wait_idle:
            page.get_by_text(IDLE).wait_for(timeout=90_000)
        return page

    def close(self, page) -> None:
        """Close ``page`` and shut down every kernel the server runs (and its workers)."""
        page.close()
        for session in self._api("GET", "sessions"):
            self._api("DELETE", f"sessions/{session['id']}")

    def _api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(f"{self.base}/api/{path}?token={self.token}",
                                         method=method)
        with urllib.request.urlopen(request, timeout=30) as reply:
            body = reply.read()
        return json.loads(body) if body else None

    def run_all(self, page) -> None:
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Iterator[Lab]:
    if not have_browser():
        pytest.skip("needs Debian's chromium and the playwright package")
    from playwright.sync_api import sync_playwright

    home = tmp_path_factory.mktemp("lab")
    root = home / "notebooks"
    root.mkdir()
    ARTIFACTS.mkdir(exist_ok=True)
    with jupyter_lab(root, home / "home") as server, sync_playwright() as pw:
        base, token = server.split("|")
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            yield Lab(root, base, token, browser)
        finally:
            browser.close()
    shutil.rmtree(home / "home", ignore_errors=True)
