"""Notifications: the timer that drains the outbox (the sending side of every notification)."""

from __future__ import annotations

import azure.functions as func

from core import bootstrap

bp = func.Blueprint()


@bp.function_name("drain_outbox")
@bp.timer_trigger(schedule="%REACTOR_OUTBOX_DRAIN_SCHEDULE%", arg_name="timer", run_on_startup=False)
def drain_outbox(timer: func.TimerRequest) -> None:
    bootstrap.services().outbox.drain()
