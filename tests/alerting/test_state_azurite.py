"""Alert state on real Table Storage (Azurite): a stale ETag loses, so a transition is recorded once."""

import pytest

from core.adapters.table_store import TableStateStore
from core.alerting.lifecycle import AlertState
from core.alerting.store import AlertStore
from tests.alerting.kit import EP, World, metric_rule
from tests.conftest import unique_prefix

pytestmark = pytest.mark.integration


def test_alert_state_round_trips_and_stale_writes_lose(azurite):
    store = TableStateStore.from_connection(azurite.connection_string, "")
    prefix = unique_prefix()
    w = World({"group_wait": 0, "rules": [metric_rule()]}, store=store, prefix=prefix)
    w.source.set_metric(EP + "ep1", "RequestLatency_P99", 900)
    assert w.tick()["transitions"] == 1
    assert w.state() == "firing" and len(w.sink.sent) == 1

    alerts = AlertStore(store, prefix)
    (stored,) = alerts.alerts().values()
    assert stored.value.labels["endpoint"] == "ep1" and stored.value.annotations["summary"].startswith("LatencyHigh")
    assert alerts.save_alert(AlertState(stored.value.fingerprint, stored.value.labels, "resolved"), stored.etag)
    assert not alerts.save_alert(AlertState(stored.value.fingerprint, stored.value.labels, "pending"), stored.etag)
    assert not alerts.save_alert(stored.value, "")  # insert of an existing alert loses too
    assert w.state() == "resolved"
