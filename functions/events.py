"""The Event Grid functions: one per subscription, all through the same intake."""

from __future__ import annotations

import azure.functions as func

from core import bootstrap
from core.errors import EventInFlight
from functions.triggers import event_payload

bp = func.Blueprint()


def _deliver(function: str, event: func.EventGridEvent) -> None:
    receipt = bootstrap.services().intake.receive(function, event_payload(event))
    if receipt.status == "in_flight":  # fail the delivery: Event Grid comes back after the claim's lease
        raise EventInFlight(function, receipt.event_id)


@bp.function_name("on_blob_created")
@bp.event_grid_trigger(arg_name="event")
def on_blob_created(event: func.EventGridEvent) -> None:
    _deliver("on_blob_created", event)


@bp.function_name("on_model_registered")
@bp.event_grid_trigger(arg_name="event")
def on_model_registered(event: func.EventGridEvent) -> None:
    _deliver("on_model_registered", event)


@bp.function_name("on_model_deployed")
@bp.event_grid_trigger(arg_name="event")
def on_model_deployed(event: func.EventGridEvent) -> None:
    _deliver("on_model_deployed", event)


@bp.function_name("on_run_status_changed")
@bp.event_grid_trigger(arg_name="event")
def on_run_status_changed(event: func.EventGridEvent) -> None:
    _deliver("on_run_status_changed", event)


@bp.function_name("on_drift_detected")
@bp.event_grid_trigger(arg_name="event")
def on_drift_detected(event: func.EventGridEvent) -> None:
    _deliver("on_drift_detected", event)

