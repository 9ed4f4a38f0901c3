"""Shared data and models, built once per session because training is the slow part of these tests."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from ml.sample_data import write_batches, write_holdout
from ml.train import train


@pytest.fixture(scope="session")
def ml_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ml")


@pytest.fixture(scope="session")
def good_dir(ml_root) -> Path:
    write_batches(ml_root / "good", files=3, rows=120, seed=1, kind="good")
    return ml_root / "good"


@pytest.fixture(scope="session")
def poor_dir(ml_root) -> Path:
    write_batches(ml_root / "poor", files=3, rows=120, seed=2, kind="poor")
    return ml_root / "poor"


@pytest.fixture(scope="session")
def holdout(ml_root) -> Path:
    return write_holdout(ml_root / "test")


@pytest.fixture(scope="session")
def good_model(ml_root, good_dir) -> Path:
    train([good_dir], ml_root / "good-model")
    return ml_root / "good-model"


@pytest.fixture(scope="session")
def poor_model(ml_root, poor_dir) -> Path:
    train([poor_dir], ml_root / "poor-model")
    return ml_root / "poor-model"


@pytest.fixture()
def fake_mlclient(monkeypatch):
    """Replace azure.ai.ml.MLClient so the --azureml registration path runs without a network.

    Sets the workspace variables an Azure ML job provides and records every model created.
    """
    import azure.ai.ml
    from azure.ai.ml.entities import Model

    seen = SimpleNamespace(created=[], scope={})

    class FakeModels:
        def create_or_update(self, model):
            seen.created.append(model)
            # the service answers with the stored version as a new entity
            return Model(id=f"azureml:{model.name}:7", name=model.name, version="7", path=model.path, type=model.type)

    class FakeMLClient:
        def __init__(self, credential, subscription_id, resource_group_name, workspace_name):
            seen.scope = {
                "subscription_id": subscription_id,
                "resource_group_name": resource_group_name,
                "workspace_name": workspace_name,
            }
            self.models = FakeModels()

    monkeypatch.setattr(azure.ai.ml, "MLClient", FakeMLClient)
    for name, value in (
        ("AZUREML_ARM_SUBSCRIPTION", "sub-1"),
        ("AZUREML_ARM_RESOURCEGROUP", "rg-1"),
        ("AZUREML_ARM_WORKSPACE_NAME", "ws-1"),
    ):
        monkeypatch.setenv(name, value)
    return seen
