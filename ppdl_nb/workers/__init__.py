"""Workers: the party that holds data and answers messages, and the ways to reach it.

Two subpackages, the lower one never importing the upper:

* :mod:`.core`: the :class:`Worker` (object store with policies, the one resolver,
  counters), the codec (msgpack + raw tensor buffers), the message vocabulary and the
  protocol-step registry (:mod:`.core.messages`), and the allowlist of operations
  (:mod:`.core.ops`).
* :mod:`.transport`: clients for a worker (:class:`VirtualWorker`, a connection to an
  in-process worker; kernel workers through :func:`~.transport.kernel.launch`), the
  encrypted ZeroMQ channels, keys, and the runtime a kernel worker runs.

>>> from ppdl_nb.workers import VirtualWorker, decode, encode
>>> alice = VirtualWorker("alice")
>>> decode(alice.owner.handle(encode({"kind": "ping"}), caller="me"))["result"]
'pong'
>>> "Tensor.sum" in OPS, "ping" in HANDLERS
(True, True)
"""

from ppdl_nb.workers.core.codec import Ref, decode, encode
from ppdl_nb.workers.core.messages import HANDLERS, STEPS, Step, message, protocol_step
from ppdl_nb.workers.core.ops import OPS, op
from ppdl_nb.workers.core.worker import Counters, Worker
from ppdl_nb.workers.transport.client import WorkerClient
from ppdl_nb.workers.transport.virtual import VirtualWorker

__all__ = [
    "HANDLERS",
    "OPS",
    "STEPS",
    "Counters",
    "Ref",
    "Step",
    "VirtualWorker",
    "Worker",
    "WorkerClient",
    "decode",
    "encode",
    "message",
    "op",
    "protocol_step",
]
