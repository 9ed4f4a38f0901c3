"""The drift check timer (the embedded default; off in Azure, where Azure ML model monitoring runs)."""

from __future__ import annotations

import azure.functions as func

from core import bootstrap

bp = func.Blueprint()


@bp.function_name("drift_check")
@bp.timer_trigger(schedule="%REACTOR_DRIFT_CHECK_SCHEDULE%", arg_name="timer", run_on_startup=False)
def drift_check(timer: func.TimerRequest) -> None:
    bootstrap.services().drift.tick()
