"""Hostile input, property-based: whatever arrives, the parser names a field or succeeds, and
the intake records it (processed or dead-lettered); nothing else escapes."""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import EventValidationError
from core.events import parse_event
from core.intake import FUNCTION_EVENTS, Intake
from core.ledger import Ledger
from core.sources import SourcePolicy
from tests.fakes import Clock, MemoryBlobStore, MemoryStateStore
from tests.payloads import SAMPLES, load

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=15), inner, max_size=6),
    max_leaves=30)
KEYS = ["id", "topic", "source", "subject", "eventType", "type", "eventTime", "time", "specversion", "data",
        "dataVersion"]


@st.composite
def mutated_samples(draw: st.DrawFn) -> Any:
    """A real sample with some fields replaced by arbitrary JSON, deleted, or its data shuffled."""
    event: dict[str, Any] = json.loads(json.dumps(load(draw(st.sampled_from(sorted(SAMPLES.values()))))[0]))
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=4)):
        if draw(st.booleans()):
            event.pop(key, None)
        else:
            event[key] = draw(json_values)
    if isinstance(event.get("data"), dict) and event["data"]:
        key = draw(st.sampled_from(sorted(event["data"])))
        event["data"][key] = draw(json_values)
    return event


@given(st.one_of(json_values, mutated_samples()))
@settings(max_examples=400, deadline=None)
def test_parser_accepts_or_names_a_field(raw: Any) -> None:
    try:
        parse_event(raw)
    except EventValidationError as err:
        assert err.field and err.reason


@given(st.one_of(mutated_samples(), json_values), st.sampled_from(sorted(FUNCTION_EVENTS)),
       st.text(alphabet=string.printable + "\u00e9\u4e2d\U0001f600", max_size=3000))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_intake_records_everything_and_raises_nothing(raw: Any, function: str, noise: str) -> None:
    ledger = Ledger(MemoryStateStore(), MemoryBlobStore(), prefix="t", container="t-internal", clock=Clock(),
                    lease_seconds=60)
    intake = Intake(ledger, SourcePolicy(["*"], ["*"]))
    if isinstance(raw, dict) and isinstance(raw.get("data"), dict):
        raw["data"]["noise"] = noise
    receipt = intake.receive(function, raw if isinstance(raw, dict) else {"body": raw})
    assert receipt.status in ("processed", "dead_lettered")
    if receipt.status == "dead_lettered":
        [letter] = list(ledger.dead_letters(function))
        assert json.loads(ledger.dead_letter_payload(letter)) is not None
