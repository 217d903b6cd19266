"""Worker channel: small-message round trip and 64 MiB throughput: the AES-GCM channel,
CurveZMQ with ZAP, and plain ZeroMQ.

Rows: median round trip of a ~100-byte message for plain ZeroMQ (DEALER/ROUTER),
CurveZMQ (a CURVE server whose ZAP handler allows only the client's key), the
encrypted channel, a Jupyter ``execute('pass')`` to a real kernel and the encrypted
channel to a server running inside a kernel; then one-way throughput of a 64 MiB
buffer (request of 64 MiB, tiny acknowledgement) for plain ZeroMQ, CurveZMQ (one
64 MiB frame: its best case) and the channel, measured in interleaved runs, and the
ratios. This run decides the channel (see :mod:`ppdl_nb.workers.transport.channel`):
the hand-written channel stays only while it is at least 2x CurveZMQ on 64 MiB.
Servers run in another process (a subprocess, or a kernel), as workers do.

    python benchmarks/bench_channel.py [--quick] [--json PATH]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

from ppdl_nb.workers.transport.channel import ChannelClient, ChannelServer, private_endpoint  # noqa: E402
from ppdl_nb.workers.transport.keys import KeyPair  # noqa: E402

HEADER = b"h" * 100


def _answer(frames: list, peer: str = "") -> list:
    """Echo small messages; acknowledge big ones with their size."""
    total = sum(memoryview(f).nbytes for f in frames)
    return [str(total).encode()] if total > 4096 else list(frames)


class _AllowOne:
    """ZAP credentials provider: exactly one CURVE client key (z85) may connect."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def callback(self, domain: str, key: bytes) -> bool:
        return key == self.key


def serve(mode: str, client_pub: str) -> None:
    """Subprocess side: print the endpoint and public key, serve until stdin closes."""
    if mode in ("plain", "curve"):
        sock = zmq.Context.instance().socket(zmq.ROUTER)
        public = b"-"
        if mode == "curve":
            from zmq.auth.thread import ThreadAuthenticator

            auth = ThreadAuthenticator(zmq.Context.instance())
            auth.start()
            auth.configure_curve_callback("*", _AllowOne(client_pub.encode()))
            public, secret = zmq.curve_keypair()
            sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True
        endpoint = private_endpoint(mode)
        sock.bind(endpoint)
        print(endpoint, public.decode(), flush=True)
        while True:
            msg = sock.recv_multipart(copy=False)
            sock.send_multipart([msg[0], *_answer([f.buffer for f in msg[1:]])])
    keys = KeyPair.generate()
    server = ChannelServer(keys, None, _answer, {"bench": client_pub}, name="bench-server")
    print(server.endpoint, keys.public_hex, flush=True)
    sys.stdin.read()


def _spawn(mode: str, client_pub: str) -> tuple[subprocess.Popen, str, str]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", mode, client_pub],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    endpoint, pub = proc.stdout.readline().split()
    return proc, endpoint, pub


class _Plain:
    def __init__(self, endpoint: str, curve: tuple[bytes, bytes, bytes] | None = None) -> None:
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        if curve is not None:  # (our public, our secret, server public), z85
            self.sock.curve_publickey, self.sock.curve_secretkey = curve[0], curve[1]
            self.sock.curve_serverkey = curve[2]
        self.sock.connect(endpoint)

    def request(self, frames: list, timeout: float = 60.0) -> list:
        self.sock.send_multipart(frames, copy=len(frames[-1]) < 65536)
        return self.sock.recv_multipart()


def _rtt(client, repeat: int) -> float:
    for _ in range(max(3, repeat // 10)):
        client.request([HEADER])
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        client.request([HEADER])
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _transfer(client, payload: bytes) -> float:
    t0 = time.perf_counter()
    client.request([HEADER, memoryview(payload)])
    return time.perf_counter() - t0


def kernel_rows(repeat: int) -> list[dict]:
    """Round trips to a real kernel: Jupyter execute, and our channel served inside it."""
    from ppdl_nb.workers.transport.kernel import KernelProcess

    keys = KeyPair.generate()
    t0 = time.perf_counter()
    kernel = KernelProcess("bench")
    kernel.spawn()
    kernel.wait_ready(timeout=60)
    start_s = time.perf_counter() - t0
    try:
        booted = kernel.execute(
            "from ppdl_nb.workers.transport.channel import ChannelServer\n"
            "from ppdl_nb.workers.transport.keys import KeyPair\n"
            "_keys = KeyPair.generate()\n"
            "_srv = ChannelServer(_keys, None, lambda f, p: list(f), "
            f"{{'nb': {keys.public_hex!r}}})\n"
            "print(_srv.endpoint, _keys.public_hex)\n"
        )
        endpoint, public_key = booted.stdout.split()
        info = {"endpoint": endpoint, "public_key": public_key}
        kc = kernel.kc
        kc.execute_interactive("pass", timeout=30)
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            kc.execute_interactive("pass", timeout=30, output_hook=lambda m: None)
            times.append(time.perf_counter() - t)
        with ChannelClient(keys, info["endpoint"], info["public_key"], "nb", peer="bench") as c:
            chan = _rtt(c, repeat * 10)
    finally:
        kernel.shutdown()
    return [
        {"what": "jupyter execute('pass') round trip", "ms": 1e3 * statistics.median(times)},
        {"what": "channel round trip, server in a kernel", "ms": 1e3 * chan},
        {"what": "kernel start (one)", "ms": 1e3 * start_s},
    ]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--serve", nargs=2, metavar=("MODE", "KEY"), help=argparse_hidden())
    p.add_argument("--no-kernel", action="store_true", help="skip the kernel rows")
    args = p.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    size = (1 << 20) if args.quick else (64 << 20)
    repeat_small = 50 if args.quick else 2000
    repeat_big = 2 if args.quick else 9

    keys = KeyPair.generate()
    curve_pub, curve_secret = zmq.curve_keypair()
    plain_proc, plain_ep, _ = _spawn("plain", keys.public_hex)
    curve_proc, curve_ep, curve_server = _spawn("curve", curve_pub.decode())
    chan_proc, chan_ep, server_pub = _spawn("channel", keys.public_hex)
    clients = {"plain zmq": _Plain(plain_ep),
               "curve zmq": _Plain(curve_ep, (curve_pub, curve_secret, curve_server.encode())),
               "channel": ChannelClient(keys, chan_ep, server_pub, "bench", peer="bench-server")}
    try:
        rows = [{"what": f"{name} round trip, 100 B", "ms": 1e3 * _rtt(c, repeat_small)}
                for name, c in clients.items()]
        payload = bytes(size)
        times: dict[str, list[float]] = {name: [] for name in clients}
        for c in clients.values():
            _transfer(c, payload)  # warm up
        for _ in range(repeat_big):  # interleaved, so drifts hit all alike
            for name, c in clients.items():
                times[name].append(_transfer(c, payload))
        rate = {name: size / 1e6 / statistics.median(t) for name, t in times.items()}
        rows += [{"what": f"{name} {size >> 20} MiB one way", "MB/s": r}
                 for name, r in rate.items()]
        rows += [{"what": f"channel / {name} throughput", "ratio": rate["channel"] / rate[name]}
                 for name in ("plain zmq", "curve zmq")]
    finally:
        clients["channel"].close()
        for proc in (plain_proc, curve_proc, chan_proc):
            proc.kill()
            proc.wait()
    if not (args.quick or args.no_kernel):
        rows += kernel_rows(repeat=50)
    report("Worker channel (AES-256-GCM over ZeroMQ) vs CurveZMQ, plain ZeroMQ, Jupyter",
           rows, args,
           {"payload_bytes": size, "repeat_small": repeat_small, "repeat_big": repeat_big})


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
