from __future__ import annotations

from core.adapters.eventgrid_subscriptions import load, route
from core.intake import FUNCTION_EVENTS
from tests.payloads import SAMPLES, sample, to_cloudevent
from tests.payloads import load as load_payload


def test_each_sample_routes_to_its_function() -> None:
    subs = load()
    for kind, name in SAMPLES.items():
        event = load_payload(name)[0]
        routed = route(subs, [event])
        [function] = routed
        assert any(event["eventType"] == cls.TYPE for cls in FUNCTION_EVENTS[function])
        assert route(subs, [to_cloudevent(event)]).keys() == routed.keys(), kind


def test_internal_containers_are_filtered_out() -> None:
    event = sample("BlobCreated")
    event["subject"] = "/blobServices/default/containers/reactor-internal/blobs/deadletters/x.json"
    assert route(load(), [event]) == {}


def test_unknown_types_route_nowhere() -> None:
    event = sample("BlobCreated")
    event["eventType"] = "Microsoft.Storage.BlobDeleted"
    assert route(load(), [event]) == {}


def test_every_function_has_one_subscription() -> None:
    functions = sorted(s.function for s in load())
    assert functions == sorted(FUNCTION_EVENTS)
