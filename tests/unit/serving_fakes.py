"""The outside world of ``AzureServing``, in memory: Azure ML's ARM REST API for online endpoints and
deployments (with their long-running operations), the workspace's blob storage, Azure Monitor's
``metrics:getBatch`` and a scoring URI (a loopback HTTP server).

``FakeServingWorkspace`` is an azure-core ``HttpTransport`` (a ``FakeTransport`` of ``tests.azure_transport``):
the real ``MLClient`` and ``MetricsClient`` send their real requests to it (``transport=``), and it answers in
the services' REST formats, from the JSON in ``tests/fixtures/azureml`` and ``tests/fixtures/azuremonitor``
plus what earlier requests stored. Like the service it refuses writes while an endpoint is Creating or
Updating (409), lets reads of a traffic change lag behind the write, lowercases deployment names and keeps no
zero weights.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

from tests.azure_transport import ARM, RG, SUB, WS, WS_PATH, Answer, FakeTransport, Sent, json_answer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
METRICS_HOST = "westeurope.metrics.monitor.azure.com"
OPERATION_STATUS = "/mfeOperationsStatus/"
STORE = "reactorwsstore.blob.core.windows.net"
STORE_CONTAINER = "azureml-blobstore-6d1a7c1e-2f0b-4c3e-9a8d-1b2c3d4e5f60"
PRIMARY_KEY = "pK3y-" + "x" * 27  # an endpoint key: must never show up in logs or results


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def _error(status: int, code: str, message: str) -> Answer:
    body = fixture("azureml/error_not_found.json")
    body["error"].update(code=code, message=message, innerError=None)
    return json_answer(status, body)


def _operation(kind: str) -> str:
    return (f"https://{ARM}/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/westeurope"
            f"{OPERATION_STATUS}{kind}:{uuid.uuid4()}:{uuid.uuid4().hex[:8]}?api-version=2022-02-01-preview")


@dataclass
class Endpoint:
    resource: dict
    busy_reads: int = 0  # GETs that still show the operation in progress
    stale_reads: int = 0  # GETs that still show the traffic from before the last PUT
    stale: dict = field(default_factory=dict)


class FakeServingWorkspace(FakeTransport):
    """One workspace's online endpoints, models and blob storage, and Azure Monitor; records every request."""

    def __init__(self, scoring_uri: str = "https://{name}.westeurope.inference.ml.azure.com/score") -> None:
        super().__init__()
        self.polls: list[Sent] = []  # operation-status reads by the SDK's poller threads
        self.endpoints: dict[str, Endpoint] = {}
        self.deployments: dict[tuple[str, str], dict] = {}
        self.logs: dict[tuple[str, str], str] = {}
        self.assets: dict[str, dict] = {}  # ARM path of a code/environment version -> resource
        self.models: dict[tuple[str, str], dict] = {}
        self.blobs: dict[str, bytes] = {}  # "/<container>/<blob>" -> content
        self.metrics: dict[str, dict] = {}  # metric name -> recorded getBatch answer
        self.scoring_uri = scoring_uri
        self.settle_after = 0  # GETs an endpoint stays Creating/Updating after a PUT
        self.traffic_lag = 0  # GETs that show the old traffic after a traffic PUT
        self.before: Callable[[Sent], None] | None = None  # hook run before each ARM request is answered

    # HttpTransport
    def sleep(self, duration: float) -> None:
        """The pollers' sleep: none here, so a poller that is not detached would spin and be noticed."""

    # test helpers
    def fail_next(self, method: str, path_regex: str, status: int, code: str = "ServiceError",
                  message: str = "The service is temporarily unavailable.") -> None:
        self.failures.append((method, path_regex, _error(status, code, message)))

    def labels(self) -> list[str]:
        return [_label(s) for s in self.arm()]

    def reset(self) -> None:
        super().reset()
        self.polls.clear()

    def add_endpoint(self, name: str, traffic: dict | None = None, state: str = "Succeeded",
                     auth_mode: str = "Key", mirror: dict | None = None) -> dict:
        resource = fixture("azureml/online_endpoint.json")
        resource.update(id=f"{WS_PATH}/onlineEndpoints/{name}", name=name)
        props = resource["properties"]
        props.update(provisioningState=state, authMode=auth_mode, traffic=traffic or {}, mirrorTraffic=mirror or {},
                     scoringUri=self.scoring_uri.format(name=name))
        props["properties"]["azureml.onlineendpointid"] = resource["id"].lower()
        self.endpoints[name.lower()] = Endpoint(resource)
        return resource

    def add_deployment(self, endpoint: str, name: str, model: str = "diabetes-ridge", version: str = "3",
                       state: str = "Succeeded", instance_count: int = 1) -> dict:
        resource = fixture("azureml/online_deployment.json")
        resource.update(id=f"{WS_PATH}/onlineEndpoints/{endpoint}/deployments/{name.lower()}", name=name.lower())
        resource["sku"]["capacity"] = instance_count
        props = resource["properties"]
        props.update(provisioningState=state, model=f"{WS_PATH}/models/{model}/versions/{version}")
        self.deployments[(endpoint.lower(), name.lower())] = resource
        return resource

    def finish(self, endpoint: str, name: str, state: str = "Succeeded") -> None:
        self.deployments[(endpoint.lower(), name.lower())]["properties"]["provisioningState"] = state

    def add_model(self, name: str, version: str, files: dict[str, bytes]) -> None:
        resource = copy.deepcopy(fixture("azureml/model_versions_page2.json")["value"][0])
        folder = f"LocalUpload/{uuid.uuid4().hex[:12]}/package"
        resource.update(id=f"{WS_PATH}/models/{name}/versions/{version}", name=version)
        resource["properties"]["modelUri"] = (f"azureml://subscriptions/{SUB}/resourcegroups/{RG}/workspaces/{WS}"
                                              f"/datastores/workspaceblobstore/paths/{folder}/")
        self.models[(name, version)] = resource
        for file, data in files.items():
            self.blobs[f"/{STORE_CONTAINER}/{folder}/{file}"] = data

    # the services
    def _answer(self, s: Sent) -> Answer:
        if OPERATION_STATUS in s.path:
            self.polls.append(s)
            return json_answer(200, {"status": "InProgress", "startTime": "2026-11-22T11:50:00.000Z"})
        self.sent.append(s)
        if (failure := self._injected(s)) is not None:
            return failure
        if s.host == ARM:
            if self.before is not None:
                self.before(s)
            return self._arm(s)
        if s.host == STORE:
            return self._blob(s)
        if s.host == METRICS_HOST and s.path.endswith("/metrics:getBatch"):
            return self._metrics(s)
        return self._unexpected(s)

    def _unexpected(self, s: Sent) -> Answer:
        self.unexpected.append(f"{s.method} {s.url}")
        return _error(400, "UnexpectedInTest", _label(s))

    def _arm(self, s: Sent) -> Answer:
        p, m = s.path, s.method
        if m == "GET" and p == "":
            return json_answer(200, fixture("azureml/workspace.json"))
        if match := re.fullmatch(r"/onlineEndpoints/([^/]+)", p):
            return self._endpoint(s, match.group(1))
        if match := re.fullmatch(r"/onlineEndpoints/([^/]+)/(listKeys|deployments)", p):
            return self._endpoint_child(s, match.group(1), match.group(2))
        if match := re.fullmatch(r"/onlineEndpoints/([^/]+)/deployments/([^/]+)(/getLogs)?", p):
            return self._deployment(s, match.group(1), match.group(2), bool(match.group(3)))
        if m == "GET" and (match := re.fullmatch(r"/models/([^/]+)/versions/([^/]+)", p)):
            found = self.models.get((match.group(1), match.group(2)))
            return json_answer(200, found) if found else _error(404, "UserError", "Not found")
        if m == "GET" and p == "/datastores/workspaceblobstore":
            return json_answer(200, fixture("azureml/datastore_workspaceblobstore.json"))
        return self._asset(s)

    # endpoints
    def _endpoint(self, s: Sent, name: str) -> Answer:
        found = self.endpoints.get(name.lower())
        if s.method == "GET":
            return json_answer(200, self._read(found)) if found else _error(404, "UserError", "Not found")
        if s.method != "PUT":
            return self._unexpected(s)
        if found is not None and _busy(found.resource):
            return _error(409, "UserError", f"Cannot update endpoint {name} because it is in "
                                            f"{found.resource['properties']['provisioningState']} provisioning state.")
        return self._put_endpoint(s, name, found)

    def _put_endpoint(self, s: Sent, name: str, found: Endpoint | None) -> Answer:
        wanted = s.json()
        if found is None:
            self.add_endpoint(name, state="Creating", auth_mode=wanted["properties"].get("authMode", "Key"))
            found = self.endpoints[name.lower()]
            found.resource["tags"] = wanted.get("tags") or {}
        else:
            found.stale = copy.deepcopy(found.resource["properties"])
            found.stale_reads = self.traffic_lag
            found.resource["properties"]["provisioningState"] = "Updating"
        props = found.resource["properties"]
        for key in ("traffic", "mirrorTraffic"):  # the service keeps no zero weights
            props[key] = {k.lower(): v for k, v in (wanted["properties"].get(key) or {}).items() if v}
        found.busy_reads = self.settle_after
        return json_answer(201, found.resource, {"Azure-AsyncOperation": _operation("oe")})

    def _read(self, found: Endpoint) -> dict:
        """One GET: settles a finished operation, and may still show the traffic from before a PUT."""
        resource = copy.deepcopy(found.resource)
        if found.busy_reads > 0:
            found.busy_reads -= 1
        elif _busy(found.resource):
            found.resource["properties"]["provisioningState"] = "Succeeded"
            resource["properties"]["provisioningState"] = "Succeeded"
        if found.stale_reads > 0:
            found.stale_reads -= 1
            for key in ("traffic", "mirrorTraffic"):
                resource["properties"][key] = found.stale[key]
        return resource

    def _endpoint_child(self, s: Sent, name: str, child: str) -> Answer:
        if name.lower() not in self.endpoints:
            return _error(404, "UserError", "Not found")
        if child == "listKeys" and s.method == "POST":
            return json_answer(200, {"primaryKey": PRIMARY_KEY, "secondaryKey": "sK3y-" + "y" * 27})
        if child == "deployments" and s.method == "GET":
            return json_answer(200, {"value": [d for (e, _), d in self.deployments.items() if e == name.lower()]})
        return self._unexpected(s)

    # deployments
    def _deployment(self, s: Sent, endpoint: str, name: str, logs: bool) -> Answer:
        key = (endpoint.lower(), name.lower())
        ep = self.endpoints.get(endpoint.lower())
        if ep is None:
            return _error(404, "UserError", "Not found")
        if logs and s.method == "POST":
            return json_answer(200, {"content": self.logs.get(key, "")})
        if s.method == "GET":
            found = self.deployments.get(key)
            return json_answer(200, found) if found else _error(404, "UserError", "Not found")
        if s.method in ("PUT", "DELETE") and _busy(ep.resource):
            state = ep.resource["properties"]["provisioningState"]
            return _error(409, "UserError", f"Cannot create a deployment in endpoint {endpoint} because it is in "
                                            f"{state} provisioning state.")
        if s.method == "PUT":
            return self._put_deployment(s, key)
        if s.method == "DELETE":
            if self.deployments.pop(key, None) is None:
                return 204, {}, b""
            return 202, {"Location": _operation("od"), "Azure-AsyncOperation": _operation("od")}, b""
        return self._unexpected(s)

    def _put_deployment(self, s: Sent, key: tuple[str, str]) -> Answer:
        existed = key in self.deployments
        resource = fixture("azureml/online_deployment.json")  # the defaults the service fills in
        wanted = s.json()
        resource["properties"].pop("codeConfiguration")
        resource["properties"].update(wanted["properties"])
        resource.update(tags=wanted.get("tags") or {}, sku={**resource["sku"], **wanted.get("sku", {})})
        resource.update(id=f"{WS_PATH}/onlineEndpoints/{key[0]}/deployments/{key[1]}", name=key[1],
                        type="Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments")
        resource["properties"]["provisioningState"] = "Updating" if existed else "Creating"
        self.deployments[key] = resource
        return json_answer(200 if existed else 201, resource, {"Azure-AsyncOperation": _operation("od")})

    # code and environment assets
    def _asset(self, s: Sent) -> Answer:
        p = s.path
        if s.method == "GET" and re.fullmatch(r"/codes/[^/]+/versions", p):
            digest = s.query.get("hash", "")
            return json_answer(200, {"value": [a for path, a in self.assets.items() if "/codes/" in path
                                              and a["properties"].get("properties", {}).get("hash_sha256") == digest]})
        if s.method == "POST" and re.fullmatch(r"/codes/[^/]+/versions/[^/]+/startPendingUpload", p):
            return json_answer(200, fixture("azureml/code_pending_upload.json"))
        if not re.fullmatch(r"/(environments|codes)/[^/]+/versions/[^/]+", p):
            return self._unexpected(s)
        if s.method == "GET":
            found = self.assets.get(p)
            return json_answer(200, found) if found else _error(404, "UserError", "Not found")
        if s.method != "PUT":
            return self._unexpected(s)
        resource = s.json()
        parts = p.strip("/").split("/")
        resource.update(id=WS_PATH + p, name=parts[-1],
                        type=f"Microsoft.MachineLearningServices/workspaces/{parts[0]}/versions",
                        systemData=fixture("azureml/online_deployment.json")["systemData"])
        existed = p in self.assets
        self.assets[p] = resource
        return json_answer(200 if existed else 201, resource)

    # blob storage: the code upload (SAS) and model downloads (bearer token)
    def _blob(self, s: Sent) -> Answer:
        common = {"ETag": '"0x8DC6DA7C5A0E4F1"', "Last-Modified": "Sun, 22 Nov 2026 11:00:00 GMT",
                  "x-ms-request-id": str(uuid.uuid4()), "x-ms-version": "2021-10-04"}
        if s.query.get("comp") == "list":
            return self._blob_list(s, common)
        data = self.blobs.get(s.path)
        if s.method == "HEAD":
            if data is None:
                return 404, {**common, "x-ms-error-code": "BlobNotFound"}, b""
            return 200, {**common, "Content-Length": str(len(data)), "x-ms-blob-type": "BlockBlob"}, b""
        if s.method == "GET" and data is not None:
            size = len(data)
            return 206, {**common, "Content-Length": str(size), "Content-Range": f"bytes 0-{size - 1}/{size}",
                         "x-ms-blob-type": "BlockBlob", "Content-Type": "application/octet-stream"}, data
        if s.method == "PUT" and s.query.get("comp") == "metadata":
            return (200, common, b"") if data is not None else (404, {**common, "x-ms-error-code": "BlobNotFound"}, b"")
        if s.method == "PUT" and "comp" not in s.query:
            self.blobs[s.path] = s.body
            return 201, {**common, "x-ms-request-server-encrypted": "true"}, b""
        return self._unexpected(s)

    def _blob_list(self, s: Sent, common: dict[str, str]) -> Answer:
        container = s.path.strip("/").split("/")[0]
        prefix, delimiter = s.query.get("prefix", ""), s.query.get("delimiter")
        names = sorted(k.removeprefix(f"/{container}/") for k in self.blobs if k.startswith(f"/{container}/"))
        names = [n for n in names if n.startswith(prefix)]
        items, prefixes = [], set()
        for name in names:
            rest = name[len(prefix):]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter)[0] + delimiter)
                continue
            size = len(self.blobs[f"/{container}/{name}"])
            items.append(f"<Blob><Name>{escape(name)}</Name><Properties><Content-Length>{size}</Content-Length>"
                         "<BlobType>BlockBlob</BlobType><Content-Type>application/octet-stream</Content-Type>"
                         "</Properties><Metadata /></Blob>")
        items += [f"<BlobPrefix><Name>{escape(p)}</Name></BlobPrefix>" for p in sorted(prefixes)]
        xml = (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="https://{STORE}/" '
               f'ContainerName="{container}"><Prefix>{escape(prefix)}</Prefix><Blobs>{"".join(items)}</Blobs>'
               "<NextMarker /></EnumerationResults>")
        return 200, {**common, "Content-Type": "application/xml"}, xml.encode()

    # Azure Monitor
    def _metrics(self, s: Sent) -> Answer:
        name = s.query.get("metricnames", "")
        if name not in self.metrics:
            return json_answer(400, {"error": {"code": "BadRequest", "message": f"Failed to find metric {name}"}})
        answer = copy.deepcopy(self.metrics[name])
        wanted = {r.lower() for r in s.json()["resourceids"]}
        answer["values"] = [v for v in answer["values"] if v["resourceid"].lower() in wanted]
        return json_answer(200, answer)


def _label(s: Sent) -> str:
    """A request as the tests name it: method and path inside the workspace, without the host."""
    return f"{s.method} {s.path}"


def _busy(resource: dict) -> bool:
    return resource["properties"]["provisioningState"] in ("Creating", "Updating", "Deleting")


# --- the scoring URI ---


@dataclass
class Scored:
    path: str
    headers: dict[str, str]
    body: bytes


class ScoringServer:
    """An online endpoint's scoring URI on loopback: answers from a queue of (status, body) (the last one
    repeats) and records every request. Leaving it ends a ``delay`` still running and waits for the request
    threads, so none outlives the test."""

    def __init__(self) -> None:
        self.received: list[Scored] = []
        self.answers: list[tuple[int, bytes]] = [(200, b'{"predictions": [151.2, 75.0]}')]
        self.delay = 0.0
        self._closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.received.append(Scored(self.path, dict(self.headers), body))
                status, payload = server.answers.pop(0) if len(server.answers) > 1 else server.answers[0]
                if server.delay:
                    server._closing.wait(server.delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = False  # server_close joins the request threads
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/score"

    def __enter__(self) -> ScoringServer:
        self._thread.start()
        return self

    def __exit__(self, *args) -> None:
        self._closing.set()
        self._http.shutdown()
        self._http.server_close()
