"""Routing: first match wins unless ``continue``, a default, and errors that name the path."""

from __future__ import annotations

import json

from core.notify.routing import parse_routes, secret_setting
from tests.notify.conftest import note

SECRETS = {secret_setting(n): f"https://hooks.example/{n}/SECRET" for n in ("a", "b", "c")}
SECRETS[secret_setting("pd")] = "SECRET-pd-key"


def routes(**doc):
    doc.setdefault("receivers", {"a": {"type": "slack"}, "b": {"type": "teams"}, "c": {"type": "webhook"},
                                 "pd": {"type": "pagerduty"}})
    parsed, problems = parse_routes(json.dumps(doc), SECRETS)
    assert problems == []
    return parsed


def names(parsed, n):
    return [t.name for t in parsed.targets(n)]


def test_first_match_wins_unless_continue():
    r = routes(default="c", routes=[{"receiver": "pd", "severity": ["critical"], "continue": True},
                                    {"receiver": "a", "match": {"model": "diabetes"}},
                                    {"receiver": "b"}])
    assert names(r, note(severity="critical")) == ["pd", "a"]
    assert names(r, note(severity="warning")) == ["a"]
    assert names(r, note(labels={"model": "churn"})) == ["b"]


def test_regex_is_anchored_and_default_catches_the_rest():
    r = routes(default="c", routes=[{"receiver": "a", "match_re": {"model": "diab.*", "endpoint": ".*-prod"}}])
    assert names(r, note()) == ["a"]
    assert names(r, note(labels={"model": "prediabetes", "endpoint": "x-prod"})) == ["c"]
    assert names(r, note(labels={"model": "diabetes", "endpoint": "x-prod-2"})) == ["c"]


def test_severity_and_kind_match_like_labels():
    r = routes(routes=[{"receiver": "a", "match": {"kind": "resolved"}},
                       {"receiver": "b", "match": {"severity": "info"}}])
    assert names(r, note(kind="resolved")) == ["a"]
    assert names(r, note(severity="info")) == ["b"]
    assert names(r, note()) == []


def test_empty_config_routes_nowhere():
    parsed, problems = parse_routes("", {})
    assert problems == [] and parsed.targets(note()) == []


def test_problems_name_the_path_and_never_the_secret():
    doc = {"default": "zz", "surprise": 1,
           "receivers": {"a": {"type": "slack"}, "bad name": {"type": "teams"}, "x": {"type": "fax"},
                         "empty": {"type": "webhook"}, "pd": {"type": "pagerduty", "url": "not a url"}},
           "routes": [{"receiver": "missing"}, {"receiver": "a", "match_re": {"model": "("}},
                      {"receiver": "a", "severity": ["fatal"], "continue": "yes"}, "nope"]}
    env = {**SECRETS, secret_setting("a"): "not-a-url SECRET-in-a-bad-url"}
    _, problems = parse_routes(json.dumps(doc), env)
    text = "\n".join(problems)
    for expected in ("REACTOR_NOTIFY_ROUTES.surprise: unknown key", "REACTOR_NOTIFY_ROUTES.default",
                     "receivers.bad name", "receivers.x.type", "REACTOR_NOTIFY_SECRET_EMPTY is empty",
                     "receivers.pd.url", "routes[0].receiver", "routes[1].match_re.model",
                     "routes[2].severity", "routes[2].continue", "routes[3] must be an object",
                     "REACTOR_NOTIFY_SECRET_A must hold the webhook URL"):
        assert expected in text, expected
    assert "SECRET" not in text.replace("REACTOR_NOTIFY_SECRET_", "")


def test_invalid_json_is_one_clear_problem():
    _, problems = parse_routes("{not json", {})
    assert problems[0].startswith("REACTOR_NOTIFY_ROUTES is not valid JSON")
