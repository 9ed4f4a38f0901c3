"""AzureMLPlatform through the real azure-ai-ml SDK, offline.

Nothing of ours is mocked. The tests build a real ``MLClient`` (through ``AzureMLPlatform.from_settings``)
with a static token credential and an injected ``HttpTransport``; the SDK forwards ``transport=`` to all of
its generated REST clients. ``FakeWorkspace`` is that transport (a ``FakeTransport`` of
``tests.azure_transport``): it records every request and answers like the Azure ML REST API does, from the
JSON responses in ``tests/fixtures/azureml`` plus what earlier requests stored (a PUT asset can be listed and
read back, as in the service).

Submitting a pipeline job makes the SDK upload the components' code snapshot to the workspace's blob
storage with a SAS it gets from the service. The SDK builds that ``BlobServiceClient`` itself without
forwarding ``transport=``, so the tests point azure-storage-blob's default transport at the same fake
(``RequestsTransport`` in its base client): the blob requests are the SDK's real ones, answered in the
Blob service's REST format.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.exceptions import HttpResponseError

from core.adapters.azure_ml import AzureMLPlatform, datastore_uri, map_status
from core.ml_platform import BlobFolder, RetrainRequest
from tests.azure_transport import (
    ARM,
    RG,
    SUB,
    TENANT,
    WS,
    WS_PATH,
    Answer,
    FakeTransport,
    Sent,
    StaticCredential,
    blob_storage_route,
    json_answer,
    sdk_modules_loaded_by,
)

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.RemovedInMarshmallow4Warning")

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "azureml"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def request_for(job_name: str, **changes) -> RetrainRequest:
    request = RetrainRequest(
        job_name=job_name, model_name="diabetes-ridge", data=BlobFolder("data", "diabetes-ridge/"),
        test_container="data", test_blob="holdout/diabetes-ridge.csv", metric="rmse", min_improvement=0.01,
        reason="data", correlation_id="c-7d1e", decision_id="d-" + job_name[-6:], tags={"trigger": "BlobCreated"},
    )
    return dataclasses.replace(request, **changes)


# --- the outside world: the workspace's REST API and blob storage ---


@dataclass
class Blob:
    data: bytes
    metadata: dict[str, str] = field(default_factory=dict)


def _error(status: int, fixture_name: str) -> Answer:
    return json_answer(status, fixture(fixture_name))


class FakeWorkspace(FakeTransport):
    """The Azure ML REST API of one workspace and its blob storage, in memory; records every request."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, dict] = {}
        self.assets: dict[str, dict] = {}  # ARM path of an environment/code/component version -> resource
        self.blobs: dict[str, Blob] = {}
        self.datastores: dict[str, dict] = {"reactordata": fixture("datastore.json")}
        self.before_job_put = None  # hook: a concurrent submitter
        self._sas = fixture("code_pending_upload.json")["blobReferenceForConsumption"]["credential"]["sasUri"]

    # test helpers
    def fail_next(self, method: str, path_regex: str, status: int) -> None:
        fixture_name = "error_unavailable.json" if status >= 500 else "error_not_found.json"
        self.failures.append((method, path_regex, _error(status, fixture_name)))

    def storage(self) -> list[Sent]:
        return [s for s in self.sent if s.host.endswith(".blob.core.windows.net")]

    # the service
    def _answer(self, s: Sent) -> Answer:
        self.sent.append(s)
        if (failure := self._injected(s)) is not None:
            return failure
        if s.host.endswith(".blob.core.windows.net"):
            return self._blob(s)
        if s.host == ARM:
            return self._rest(s)
        return self._unexpected(s)

    def _unexpected(self, s: Sent) -> Answer:
        self.unexpected.append(str(s))
        return json_answer(400, {"error": {"code": "UnexpectedInTest", "message": str(s)}})

    def _rest(self, s: Sent) -> Answer:
        p = s.path
        if s.method == "GET" and p == "":
            return json_answer(200, fixture("workspace.json"))
        if s.method == "GET" and (m := re.fullmatch(r"/datastores/([^/]+)", p)):
            found = self.datastores.get(m.group(1))
            return json_answer(200, found) if found else _error(404, "error_not_found.json")
        if m := re.fullmatch(r"/jobs/([^/]+)", p):
            return self._job(s, m.group(1))
        if s.method == "GET" and (m := re.fullmatch(r"/models/([^/]+)/versions", p)):
            return self._model_versions(s, m.group(1))
        if s.method == "GET" and (m := re.fullmatch(r"/models/([^/]+)/versions/([^/]+)", p)):
            return self._model_version(m.group(1), m.group(2))
        if s.method == "GET" and re.fullmatch(r"/codes/[^/]+/versions", p):
            return self._codes_by_hash(s.query.get("hash", ""))
        if s.method == "POST" and re.fullmatch(r"/codes/[^/]+/versions/[^/]+/startPendingUpload", p):
            return json_answer(200, fixture("code_pending_upload.json"))
        if re.fullmatch(r"/(environments|codes|components)/[^/]+/versions/[^/]+", p):
            return self._asset(s)
        return self._unexpected(s)

    def _job(self, s: Sent, name: str) -> Answer:
        if s.method == "GET":
            return json_answer(200, self.jobs[name]) if name in self.jobs else _error(404, "error_not_found.json")
        if s.method != "PUT":
            return self._unexpected(s)
        if self.before_job_put is not None:
            self.before_job_put(self, name)
        if name in self.jobs:  # the service does not resubmit a job: an existing name is an error
            return json_answer(400, {"error": {"code": "UserError", "message": f"Job {name} already exists."}})
        accepted = fixture("job_accepted.json")
        job = s.json()
        job["properties"] = {**job["properties"], **accepted["properties"]}
        job["properties"]["tags"] = s.json()["properties"].get("tags", {})
        studio = job["properties"]["services"]["Studio"]
        studio["endpoint"] = studio["endpoint"].replace("{name}", name)
        job.update(id=WS_PATH + f"/jobs/{name}", name=name, type=accepted["type"], systemData=accepted["systemData"])
        self.jobs[name] = job
        return json_answer(201, job)

    def _model_versions(self, s: Sent, name: str) -> Answer:
        if name != "diabetes-ridge":
            return json_answer(200, {"value": []})
        page = "model_versions_page2.json" if "$skipToken" in s.query else "model_versions_page1.json"
        return json_answer(200, fixture(page))

    def _model_version(self, name: str, version: str) -> Answer:
        everything = fixture("model_versions_page1.json")["value"] + fixture("model_versions_page2.json")["value"]
        for item in everything:
            if item["id"].endswith(f"/models/{name}/versions/{version}"):
                return json_answer(200, item)
        return _error(404, "error_not_found.json")

    def _codes_by_hash(self, digest: str) -> Answer:
        found = [a for path, a in self.assets.items() if "/codes/" in path
                 and a["properties"].get("properties", {}).get("hash_sha256") == digest]
        return json_answer(200, {"value": found})

    def _asset(self, s: Sent) -> Answer:
        if s.method == "GET":
            found = self.assets.get(s.path)
            return json_answer(200, found) if found else _error(404, "error_not_found.json")
        if s.method != "PUT":
            return self._unexpected(s)
        existed = s.path in self.assets
        resource = s.json()
        parts = s.path.strip("/").split("/")
        resource.update(id=WS_PATH + s.path, name=parts[-1],
                        type=f"Microsoft.MachineLearningServices/workspaces/{parts[0]}/versions",
                        systemData={"createdAt": "2024-05-06T09:00:01.0000000+00:00", "createdBy": "reactor-func",
                                    "createdByType": "Application"})
        self.assets[s.path] = resource
        return json_answer(200 if existed else 201, resource)

    def _blob(self, s: Sent) -> Answer:
        if s.query.get("sig") != parse_qs(urlsplit(self._sas).query)["sig"][0]:
            return 403, {"x-ms-error-code": "AuthenticationFailed"}, b""
        common = {"ETag": '"0x8DC6DA7C5A0E4F1"', "Last-Modified": "Mon, 06 May 2024 09:00:02 GMT",
                  "x-ms-request-id": "00000000-0000-0000-0000-000000000000", "x-ms-version": "2021-10-04"}
        blob = self.blobs.get(s.path)
        if s.method == "HEAD":
            if blob is None:
                return 404, {**common, "x-ms-error-code": "BlobNotFound"}, b""
            meta = {f"x-ms-meta-{k}": v for k, v in blob.metadata.items()}
            return 200, {**common, **meta, "Content-Length": str(len(blob.data)), "x-ms-blob-type": "BlockBlob",
                         "Content-Type": "application/octet-stream"}, b""
        if s.method == "PUT" and s.query.get("comp") == "metadata":
            if blob is None:
                return 404, {**common, "x-ms-error-code": "BlobNotFound"}, b""
            blob.metadata = {k[len("x-ms-meta-"):]: v for k, v in s.headers.items()
                             if k.lower().startswith("x-ms-meta-")}
            return 200, common, b""
        if s.method == "PUT" and "comp" not in s.query and s.headers.get("x-ms-blob-type") == "BlockBlob":
            self.blobs[s.path] = Blob(s.body)
            return 201, {**common, "x-ms-request-server-encrypted": "true"}, b""
        return self._unexpected(s)


# --- fixtures ---


def make_platform(fake: FakeWorkspace, credential: StaticCredential | None = None,
                  datastore: str = "reactordata") -> AzureMLPlatform:
    # retry_total=0: a 503 reaches the adapter at once instead of after the SDK's backoff
    return AzureMLPlatform.from_settings(
        SUB, RG, WS, compute="cpu-cluster", experiment="mlops-reactor", datastore=datastore,
        credential=credential or StaticCredential(), transport=fake, retry_total=0,
    )


@pytest.fixture(scope="module")
def module_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, FakeWorkspace]]:
    """Outside a git work tree (the SDK adds git properties to a job and runs `git status` to do so),
    with azure-storage-blob's default transport routed to the fake of the test using it."""
    with blob_storage_route(tmp_path_factory.mktemp("cwd")) as holder:
        yield holder


@pytest.fixture
def fake(module_env):
    workspace = FakeWorkspace()
    module_env["fake"] = workspace
    yield workspace
    assert workspace.unexpected == []


@pytest.fixture
def platform(fake):
    return make_platform(fake)


@pytest.fixture(scope="module")
def submitted(module_env):
    """One real submit, shared by the tests that read what it sent."""
    workspace = FakeWorkspace()
    module_env["fake"] = workspace
    credential = StaticCredential()
    platform = make_platform(workspace, credential)
    request = request_for("retrain-diabetes-ridge-4f2a9c")
    job = platform.submit_retraining(request)
    assert workspace.unexpected == []
    return {"fake": workspace, "platform": platform, "request": request, "job": job, "credential": credential,
            "sent": list(workspace.sent)}


def _job_put(sent: list[Sent]) -> Sent:
    (put,) = [s for s in sent if s.method == "PUT" and s.path.startswith("/jobs/")]
    return put


# --- submit: get-or-create, and what the SDK sends ---


def test_submit_reads_the_job_first_and_creates_it_last(submitted):
    arm = [s for s in submitted["sent"] if s.host == ARM]
    assert str(arm[0]) == f"GET {ARM}/jobs/retrain-diabetes-ridge-4f2a9c"
    assert str(arm[1]) == f"GET {ARM}/datastores/reactordata"  # which container it covers
    assert str(arm[2]) == f"GET {ARM}/models/diabetes-ridge/versions"  # the champion
    assert str(arm[-1]) == f"PUT {ARM}/jobs/retrain-diabetes-ridge-4f2a9c"
    assert _job_put(submitted["sent"]).query["api-version"] == "2024-01-01-preview"


def test_submit_returns_the_created_job(submitted):
    job = submitted["job"]
    assert job.name == "retrain-diabetes-ridge-4f2a9c"
    assert job.status == "queued"  # NotStarted
    assert job.model_name == "diabetes-ridge"
    assert job.url == ("https://ml.azure.com/runs/retrain-diabetes-ridge-4f2a9c?wsid=/subscriptions/"
                       f"{SUB}/resourcegroups/{RG}/workspaces/{WS}&tid={TENANT}")
    assert job.tags == submitted["request"].lineage_tags()


def test_job_body_is_the_three_step_pipeline(submitted):
    props = _job_put(submitted["sent"]).json()["properties"]
    assert props["jobType"] == "Pipeline"
    assert props["experimentName"] == "mlops-reactor"
    assert props["displayName"] == "retrain diabetes-ridge"
    assert props["tags"] == submitted["request"].lineage_tags()
    assert props["settings"]["default_compute"] == f"{WS_PATH}/computes/cpu-cluster"
    assert list(props["jobs"]) == ["train", "evaluate", "register"]
    assert set(props["outputs"]) == {"model", "verdict", "package"}


def test_job_body_binds_the_datastore_inputs_and_the_champion(submitted):
    jobs = _job_put(submitted["sent"]).json()["properties"]["jobs"]
    assert jobs["train"]["inputs"] == {
        "data_0": {"uri": "azureml://datastores/reactordata/paths/diabetes-ridge/", "job_input_type": "uri_folder"}}
    evaluate = jobs["evaluate"]["inputs"]
    assert evaluate["test_data"] == {"uri": "azureml://datastores/reactordata/paths/holdout/diabetes-ridge.csv",
                                     "job_input_type": "uri_file"}
    # the SDK turns the champion's azureml:diabetes-ridge:3 into the model version's ARM id
    assert evaluate["champion"] == {"uri": f"{WS_PATH}/models/diabetes-ridge/versions/3",
                                    "job_input_type": "custom_model"}
    assert evaluate["metric"]["value"] == "rmse"
    assert float(evaluate["min_improvement"]["value"]) == 0.01
    register = jobs["register"]["inputs"]
    assert register["model_name"]["value"] == "diabetes-ridge"
    assert json.loads(register["tags_json"]["value"]) == submitted["request"].lineage_tags()


def test_steps_point_at_components_the_sdk_created_first(submitted):
    sent = submitted["sent"]
    components = {s.path: s.json()["properties"]["componentSpec"] for s in sent
                  if s.method == "PUT" and s.path.startswith("/components/")}
    steps = _job_put(sent).json()["properties"]["jobs"]
    for step, module in (("train", "ml.train"), ("evaluate", "ml.evaluate"), ("register", "ml.register")):
        spec = components[steps[step]["componentId"].removeprefix(WS_PATH)]
        assert spec["command"].startswith(f"python -m {module} ")
        assert spec["environment"].startswith(f"azureml:{WS_PATH}/environments/CliV2AnonymousEnvironment/versions/")
        assert spec["code"].startswith(f"azureml:{WS_PATH}/codes/")


def test_pipeline_submit_carries_the_users_ml_token(submitted):
    put = _job_put(submitted["sent"])
    assert put.headers["Authorization"].startswith("Bearer ")
    assert "x-azureml-token" in put.headers  # the SDK sends an ml.azure.com token with pipeline jobs
    assert "https://ml.azure.com/.default" in submitted["credential"].scopes


def test_code_snapshot_is_uploaded_once_with_the_services_sas(submitted):
    sent = submitted["sent"]
    uploads = [s for s in sent if s.host.endswith(".blob.core.windows.net") and s.method == "PUT"
               and "comp" not in s.query]
    container = "/6d1a7c1e-2f0b-4c3e-9a8d-1b2c3d4e5f60-8f2b1c0a9d/code_with_additional_includes/"
    names = {s.path.removeprefix(container) for s in uploads}
    assert {"ml/train.py", "ml/evaluate.py", "ml/register.py", "ml/pipeline.py", "ml/azureml/train.yml"} <= names
    assert all(s.path.startswith(container + "ml/") for s in uploads)
    assert len(names) == len(uploads)  # each file once, though three components share the code
    assert not any("__pycache__" in n for n in names)
    (confirm,) = [s for s in sent if s.query.get("comp") == "metadata"]
    assert confirm.headers["x-ms-meta-upload_status"] == "completed"
    (code,) = [s for s in sent if s.method == "PUT" and s.path.startswith("/codes/")]
    assert code.json()["properties"]["codeUri"].endswith("8f2b1c0a9d/code_with_additional_includes")


def test_exact_request_sequence_of_a_first_submit(submitted):
    """The order the SDK talks to the service in (documented in the adapter's report)."""
    def label(s: Sent) -> str:
        if s.host != ARM:
            return f"{s.method} blob" + ("?comp=metadata" if s.query.get("comp") == "metadata" else "")
        return f"{s.method} " + re.sub(r"/versions/[^/]+", "/versions/V", re.sub(r"/codes/[^/]+", "/codes/N", s.path))

    labels = [label(s) for s in submitted["sent"]]
    collapsed = [x for i, x in enumerate(labels) if i == 0 or x != labels[i - 1]]
    assert collapsed == [
        "GET /jobs/retrain-diabetes-ridge-4f2a9c",
        "GET /datastores/reactordata",  # the container it covers (once per process)
        "GET /models/diabetes-ridge/versions",  # the champion: two pages
        "PUT /environments/CliV2AnonymousEnvironment/versions/V",
        "GET ",  # the workspace (its id keys the SDK's component cache)
        "GET /codes/N/versions",  # code asset with this content hash? none yet
        "POST /codes/N/versions/V/startPendingUpload",  # SAS for a temporary blob container
        "HEAD blob",  # upload already confirmed?
        "PUT blob",  # one PUT per file, in parallel threads
        "PUT blob?comp=metadata",  # upload confirmation on the first file
        "PUT /codes/N/versions/V",
        "PUT /components/azureml_anonymous/versions/V",
        "GET /codes/N/versions",  # second and third component: same hash, found, no upload
        "GET /codes/N/versions/V",
        "PUT /components/azureml_anonymous/versions/V",
        "GET /codes/N/versions",
        "GET /codes/N/versions/V",
        "PUT /components/azureml_anonymous/versions/V",
        "PUT /jobs/retrain-diabetes-ridge-4f2a9c",
    ]
    assert labels.count("PUT /environments/CliV2AnonymousEnvironment/versions/V") == 3  # once per component
    assert labels.count("GET /models/diabetes-ridge/versions") == 2


def test_a_repeated_submit_finds_the_job_and_sends_no_put(submitted, module_env):
    fake = module_env["fake"] = submitted["fake"]
    fake.reset()
    again = submitted["platform"].submit_retraining(submitted["request"])
    assert [str(s) for s in fake.sent] == [f"GET {ARM}/jobs/retrain-diabetes-ridge-4f2a9c"]
    assert again.name == submitted["job"].name
    assert again.url == submitted["job"].url
    assert fake.unexpected == []


def test_a_new_job_reuses_the_uploaded_code(submitted, module_env):
    fake = module_env["fake"] = submitted["fake"]
    fake.reset()
    job = submitted["platform"].submit_retraining(request_for("retrain-diabetes-ridge-5b3c0d"))
    assert job.name == "retrain-diabetes-ridge-5b3c0d"
    assert fake.storage() == []  # same snapshot hash: the code asset is found, nothing uploaded
    assert not [s for s in fake.sent if s.path.startswith("/datastores/")]  # read once, by the first submit
    assert [str(s) for s in fake.arm("PUT") if "/jobs/" in s.path] == [f"PUT {ARM}/jobs/retrain-diabetes-ridge-5b3c0d"]
    assert fake.unexpected == []


def test_first_model_has_no_champion(platform, fake):
    job = platform.submit_retraining(request_for("retrain-new-model-000001", model_name="new-model"))
    evaluate = _job_put(fake.sent).json()["properties"]["jobs"]["evaluate"]["inputs"]
    assert "champion" not in evaluate
    assert job.model_name == "new-model"


def test_create_that_loses_a_race_returns_the_winners_job(platform, fake):
    def concurrent_submitter(workspace: FakeWorkspace, name: str) -> None:
        job = fixture("job_pipeline.json")
        workspace.jobs[name] = {**job, "name": name, "id": WS_PATH + f"/jobs/{name}"}

    fake.before_job_put = concurrent_submitter
    job = platform.submit_retraining(request_for("retrain-diabetes-ridge-4f2a9c"))
    puts = [str(s) for s in fake.arm() if "/jobs/" in s.path]
    assert puts == [f"GET {ARM}/jobs/retrain-diabetes-ridge-4f2a9c", f"PUT {ARM}/jobs/retrain-diabetes-ridge-4f2a9c",
                    f"GET {ARM}/jobs/retrain-diabetes-ridge-4f2a9c"]
    assert job.status == "running"


def test_create_error_without_a_job_is_raised(platform, fake):
    fake.fail_next("PUT", r"^/jobs/", 503)
    with pytest.raises(HttpResponseError) as caught:
        platform.submit_retraining(request_for("retrain-diabetes-ridge-4f2a9c"))
    assert caught.value.status_code == 503
    assert fake.jobs == {}


def test_transient_error_on_the_first_read_surfaces_and_nothing_is_created(platform, fake):
    fake.fail_next("GET", r"^/jobs/", 503)
    with pytest.raises(HttpResponseError) as caught:
        platform.submit_retraining(request_for("retrain-diabetes-ridge-4f2a9c"))
    assert caught.value.status_code == 503
    assert [str(s) for s in fake.sent] == [f"GET {ARM}/jobs/retrain-diabetes-ridge-4f2a9c"]


def test_container_without_a_datastore_fails_before_any_write(platform, fake):
    with pytest.raises(ValueError, match=r"no configured Azure ML datastore covers container 'elsewhere'"):
        platform.submit_retraining(request_for("retrain-diabetes-ridge-4f2a9c", data=BlobFolder("elsewhere", "x/")))
    assert fake.arm("PUT") == [] and fake.storage() == []


def test_several_datastores_each_cover_their_container(fake):
    holdout = fixture("datastore.json")
    holdout["name"], holdout["properties"]["containerName"] = "reactorholdout", "holdout"
    fake.datastores["reactorholdout"] = holdout
    platform = make_platform(fake, datastore="reactordata, reactorholdout")
    assert platform.folder_uri(BlobFolder("data", "m/")) == "azureml://datastores/reactordata/paths/m/"
    assert platform.file_uri("holdout", "m/t.csv") == "azureml://datastores/reactorholdout/paths/m/t.csv"
    assert [s.path for s in fake.sent] == ["/datastores/reactordata", "/datastores/reactorholdout"]


def test_a_datastore_missing_from_the_workspace_is_a_configuration_error(fake):
    platform = make_platform(fake, datastore="gone")
    with pytest.raises(ValueError, match="datastore 'gone' does not exist"):
        platform.folder_uri(BlobFolder("data", "m/"))


# --- jobs ---


@pytest.mark.parametrize(
    ("azure_status", "status"),
    [("NotStarted", "queued"), ("Starting", "queued"), ("Provisioning", "queued"), ("Preparing", "queued"),
     ("Queued", "queued"), ("Paused", "queued"), ("Running", "running"), ("Finalizing", "running"),
     ("CancelRequested", "running"), ("NotResponding", "running"), ("Completed", "completed"),
     ("Failed", "failed"), ("Canceled", "canceled"), ("Unknown", "running")],
)
def test_job_status_from_a_recorded_job(platform, fake, azure_status, status):
    recorded = fixture("job_pipeline.json")
    recorded["properties"]["status"] = azure_status
    fake.jobs[recorded["name"]] = recorded
    job = platform.get_job("retrain-diabetes-ridge-4f2a9c")
    assert job is not None
    assert (job.status, job.finished) == (status, status in ("completed", "failed", "canceled"))
    # the SDK adds the tenant of the caller's token to the studio URL the service returns
    assert job.url == recorded["properties"]["services"]["Studio"]["endpoint"] + f"&tid={TENANT}"
    assert job.model_name == "diabetes-ridge"
    assert job.tags["reactor_decision_id"] == "d-4f2a9c"
    # reading a pipeline job, the SDK also reads the workspace once per client (its id keys a component cache)
    assert [str(s) for s in fake.sent] == [f"GET {ARM}/jobs/retrain-diabetes-ridge-4f2a9c", f"GET {ARM}"]


def test_missing_job_is_none(platform, fake):
    assert platform.get_job("never-submitted") is None
    assert [s.path for s in fake.sent] == ["/jobs/never-submitted"]


def test_map_status_is_case_insensitive_and_never_finishes_unknowns():
    assert map_status("COMPLETED") == "completed"
    assert map_status(None) == "running"
    assert map_status("SomethingNew") == "running"


# --- models ---


def test_list_models_oldest_first_across_pages(platform, fake):
    models = platform.list_models("diabetes-ridge")
    assert [m.version for m in models] == ["1", "2", "3"]
    assert [m.created_at.isoformat() for m in models] == [
        "2024-03-01T10:15:00+00:00", "2024-04-01T10:15:00+00:00", "2024-05-01T10:15:00+00:00"]
    assert models[-1].tags["rmse"] == "52.40"
    assert models[-1].properties["sklearn_version"] == "1.9.1"
    pages = [s for s in fake.sent if s.path == "/models/diabetes-ridge/versions"]
    assert len(pages) == 2 and "$skipToken" in pages[1].query


def test_list_models_of_an_unknown_model_is_empty(platform, fake):
    assert platform.list_models("no-such-model") == []
    fake.fail_next("GET", r"^/models/", 404)  # a workspace that answers 404 for a model it never saw
    assert platform.list_models("no-such-model") == []


def test_get_model(platform, fake):
    model = platform.get_model("diabetes-ridge", "2")
    assert model is not None
    assert (model.name, model.version, model.tags["reactor_decision_id"]) == ("diabetes-ridge", "2", "d-7e3f4a")
    assert [str(s) for s in fake.sent] == [f"GET {ARM}/models/diabetes-ridge/versions/2"]


def test_missing_model_version_is_none(platform, fake):
    assert platform.get_model("diabetes-ridge", "99") is None


def test_transient_error_reading_models_surfaces(platform, fake):
    fake.fail_next("GET", r"^/models/", 503)
    with pytest.raises(HttpResponseError):
        platform.list_models("diabetes-ridge")


# --- construction ---


def test_datastore_uri():
    assert datastore_uri("reactordata", "/batches/m1", folder=True) == "azureml://datastores/reactordata/paths/batches/m1/"
    assert datastore_uri("reactordata", "", folder=True) == "azureml://datastores/reactordata/paths/"
    assert datastore_uri("h", "t/holdout.csv", folder=False) == "azureml://datastores/h/paths/t/holdout.csv"


def test_from_settings_uses_default_azure_credential_without_one(fake):
    from azure.identity import DefaultAzureCredential

    platform = AzureMLPlatform.from_settings(SUB, RG, WS, compute="c", experiment="e", datastore="d",
                                             transport=fake)
    assert isinstance(platform.client._credential, DefaultAzureCredential)
    assert fake.sent == []  # building the client talks to nobody


def test_importing_and_configuring_the_adapter_loads_no_sdk():
    code = ("from core.adapters.azure_ml import AzureMLPlatform\n"
            "AzureMLPlatform.from_settings('s', 'rg', 'ws', compute='c', experiment='e', datastore='d')")
    assert sdk_modules_loaded_by(code, ("azure.ai.ml", "azure.identity", "ml.pipeline", "sklearn")) == []
