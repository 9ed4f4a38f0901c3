"""Secrets never leak: a scenario through every outcome with recognisable fake secrets,
then a search of every log record (DEBUG, urllib3 included), audit record and stored row."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from tests.notify.conftest import note, secrets

pytestmark = pytest.mark.integration


def test_no_secret_in_logs_audit_or_rows(outbox, receiver, clock, ledger, store, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.fail("teams", 400)
    receiver.fail("slack", 500, times=2)
    receiver.fail("pagerduty", 429, times=1, retry_after="5")
    receiver.fail("opsgenie", 401)
    for kind in ("teams", "slack", "pagerduty", "opsgenie", "webhook"):
        outbox.enqueue(note(to=kind))
        outbox.enqueue(note(to=kind, kind="resolved", id=f"resolved-{kind}"))
    for _ in range(4):
        outbox.drain()
        clock.now += timedelta(minutes=15)
    assert len(receiver.of("slack")) == 2 and len(receiver.of("pagerduty")) == 2
    assert any("urllib3" in r.name for r in caplog.records)  # the transport did log, at DEBUG
    rows = [e.props for t in (outbox.deliveries_table, outbox.notifications_table) for e in store.query(t)]
    haystack = "\n".join([caplog.text, json.dumps(ledger.audit_records(), default=str),
                          json.dumps(rows, default=str)])
    assert "rejected" in haystack and "HTTP 400" in haystack
    for secret in secrets(receiver.url).values():
        assert secret not in haystack
    assert "SECRET" not in haystack
