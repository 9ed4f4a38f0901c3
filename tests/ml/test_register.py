import json
import shutil

import pytest

from ml import register as register_module
from ml.dataset import sha256_file
from ml.errors import MLError, ModelError, VerdictError
from ml.evaluate import evaluate
from ml.register import build_azure_model, package, parse_tags

MODEL_FILES = ["baseline.json", "model.json", "model.pkl", "sample_input.json"]
# azure-ai-ml's schemas trip marshmallow's deprecation warnings by the hundred; they say nothing about this code
pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.RemovedInMarshmallow4Warning")
WORKSPACE_ENV = ("AZUREML_ARM_SUBSCRIPTION", "AZUREML_ARM_RESOURCEGROUP", "AZUREML_ARM_WORKSPACE_NAME")


@pytest.fixture()
def passed_verdict(tmp_path, good_model, poor_model, holdout):
    path = tmp_path / "passed.json"
    path.write_text(json.dumps(evaluate(good_model, poor_model, holdout).to_dict()))
    return path


@pytest.fixture()
def failed_verdict(tmp_path, good_model, poor_model, holdout):
    path = tmp_path / "failed.json"
    path.write_text(json.dumps(evaluate(poor_model, good_model, holdout).to_dict()))
    return path


def _record(out):
    return json.loads((out / "registration.json").read_text())


def test_passed_verdict_packages_model_with_lineage(tmp_path, good_model, passed_verdict):
    out = tmp_path / "pkg"
    record = package(good_model, passed_verdict, "diabetes-ridge", {"trigger": "blob"}, out)
    assert sorted(p.name for p in out.iterdir()) == sorted([*MODEL_FILES, "registration.json"])
    for name in MODEL_FILES:
        assert (out / name).read_bytes() == (good_model / name).read_bytes()
    assert _record(out) == record
    verdict = json.loads(passed_verdict.read_text())
    card = json.loads((good_model / "model.json").read_text())
    tags = record["tags"]
    assert record["registered"] is True and record["name"] == "diabetes-ridge"
    assert tags["trigger"] == "blob"
    assert tags["metric"] == "rmse"
    assert tags["rmse"] == str(verdict["challenger"]) and tags["champion_rmse"] == str(verdict["champion"])
    assert tags["training_data_sha256"] == card["training_data_sha256"]
    assert tags["test_data_sha256"] == verdict["test_sha256"]
    assert all(isinstance(v, str) for v in [*tags.values(), *record["properties"].values()])
    files = json.loads(record["properties"]["training_files"])
    assert [f["sha256"] for f in files] == [f["sha256"] for f in card["training_files"]]
    assert record["properties"]["model_sha256"] == sha256_file(good_model / "model.pkl")


def test_failed_verdict_writes_only_the_reason(tmp_path, poor_model, failed_verdict, capsys):
    out = tmp_path / "pkg"
    args = ["--model", str(poor_model), "--verdict", str(failed_verdict), "--name", "diabetes-ridge"]
    assert register_module.main([*args, "--out", str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["registration.json"]
    record = _record(out)
    assert record["registered"] is False
    assert record["reason"] == json.loads(failed_verdict.read_text())["reason"]
    assert "misses the required" in record["reason"]
    assert capsys.readouterr().out.startswith("not registered: ")


def test_verdict_must_belong_to_the_model(tmp_path, poor_model, passed_verdict):
    with pytest.raises(VerdictError, match="different model"):
        package(poor_model, passed_verdict, "diabetes-ridge", {}, tmp_path / "pkg")


def test_refuses_a_non_empty_output_directory(tmp_path, good_model, passed_verdict):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "model.pkl").write_text("stale")
    with pytest.raises(MLError, match="not empty"):
        package(good_model, passed_verdict, "diabetes-ridge", {}, tmp_path / "pkg")


def test_reserved_tags_and_bad_names(tmp_path, good_model, passed_verdict):
    with pytest.raises(MLError, match="tags rmse are set by registration"):
        package(good_model, passed_verdict, "diabetes-ridge", {"rmse": "1"}, tmp_path / "a")
    with pytest.raises(MLError, match="invalid model name"):
        package(good_model, passed_verdict, "bad name", {}, tmp_path / "b")
    assert parse_tags(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(MLError, match="key=value"):
        parse_tags(["novalue"])


def test_malformed_verdict(tmp_path, good_model, capsys):
    bad = tmp_path / "verdict.json"
    bad.write_text(json.dumps({"passed": "yes"}))
    args = ["--model", str(good_model), "--verdict", str(bad), "--name", "m", "--out", str(tmp_path / "pkg")]
    assert register_module.main(args) == 1
    assert "verdict field 'passed' missing or not a bool" in capsys.readouterr().err


def test_build_azure_model_entity(tmp_path, good_model, passed_verdict):
    from azure.ai.ml.entities import Model

    out = tmp_path / "pkg"
    record = package(good_model, passed_verdict, "diabetes-ridge", {"trigger": "blob"}, out)
    model = build_azure_model(out, "diabetes-ridge", record["tags"])
    assert isinstance(model, Model)
    assert model.name == "diabetes-ridge"
    assert model.type == "custom_model"
    assert model.path == str(out)
    assert model.tags == record["tags"]
    assert model.properties == record["properties"]
    rest = model._to_rest_object().properties
    assert rest.model_type == "custom_model"
    assert rest.tags["training_data_sha256"] == record["tags"]["training_data_sha256"]
    assert rest.properties["model_sha256"] == sha256_file(good_model / "model.pkl")


def test_build_azure_model_refuses_unregistered_package(tmp_path, poor_model, failed_verdict):
    package(poor_model, failed_verdict, "diabetes-ridge", {}, tmp_path / "pkg")
    with pytest.raises(VerdictError, match="did not pass"):
        build_azure_model(tmp_path / "pkg", "diabetes-ridge", {})


def test_azureml_mode_needs_a_workspace_before_writing(tmp_path, good_model, passed_verdict, monkeypatch, capsys):
    for name in WORKSPACE_ENV:
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "pkg"
    args = ["--model", str(good_model), "--verdict", str(passed_verdict), "--name", "m", "--out", str(out)]
    assert register_module.main([*args, "--azureml"]) == 1
    assert "Azure ML workspace unknown" in capsys.readouterr().err
    assert not out.exists()


def test_azureml_mode_registers_the_package(tmp_path, good_model, passed_verdict, fake_mlclient, capsys):
    out = tmp_path / "pkg"
    args = ["--model", str(good_model), "--verdict", str(passed_verdict), "--name", "diabetes-ridge"]
    extra = ["--tag", "run=42", "--tags-json", '{"source": "demo"}', "--out", str(out), "--azureml"]
    assert register_module.main([*args, *extra]) == 0
    assert fake_mlclient.scope == {"subscription_id": "sub-1", "resource_group_name": "rg-1", "workspace_name": "ws-1"}
    (registered,) = fake_mlclient.created
    assert registered.path == str(out) and registered.type == "custom_model"
    assert registered.tags["run"] == "42" and registered.tags["source"] == "demo"
    assert _record(out)["azureml"] == {"name": "diabetes-ridge", "version": "7", "id": "azureml:diabetes-ridge:7"}
    assert "registered diabetes-ridge version 7" in capsys.readouterr().out


def test_package_keeps_working_with_nested_model_dir(tmp_path, good_model, passed_verdict):
    shutil.copytree(good_model, tmp_path / "mount" / "inner")
    record = package(tmp_path / "mount", passed_verdict, "diabetes-ridge", {}, tmp_path / "pkg")
    assert record["registered"] is True


def test_incomplete_model_directory_is_refused(tmp_path, good_model, passed_verdict):
    shutil.copytree(good_model, tmp_path / "model")
    (tmp_path / "model" / "baseline.json").unlink()
    with pytest.raises(ModelError, match=r"lacks baseline\.json"):
        package(tmp_path / "model", passed_verdict, "diabetes-ridge", {}, tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()
