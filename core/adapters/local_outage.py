"""A local ML platform outage: Azure ML answering 500, or not answering in time, for a period.

Azure has no such switch. It exists so the tests, ``bench/outage.py`` and a person on ``make dev``
can watch what the reactor does while the ML platform fails (nothing lost, everything done once
after recovery). It is one row in the storage account, which both halves of the local platform read:

    {prefix}mloutage   PK "outage", RK "platform"   mode, until (UTC, ISO 8601), hang_seconds

    error    every call is refused: the jobs and models API (``OutageGuard``) raises azure-core's
             ``HttpResponseError`` (status 500), what ``AzureMLPlatform`` lets through once the SDK's
             retries are spent; the serving control plane's endpoint routes answer 500, which
             ``LocalServing`` raises as ``RuntimeError`` like any 5xx
    timeout  every call is carried out, but its answer comes ``hang_seconds`` late. Past the
             client's timeout (``LocalServing``'s and the guard's are 10 s; the default hang is 12 s)
             the caller sees a timeout (``ServiceResponseError`` from the guard, ``ConnectionError``
             from ``LocalServing``) for a change that did happen, the case where a retry duplicates
             work unless it is idempotent; a shorter hang is a platform that is merely slow

Set it with ``PUT /outage {"mode": "error", "seconds": 30}`` on the control plane (``{"mode": ""}``
ends it early) or ``OutageSwitch.start``; it ends by itself after ``seconds``. Scoring (the
endpoints' routers), the metrics query (Azure Monitor's) and the test hooks stay up: Azure's data
plane does not go down with its control plane. Readers look at the row at most every
``CACHE_SECONDS``, so an outage starts and ends within that of being set.

It cannot be on in Azure: only the local wiring puts the guard in front of the ML platform, and only
the local control plane reads the row; with ``REACTOR_ML_PLATFORM=azure`` nothing reads it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from core.errors import ConflictError, PreconditionFailed
from core.logs import get_logger, log
from core.ml_platform import Job, MLPlatform, ModelVersion, RetrainRequest
from core.ports import Clock, StateStore, utcnow

MODES = ("error", "timeout")
PARTITION, ROW = "outage", "platform"
CACHE_SECONDS = 0.25
DEFAULT_HANG = 12.0  # seconds: past the clients' timeout
CLIENT_TIMEOUT = 10.0  # seconds the guard waits for an answer, as LocalServing does
MAX_SECONDS = 3600.0
_log = get_logger("local_outage")
T = TypeVar("T")


@dataclass(frozen=True)
class Outage:
    mode: str  # error | timeout
    until: datetime
    hang_seconds: float = DEFAULT_HANG

    def as_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "until": self.until.isoformat(), "hang_seconds": self.hang_seconds}


def parse_outage(body: Mapping[str, Any], now: datetime) -> Outage | None:
    """The outage a request body asks for, None for ``{"mode": ""}``; ValueError saying what is accepted."""
    mode = body.get("mode")
    if set(body) - {"mode", "seconds", "hang_seconds"} or mode not in ("", *MODES):
        raise ValueError('body must be {"mode": "error" | "timeout" | "", "seconds": 1-3600, "hang_seconds": '
                         '0-600 (timeout only)}')
    if mode == "":
        return None
    seconds, hang = body.get("seconds", 60), body.get("hang_seconds", DEFAULT_HANG)
    for name, value, high in (("seconds", seconds, MAX_SECONDS), ("hang_seconds", hang, 600.0)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
            raise ValueError(f"{name} must be a number from 0 to {high:g}, got {value!r}")
    if seconds <= 0:
        raise ValueError("seconds must be above 0: an outage lasts a while")
    return Outage(str(mode), now + timedelta(seconds=float(seconds)), float(hang))


class OutageSwitch:
    """The outage row, read at most every ``cache_seconds``."""

    def __init__(self, store: StateStore, prefix: str, *, clock: Clock = utcnow,
                 cache_seconds: float = CACHE_SECONDS) -> None:
        self._store = store
        self.table = f"{prefix}mloutage"
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._outage: Outage | None = None

    def start(self, outage: Outage | None) -> None:
        """Begin ``outage`` now (None ends the one in force); readers see it within their cache time."""
        if outage is None:
            self._store.delete(self.table, PARTITION, ROW)
        else:
            self._put({"mode": outage.mode, "until": outage.until.isoformat(), "hang_seconds": outage.hang_seconds})
        with self._lock:
            self._outage, self._read_at = outage, time.monotonic()
        log(_log, logging.WARNING if outage else logging.INFO, "ML platform outage set" if outage else
            "ML platform outage ended", **(outage.as_json() if outage else {}))

    def current(self) -> Outage | None:
        with self._lock:
            if time.monotonic() - self._read_at >= self._cache_seconds:
                self._outage, self._read_at = self._read(), time.monotonic()
            outage = self._outage
        return outage if outage is not None and self._clock() < outage.until else None

    def _read(self) -> Outage | None:
        found = self._store.get(self.table, PARTITION, ROW)
        if found is None or found.props.get("mode") not in MODES:
            return None
        p = found.props
        return Outage(str(p["mode"]), datetime.fromisoformat(str(p["until"])), float(p.get("hang_seconds", 0)))

    def _put(self, props: Mapping[str, Any]) -> None:
        for _ in range(5):  # one writer in practice (the control plane); a race just goes round again
            found = self._store.get(self.table, PARTITION, ROW)
            try:
                if found is None:
                    self._store.insert(self.table, PARTITION, ROW, props)
                else:
                    self._store.update(self.table, PARTITION, ROW, props, found.etag)
                return
            except (ConflictError, PreconditionFailed):
                continue
        raise ConflictError(f"{self.table}: the outage row kept changing")


class OutageGuard:
    """The MLPlatform port in front of the local platform, failing as Azure ML's API would in an outage.
    Only the port's calls are guarded: a job already running goes on (its steps are the platform's own)."""

    def __init__(self, platform: MLPlatform, switch: OutageSwitch, *, timeout: float = CLIENT_TIMEOUT) -> None:
        self._platform = platform
        self._switch = switch
        self._timeout = timeout

    def submit_retraining(self, request: RetrainRequest) -> Job:
        return self._call(f"submit {request.job_name}", lambda: self._platform.submit_retraining(request))

    def get_job(self, name: str) -> Job | None:
        return self._call(f"get job {name}", lambda: self._platform.get_job(name))

    def get_model(self, name: str, version: str) -> ModelVersion | None:
        return self._call(f"get model {name}:{version}", lambda: self._platform.get_model(name, version))

    def list_models(self, name: str) -> list[ModelVersion]:
        return self._call(f"list models {name}", lambda: self._platform.list_models(name))

    def _call(self, what: str, call: Callable[[], T]) -> T:
        from azure.core.exceptions import HttpResponseError, ServiceResponseError

        outage = self._switch.current()
        if outage is None:
            return call()
        log(_log, logging.WARNING, "ML platform call failed: outage", call=what, mode=outage.mode)
        if outage.mode == "error":
            error = HttpResponseError(message=f"(InternalServerError) the local ML platform is down: {what}")
            error.status_code = 500
            raise error
        answer = call()  # it reached the platform and was done; the answer is late
        if outage.hang_seconds < self._timeout:
            time.sleep(outage.hang_seconds)
            return answer
        time.sleep(self._timeout)
        raise ServiceResponseError(f"the local ML platform did not answer within {self._timeout:g} s: {what}")
