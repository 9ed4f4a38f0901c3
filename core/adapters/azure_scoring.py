"""Real scoring requests to an Azure ML online endpoint's scoring URI (the data plane of ``AzureServing``).

* Authentication: the endpoint key (``auth_mode: key``), an Azure ML token (``aml_token``) or an Entra
  token (``aad_token``), whichever ``online_endpoints.get_keys`` hands out. It is cached for a few minutes
  (tokens until shortly before they expire) and fetched again once when the endpoint answers 401/403,
  because keys can be regenerated at any time. Keys and tokens are never logged, never in a repr and
  never in an error message.
* ``azureml-model-deployment`` routes a request to one deployment whatever the traffic split (even at
  0 %): how a smoke test reaches the candidate.
* Latency is measured around the HTTP call on a kept-alive session, so it is the scoring time rather
  than a TLS handshake; anything that prevents an answer (refused, reset, timeout, DNS) is status 0.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.ml_platform import ScoreResult

if TYPE_CHECKING:
    import requests


class NotScorable(LookupError):
    """The endpoint does not exist or has no scoring URI yet; ``score`` answers status 0 with the reason."""


# endpoint name -> (scoring URI, the SDK's EndpointAuthKeys / EndpointAuthToken / EndpointAadToken)
Lookup = Callable[[str], tuple[str, Any]]


@dataclass(frozen=True)
class _Target:
    uri: str
    secret: str = field(repr=False)  # never in a repr, a log line or an error message
    expires: float = 0.0  # time.monotonic()

    def fresh(self) -> bool:
        return time.monotonic() < self.expires


class EndpointScorer:
    def __init__(self, lookup: Lookup, *, credential_ttl: float = 300.0,
                 session: requests.Session | None = None) -> None:
        self._lookup, self._ttl, self._session = lookup, credential_ttl, session
        self._targets: dict[str, _Target] = {}
        self._lock = threading.Lock()

    def score(self, endpoint: str, body: bytes, deployment: str | None, timeout: float) -> ScoreResult:
        try:
            result = self._post(self._target(endpoint), body, deployment, timeout)
            if result.status in (401, 403):  # the key was regenerated, or the token expired early: once more
                self.forget(endpoint)
                result = self._post(self._target(endpoint), body, deployment, timeout)
        except NotScorable as exc:
            return ScoreResult(status=0, body=b"", latency_ms=0.0, error=str(exc))
        return result

    def forget(self, endpoint: str) -> None:
        with self._lock:
            self._targets.pop(endpoint, None)

    def _post(self, target: _Target, body: bytes, deployment: str | None, timeout: float) -> ScoreResult:
        import requests

        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {target.secret}"}
        if deployment:
            headers["azureml-model-deployment"] = deployment.lower()
        started = time.perf_counter()
        try:
            response = self._http().post(target.uri, data=body, headers=headers, timeout=timeout)
        except requests.RequestException as exc:  # its message names the URL, never the headers
            return ScoreResult(status=0, body=b"", latency_ms=_ms_since(started), error=f"{type(exc).__name__}: {exc}")
        return ScoreResult(status=response.status_code, body=response.content, latency_ms=_ms_since(started))

    def _target(self, endpoint: str) -> _Target:
        with self._lock:
            cached = self._targets.get(endpoint)
        if cached is not None and cached.fresh():
            return cached
        uri, credentials = self._lookup(endpoint)
        target = _Target(uri, *secret_of(credentials, self._ttl))
        with self._lock:
            self._targets[endpoint] = target
        return target

    def _http(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                import requests

                self._session = requests.Session()
            return self._session


def secret_of(credentials: Any, ttl: float) -> tuple[str, float]:
    """(key or token, monotonic expiry): keys for ``ttl`` seconds, tokens until 5 minutes before they expire."""
    if getattr(credentials, "primary_key", None):
        return str(credentials.primary_key), time.monotonic() + ttl
    token = str(getattr(credentials, "access_token", "") or "")
    expiry = getattr(credentials, "expiry_time_utc", None)
    left = float(expiry) - time.time() - 300 if isinstance(expiry, int | float) else ttl
    return token, time.monotonic() + max(0.0, min(ttl, left))


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
