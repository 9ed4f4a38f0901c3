"""The Azure ML pipeline job that runs train -> evaluate -> register in the workspace.

The steps are the component YAMLs in ``ml/azureml``, which run the same ``python -m ml.*`` commands
as a local run, so a model promoted in Azure went through exactly the code tested here. The reactor
calls ``build_pipeline_job`` and submits the result with ``MLClient.jobs.create_or_update``.

azure.ai.ml is imported inside the function: it takes about two seconds to import, and the
Functions app and the local CLI must not pay that unless they actually build a job.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml.metrics import check_metric
from ml.register import check_name

if TYPE_CHECKING:
    from azure.ai.ml.entities import PipelineJob

COMPONENT_DIR = Path(__file__).resolve().parent / "azureml"
PIPELINE_NAME = "mlops_reactor_retrain"
# the train component declares data_0 .. data_7; a longer list belongs in one folder input
MAX_DATA_INPUTS = 8


def build_pipeline_job(
    *,
    data_uris: list[str],
    test_uri: str,
    model_name: str,
    metric: str,
    min_improvement: float,
    compute: str,
    tags: dict[str, str],
    experiment_name: str,
    champion_uri: str | None = None,
) -> PipelineJob:
    """Compose train, evaluate and register into a pipeline job (no network; submit it separately).

    ``data_uris`` are CSV files or folders (``azureml://datastores/...``, ``https://...``, or
    ``azureml:name:version`` data assets); a URI ending in ``.csv`` is bound as a file, anything
    else as a folder. ``test_uri`` is one CSV file, the held-out set. ``champion_uri`` is the
    current production model (``azureml:NAME:VERSION``); without it the challenger has nothing to
    beat and passes.
    """
    _check_arguments(data_uris, model_name, metric, min_improvement, compute, tags)
    from azure.ai.ml import Input, dsl, load_component

    train_step = load_component(source=COMPONENT_DIR / "train.yml")
    evaluate_step = load_component(source=COMPONENT_DIR / "evaluate.yml")
    register_step = load_component(source=COMPONENT_DIR / "register.yml")
    data = {f"data_{i}": Input(type=_uri_type(uri), path=uri) for i, uri in enumerate(data_uris)}
    champion = {} if champion_uri is None else {"champion": Input(type="custom_model", path=champion_uri)}

    # the SDK's typing overload for the keyword-only decorator form omits func's default, hence the ignore
    @dsl.pipeline(  # type: ignore[call-overload]
        name=PIPELINE_NAME,
        description=f"Retrain, gate and register {model_name}",
        experiment_name=experiment_name,
        tags=tags,
        default_compute=compute,
    )
    def retrain() -> dict[str, Any]:
        # the variable names become the step names shown in the studio and in the job definition
        train = train_step(**data)
        evaluate = evaluate_step(
            challenger=train.outputs.model,
            test_data=Input(type="uri_file", path=test_uri),
            metric=metric,
            min_improvement=min_improvement,
            **champion,
        )
        register = register_step(
            model=train.outputs.model,
            verdict=evaluate.outputs.verdict,
            model_name=model_name,
            tags_json=json.dumps(tags, sort_keys=True),
        )
        return {
            "model": train.outputs.model,
            "verdict": evaluate.outputs.verdict,
            "package": register.outputs.package,
        }

    job: PipelineJob = retrain()
    job.display_name = f"retrain {model_name}"
    return job


def _check_arguments(
    data_uris: list[str], model_name: str, metric: str, min_improvement: float, compute: str, tags: dict[str, str]
) -> None:
    """Fail here, in the reactor, rather than minutes later inside a pipeline step."""
    if not data_uris:
        raise ValueError("data_uris must name at least one CSV file or folder")
    if len(data_uris) > MAX_DATA_INPUTS:
        raise ValueError(f"at most {MAX_DATA_INPUTS} data URIs, got {len(data_uris)}; put the batches in one folder")
    check_name(model_name)
    check_metric(metric)
    if not math.isfinite(min_improvement):
        raise ValueError(f"min_improvement must be a finite number, got {min_improvement}")
    if not compute:
        raise ValueError("compute must name a compute cluster")
    for key, value in tags.items():
        # the register step passes tags single-quoted on a shell command line
        if "'" in key + value or "\n" in key + value:
            raise ValueError(f"tag {key!r}: single quotes and newlines are not allowed in tags")


def _uri_type(uri: str) -> str:
    return "uri_file" if uri.lower().endswith(".csv") else "uri_folder"
