"""A test's own network: a namespace joined to this one by a veth pair, and relays.

``Link`` makes ``ip netns add`` + a veth pair (10.213.N.1 here, 10.213.N.2 inside) and
tears both down in ``close`` (called from ``finally``). Partitions take the link down.
Where namespaces cannot be made (no ``ip``, not root, no CAP_NET_ADMIN), ``Link.make``
returns ``None`` with the reason, and the tests fall back to loopback with the relay's
``blackhole`` as the partition.
"""

from __future__ import annotations

import os
import shutil
import subprocess


def ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise OSError(f"{' '.join(cmd)}: {done.stderr.strip()}")


class Link:
    """One namespace and the veth pair to it (names unique to this process)."""

    def __init__(self, tag: int) -> None:
        self.ns = f"ppdlnet{tag}"
        self.host_if, self.ns_if = f"ppdl{tag}h", f"ppdl{tag}n"
        self.host_ip, self.ns_ip = f"10.213.{tag}.1", f"10.213.{tag}.2"

    @classmethod
    def make(cls) -> tuple[Link | None, str]:
        """A fresh link, or ``(None, why not)``."""
        if shutil.which("ip") is None:
            return None, "no `ip` command (iproute2 is not installed)"
        link = cls(os.getpid() % 250 + 1)
        try:
            link.close()  # leftovers of a killed run with the same pid
            ip("netns", "add", link.ns)
            ip("link", "add", link.host_if, "type", "veth", "peer", "name", link.ns_if)
            ip("link", "set", link.ns_if, "netns", link.ns)
            ip("addr", "add", f"{link.host_ip}/30", "dev", link.host_if)
            ip("addr", "add", f"{link.ns_ip}/30", "dev", link.ns_if, ns=link.ns)
            for dev, ns in ((link.host_if, None), (link.ns_if, link.ns), ("lo", link.ns)):
                ip("link", "set", dev, "up", ns=ns)
        except OSError as exc:
            link.close()
            return None, f"cannot make a network namespace here: {exc}"
        return link, ""

    def set_up(self, up: bool) -> None:
        """Take the link down (a partition) or bring it back."""
        ip("link", "set", self.host_if, "up" if up else "down")

    def close(self) -> None:
        for args in (("netns", "del", self.ns), ("link", "del", self.host_if)):
            try:
                ip(*args)
            except OSError:
                pass  # already gone
