"""Our own events: the timer that publishes stored CloudEvents to the custom Event Grid topic."""

from __future__ import annotations

import azure.functions as func

from core import bootstrap

bp = func.Blueprint()


@bp.function_name("publish_events")
@bp.timer_trigger(schedule="%REACTOR_OUTBOX_DRAIN_SCHEDULE%", arg_name="timer", run_on_startup=False)
def publish_events(timer: func.TimerRequest) -> None:
    publisher = bootstrap.services().publisher
    if publisher is not None:  # publishing is off without REACTOR_EVENTS_TOPIC_ENDPOINT
        publisher.drain()
