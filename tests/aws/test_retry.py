"""The retry helper's watch list (aws/retry.py), without servers: which calls the watchdog
sees, and when."""

from __future__ import annotations

import pytest

from alternator_migrator.aws import retry
from alternator_migrator.aws.retry import Backoff, RetryPolicy

FAST = RetryPolicy(base=0.0, cap=0.0)


@pytest.fixture(autouse=True)
def _fresh_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "_calls", set())
    monkeypatch.setattr(retry, "_warned", {})


def _later(b: Backoff) -> float:
    # A time past WARN_AFTER given to due_warnings, so that the real watchdog thread (which
    # looks at the real clock) has nothing to report meanwhile.
    return b.start + retry.WARN_AFTER + 1


def test_a_call_waiting_for_its_answer_is_watched_from_the_start() -> None:
    with Backoff(FAST, endpoint="target", op="BatchWriteItem") as b:
        assert b in retry._calls
        assert any("has had no answer" in line for line in retry.due_warnings(_later(b)))
    assert b not in retry._calls


def test_a_loop_that_only_warns_once_failing_is_watched_from_its_first_retry() -> None:
    with Backoff(FAST, endpoint="target", op="BatchWriteItem", unanswered=False) as b:
        assert b not in retry._calls  # nothing to say about it yet
        assert retry.due_warnings(_later(b)) == []
        assert b.retry("unprocessed_items", "3 items unprocessed")
        assert b in retry._calls
        (line,) = retry.due_warnings(_later(b))
        assert "has been failing" in line and "3 items unprocessed" in line
    assert b not in retry._calls


def test_a_backoff_outside_a_with_block_is_never_watched() -> None:
    b = Backoff(FAST, endpoint="source", op="Scan")
    assert b.retry("server_error", "InternalServerError")
    assert b not in retry._calls
