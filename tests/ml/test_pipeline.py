"""The Azure ML pipeline job, built and serialised by the SDK itself, and its commands run locally."""

import json
import os
import re
import shlex
import shutil

import pytest

from ml import evaluate, register, train
from ml.pipeline import MAX_DATA_INPUTS, build_pipeline_job

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.RemovedInMarshmallow4Warning")

STORE = "azureml://datastores/workspaceblobstore/paths"
ARGS = {
    "data_uris": [f"{STORE}/batches/", f"{STORE}/incoming/extra.csv"],
    "test_uri": f"{STORE}/test/holdout.csv",
    "model_name": "diabetes-ridge",
    "metric": "mae",
    "min_improvement": 0.02,
    "compute": "cpu-cluster",
    "tags": {"trigger": "BlobCreated", "event_id": "e-1"},
    "experiment_name": "mlops-reactor",
}


@pytest.fixture(scope="module")
def job():
    return build_pipeline_job(**ARGS, champion_uri="azureml:diabetes-ridge:3")


@pytest.fixture(scope="module")
def rest(job):
    return job._to_rest_object().as_dict()["properties"]


def test_job_level_settings(rest):
    assert rest["jobType"] == "Pipeline"
    assert rest["experimentName"] == "mlops-reactor"
    assert rest["tags"] == {"trigger": "BlobCreated", "event_id": "e-1"}
    assert rest["settings"]["default_compute"] == "cpu-cluster"
    assert list(rest["jobs"]) == ["train", "evaluate", "register"]
    assert set(rest["outputs"]) == {"model", "verdict", "package"}


def test_step_inputs_and_wiring(rest):
    train_in = rest["jobs"]["train"]["inputs"]
    assert train_in == {
        "data_0": {"uri": f"{STORE}/batches/", "job_input_type": "uri_folder"},
        "data_1": {"uri": f"{STORE}/incoming/extra.csv", "job_input_type": "uri_file"},
    }
    evaluate_in = rest["jobs"]["evaluate"]["inputs"]
    assert evaluate_in["challenger"]["value"] == "${{parent.jobs.train.outputs.model}}"
    assert evaluate_in["champion"] == {"uri": "azureml:diabetes-ridge:3", "job_input_type": "custom_model"}
    assert evaluate_in["test_data"] == {"uri": f"{STORE}/test/holdout.csv", "job_input_type": "uri_file"}
    assert evaluate_in["metric"]["value"] == "mae"
    assert float(evaluate_in["min_improvement"]["value"]) == 0.02
    register_in = rest["jobs"]["register"]["inputs"]
    assert register_in["model"]["value"] == "${{parent.jobs.train.outputs.model}}"
    assert register_in["verdict"]["value"] == "${{parent.jobs.evaluate.outputs.verdict}}"
    assert register_in["model_name"]["value"] == "diabetes-ridge"
    assert json.loads(register_in["tags_json"]["value"]) == ARGS["tags"]


def test_components_run_the_ml_package(job):
    for step, module in (("train", "ml.train"), ("evaluate", "ml.evaluate"), ("register", "ml.register")):
        component = job.jobs[step].component
        assert component.command.startswith(f"python -m {module} ")
        assert component.environment.image == "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04"
        assert component._validate().passed
    assert "--azureml" in job.jobs["register"].component.command


def test_code_snapshot_is_the_ml_package(job):
    with job.jobs["train"].component._build_code() as code:
        root = code.path
        uploaded = {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files}
    assert {"ml/train.py", "ml/evaluate.py", "ml/register.py", "ml/dataset.py", "ml/azureml/train.yml"} <= uploaded
    assert all(path.startswith("ml/") for path in uploaded)
    assert not any("__pycache__" in path for path in uploaded)


def test_no_champion_leaves_the_optional_input_out():
    rest = build_pipeline_job(**ARGS)._to_rest_object().as_dict()["properties"]
    assert "champion" not in rest["jobs"]["evaluate"]["inputs"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data_uris": []}, "at least one"),
        ({"data_uris": ["a.csv"] * (MAX_DATA_INPUTS + 1)}, "at most 8"),
        ({"metric": "accuracy"}, "unknown metric"),
        ({"model_name": "has space"}, "invalid model name"),
        ({"compute": ""}, "compute"),
        ({"min_improvement": float("nan")}, "finite"),
        ({"tags": {"note": "it's"}}, "single quotes"),
    ],
)
def test_bad_arguments_fail_before_building(change, message):
    with pytest.raises(ValueError, match=message):
        build_pipeline_job(**{**ARGS, **change})


def _render(command, values, defaults):
    """Expand an Azure ML command line the way the service does: optional $[[...]] parts only if bound."""

    def optional(match):
        names = re.findall(r"\$\{\{(.+?)\}\}", match.group(1))
        return match.group(1) if all(n in values for n in names) else ""

    command = re.sub(r"\$\[\[(.*?)\]\]", optional, command)
    return re.sub(r"\$\{\{(.+?)\}\}", lambda m: str(values.get(m.group(1), defaults.get(m.group(1)))), command)


def _run_step(job, step, values, module):
    component = job.jobs[step].component
    defaults = {f"inputs.{k}": v.default for k, v in component.inputs.items() if v.default is not None}
    argv = shlex.split(_render(component.command, values, defaults))
    assert argv[:3] == ["python", "-m", module.__name__]
    assert module.main(argv[3:]) == 0


def test_step_commands_run_locally_end_to_end(tmp_path, job, good_dir, holdout, poor_model, fake_mlclient):
    # local stand-ins for what Azure ML would mount at each input and output
    extra = tmp_path / "extra.csv"
    shutil.copy(sorted(good_dir.glob("*.csv"))[0], extra)
    model, verdict, package = tmp_path / "model", tmp_path / "verdict", tmp_path / "package"
    verdict.mkdir()
    package.mkdir()
    node_inputs = job._to_dict()["jobs"]
    _run_step(job, "train", {"inputs.data_0": good_dir, "inputs.data_1": extra, "outputs.model": model}, train)
    evaluate_values = {
        "inputs.challenger": model,
        "inputs.champion": poor_model,
        "inputs.test_data": holdout,
        "inputs.metric": node_inputs["evaluate"]["inputs"]["metric"],
        "inputs.min_improvement": node_inputs["evaluate"]["inputs"]["min_improvement"],
        "outputs.verdict": verdict,
    }
    _run_step(job, "evaluate", evaluate_values, evaluate)
    register_values = {
        "inputs.model": model,
        "inputs.verdict": verdict,
        "inputs.model_name": node_inputs["register"]["inputs"]["model_name"],
        "inputs.tags_json": node_inputs["register"]["inputs"]["tags_json"],
        "outputs.package": package,
    }
    _run_step(job, "register", register_values, register)

    assert json.loads((model / "model.json").read_text())["training_rows"] == 480
    assert json.loads((verdict / "verdict.json").read_text())["metric"] == "mae"
    record = json.loads((package / "registration.json").read_text())
    assert record["registered"] is True
    assert record["tags"]["event_id"] == "e-1"
    assert record["azureml"]["version"] == "7"
    (created,) = fake_mlclient.created
    assert created.name == "diabetes-ridge"
