"""A rule's action: retrain through the callable it was given, rollback recorded as not available."""

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


def test_rollback_is_recorded_as_not_available_yet():
    w = World({"rules": [metric_rule(action={"type": "rollback"})]})
    w.source.set_metric(EP + "ep1", "RequestLatency_P99", 900)
    w.tick()
    (record,) = [r for r in w.ledger.audit_records() if r["action"] == "alert.action"]
    assert record["detail"]["outcome"].startswith("not available yet")
