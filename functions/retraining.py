"""Retraining: the timer that closes batching windows, and the manual trigger."""

from __future__ import annotations

import azure.functions as func

from core import bootstrap
from core.errors import RequestError
from functions.http import caller, json_object, ok, problem, text_field

bp = func.Blueprint()


@bp.function_name("retrain_tick")
@bp.timer_trigger(schedule="%REACTOR_RETRAIN_TICK_SCHEDULE%", arg_name="timer", run_on_startup=False)
def retrain_tick(timer: func.TimerRequest) -> None:
    bootstrap.services().retraining.tick()


@bp.function_name("retrain")
@bp.route(route="retrain", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def retrain(req: func.HttpRequest) -> func.HttpResponse:
    try:
        body = json_object(req)
        model, reason = text_field(body, "model", 255), text_field(body, "reason")
        outcome = bootstrap.services().retraining.request(model, reason, caller(req))
    except RequestError as err:
        return problem(400, "Invalid retrain request", err.reason, err.field)
    except KeyError:
        return problem(404, "Unknown model", "no retraining policy names this model", "model")
    return ok(outcome, status=202)
