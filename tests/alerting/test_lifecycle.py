"""for / keep_firing_for against a flapping series."""

from tests.alerting.kit import EP, World, metric_rule


def run(world, series, step=60):
    states = []
    for value in series:
        world.source.set_metric(EP + "ep1", "RequestLatency_P99", value)
        world.tick()
        states.append(world.state())
        world.advance(step)
    return states


def test_for_holds_pending_until_the_condition_has_lasted():
    w = World({"rules": [metric_rule(**{"for": "2m"})]})
    assert run(w, [900, 100, 900, 900, 900]) == ["pending", "inactive", "pending", "pending", "firing"]


def test_keep_firing_for_rides_out_flapping_and_resolves_once():
    w = World({"group_wait": 0, "rules": [metric_rule(**{"keep_firing_for": "3m"})]})
    flapping = [900, 100, 900, 100, 100, 900, 100, 100, 100, 100]
    states = run(w, flapping)
    assert states == ["firing"] * 9 + ["resolved"]
    assert w.actions().count("alert.firing") == 1 and w.actions().count("alert.resolved") == 1


def test_without_keep_firing_for_the_same_series_flaps():
    w = World({"rules": [metric_rule()]})
    assert run(w, [900, 100, 900, 100]) == ["firing", "resolved", "firing", "resolved"]


def test_no_data_is_no_breach_and_steady_ticks_write_nothing():
    w = World({"group_wait": 0, "rules": [metric_rule()]})
    run(w, [900])
    assert len(w.sink.sent) == 1
    writes = w.store.writes
    run(w, [900, 900, 900])
    assert w.store.writes == writes  # no alert, group or audit writes for an unchanged firing alert
    assert run(w, [None]) == ["resolved"]
