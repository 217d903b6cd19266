"""The Linux-only calls and their portable fallbacks (issue 18, item 12): both paths run
here, the fallback by pretending not to be on Linux."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from ppdl_nb.workers.transport import oscalls


@pytest.fixture(params=["linux", "elsewhere"])
def platform(request, monkeypatch):
    if request.param == "linux" and not oscalls.LINUX:
        pytest.skip("not on Linux")
    monkeypatch.setattr(oscalls, "LINUX", request.param == "linux")
    return request.param


def test_a_running_child_is_running_and_a_dead_one_is_not(platform):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert oscalls.process_running(child.pid)
    finally:
        child.kill()
    deadline = time.monotonic() + 10
    while oscalls.process_running(child.pid):  # a zombie (killed, not reaped) counts as dead
        assert time.monotonic() < deadline, "a killed child still runs"
    child.wait(timeout=10)
    assert not oscalls.process_running(child.pid)


def test_asking_to_die_with_the_parent_says_whether_the_os_can(platform):
    code = ("import signal; from ppdl_nb.workers.transport import oscalls; "
            f"oscalls.LINUX = {platform == 'linux'}; "
            "print(oscalls.die_with_parent(signal.SIGTERM))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    assert out == str(platform == "linux")
