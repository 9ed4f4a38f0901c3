"""Timer triggers on their NCRONTAB schedules (six fields, seconds first), as the host runs them.

One thread per timer, as the Functions host runs each timer function on its own: a slow run of
one (a retraining tick waiting on an ML platform that does not answer) delays no other. A timer
whose previous run has not finished is skipped, not stacked, like the Functions host's singleton
timers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone

from azure.functions.timer import TimerRequest
from croniter import croniter

from embedded.function_index import IndexedFunction

_log = logging.getLogger("reactor.host.timers")


def resolve(schedule: str, env: Mapping[str, str]) -> str:
    """``%NAME%`` takes the schedule from an app setting, as the Functions host does."""
    if len(schedule) > 2 and schedule.startswith("%") and schedule.endswith("%"):
        name = schedule[1:-1]
        if not env.get(name):
            raise ValueError(f"timer schedule {schedule} names a setting that is not set")
        return env[name]
    return schedule


def next_fire(schedule: str, after: datetime) -> datetime:
    """Next time an NCRONTAB expression (``sec min hour day month dow``) fires after ``after``."""
    fields = schedule.split()
    if len(fields) != 6:
        raise ValueError(f"NCRONTAB needs 6 fields (seconds first), got {len(fields)}: {schedule!r}")
    result = croniter(schedule, after, second_at_beginning=True).get_next(datetime)
    assert isinstance(result, datetime)
    return result


class TimerScheduler:
    def __init__(self, timers: dict[str, IndexedFunction], env: Mapping[str, str] | None = None) -> None:
        self._timers = timers
        self._schedules = {n: resolve(f.trigger.schedule, os.environ if env is None else env)
                           for n, f in timers.items()}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(name,), name=f"timer-{name}", daemon=True)
                         for name in timers]
        self.runs: dict[str, int] = dict.fromkeys(timers, 0)

    def start(self) -> TimerScheduler:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        deadline = time.monotonic() + 10
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _loop(self, name: str) -> None:
        if getattr(self._timers[name].trigger, "run_on_startup", False):
            self._run(name, past_due=False)
        due = next_fire(self._schedules[name], datetime.now(timezone.utc))
        while not self._stop.is_set():
            wait = (due - datetime.now(timezone.utc)).total_seconds()
            if wait > 0 and self._stop.wait(min(wait, 1.0)):
                return
            if wait > 1.0:
                continue
            late = (datetime.now(timezone.utc) - due).total_seconds() > 5
            self._run(name, past_due=late)
            due = next_fire(self._schedules[name], datetime.now(timezone.utc))

    def _run(self, name: str, past_due: bool) -> None:
        fn = self._timers[name]
        try:
            fn.call(**{fn.arg_name: TimerRequest(past_due=past_due)})
            self.runs[name] += 1
        except Exception:  # the host logs a failed run and keeps the schedule, as Azure does
            _log.exception("timer %s failed", name)
