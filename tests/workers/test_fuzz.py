"""10,000 malformed messages: each gets an error reply naming the problem, and the worker
keeps serving with everything it held."""

from __future__ import annotations

import msgpack
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppdl_nb.workers.core import codec
from ppdl_nb.workers.core import handlers as _handlers  # noqa: F401
from ppdl_nb.workers.core.codec import Ref
from ppdl_nb.workers.core.messages import HANDLERS
from ppdl_nb.workers.core.worker import Worker

BATCH = 50
EXAMPLES = 200  # 200 x 50 = 10,000 messages


def _ext_tensor(dtype, shape, index):
    return msgpack.ExtType(1, msgpack.packb([dtype, shape, index]))


valid_kinds = st.sampled_from(["store", "fetch", "delete", "call", "send", "info", "step"])


@st.composite
def malformed(draw):
    """One message that must be refused, as frames."""
    case = draw(st.integers(0, 11))
    if case == 0:  # random bytes as header
        return [draw(st.binary(min_size=1, max_size=64).filter(lambda b: b[0] not in (0x80,)))]
    if case == 1:  # truncated valid header
        frames = codec.encode({"kind": "call", "fn": "torch.add", "args": [Ref(0), 1.0]})
        header = bytes(frames[0])
        cut = draw(st.integers(1, len(header) - 1))
        return [header[:cut]]
    if case == 2:  # wrong dtype name in a tensor
        dtype = draw(st.sampled_from(["object", "complex128", "str", "", "float128", "q"]))
        return [msgpack.packb({"kind": "store", "obj": _ext_tensor(dtype, [2], 1)}), b"\0" * 8]
    if case == 3:  # declared shape does not match the buffer
        shape = draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
        n = 1
        for d in shape:
            n *= d
        size = draw(st.integers(0, 64).filter(lambda s, n=n: s != 4 * n))
        return [msgpack.packb({"kind": "store", "obj": _ext_tensor("float32", shape, 1)}),
                b"\0" * size]
    if case == 4:  # oversized (the fuzzed worker's limit is 1 MiB)
        return codec.encode({"kind": "store", "obj": torch.zeros(300_000)})
    if case == 5:  # unknown kind
        kind = draw(st.text(max_size=10).filter(lambda k: k not in HANDLERS))
        return codec.encode({"kind": kind})
    if case == 6:  # unknown op
        fn = draw(st.sampled_from(["os.system", "builtins.eval", "torch.load", "__import__",
                                   "Tensor.__reduce_ex__", "torch.save", "subprocess.run"]))
        return codec.encode({"kind": "call", "fn": fn, "args": []})
    if case == 7:  # wrong field types
        kind = draw(valid_kinds.filter(lambda k: k not in ("info",)))
        bad = draw(st.sampled_from([None, "x", 1.5, [1], {"a": 1}, True]))
        field = {"store": "allow", "fetch": "id", "delete": "ids", "call": "fn",
                 "send": "id", "step": "name"}[kind]
        msg = {"kind": kind, "obj": 0, "id": 0, "ids": [], "fn": "torch.add", "args": [],
               "to": "bob", "name": "x"}
        msg = {k: v for k, v in msg.items() if k == "kind" or k in _required(kind)}
        if field in ("allow", "ids"):  # list fields: anything but a list
            bad = draw(st.sampled_from([None, "x", 1.5, {"a": 1}, True]))
        msg[field] = bad
        return codec.encode(msg)
    if case == 8:  # reference to an object that does not exist
        ref = draw(st.integers(1000, 2**40))
        return codec.encode({"kind": "call", "fn": "torch.add", "args": [Ref(ref), 1]})
    if case == 9:  # not a map
        return codec.encode(draw(st.sampled_from([[1, 2], "store", 3, None, b"fetch"])))
    if case == 10:  # fetch or send of a missing id
        return codec.encode({"kind": "fetch", "id": draw(st.integers(1000, 10**6))})
    # case 11: hostile model payload
    target = draw(st.sampled_from(["builtins.eval", "torch.load", "os.system", "posix.system"]))
    spec = {"format": 1, "layers": {}, "state": {}, "params": [],
            "nodes": [{"name": "x", "op": "placeholder", "target": "x"},
                      {"name": "y", "op": "call_function", "target": target, "args": ("x",)},
                      {"name": "out", "op": "output", "target": "output", "args": ("y",)}]}
    return codec.encode({"kind": "store_module", "spec": spec})


def _required(kind):
    return {"store": ["obj"], "fetch": ["id"], "delete": ["ids"], "call": ["fn", "args"],
            "send": ["id", "to"], "step": ["name"]}[kind]


def _make_worker():
    w = Worker("alice", max_message_bytes=1 << 20)
    held = {w.put(torch.arange(5.0) * i, private=i % 2 == 0): torch.arange(5.0) * i
            for i in range(4)}
    return w, held


WORKER, HELD = _make_worker()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(malformed(), min_size=BATCH, max_size=BATCH))
def test_malformed_messages_get_errors_and_lose_nothing(batch):
    for frames in batch:
        reply = codec.decode(WORKER.handle(frames, caller="me"))
        assert reply["ok"] is False, frames
        assert reply["error"]["message"]
    # still serving, nothing lost
    assert sorted(WORKER.store.ids()) == sorted(HELD)
    for obj_id, value in HELD.items():
        assert torch.equal(WORKER.store.entry(obj_id).obj, value)
    ok = codec.decode(WORKER.handle(codec.encode({"kind": "call", "fn": "torch.add",
                                                   "args": [Ref(1), 1.0]}), caller="me"))
    assert ok["ok"] is True
    WORKER.store.delete([ok["result"]["id"]], "me")


def test_error_replies_name_the_problem():
    w, _ = _make_worker()
    cases = {
        "not in the allowlist": {"kind": "call", "fn": "os.system", "args": ["ls"]},
        "unknown message kind": {"kind": "exec"},
        "holds no object 77": {"kind": "fetch", "id": 77},
        "lacks required field 'id'": {"kind": "fetch"},
    }
    for expect, msg in cases.items():
        reply = codec.decode(w.handle(codec.encode(msg), caller="me"))
        assert expect in reply["error"]["message"]


def test_pickle_payload_is_not_unpickled():
    import pickle

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pwned')",))

    w, held = _make_worker()
    blob = pickle.dumps(Boom())  # a peer's pickle: bytes to us, never loaded
    reply = codec.decode(w.handle([blob], caller="me"))
    assert reply["ok"] is False
    reply = codec.decode(w.handle(codec.encode({"kind": "store_module", "spec": {"pickle": blob}}),
                                  caller="me"))
    assert reply["ok"] is False and "model format" in reply["error"]["message"]
    assert sorted(w.store.ids()) == sorted(held)


def test_the_fuzz_run_sent_at_least_10000_messages():
    # runs after the property test in this module (pytest keeps definition order)
    assert WORKER.counters.messages_in >= BATCH * EXAMPLES
