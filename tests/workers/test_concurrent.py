"""Several workers asked at once: each outcome in order; a failure raised after all finish."""

from __future__ import annotations

import pytest

from ppdl_nb.workers.core import tracing
from ppdl_nb.workers.core.concurrent import concurrently, outcomes


def test_outcomes_report_each_result_or_error_in_order(trio):
    alice, bob, charlie = trio
    done = outcomes([(alice, "no.such.step", {}), (bob, "no.such.step", {})])
    assert [ok for ok, _ in done] == [False, False]
    assert all("no.such.step" in str(err) and isinstance(err, KeyError) for _, err in done)
    assert outcomes([]) == []


def test_concurrently_raises_after_every_call_finished(trio):
    alice, bob, _ = trio
    with pytest.raises(KeyError, match="no.such.step"):
        concurrently([(alice, "no.such.step", {}), (bob, "no.such.step", {})])


def test_requests_from_other_threads_keep_the_round_label(trio):
    alice, bob, charlie = trio
    with tracing.recording() as rec, tracing.round_label("round 7"):
        outcomes([(w, "no.such.step", {}) for w in trio])
    labels = {r.get("round") for r in rec.records}
    assert labels == {"round 7"}, labels
