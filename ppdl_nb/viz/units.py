"""Units as people read them, the same in every table and widget.

>>> human_bytes(604), human_bytes(40 * 1024), human_bytes(3 * 1024 ** 3)
('604 B', '40.0 KiB', '3.0 GiB')
"""

from __future__ import annotations

__all__ = ["human_bytes"]


def human_bytes(n: float) -> str:
    """``n`` bytes in B, KiB, MiB or GiB (binary units, one decimal above bytes)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
