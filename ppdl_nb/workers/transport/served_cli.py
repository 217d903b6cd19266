"""``ppdl-worker``: a data owner's command line for a worker served without Jupyter.

::

    ppdl-worker serve --name alice --listen 127.0.0.1:7700 --state-dir DIR
    ppdl-worker fingerprint --state-dir DIR           # the worker's (makes its key once)
    ppdl-worker allow FINGERPRINT --name nb --state-dir DIR         # a notebook
    ppdl-worker allow FINGERPRINT --name bob --peer --state-dir DIR  # a peer worker
    ppdl-worker revoke --name nb --state-dir DIR
    ppdl-worker dataset heart heart.csv --target label --epsilon 3 --delta 1e-5 --state-dir DIR
    ppdl-worker whoami [--rotate]                     # this user's notebook identity

``serve`` prints the endpoint and the fingerprint (one line each) and runs until
SIGTERM or Ctrl-C. See :mod:`.served` and docs/SERVED.md.

>>> parser().parse_args(["allow", "ab" * 32, "--name", "nb", "--state-dir", "d"]).name
'nb'
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ppdl_nb.workers.transport.served import Attach, serve
from ppdl_nb.workers.transport.served_client import notebook_identity
from ppdl_nb.workers.transport.served_state import OwnerState, fingerprint

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The command line's parser (subcommands serve, fingerprint, allow, revoke, ...)."""
    p = argparse.ArgumentParser(prog="ppdl-worker", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve a worker on a TCP port")
    s.add_argument("--name", required=True, help="the worker's name (an identifier)")
    s.add_argument("--listen", default="127.0.0.1:7700", help="HOST:PORT (PORT 0: any)")
    f = sub.add_parser("fingerprint", help="print the worker's fingerprint")
    a = sub.add_parser("allow", help="serve the holder of a fingerprint")
    a.add_argument("fingerprint")
    a.add_argument("--name", required=True, help="a label (a peer: the worker's name)")
    a.add_argument("--peer", action="store_true", help="a peer worker, not a notebook")
    r = sub.add_parser("revoke", help="stop serving a label")
    r.add_argument("--name", required=True)
    d = sub.add_parser("dataset", help="register a CSV or .pt file as a private dataset")
    d.add_argument("dataset")
    d.add_argument("path", help="relative to the state directory, or absolute")
    d.add_argument("--target", default="-1", help="label column: a name or an index")
    d.add_argument("--epsilon", type=float, required=True)
    d.add_argument("--delta", type=float, required=True)
    for q in (s, f, a, r, d):
        q.add_argument("--state-dir", required=True, help="the worker's own directory")
    w = sub.add_parser("whoami", help="this user's notebook identity (fingerprint)")
    w.add_argument("--rotate", action="store_true", help="make a new key (old one kept)")
    return p


def _ready(info: dict[str, Any]) -> None:
    print(f"ppdl-worker {info['name']} (life {info['boot']}) serving on {info['endpoint']}",
          flush=True)
    print(f"fingerprint {info['fingerprint']}", flush=True)
    print(f"datasets {','.join(info['datasets']) or '-'}", flush=True)


def _run(args: argparse.Namespace, attach: Attach | None) -> None:
    if args.command == "whoami":
        print(fingerprint(notebook_identity(rotate=args.rotate).public))
        return
    state = OwnerState(args.state_dir)
    if args.command == "serve":
        serve(args.name, state, args.listen.replace(":0", ":*") if args.listen.endswith(":0")
              else args.listen, attach=attach, ready=_ready)
    elif args.command == "fingerprint":
        print(fingerprint(state.keypair().public))
    elif args.command == "allow":
        state.allow(args.fingerprint, args.name, role="peer" if args.peer else "notebook")
    elif args.command == "revoke":
        state.revoke(args.name)
    elif args.command == "dataset":
        target = int(args.target) if args.target.lstrip("-").isdigit() else args.target
        state.add_dataset(args.dataset, args.path, epsilon=args.epsilon, delta=args.delta,
                          target=target)


def main(argv: Sequence[str] | None = None, *, attach: Attach | None = None) -> int:
    """Run one command; 0 on success, 2 with a one-line reason on a user error."""
    args = parser().parse_args(argv)
    try:
        _run(args, attach)
    except (ValueError, KeyError, PermissionError, ConnectionError) as exc:
        print(f"ppdl-worker: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    return 0
