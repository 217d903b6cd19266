"""What a served worker's owner keeps on disk: its identity, who it serves, its datasets.

One directory per served worker (``ppdl-worker ... --state-dir DIR``, made 0700)::

    DIR/identity/x25519.key   the worker's secret key (0600; made once, kept)
    DIR/allowed.json          who it serves: label -> public key and role (0600)
    DIR/datasets.json         the owner's datasets: name -> file, target, budget
    DIR/ledgers/<name>/       privacy ledgers (one JSON per dataset, kept across restarts)
    DIR/boots                 how many times it started (object ids never repeat)

A *fingerprint* is the public key itself, as 64 hex characters (an X25519 public key is
32 bytes, short enough to compare, as WireGuard's keys are): pinning a fingerprint pins
the key, with no hash in between. Separators (``:``, ``-``, spaces) are ignored.

>>> import tempfile
>>> state = OwnerState(tempfile.mkdtemp())
>>> nb = KeyPair.generate()
>>> state.allow(fingerprint(nb.public), "nb")
>>> state.allowed()["nb"]["role"], state.next_boot(), state.next_boot()
('notebook', 0, 1)
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ppdl_nb.workers.transport.keys import KeyPair, parse_public_key

__all__ = ["OwnerState", "fingerprint", "load_table", "parse_fingerprint"]

ROLES = ("notebook", "peer")


def fingerprint(public: bytes) -> str:
    """The fingerprint of a public key: its 64 hex characters.

    >>> fingerprint(bytes(range(32)))[:8]
    '00010203'
    """
    return parse_public_key(public).hex()


def parse_fingerprint(text: str) -> bytes:
    """The public key a fingerprint names; ``ValueError`` saying why if it is not one.

    >>> parse_fingerprint("00" * 16 + ":" + "11" * 16)[-1]
    17
    """
    clean = re.sub(r"[\s:\-]", "", str(text)).lower()
    if len(clean) != 64 or re.fullmatch(r"[0-9a-f]+", clean) is None:
        raise ValueError(f"{text!r} is not a fingerprint: one is 64 hex characters, as "
                         "`ppdl-worker serve` prints it (or ppdl_nb.connect shows yours)")
    return bytes.fromhex(clean)


def _write_private(path: Path, doc: Any) -> None:
    """Write JSON atomically, readable by this user only."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class OwnerState:
    """A served worker's directory (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.allowed_path = self.root / "allowed.json"
        self.datasets_path = self.root / "datasets.json"

    def keypair(self) -> KeyPair:
        """The worker's key pair, made on first use and kept (0600)."""
        return KeyPair.load_or_create(self.root / "identity" / "x25519.key")

    @property
    def ledgers(self) -> Path:
        """The state root the worker's privacy ledgers live under."""
        return self.root / "ledgers"

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path} is not readable JSON ({exc}); fix or remove it") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{path} must hold a JSON object; fix or remove it")
        return doc

    def allowed(self) -> dict[str, dict[str, str]]:
        """``label -> {"key": hex, "role": "notebook" | "peer"}``, checked."""
        doc = self._read(self.allowed_path)
        for label, entry in doc.items():
            if not isinstance(entry, dict) or entry.get("role") not in ROLES:
                raise ValueError(f"{self.allowed_path}: entry {label!r} needs a role in {ROLES}")
            parse_fingerprint(entry.get("key", ""))
        return doc

    def allow(self, fp: str, label: str, *, role: str = "notebook") -> None:
        """Serve the holder of fingerprint ``fp`` as ``label`` (a notebook, or a peer worker
        whose name is ``label``). Allowing a label again replaces its key (rotation)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        if not label.isidentifier() or (role == "peer" and label == "me"):
            raise ValueError(f"label {label!r} must be an identifier (a peer's worker name), "
                             "and 'me' is the notebooks' name on the wire")
        key = parse_fingerprint(fp).hex()
        doc = self.allowed()
        clash = [n for n, e in doc.items() if e["key"] == key and n != label]
        if clash:
            raise ValueError(f"that key is already allowed as {clash[0]!r}; one key is one "
                             f"identity (revoke {clash[0]!r} first)")
        doc[label] = {"key": key, "role": role}
        _write_private(self.allowed_path, doc)

    def revoke(self, label: str) -> None:
        """Stop serving ``label`` (a running worker refuses it within a second)."""
        doc = self.allowed()
        if doc.pop(label, None) is None:
            raise KeyError(f"{label!r} is not allowed here (allowed: {sorted(doc)})")
        _write_private(self.allowed_path, doc)

    def datasets(self) -> dict[str, dict[str, Any]]:
        """``name -> {"path", "epsilon", "delta", "target"}`` from ``datasets.json``."""
        doc = self._read(self.datasets_path)
        for name, entry in doc.items():
            if not name.isidentifier() or not isinstance(entry, dict) or "path" not in entry:
                raise ValueError(f"{self.datasets_path}: dataset {name!r} needs an identifier "
                                 'name and {"path": ..., "epsilon": ..., "delta": ...}')
        return doc

    def add_dataset(self, name: str, path: str, *, epsilon: float, delta: float,
                    target: str | int = -1) -> None:
        """Register the owner's file ``path`` (CSV or .pt) as private dataset ``name``."""
        if not name.isidentifier():
            raise ValueError(f"dataset name {name!r} must be an identifier")
        load_table(self.root / path, target)  # refuse a file that will not load, now
        doc = self.datasets()
        doc[name] = {"path": str(path), "epsilon": float(epsilon), "delta": float(delta),
                     "target": target}
        _write_private(self.datasets_path, doc)

    def next_boot(self) -> int:
        """Count this start; the number of earlier starts."""
        path = self.root / "boots"
        try:
            boots = int(path.read_text().strip() or 0)
        except FileNotFoundError:
            boots = 0
        _write_private(path, boots + 1)
        return boots


def load_table(path: str | os.PathLike[str], target: str | int = -1
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels from the owner's file: a CSV with a header row (``target`` is a
    column name or index) or a ``.pt`` file holding ``{"x": tensor, "y": tensor}``
    (loaded with ``weights_only=True``: tensors only, nothing executable)."""
    path = Path(path)
    if path.suffix == ".pt":
        doc = torch.load(path, weights_only=True)
        if not (isinstance(doc, dict) and isinstance(doc.get("x"), torch.Tensor)
                and isinstance(doc.get("y"), torch.Tensor)):
            raise ValueError(f"{path} must hold {{'x': tensor, 'y': tensor}}")
        return doc["x"], doc["y"]
    if path.suffix != ".csv":
        raise ValueError(f"{path}: a dataset is a .csv (header row) or a .pt file")
    with open(path) as f:
        header = f.readline().strip().split(",")
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
    col = header.index(target) if isinstance(target, str) and target in header else target
    if not isinstance(col, int) or not -len(header) <= col < len(header):
        raise ValueError(f"{path}: no target column {target!r} (columns: {header})")
    col %= table.shape[1]
    x = np.delete(table, col, axis=1)
    y = table[:, col]
    labels = torch.from_numpy(y)
    if np.all(y == np.round(y)):
        labels = labels.long()
    return torch.from_numpy(x).float(), labels
