"""Grouping, dedup / repeat_interval, resolve notifications, inhibition and silences."""

from datetime import timedelta

import pytest

from core.errors import RequestError
from tests.alerting.kit import EP, World, metric_rule

BASE = {"group_by": ["endpoint"], "group_wait": "30s", "group_interval": "5m", "repeat_interval": "1h"}


def fire(world, resource, value=900, metric="RequestLatency_P99"):
    world.source.set_metric(EP + resource, metric, value)


def test_a_thousand_alerts_for_one_endpoint_are_one_notification():
    resources = tuple(f"dep{i}" for i in range(1000))
    w = World({**BASE, "rules": [metric_rule(resources=resources, labels={"endpoint": "ep1", "model": "m"})]})
    for r in resources:
        fire(w, r)
    assert w.tick()["transitions"] == 1000
    assert w.sink.sent == []  # group_wait
    w.advance(30)
    w.tick()
    (note,) = w.sink.sent
    assert (note.kind, note.alerts, note.labels["endpoint"], note.severity) == ("firing", 1000, "ep1", "warning")
    assert "and 995 more" in note.summary


def test_an_unchanged_group_is_not_resent_until_repeat_interval():
    w = World({**BASE, "rules": [metric_rule()]})
    fire(w, "ep1")
    w.tick()
    w.advance(30)
    w.tick()  # sent at t=30s
    for _ in range(11):  # ticks every five minutes up to t=3330s: still inside repeat_interval
        w.advance(300)
        w.tick()
    assert len(w.sink.sent) == 1
    w.advance(300)
    w.tick()
    assert [n.kind for n in w.sink.sent] == ["firing", "firing"]
    assert w.sink.sent[0].id != w.sink.sent[1].id and w.sink.sent[0].dedup_key == w.sink.sent[1].dedup_key


def test_a_new_alert_in_a_notified_group_is_sent_at_the_next_group_interval():
    w = World({**BASE, "rules": [metric_rule(resources=("a", "b"), labels={"endpoint": "ep1"})]})
    fire(w, "a")
    w.tick()
    w.advance(30)
    w.tick()
    fire(w, "b")
    w.advance(60)
    w.tick()
    assert len(w.sink.sent) == 1
    w.advance(240)
    w.tick()
    assert [n.alerts for n in w.sink.sent] == [1, 2]


def test_resolved_is_sent_once_when_the_whole_group_clears():
    w = World({**BASE, "rules": [metric_rule()]})
    fire(w, "ep1")
    w.tick()
    w.advance(30)
    w.tick()
    fire(w, "ep1", 100)
    for _ in range(5):
        w.advance(300)
        w.tick()
    assert [n.kind for n in w.sink.sent] == ["firing", "resolved"]
    assert w.actions("alert.notified") == ["alert.notified"] * 2


def test_an_alert_cleared_before_group_wait_sends_nothing():
    w = World({**BASE, "rules": [metric_rule()]})
    fire(w, "ep1")
    w.tick()
    fire(w, "ep1", 100)
    w.advance(10)
    w.tick()
    w.advance(600)
    w.tick()
    assert w.sink.sent == []


def test_endpoint_down_inhibits_its_latency_alerts():
    down = metric_rule("EndpointDown", metric="Availability", operator="<", threshold=1, severity="critical")
    latency = metric_rule("LatencyHigh")
    other = metric_rule("LatencyHigh2", resources=("ep2",))
    doc = {**BASE, "group_by": ["alertname", "endpoint"], "rules": [down, latency, other],
           "inhibit_rules": [{"source": ['alertname="EndpointDown"'], "target": ['alertname=~"Latency.*"'],
                              "equal": ["endpoint"]}]}
    w = World(doc)
    fire(w, "ep1", 0, "Availability")
    fire(w, "ep1")
    fire(w, "ep2")
    w.tick()
    w.advance(30)
    w.tick()
    assert sorted(n.labels["alertname"] for n in w.sink.sent) == ["EndpointDown", "LatencyHigh2"]
    assert w.state() == "firing"  # muted alerts keep their state


def test_silences_match_expire_and_are_audited():
    w = World({**BASE, "rules": [metric_rule(), metric_rule("Other", resources=("ep2",))]})
    silence = w.alerting.silences.create(['endpoint=~"ep1|ep3"', 'team="ml"'], timedelta(hours=1), "ana", "deploy")
    fire(w, "ep1")
    fire(w, "ep2")
    w.tick()
    w.advance(30)
    w.tick()
    assert [n.labels["endpoint"] for n in w.sink.sent] == ["ep2"]
    assert [s.id for s in w.alerting.silences.list()] == [silence.id]
    w.advance(3600)  # the silence ran out: the ep1 group is notified at its next flush
    w.tick()
    assert sorted(n.labels["endpoint"] for n in w.sink.sent) == ["ep1", "ep2", "ep2"]
    assert w.alerting.silences.list() == [] and len(w.alerting.silences.list(include_expired=True)) == 1
    assert w.actions("silence.") == ["silence.created"]


def test_a_silence_can_be_expired_early():
    w = World({**BASE, "rules": [metric_rule()]})
    silence = w.alerting.silences.create(['endpoint="ep1"'], timedelta(hours=4), "ana", "maintenance")
    fire(w, "ep1")
    w.tick()
    w.advance(30)
    w.tick()
    assert w.sink.sent == []
    w.alerting.silences.expire(silence.id, "bob")
    w.advance(1)
    w.tick()
    assert len(w.sink.sent) == 1
    assert w.actions("silence.") == ["silence.created", "silence.expired"]
    with pytest.raises(KeyError):
        w.alerting.silences.expire("nope", "bob")


@pytest.mark.parametrize(("matchers", "field"), [([], "matchers"), (["bad"], "matchers[0]"), (['a=~".*"'], "matchers")])
def test_unusable_silences_are_refused_naming_the_field(matchers, field):
    w = World({"rules": []})
    with pytest.raises(RequestError) as err:
        w.alerting.silences.create(matchers, timedelta(hours=1), "ana", "x")
    assert err.value.field == field
