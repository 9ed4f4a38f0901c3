"""A rule's action: retrain through the callable it was given, rollback through the release
service (the model from the rule or the alert); incidents the app raises itself."""

from tests.alerting.kit import EP, World, metric_rule


def test_retrain_action_runs_once_per_episode_and_is_audited():
    calls = []

    def retrain(model, reason, actor):
        calls.append((model, actor))
        return {"action": "started", "model": model}

    w = World({"rules": [metric_rule(action={"type": "retrain", "model": "diabetes"})]}, retrain=retrain)
    w.source.set_metric(EP + "ep1", "RequestLatency_P99", 900)
    w.tick()
    w.advance(60)
    w.tick()
    assert calls == [("diabetes", "alerting")]
    (record,) = [r for r in w.ledger.audit_records() if r["action"] == "alert.action"]
    firing = next(r for r in w.ledger.audit_records() if r["action"] == "alert.firing")
    assert record["detail"]["alert"] == firing["correlation_id"] == record["correlation_id"]
    assert record["detail"]["outcome"] == {"action": "started", "model": "diabetes"}


def test_a_failing_retrain_is_recorded_and_does_not_stop_evaluation():
    def retrain(model, reason, actor):
        raise KeyError(f"no retraining policy for model {model!r}")

    rules = [metric_rule(action={"type": "retrain", "model": "nope"}), metric_rule("B", resources=("ep2",))]
    w = World({"rules": rules}, retrain=retrain)
    w.source.set_metric(EP + "ep1", "RequestLatency_P99", 900)
    w.source.set_metric(EP + "ep2", "RequestLatency_P99", 900)
    assert w.tick()["transitions"] == 2
    (record,) = [r for r in w.ledger.audit_records() if r["action"] == "alert.action"]
    assert record["detail"]["outcome"] == "failed" and "KeyError" in record["detail"]["error"]


def test_rollback_action_rolls_back_the_alerts_model_once():
    calls = []

    def rollback(model, reason):
        calls.append((model, reason))
        return {"action": "rolled_back", "release": f"{model}:3"}

    rule = metric_rule(action={"type": "rollback"}, labels={"model": "diabetes", "endpoint": "diabetes-prod"})
    w = World({"rules": [rule]}, rollback=rollback)
    w.source.set_metric(EP + "ep1", "RequestLatency_P99", 900)
    w.tick()
    w.advance(60)
    w.tick()
    assert [m for m, _ in calls] == ["diabetes"] and "LatencyHigh" in calls[0][1]
    (record,) = [r for r in w.ledger.audit_records() if r["action"] == "alert.action"]
    assert record["detail"]["outcome"] == {"action": "rolled_back", "release": "diabetes:3"}
    assert record["detail"]["model"] == "diabetes"


def test_rollback_without_a_model_is_recorded_as_failed():
    rule = metric_rule(action={"type": "rollback"}, labels={"endpoint": "ep1"})
    w = World({"rules": [rule]}, rollback=lambda m, r: {})
    w.source.set_metric(EP + "ep1", "RequestLatency_P99", 900)
    w.tick()
    (record,) = [r for r in w.ledger.audit_records() if r["action"] == "alert.action"]
    assert record["detail"]["outcome"] == "failed" and "no model" in record["detail"]["error"]


def test_incidents_fire_once_and_resolve():
    w = World({"rules": []})
    labels = {"model": "diabetes", "severity": "critical"}
    assert not w.alerting.incident("ReleaseRolledBack", labels, False, "nothing yet")
    assert w.alerting.incident("ReleaseRolledBack", labels, True, "diabetes:3 rolled back")
    assert not w.alerting.incident("ReleaseRolledBack", labels, True, "again")  # deduplicated
    w.advance(1)
    assert w.alerting.incident("ReleaseRolledBack", labels, False, "diabetes:4 promoted")
    actions = [r["action"] for r in w.ledger.audit_records() if r["action"] in ("alert.firing", "alert.resolved")]
    assert actions == ["alert.firing", "alert.resolved"]
