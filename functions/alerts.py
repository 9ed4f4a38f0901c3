"""Alerting: Azure Monitor's action-group webhook (common alert schema) and the rule timer."""

from __future__ import annotations

import azure.functions as func

from core import bootstrap
from core.errors import RequestError
from functions.http import json_object, ok, problem

bp = func.Blueprint()


@bp.function_name("evaluate_alerts")
@bp.timer_trigger(schedule="%REACTOR_ALERTS_TICK_SCHEDULE%", arg_name="timer", run_on_startup=False)
def evaluate_alerts(timer: func.TimerRequest) -> None:
    bootstrap.services().alerting.tick()


@bp.function_name("azure_monitor_alert")
@bp.route(route="alerts/azure-monitor", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def azure_monitor_alert(req: func.HttpRequest) -> func.HttpResponse:
    try:
        outcome = bootstrap.services().alerting.receive(json_object(req))
    except RequestError as err:
        return problem(400, "Invalid Azure Monitor alert", err.reason, err.field)
    return ok(outcome, status=202)
