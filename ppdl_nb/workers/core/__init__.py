"""The worker itself, with no transport: what a party holds and how it answers.

:mod:`.worker` (the Worker and its counters), :mod:`.store` (objects with policies),
:mod:`.codec` (msgpack + raw tensor buffers, allowlisted types), :mod:`.messages` (the
vocabulary and the protocol-step registry), :mod:`.handlers` (the core message kinds),
:mod:`.ops` (the allowlist of operations), :mod:`.modules` (models as graph + weights),
:mod:`.tracing`, :mod:`.concurrent`, :mod:`.state`, :mod:`.waiting`. Nothing here
imports :mod:`ppdl_nb.workers.transport`.
"""
