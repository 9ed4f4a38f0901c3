"""AzureServing through the real azure-ai-ml and azure-monitor-querymetrics SDKs, offline.

Nothing of ours is mocked: a real ``MLClient`` and ``MetricsClient`` send their real requests to
``FakeServingWorkspace`` (an injected azure-core transport answering in the ARM, Blob and Azure Monitor REST
formats, see ``serving_fakes``), and scoring is a real HTTP POST to a loopback server standing in for the
endpoint's scoring URI. Time is injected: ``sleep`` records the waits instead of waiting.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError

from core.adapters.azure_serving import (
    SAMPLE_FILE,
    AzureServing,
    EndpointBusy,
    check_deployment_name,
    map_state,
)
from core.ml_platform import DeploymentSpec
from tests.azure_transport import (
    ARM,
    RG,
    SUB,
    WS,
    WS_PATH,
    Sent,
    StaticCredential,
    blob_storage_route,
    sdk_modules_loaded_by,
)
from tests.unit.serving_fakes import METRICS_HOST, PRIMARY_KEY, FakeServingWorkspace, ScoringServer, fixture

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.RemovedInMarshmallow4Warning")

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PROD, QA = "diabetes-prod", "diabetes-qa"
V3, V4 = "diabetes-ridge-v3", "diabetes-ridge-v4"
BUSY_WAIT, VISIBLE_WAIT = 3.0, 10.0


def spec(name: str = V4, endpoint: str = QA, **changes) -> DeploymentSpec:
    values = dict(endpoint=endpoint, name=name, model_name="diabetes-ridge", model_version=name.rsplit("-v", 1)[-1],
                  environment={"REACTOR_SCORE_FAULT": ""}, tags={"reactor_release": "diabetes-ridge:4"})
    return DeploymentSpec(**{**values, **changes})


class Sleeps(list):
    """The waits the adapter asked for (none is waited)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# --- fixtures ---


@pytest.fixture(scope="module")
def storage_route(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, FakeServingWorkspace]]:
    """azure-storage-blob builds its own transport for the code upload and model downloads (the SDK does not
    forward ``transport=`` to it): route that default transport to the fake of the test using it. Outside a
    git work tree, as the SDK runs ``git`` to add properties to assets it uploads."""
    with blob_storage_route(tmp_path_factory.mktemp("cwd")) as holder:
        yield holder


@pytest.fixture
def fake(storage_route) -> Iterator[FakeServingWorkspace]:
    workspace = FakeServingWorkspace()
    workspace.assets.update(_uploaded_score_code())  # score.py uploaded by an earlier deploy
    storage_route["fake"] = workspace
    yield workspace
    assert workspace.unexpected == []
    for poller in [t for t in threading.enumerate() if t.name.startswith("LROPoller")]:
        poller.join(timeout=5)
        assert not poller.is_alive(), "an SDK poller thread kept polling: not detached"


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def credential() -> StaticCredential:
    return StaticCredential()


@pytest.fixture
def serving(fake, sleeps, credential) -> AzureServing:
    return make_serving(fake, sleeps, credential)


def make_serving(fake: FakeServingWorkspace, sleeps: Sleeps, credential: StaticCredential,
                 **options) -> AzureServing:
    from azure.ai.ml import MLClient
    from azure.monitor.querymetrics import MetricsClient

    # retry_total=0: an error reaches the adapter at once instead of after the SDK's backoff
    def ml_client() -> MLClient:
        return MLClient(credential, SUB, RG, WS, show_progress=False, transport=fake, retry_total=0)

    def metrics() -> MetricsClient:
        return MetricsClient(f"https://{METRICS_HOST}", credential, transport=fake, retry_total=0)

    return AzureServing(ml_client, metrics=metrics, sleep=sleeps, clock=lambda: NOW,
                        busy_wait=BUSY_WAIT, visible_wait=VISIBLE_WAIT, **options)


def _uploaded_score_code() -> dict[str, dict]:
    """The code asset of score.py as the workspace holds it once uploaded (found by content hash)."""
    import shutil
    import tempfile

    from azure.ai.ml._utils._asset_utils import IgnoreFile, get_content_hash

    with tempfile.TemporaryDirectory() as folder:
        shutil.copy2(ROOT / "ml" / "score.py", Path(folder) / "score.py")
        digest = get_content_hash(Path(folder), IgnoreFile())
    path = "/codes/5d4c3b2a-0000-4000-8000-00000000c0de/versions/1"
    return {path: {"id": WS_PATH + path, "name": "1", "properties": {
        "codeUri": "https://reactorwsstore.blob.core.windows.net/azureml-blobstore/LocalUpload/abc/reactor-score",
        "isAnonymous": True, "properties": {"hash_sha256": digest, "hash_version": "202208"}}}}


def _put(fake: FakeServingWorkspace, path_part: str) -> Sent:
    (put,) = [s for s in fake.arm("PUT") if path_part in s.path]
    return put


# --- construction ---


def test_importing_and_configuring_the_adapter_loads_no_sdk():
    code = ("from core.adapters.azure_serving import AzureServing\n"
            "AzureServing.from_settings('s', 'rg', 'ws', metrics_endpoint='https://x.metrics.monitor.azure.com')")
    assert sdk_modules_loaded_by(code, ("azure", "requests", "ml")) == []


def test_from_settings_takes_the_aml_settings_and_builds_clients_on_first_use(fake):
    from azure.identity import DefaultAzureCredential

    fake.add_endpoint(PROD, {V3: 100})
    fake.metrics["RequestsPerMinute"] = fixture("azuremonitor/metrics_online_requests_per_minute.json")
    fake.metrics["RequestLatency_P95"] = fixture("azuremonitor/metrics_online_request_latency_p95.json")
    aml = {"subscription_id": SUB, "resource_group": RG, "workspace": WS, "compute": "cpu-cluster",
           "experiment": "mlops-reactor", "datastore": "reactordata"}
    serving = AzureServing.from_settings(**aml, metrics_endpoint=f"https://{METRICS_HOST}", transport=fake)
    assert fake.sent == []  # configuring talks to nobody
    assert isinstance(serving.client._credential, DefaultAzureCredential)
    serving = AzureServing.from_settings(**aml, metrics_endpoint=f"https://{METRICS_HOST}",
                                         credential=StaticCredential(), transport=fake)
    assert serving.get_endpoint(PROD).traffic == {V3: 100}
    health = serving.deployment_health(PROD, V4, datetime.now(UTC) - timedelta(minutes=5))
    assert health.requests == 157
    assert {s.host for s in fake.sent} == {ARM, METRICS_HOST}


def test_without_a_metrics_endpoint_health_says_what_is_missing(fake):
    serving = AzureServing.from_settings(SUB, RG, WS, credential=StaticCredential(), transport=fake)
    with pytest.raises(ValueError, match="metrics endpoint"):
        serving.deployment_health(PROD, V4, datetime.now(UTC) - timedelta(minutes=5))


# --- names and states ---


@pytest.mark.parametrize("name", ["abc", "Diabetes-Ridge-V4", "a" * 32, "m-1-v2"])
def test_valid_deployment_names_come_back_lower_case(name):
    assert check_deployment_name(name) == name.lower()


@pytest.mark.parametrize("name", ["ab", "a" * 33, "1model-v1", "-model", "model_v1", "model.v1", "módel-v1", ""])
def test_invalid_deployment_names_are_refused_naming_the_rule(name):
    with pytest.raises(ValueError, match="3 to 32 characters, a letter first, then only letters, digits and hyphens"):
        check_deployment_name(name)


def test_deploy_with_an_invalid_name_sends_nothing(serving, fake):
    with pytest.raises(ValueError, match="not valid in Azure ML"):
        serving.deploy(spec(name="diabetes_ridge_v4"))
    assert fake.sent == []


@pytest.mark.parametrize(("azure", "ours"), [
    ("Creating", "creating"), ("Updating", "creating"), ("Scaling", "creating"), ("Succeeded", "succeeded"),
    ("Failed", "failed"), ("Canceled", "failed"), ("Deleting", "deleting"), ("SomethingNew", "creating"),
    (None, "creating")])
def test_provisioning_states_map_case_insensitively(azure, ours):
    assert map_state(azure) == ours
    assert map_state(azure.upper() if azure else azure) == ours


# --- endpoints ---


def test_ensure_endpoint_reads_an_existing_one_and_never_puts_it(serving, fake):
    fake.add_endpoint(PROD, {V3: 100})
    fake.add_deployment(PROD, V3)
    endpoint = serving.ensure_endpoint(PROD, {"reactor_role": "production"})
    assert fake.labels() == [f"GET /onlineEndpoints/{PROD}", f"GET /onlineEndpoints/{PROD}/deployments"]
    assert (endpoint.state, endpoint.traffic, endpoint.share(V3)) == ("succeeded", {V3: 100}, 100)
    assert endpoint.scoring_uri == f"https://{PROD}.westeurope.inference.ml.azure.com/score"


def test_ensure_endpoint_creates_a_missing_one_without_waiting(serving, fake, sleeps):
    endpoint = serving.ensure_endpoint(QA, {"reactor_model": "diabetes-ridge", "reactor_role": "qa"})
    assert fake.labels() == [f"GET /onlineEndpoints/{QA}", "GET ", f"PUT /onlineEndpoints/{QA}"]
    body = _put(fake, "/onlineEndpoints/").json()
    assert body["location"] == "westeurope"  # the SDK reads the workspace's region first
    assert body["properties"]["authMode"] == "Key"
    assert body["tags"] == {"reactor_model": "diabetes-ridge", "reactor_role": "qa"}
    assert not body["properties"].get("traffic")
    assert (endpoint.name, endpoint.state) == (QA, "creating")
    assert sleeps == []


def test_ensure_endpoint_that_loses_a_create_race_returns_the_winners_endpoint(serving, fake):
    def concurrent_create(s: Sent) -> None:
        if s.method == "PUT" and QA not in fake.endpoints:
            fake.add_endpoint(QA, state="Creating")  # so our PUT meets a Creating endpoint: 409
            fake.endpoints[QA].busy_reads = 5

    fake.before = concurrent_create
    endpoint = serving.ensure_endpoint(QA, {})
    assert endpoint.state == "creating"
    assert fake.labels()[-3:] == [f"PUT /onlineEndpoints/{QA}", f"GET /onlineEndpoints/{QA}",
                                  f"GET /onlineEndpoints/{QA}/deployments"]


def test_ensure_endpoint_create_error_without_an_endpoint_is_raised(serving, fake):
    fake.fail_next("PUT", r"^/onlineEndpoints/", 400, "UserError",
                   "Endpoint name diabetes-qa is already in use in region westeurope.")
    with pytest.raises(HttpResponseError, match="already in use"):
        serving.ensure_endpoint(QA, {})


def test_endpoint_names_and_traffic_are_lower_case_and_zeros_are_missing(serving, fake):
    fake.add_endpoint(PROD, {"Diabetes-Ridge-V3": 100})
    fake.add_deployment(PROD, V3)
    fake.add_deployment(PROD, V4)  # no traffic: the SDK reports it with 0, we leave it out
    endpoint = serving.get_endpoint(PROD)
    assert endpoint.traffic == {V3: 100}
    assert (endpoint.share("DIABETES-RIDGE-V3"), endpoint.share(V4)) == (100, 0)
    assert serving.get_endpoint("nope") is None


# --- deploy ---


def test_first_deploy_starts_the_create_and_returns_creating(serving, fake, sleeps):
    fake.add_endpoint(QA)
    deployment = serving.deploy(spec())
    assert (deployment.name, deployment.state, deployment.model_version) == (V4, "creating", "4")
    labels = [re.sub(r"/codes/[^/]+/versions$", "/codes/NEW/versions", x) for x in fake.labels()]
    assert labels == [
        f"GET /onlineEndpoints/{QA}/deployments/{V4}",  # get-or-create
        f"GET /onlineEndpoints/{QA}", f"GET /onlineEndpoints/{QA}/deployments",  # idle?
        f"GET /onlineEndpoints/{QA}",  # the SDK checks the endpoint exists
        "GET /codes/NEW/versions",  # any code asset with score.py's content hash? found: no upload
        "GET /codes/5d4c3b2a-0000-4000-8000-00000000c0de/versions/1",
        "PUT /environments/CliV2AnonymousEnvironment/versions/"
        "c8bbf531a0f3f2abd80c26a2078fbebcf88cb275c0fb44149f0f5a8647729afb",
        "GET ",  # the workspace's region
        f"PUT /onlineEndpoints/{QA}/deployments/{V4}",
    ]
    assert sleeps == []  # nothing waits for the deployment


def test_deploy_body_names_model_code_environment_size_and_settings(serving, fake):
    fake.add_endpoint(QA)
    serving.deploy(spec(instance_type="Standard_F4s_v2", instance_count=2))
    body = _put(fake, "/deployments/").json()
    props = body["properties"]
    assert props["endpointComputeType"] == "Managed"
    assert props["model"] == f"{WS_PATH}/models/diabetes-ridge/versions/4"
    assert props["codeConfiguration"] == {
        "codeId": f"{WS_PATH}/codes/5d4c3b2a-0000-4000-8000-00000000c0de/versions/1", "scoringScript": "score.py"}
    assert props["environmentId"].startswith(f"{WS_PATH}/environments/CliV2AnonymousEnvironment/versions/")
    assert props["instanceType"] == "Standard_F4s_v2"
    assert body["sku"] == {"name": "Default", "capacity": 2}
    assert props["environmentVariables"] == {"REACTOR_SCORE_FAULT": ""}
    assert body["tags"] == {"reactor_release": "diabetes-ridge:4"}
    env = fake.assets[_put(fake, "/environments/").path]["properties"]
    assert env["image"] == "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04"
    assert "azureml-inference-server-http" in env["condaFile"]  # serves score.py


def test_deploy_defaults_to_the_recommended_instance_type(serving, fake):
    fake.add_endpoint(QA)
    serving.deploy(spec())
    props = _put(fake, "/deployments/").json()["properties"]
    assert props["instanceType"] == "Standard_DS3_v2"


def test_first_deploy_in_a_workspace_uploads_score_py_alone(serving, fake):
    fake.assets.clear()
    fake.add_endpoint(QA)
    serving.deploy(spec())
    uploads = [s for s in fake.sent if s.host.endswith(".blob.core.windows.net") and s.method == "PUT"
               and "comp" not in s.query]
    assert [s.path.rsplit("/", 1)[-1] for s in uploads] == ["score.py"]
    assert uploads[0].body == (ROOT / "ml" / "score.py").read_bytes()
    fake.reset()
    make_serving(fake, Sleeps(), StaticCredential()).deploy(spec(name="diabetes-ridge-v5"))  # another process
    assert not [s for s in fake.sent if s.host.endswith(".blob.core.windows.net")]  # same hash: reused


def test_a_repeated_deploy_finds_the_deployment_and_sends_no_put(serving, fake):
    fake.add_endpoint(QA)
    serving.deploy(spec())
    fake.finish(QA, V4)
    fake.reset()
    again = serving.deploy(spec(name="Diabetes-Ridge-V4"))
    assert fake.labels() == [f"GET /onlineEndpoints/{QA}/deployments/{V4}"]
    assert (again.name, again.state, again.model_name, again.model_version) == (V4, "succeeded", "diabetes-ridge", "4")


def test_deploy_into_a_busy_endpoint_waits_a_little_then_leaves_it_for_the_next_poll(serving, fake, sleeps):
    serving.ensure_endpoint(QA, {})
    fake.endpoints[QA].busy_reads = 100  # still Creating for a long while
    fake.reset()
    deployment = serving.deploy(spec())
    assert deployment.state == "creating"
    assert not fake.arm("PUT")
    assert sum(sleeps) == pytest.approx(BUSY_WAIT) and sleeps[0] == 0.25  # bounded, with backoff
    assert serving.get_deployment(QA, V4) is None  # the state machine then calls deploy again
    fake.endpoints[QA].busy_reads = 0
    assert serving.deploy(spec()).state == "creating"
    assert _put(fake, "/deployments/").path == f"/onlineEndpoints/{QA}/deployments/{V4}"


def test_a_409_while_the_endpoint_turns_busy_is_not_an_error(serving, fake, sleeps):
    fake.add_endpoint(QA)

    def traffic_update_starts(s: Sent) -> None:  # another operation begins between our read and our PUT
        if s.method == "PUT" and "/deployments/" in s.path:
            fake.endpoints[QA].resource["properties"]["provisioningState"] = "Updating"
            fake.endpoints[QA].busy_reads = 100

    fake.before = traffic_update_starts
    deployment = serving.deploy(spec())
    assert deployment.state == "creating"
    assert V4 not in {k[1] for k in fake.deployments}
    assert fake.labels()[-2:] == [f"PUT /onlineEndpoints/{QA}/deployments/{V4}",
                                  f"GET /onlineEndpoints/{QA}/deployments/{V4}"]


def test_deploy_errors_other_than_busy_are_raised(serving, fake):
    fake.add_endpoint(QA)
    fake.fail_next("PUT", r"/deployments/", 400, "UserError", "Not enough quota available for Standard_DS3_v2.")
    with pytest.raises(HttpResponseError, match="quota"):
        serving.deploy(spec())


def test_deploy_to_a_missing_endpoint_says_so(serving, fake):
    with pytest.raises(LookupError, match=f"online endpoint {QA} does not exist"):
        serving.deploy(spec())


# --- reading deployments ---


@pytest.mark.parametrize(("azure", "ours"), [("Creating", "creating"), ("Updating", "creating"),
                                             ("Succeeded", "succeeded"), ("Deleting", "deleting")])
def test_deployment_state_from_the_service(serving, fake, azure, ours):
    fake.add_endpoint(PROD)
    fake.add_deployment(PROD, V4, version="4", state=azure, instance_count=2)
    found = serving.get_deployment(PROD, V4)
    assert (found.state, found.model_name, found.model_version, found.instance_count, found.error) == (
        ours, "diabetes-ridge", "4", 2, "")


@pytest.mark.parametrize("azure", ["Failed", "Canceled"])
def test_a_failed_deployment_carries_the_reason_from_its_logs(serving, fake, azure):
    fake.add_endpoint(PROD)
    fake.add_deployment(PROD, V4, state=azure)
    fake.logs[(PROD, V4)] = ("2026-11-22 11:40:01 Initializing\n\n"
                             "RuntimeError: AZUREML_MODEL_DIR is not set\nWorker exiting (pid: 42)\n")
    found = serving.get_deployment(PROD, V4)
    assert found.state == "failed"
    assert found.error == (f"provisioning state {azure}; last log lines: 2026-11-22 11:40:01 Initializing | "
                           "RuntimeError: AZUREML_MODEL_DIR is not set | Worker exiting (pid: 42)")
    logs = [s for s in fake.sent if s.path.endswith("/getLogs")]
    assert logs[0].json() == {"tail": 20}


def test_a_failed_deployment_without_logs_still_says_failed(serving, fake):
    fake.add_endpoint(PROD)
    fake.add_deployment(PROD, V4, state="Failed")
    fake.fail_next("POST", r"/getLogs$", 400, "UserError", "The deployment has no containers.")
    assert serving.get_deployment(PROD, V4).error == "provisioning state Failed"


def test_missing_deployments_and_endpoints_read_as_none_and_empty(serving, fake):
    fake.add_endpoint(PROD)
    assert serving.get_deployment(PROD, V4) is None
    assert serving.get_deployment("nope", V4) is None
    assert serving.list_deployments("nope") == []


def test_list_deployments(serving, fake):
    fake.add_endpoint(PROD, {V3: 100})
    fake.add_deployment(PROD, "Diabetes-Ridge-V3", version="3")
    fake.add_deployment(PROD, V4, version="4", state="Creating")
    found = {d.name: (d.model_version, d.state) for d in serving.list_deployments(PROD)}
    assert found == {V3: ("3", "succeeded"), V4: ("4", "creating")}


# --- traffic ---


def _prod(fake: FakeServingWorkspace, traffic: dict | None = None, mirror: dict | None = None) -> None:
    fake.add_endpoint(PROD, traffic or {V3: 100}, mirror=mirror)
    fake.add_deployment(PROD, V3, version="3")
    fake.add_deployment(PROD, V4, version="4")


def test_set_traffic_puts_the_whole_map_and_returns_it_once_visible(serving, fake, sleeps):
    _prod(fake)
    fake.traffic_lag = 1  # the first read after the PUT still shows the old split
    endpoint = serving.set_traffic(PROD, {V4: 10, V3: 90})
    body = _put(fake, "/onlineEndpoints/").json()
    assert body["properties"]["traffic"] == {V4: 10, V3: 90}
    assert body["properties"]["authMode"] == "Key"  # the rest of the endpoint as read
    assert endpoint.traffic == {V4: 10, V3: 90}
    assert endpoint.state == "succeeded"
    reads = [x for x in fake.labels() if x == f"GET /onlineEndpoints/{PROD}"]
    assert len(reads) == 1 + 2  # is it idle, then two read-backs
    assert sleeps == [0.25]


def test_set_traffic_lower_cases_and_drops_zeros(serving, fake):
    _prod(fake, {V3: 90, V4: 10})
    endpoint = serving.set_traffic(PROD, {"Diabetes-Ridge-V4": 100, V3: 0})
    assert _put(fake, "/onlineEndpoints/").json()["properties"]["traffic"] == {V4: 100}
    assert endpoint.traffic == {V4: 100}
    assert (endpoint.share(V3), endpoint.share(V4)) == (0, 100)


def test_mirror_traffic_is_kept_unless_given(serving, fake):
    _prod(fake, {V3: 100}, mirror={V4: 10})
    serving.set_traffic(PROD, {V3: 100})
    assert _put(fake, "/onlineEndpoints/").json()["properties"]["mirrorTraffic"] == {V4: 10}
    fake.reset()
    endpoint = serving.set_traffic(PROD, {V4: 100}, {})
    assert not _put(fake, "/onlineEndpoints/").json()["properties"].get("mirrorTraffic")
    assert (endpoint.traffic, endpoint.mirror) == ({V4: 100}, {})


def test_set_mirror(serving, fake):
    _prod(fake)
    endpoint = serving.set_traffic(PROD, {V3: 100}, {V4: 20})
    assert _put(fake, "/onlineEndpoints/").json()["properties"]["mirrorTraffic"] == {V4: 20}
    assert endpoint.mirror == {V4: 20}


def test_traffic_that_never_shows_raises_busy_after_a_bounded_wait(serving, fake, sleeps):
    _prod(fake)
    fake.traffic_lag = 1000
    with pytest.raises(EndpointBusy, match=r"accepted but not visible after 10 s .*still shows traffic \{'diabetes"):
        serving.set_traffic(PROD, {V4: 100})
    assert sum(sleeps) == pytest.approx(VISIBLE_WAIT)
    assert sleeps == [0.25, 0.5, 1.0, 2.0, 4.0, 2.25]


def test_set_traffic_waits_for_a_busy_endpoint_to_settle(serving, fake, sleeps):
    _prod(fake)
    fake.endpoints[PROD].resource["properties"]["provisioningState"] = "Updating"
    fake.endpoints[PROD].busy_reads = 2
    endpoint = serving.set_traffic(PROD, {V4: 100})
    assert endpoint.traffic == {V4: 100}
    assert sleeps == [0.25, 0.5]


def test_set_traffic_on_an_endpoint_that_stays_busy_changes_nothing(serving, fake, sleeps):
    _prod(fake)
    fake.endpoints[PROD].resource["properties"]["provisioningState"] = "Updating"
    fake.endpoints[PROD].busy_reads = 100
    with pytest.raises(EndpointBusy, match="still busy after 3 s; traffic unchanged"):
        serving.set_traffic(PROD, {V4: 100})
    assert not fake.arm("PUT")
    assert sum(sleeps) == pytest.approx(BUSY_WAIT)


def test_a_409_on_the_traffic_put_is_retried(serving, fake, sleeps):
    _prod(fake)
    fake.fail_next("PUT", rf"^/onlineEndpoints/{PROD}$", 409, "UserError",
                   f"Cannot update endpoint {PROD} because it is in Updating provisioning state.")
    endpoint = serving.set_traffic(PROD, {V4: 100})
    assert endpoint.traffic == {V4: 100}
    assert [x for x in fake.labels() if x.startswith("PUT")] == [f"PUT /onlineEndpoints/{PROD}"] * 2
    assert sleeps == [0.25]


@pytest.mark.parametrize(("traffic", "mirror", "problem"), [
    ({V3: 90, V4: 20}, None, "sum to 100"),
    ({V3: 50}, None, "sum to 100"),
    ({V3: 110, V4: -10}, None, "from 0 to 100"),
    ({V3: 100}, {V4: 60}, "at most 50"),
    ({V3: 100}, {V4: 10, "other": 10}, "one deployment"),
])
def test_invalid_weights_are_refused_before_anything_is_sent(serving, fake, traffic, mirror, problem):
    with pytest.raises(ValueError, match=problem):
        serving.set_traffic(PROD, traffic, mirror)
    assert fake.sent == []


def test_empty_traffic_is_allowed(serving, fake):
    _prod(fake)
    assert serving.set_traffic(PROD, {}, {}).traffic == {}
    assert not _put(fake, "/onlineEndpoints/").json()["properties"].get("traffic")


# --- scale and delete ---


def test_scale_updates_the_instance_count_without_waiting(serving, fake, sleeps):
    _prod(fake)
    serving.scale(PROD, "Diabetes-Ridge-V3", 3)
    put = _put(fake, "/deployments/")
    assert put.path == f"/onlineEndpoints/{PROD}/deployments/{V3}"
    body = put.json()
    assert body["sku"]["capacity"] == 3
    assert body["properties"]["model"] == f"{WS_PATH}/models/diabetes-ridge/versions/3"  # the rest as it was
    assert body["properties"]["codeConfiguration"]["scoringScript"] == "score.py"
    assert sleeps == []
    assert serving.get_deployment(PROD, V3).state == "creating"  # Updating until the scale is done


def test_scale_to_the_current_count_or_of_a_missing_deployment_sends_no_put(serving, fake):
    _prod(fake)
    serving.scale(PROD, V3, 1)
    serving.scale(PROD, "diabetes-ridge-v9", 2)
    assert not fake.arm("PUT")
    with pytest.raises(ValueError, match="at least 1"):
        serving.scale(PROD, V3, 0)


def test_scale_of_a_deployment_on_a_busy_endpoint_raises_busy(serving, fake, sleeps):
    _prod(fake)
    fake.endpoints[PROD].resource["properties"]["provisioningState"] = "Updating"
    fake.endpoints[PROD].busy_reads = 100
    with pytest.raises(EndpointBusy, match=f"endpoint {PROD} is busy: Cannot create a deployment"):
        serving.scale(PROD, V3, 2)
    assert sum(sleeps) == pytest.approx(BUSY_WAIT)


def test_delete_deployment_starts_the_delete_and_absent_is_fine(serving, fake, sleeps):
    _prod(fake)
    serving.delete_deployment(PROD, "Diabetes-Ridge-V4")
    assert [x for x in fake.labels() if x.startswith("DELETE")] == [f"DELETE /onlineEndpoints/{PROD}/deployments/{V4}"]
    serving.delete_deployment(PROD, V4)  # gone already: the service answers 204
    serving.delete_deployment("nope", V4)  # no endpoint: 404
    assert sleeps == []


# --- scoring ---


@pytest.fixture
def scorer() -> Iterator[ScoringServer]:
    with ScoringServer() as server:
        yield server


@pytest.fixture
def scored_endpoint(fake, scorer) -> FakeServingWorkspace:
    fake.scoring_uri = scorer.uri
    _prod(fake, {V3: 90, V4: 10})
    return fake


def test_score_posts_with_the_key_and_the_deployment_header(serving, scored_endpoint, scorer):
    body = json.dumps({"data": [[0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02]]}).encode()
    result = serving.score(PROD, body, deployment="Diabetes-Ridge-V4", timeout=5)
    assert (result.status, result.body, result.error) == (200, b'{"predictions": [151.2, 75.0]}', "")
    assert 0 < result.latency_ms < 5000
    (received,) = scorer.received
    assert (received.path, received.body) == ("/score", body)
    assert received.headers["Authorization"] == f"Bearer {PRIMARY_KEY}"
    assert received.headers["azureml-model-deployment"] == V4
    assert received.headers["Content-Type"] == "application/json"
    assert f"POST /onlineEndpoints/{PROD}/listKeys" in scored_endpoint.labels()


def test_score_without_a_deployment_follows_the_traffic_split_and_reuses_the_key(serving, scored_endpoint, scorer):
    serving.score(PROD, b"{}")
    scored_endpoint.reset()
    serving.score(PROD, b"{}")
    assert "azureml-model-deployment" not in scorer.received[-1].headers
    assert scored_endpoint.sent == []  # scoring URI and key cached


def test_a_rejected_key_is_fetched_again_once(serving, scored_endpoint, scorer):
    serving.score(PROD, b"{}")
    scorer.answers = [(401, b'{"message": "invalid key"}'), (200, b"{}")]
    result = serving.score(PROD, b"{}")
    assert result.status == 200
    assert scored_endpoint.labels().count(f"POST /onlineEndpoints/{PROD}/listKeys") == 2


def test_a_scoring_error_status_is_returned_as_is(serving, scored_endpoint, scorer):
    scorer.answers = [(502, b"upstream request timeout")]
    result = serving.score(PROD, b"{}", deployment=V4)
    assert (result.status, result.body, result.error) == (502, b"upstream request timeout", "")


def test_no_answer_is_status_0_with_the_reason_and_no_key(serving, fake, caplog):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fake.scoring_uri = f"http://127.0.0.1:{port}/score"
    _prod(fake)
    with caplog.at_level(logging.DEBUG):
        result = serving.score(PROD, b"{}", deployment=V4, timeout=2)
    assert result.status == 0 and result.body == b""
    assert result.error.startswith("ConnectionError: ")
    assert PRIMARY_KEY not in result.error + repr(result) + caplog.text
    assert PRIMARY_KEY not in repr(serving._scorer._targets)


def test_a_slow_answer_times_out_as_status_0(serving, scored_endpoint, scorer):
    scorer.delay = 1.0
    result = serving.score(PROD, b"{}", timeout=0.2)
    assert result.status == 0
    assert result.error.startswith("ReadTimeout: ")
    assert 150 < result.latency_ms < 1000


def test_an_aad_token_endpoint_is_called_with_an_entra_token(fake, scorer, sleeps, credential):
    fake.scoring_uri = scorer.uri
    fake.add_endpoint(PROD, {V3: 100}, auth_mode="AADToken")
    serving = make_serving(fake, sleeps, credential)
    assert serving.score(PROD, b"{}").status == 200
    assert "https://ml.azure.com/.default" in credential.scopes
    token = scorer.received[0].headers["Authorization"].removeprefix("Bearer ")
    assert token.count(".") == 2 and token != PRIMARY_KEY
    assert not [x for x in fake.labels() if x.endswith("/listKeys")]


def test_tokens_are_reused_until_shortly_before_they_expire_and_keys_for_the_ttl():
    import time

    from azure.ai.ml.entities import EndpointAadToken, EndpointAuthKeys
    from azure.core.credentials import AccessToken

    from core.adapters.azure_scoring import secret_of

    now = time.monotonic()
    token, until = secret_of(EndpointAadToken(AccessToken("t0k3n", int(time.time()) + 600)), ttl=900)
    assert token == "t0k3n" and now + 290 < until < now + 310  # 10 minutes left, 5 kept in reserve
    _, until = secret_of(EndpointAadToken(AccessToken("t0k3n", int(time.time()) + 60)), ttl=900)
    assert until <= time.monotonic()  # about to expire: fetched again next time
    key, until = secret_of(EndpointAuthKeys(primary_key=PRIMARY_KEY, secondary_key="s"), ttl=300)
    assert key == PRIMARY_KEY and now + 290 < until < now + 310


def test_scoring_a_missing_endpoint_or_one_still_being_created_is_status_0(serving, fake):
    result = serving.score("nope", b"{}")
    assert (result.status, result.error) == (0, "endpoint nope does not exist")
    fake.add_endpoint(QA, state="Creating")["properties"]["scoringUri"] = None
    fake.endpoints[QA].busy_reads = 5
    result = serving.score(QA, b"{}")
    assert (result.status, result.error) == (0, f"endpoint {QA} has no scoring URI yet (creating)")


# --- health from Azure Monitor ---


def _recorded_metrics(fake: FakeServingWorkspace) -> None:
    fake.metrics["RequestsPerMinute"] = fixture("azuremonitor/metrics_online_requests_per_minute.json")
    fake.metrics["RequestLatency_P95"] = fixture("azuremonitor/metrics_online_request_latency_p95.json")


def test_health_adds_up_requests_and_5xx_and_weights_p95_by_requests(serving, fake):
    _recorded_metrics(fake)
    health = serving.deployment_health(PROD, "Diabetes-Ridge-V4", NOW - timedelta(minutes=5))
    # 2xx 150, 4xx 4, 5xx 3 over five minutes; P95 per minute 120, 118, 640, 125, 122 ms
    assert (health.requests, health.errors, health.window_seconds) == (157, 3, 300.0)
    per_minute = [31, 33, 30, 33, 30]
    expected = sum(p * w for p, w in zip([120.0, 118.0, 640.0, 125.0, 122.0], per_minute, strict=True)) / 157
    assert health.p95_ms == pytest.approx(expected)
    assert health.error_rate == pytest.approx(3 / 157)


def test_health_asks_the_metrics_batch_api_for_the_deployment(serving, fake):
    _recorded_metrics(fake)
    serving.deployment_health(PROD, V4, NOW - timedelta(minutes=5))
    calls = [s for s in fake.sent if s.host == METRICS_HOST]
    assert [s.path for s in calls] == [f"/subscriptions/{SUB}/metrics:getBatch"] * 2
    first, second = (c.query for c in calls)
    assert first["metricnames"] == "RequestsPerMinute"
    assert first["filter"] == f"deployment eq '{V4}' and statusCodeClass eq '*'"
    assert second["metricnames"] == "RequestLatency_P95"
    assert second["filter"] == f"deployment eq '{V4}'"
    for query in (first, second):
        assert query["metricnamespace"] == "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
        assert (query["aggregation"], query["interval"]) == ("Average", "PT1M")
        assert query["starttime"].startswith("2026-11-22T11:55:00") and query["endtime"].startswith("2026-11-22T12:00")
    assert calls[0].json() == {"resourceids": [f"{WS_PATH}/onlineEndpoints/{PROD}"]}
    assert calls[0].headers["Authorization"].startswith("Bearer ")


def test_health_of_a_deployment_without_traffic(serving, fake):
    _recorded_metrics(fake)
    for answer in fake.metrics.values():
        answer["values"][0]["value"][0]["timeseries"] = []
    health = serving.deployment_health(PROD, V4, NOW - timedelta(minutes=5))
    assert (health.requests, health.errors, health.p95_ms) == (0, 0, None)


def test_health_of_an_empty_window_asks_nothing(serving, fake):
    health = serving.deployment_health(PROD, V4, NOW)
    assert (health.requests, health.p95_ms, health.window_seconds) == (0, None, 0.0)
    assert fake.sent == []


# --- sample requests ---


SAMPLE = b'{"data": [[0.038, 0.05, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]]}'


def test_sample_request_is_the_models_sample_input_downloaded_once(serving, fake):
    fake.add_model("diabetes-ridge", "4", {"model.pkl": b"\x80\x04pickle", "model.json": b"{}",
                                           SAMPLE_FILE: SAMPLE, "registration.json": b"{}"})
    assert serving.sample_request("diabetes-ridge", "4") == SAMPLE
    labels = [f"{s.method} {s.host.split('.')[0]}" for s in fake.sent]
    assert labels[:2] == ["GET management", "GET management"]  # the model version, its datastore
    gets = [s for s in fake.sent if s.method == "GET" and s.host.endswith(".blob.core.windows.net")
            and "comp" not in s.query]
    assert {s.path.rsplit("/", 1)[-1] for s in gets} == {"model.pkl", "model.json", SAMPLE_FILE, "registration.json"}
    assert all(s.headers["Authorization"].startswith("Bearer ") for s in gets)  # identity-based datastore
    fake.reset()
    assert serving.sample_request("diabetes-ridge", "4") == SAMPLE
    assert fake.sent == []


def test_a_model_without_a_sample_or_a_missing_version_has_none(serving, fake):
    fake.add_model("diabetes-ridge", "2", {"model.pkl": b"\x80\x04pickle"})
    assert serving.sample_request("diabetes-ridge", "2") is None
    assert serving.sample_request("diabetes-ridge", "99") is None
    fake.add_model("diabetes-ridge", "99", {SAMPLE_FILE: SAMPLE})  # registered later: not cached as missing
    assert serving.sample_request("diabetes-ridge", "99") == SAMPLE


def test_sample_file_name_is_the_one_ml_train_writes():
    from ml.model_io import SAMPLE_FILE as written

    assert written == SAMPLE_FILE
