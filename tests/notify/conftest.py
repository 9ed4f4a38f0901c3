"""Notify fixtures: a real local receiver on loopback, recognisable fake secrets, an outbox
on the session's Azurite with a hand-moved clock (no sleeping)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from core.adapters.table_store import TableStateStore
from core.ledger import Ledger
from core.notify.model import Notification
from core.notify.outbox import Outbox
from core.notify.routing import parse_routes, secret_setting
from core.notify.send import Sender
from embedded.receiver import LocalReceiver
from tests.fakes import Clock, MemoryBlobStore

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def secrets(url: str) -> dict[str, str]:
    """Fake secrets that a leak check can recognise anywhere."""
    return {"teams": f"{url}/teams/workflows/SECRET-teams-4f1c9e", "slack": f"{url}/slack/T0/B0/SECRET-slack-77aa",
            "webhook": f"{url}/webhook/SECRET-hook-0d0d", "pagerduty": "SECRET-pd-routing-key-0123456789ab",
            "opsgenie": "SECRET-genie-key-fe12"}


def routes_doc(url: str) -> dict:
    receivers = {"teams": {"type": "teams"}, "slack": {"type": "slack"}, "webhook": {"type": "webhook"},
                 "pagerduty": {"type": "pagerduty", "url": f"{url}/pagerduty/v2/enqueue"},
                 "opsgenie": {"type": "opsgenie", "url": f"{url}/opsgenie"}}
    routes = [{"receiver": name, "match": {"to": name}} for name in receivers]
    return {"default": "webhook", "receivers": receivers, "routes": routes}


def routes_for(url: str, doc: dict | None = None):
    env = {secret_setting(k): v for k, v in secrets(url).items()}
    routes, problems = parse_routes(json.dumps(doc or routes_doc(url)), env)
    assert problems == []
    return routes


def note(i: int = 1, to: str = "slack", **kw) -> Notification:
    base = dict(id=f"alert-{to}-{i}", kind="firing", title="RMSE above threshold", severity="error",
                summary=f"diabetes 7 on endpoint diabetes-prod: rmse 61.2 > 55 for 15m (#{i})",
                dedup_key=f"rmse-high/diabetes/{to}", created_at=T0,
                labels={"model": "diabetes", "version": "7", "endpoint": "diabetes-prod", "to": to},
                fields={"rmse": "61.2 (threshold 55)", "window": "15m"},
                links={"run": "https://ml.azure.com/runs/r1", "dashboard": "https://portal.azure.com/#d",
                       "runbook": "https://wiki.example/runbooks/rmse"})
    base.update(kw)
    return Notification(**base)  # type: ignore[arg-type]


@pytest.fixture
def receiver() -> Iterator[LocalReceiver]:
    with LocalReceiver(echo=lambda line: None) as r:
        yield r


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def store(env: dict[str, str]) -> TableStateStore:
    return TableStateStore.from_connection(env["REACTOR_STORAGE_CONNECTION"])


@pytest.fixture
def ledger(store, env, clock) -> Ledger:
    return Ledger(store, MemoryBlobStore(), prefix=env["REACTOR_TABLE_PREFIX"], container="unused",
                  clock=clock, lease_seconds=60)


@pytest.fixture
def outbox(store, ledger, env, clock, receiver) -> Outbox:
    return Outbox(store, ledger, prefix=env["REACTOR_TABLE_PREFIX"], routes=routes_for(receiver.url),
                  clock=clock, send=Sender(timeout=5), jitter=lambda: 1.0)
