"""Per-model release policy, from the ``REACTOR_RELEASE_POLICIES`` setting (a JSON object).

    {"diabetes": {"match_tags": {"stage": "candidate"},
                  "qa_endpoint": "diabetes-qa", "prod_endpoint": "diabetes-prod",
                  "approval": "manual", "approval_timeout_minutes": 1440,
                  "smoke": {"requests": 20, "p95_ms": 500},
                  "canary": {"steps": [10, 50, 100], "step_seconds": 60, "max_error_rate": 0.02,
                             "max_p95_ms": 500, "min_requests": 20, "mirror_percent": 0},
                  "retention": 1, "separation_of_duties": true}}

Only versions whose tags contain every ``match_tags`` pair are released; the rest are recorded
as skipped. Every problem is reported with its JSON path, and all of them at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.json_setting import per_model

_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
# Azure ML endpoint names: 3-32 characters, a letter first, letters, digits and hyphens.
_ENDPOINT = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
SETTING = "REACTOR_RELEASE_POLICIES"


@dataclass(frozen=True)
class SmokeTest:
    requests: int = 20
    p95_ms: float = 1000.0
    sample: Mapping[str, Any] | None = None  # a scoring request body; default: the model's sample_input.json
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class Canary:
    steps: tuple[int, ...] = (10, 50, 100)
    step_seconds: int = 60
    max_error_rate: float = 0.02
    max_p95_ms: float = 1000.0
    min_requests: int = 20  # fewer requests than this prove nothing either way
    max_wait_factor: int = 3  # a step without enough traffic goes on after step_seconds x this
    mirror_percent: int = 0  # share of requests copied to the new deployment before the first step
    mirror_seconds: int = 0


@dataclass(frozen=True)
class ReleasePolicy:
    model: str
    qa_endpoint: str
    prod_endpoint: str
    match_tags: Mapping[str, str] = field(default_factory=dict)
    approval: str = "manual"  # manual | auto
    approval_timeout_minutes: int = 1440
    smoke: SmokeTest = SmokeTest()
    canary: Canary = Canary()
    retention: int = 1  # superseded production deployments kept (scaled down) besides the champion
    instance_type: str = "Standard_DS3_v2"
    instance_count: int = 1
    deploy_timeout_minutes: int = 30
    separation_of_duties: bool = True  # whoever asked for the model may not approve its release

    def matches(self, tags: Mapping[str, str]) -> bool:
        return all(tags.get(k) == v for k, v in self.match_tags.items())


_TOP = {"match_tags", "qa_endpoint", "prod_endpoint", "approval", "approval_timeout_minutes", "smoke", "canary",
        "retention", "instance_type", "instance_count", "deploy_timeout_minutes", "separation_of_duties"}


def parse_release_policies(text: str) -> tuple[dict[str, ReleasePolicy], list[str]]:
    """(policies by model, problems). Empty text: nothing is released automatically."""
    doc, problems = per_model(text, SETTING, "release policy")
    if problems:
        return {}, problems
    policies: dict[str, ReleasePolicy] = {}
    for model, raw in doc.items():
        p = _Parse(f"{SETTING}.{model}")
        policy = p.policy(str(model), raw)
        problems += p.problems
        if policy is not None and not p.problems:
            policies[policy.model] = policy
    return policies, problems


class _Parse:
    def __init__(self, where: str) -> None:
        self.where = where
        self.problems: list[str] = []

    def policy(self, model: str, raw: Any) -> ReleasePolicy | None:
        if not _MODEL.match(model):
            self.problems.append(f"{self.where}: not a valid model name")
        if not isinstance(raw, Mapping):
            self.problems.append(f"{self.where} must be an object")
            return None
        self._unknown(raw, _TOP, "")
        d = ReleasePolicy.__dataclass_fields__
        endpoints = {k: self._endpoint(raw, k) for k in ("qa_endpoint", "prod_endpoint")}
        if endpoints["qa_endpoint"] and endpoints["qa_endpoint"] == endpoints["prod_endpoint"]:
            self.problems.append(f"{self.where}: qa_endpoint and prod_endpoint must differ")
        approval = raw.get("approval", "manual")
        if approval not in ("manual", "auto"):
            self.problems.append(f"{self.where}.approval: 'manual' or 'auto'")
        tags = raw.get("match_tags", {})
        if not isinstance(tags, Mapping) or not all(isinstance(v, str) for v in tags.values()):
            self.problems.append(f"{self.where}.match_tags: an object of tag -> text")
            tags = {}
        sod = raw.get("separation_of_duties", True)
        if not isinstance(sod, bool):
            self.problems.append(f"{self.where}.separation_of_duties: true or false")
        instance_type = raw.get("instance_type", d["instance_type"].default)
        if not isinstance(instance_type, str) or not instance_type:
            self.problems.append(f"{self.where}.instance_type: text (an Azure VM size)")
        return ReleasePolicy(
            model=model, qa_endpoint=endpoints["qa_endpoint"], prod_endpoint=endpoints["prod_endpoint"],
            match_tags={str(k): str(v) for k, v in tags.items()}, approval=str(approval),
            approval_timeout_minutes=self._int(raw, "approval_timeout_minutes", 1440, 1, 30 * 1440),
            smoke=self._smoke(raw.get("smoke", {})), canary=self._canary(raw.get("canary", {})),
            retention=self._int(raw, "retention", 1, 0, 20), instance_type=str(instance_type),
            instance_count=self._int(raw, "instance_count", 1, 1, 100),
            deploy_timeout_minutes=self._int(raw, "deploy_timeout_minutes", 30, 1, 24 * 60),
            separation_of_duties=bool(sod))

    def _smoke(self, raw: Any) -> SmokeTest:
        if not isinstance(raw, Mapping):
            self.problems.append(f"{self.where}.smoke must be an object")
            return SmokeTest()
        self._unknown(raw, {"requests", "p95_ms", "sample", "timeout_seconds"}, "smoke.")
        sample = raw.get("sample")
        if sample is not None and not isinstance(sample, Mapping):
            self.problems.append(f"{self.where}.smoke.sample: a scoring request body (JSON object)")
            sample = None
        return SmokeTest(self._int(raw, "requests", 20, 1, 1000, "smoke."),
                         self._number(raw, "p95_ms", 1000.0, 1.0, 600_000.0, "smoke."), sample,
                         self._number(raw, "timeout_seconds", 10.0, 0.1, 300.0, "smoke."))

    def _canary(self, raw: Any) -> Canary:
        if not isinstance(raw, Mapping):
            self.problems.append(f"{self.where}.canary must be an object")
            return Canary()
        self._unknown(raw, set(Canary.__dataclass_fields__), "canary.")
        steps = raw.get("steps", [10, 50, 100])
        ok = (isinstance(steps, list) and steps and all(type(s) is int and 0 < s <= 100 for s in steps)
              and steps == sorted(set(steps)) and steps[-1] == 100)
        if not ok:
            self.problems.append(f"{self.where}.canary.steps: increasing percentages from 1 to 100, ending at 100")
            steps = [100]
        return Canary(tuple(steps), self._int(raw, "step_seconds", 60, 0, 86_400, "canary."),
                      self._number(raw, "max_error_rate", 0.02, 0.0, 1.0, "canary."),
                      self._number(raw, "max_p95_ms", 1000.0, 1.0, 600_000.0, "canary."),
                      self._int(raw, "min_requests", 20, 0, 1_000_000, "canary."),
                      self._int(raw, "max_wait_factor", 3, 1, 100, "canary."),
                      self._int(raw, "mirror_percent", 0, 0, 100, "canary."),
                      self._int(raw, "mirror_seconds", 0, 0, 86_400, "canary."))

    def _endpoint(self, raw: Mapping[str, Any], key: str) -> str:
        value = raw.get(key)
        if not isinstance(value, str) or not _ENDPOINT.match(value):
            self.problems.append(f"{self.where}.{key}: required, 3-32 letters, digits or '-', starting with a letter")
            return ""
        return value.lower()

    def _int(self, raw: Mapping[str, Any], key: str, default: int, low: int, high: int, path: str = "") -> int:
        value = raw.get(key, default)
        if type(value) is not int or not low <= value <= high:
            self.problems.append(f"{self.where}.{path}{key}: an integer from {low} to {high}")
            return default
        return value

    def _number(self, raw: Mapping[str, Any], key: str, default: float, low: float, high: float,
                path: str = "") -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            self.problems.append(f"{self.where}.{path}{key}: a number from {low:g} to {high:g}")
            return default
        return float(value)

    def _unknown(self, raw: Mapping[str, Any], known: set[str], path: str) -> None:
        self.problems += [f"{self.where}.{path}{k}: unknown key" for k in raw if k not in known]
