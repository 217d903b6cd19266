"""SPDZ over workers: each operation written once, as the routine every party runs.

The protocol math is in :mod:`ppdl_nb.mpc`; the tensor API over it is
:class:`~ppdl_nb.tensors.shared.SharedTensor`. In between, bottom up:

* :mod:`.state`: what a worker keeps (sessions, one record per label), as dataclasses.
* :mod:`.routines`: the party side of each operation, a generator that yields where it
  needs the others (an opening, the dealer's correction); it sends nothing itself.
* :mod:`.comm`: the messages between parties and from the dealer, and waiting for them.
* :mod:`.runner`: ``mpc.run`` / ``mpc.resume``: a party runs a routine, fused (to its
  end, waiting for its peers) or round by round; rounds are counted there only.
* :mod:`.steps`: setup, dealing (the offline phase), sharing and opening.
* :mod:`.session`: the notebook's side: :class:`~.session.MPCSession` runs an operation
  on every party, in either choreography, through typed step handles.

A worker imports these modules when a step of theirs is first asked for
(:mod:`ppdl_nb.boot`); nothing is imported here.
"""
