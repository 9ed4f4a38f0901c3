import json

from core.alerting.rules import load_alerting, parse_alerting, parse_duration
from tests.alerting.kit import metric_rule


def test_a_valid_document_parses_metric_and_log_rules():
    doc = {"group_by": ["endpoint"], "group_wait": "10s", "repeat_interval": "1h30m",
           "inhibit_rules": [{"source": ['alertname="Down"'], "target": ['alertname=~"Latency.*"'],
                              "equal": ["endpoint"]}],
           "rules": [metric_rule(**{"for": "5m", "keep_firing_for": 600, "runbook": "https://runbooks/x",
                                    "action": {"type": "retrain", "model": "diabetes"}}),
                     {"name": "Errors", "kind": "log", "workspace_id": "w", "query": "T | count",
                      "operator": ">=", "threshold": 3, "severity": "error", "action": {"type": "rollback"}}]}
    config, problems = parse_alerting(json.dumps(doc))
    assert problems == []
    metric, log = config.rules
    assert (metric.for_, metric.keep_firing_for, metric.action.model) == (300, 600, "diabetes")
    assert log.kind == "log" and log.action.type == "rollback"
    assert (config.group_wait, config.repeat_interval, config.inhibit_rules[0].equal) == (10, 5400, ("endpoint",))


def test_every_problem_names_its_path():
    doc = {"rules": [metric_rule(operator="~", threshold="high", labels={"alertname": "x"}, colour=1),
                     {"kind": "log", "name": "L", "operator": ">", "threshold": 1}],
           "inhibit_rules": [{"source": ["nonsense"], "target": ['a="b"']}], "group_wait": "soon"}
    _, problems = parse_alerting(json.dumps(doc))
    text = "\n".join(problems)
    for path in ("rules[0].operator", "rules[0].threshold", "rules[0].labels.alertname", "rules[0].colour",
                 "rules[1].workspace_id", "rules[1].query", "inhibit_rules[0].source[0]",
                 "REACTOR_ALERT_RULES.group_wait"):
        assert path in text, path


def test_the_setting_may_name_a_file(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": [metric_rule()]}))
    config, problems = load_alerting(str(path))
    assert problems == [] and config.rules[0].name == "LatencyHigh"
    assert "cannot read file" in load_alerting(str(tmp_path / "missing.json"))[1][0]
    assert load_alerting("") == (load_alerting("")[0], [])


def test_durations():
    assert [parse_duration(v) for v in ("90s", "5m", "1h30m", "2d", 15, "", "5 minutes", -1)] == [
        90, 300, 5400, 172800, 15, None, None, None]
